//! The node's ingress: `networking.k8s.io/v1` Ingresses of Skiff's class served by an HTTP/1.1
//! proxy (and HTTPS by SNI), NodePort listeners, and the Ingresses' load-balancer status.
//!
//! One task watches Ingresses, IngressClasses, Services and TLS Secrets; after every event it
//! rebuilds the route table and the certificate table from its caches and swaps them in
//! (`ArcSwap`), so requests read them without a lock and the ingress converges within one event.
//! The same task opens and closes NodePorts and hands status writes to a second task.

pub(crate) mod rules;
pub(crate) mod serve;
mod status;
mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::rules::{ObjKey, Objects, RouteTable};
use self::tls::{ParsedSecrets, TlsTable};
use crate::net::ServiceBackend;
use crate::net::nodeport::NodePorts;

/// Errors starting the ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fallback certificate could not be made.
    #[error("{0}")]
    Tls(String),
}

/// Where the ingress listens.
#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// The node's name (for Events).
    pub node: String,
    /// Plain HTTP; its host is also where NodePorts listen.
    pub listen: Option<SocketAddr>,
    /// HTTPS.
    pub tls_listen: Option<SocketAddr>,
    /// The address written to the Ingresses' `status.loadBalancer.ingress` (when the listener's
    /// host is unspecified, such as `0.0.0.0`).
    pub fallback_address: IpAddr,
}

/// A running ingress.
pub struct IngressHandle {
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl IngressHandle {
    /// The bound address of the HTTP listener.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The bound address of the HTTPS listener.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
    }

    /// The ingress's tasks (they end when the stop signal given to [`start`] turns true);
    /// dropping the handle instead aborts them.
    pub fn into_tasks(mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.tasks)
    }
}

impl Drop for IngressHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), IngressError> {
    let err = |source| IngressError::Listen { addr, source };
    let l = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok((l, local))
}

/// Binds the listeners and starts the watches; everything stops when `stop` turns true.
pub async fn start(
    client: kube::Client,
    backend: Arc<dyn ServiceBackend>,
    opts: IngressOptions,
    stop: watch::Receiver<bool>,
) -> Result<IngressHandle, IngressError> {
    let route_table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    let fallback = tls::fallback_certificate().map_err(|e| IngressError::Tls(e.to_string()))?;
    let tls_table = Arc::new(ArcSwap::from_pointee(TlsTable::build(
        &Objects::default(),
        &BTreeMap::new(),
        &mut ParsedSecrets::default(),
        fallback.clone(),
    )));
    // Bind both before serving either: a failure leaves nothing running.
    let plain = match opts.listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let secure = match opts.tls_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let mut tasks = Vec::new();
    let mut http = None;
    let mut https = None;
    if let Some((l, local)) = plain {
        let proxy = serve::IngressProxy::new(route_table.clone(), backend.clone(), false, local);
        tasks.push(tokio::spawn(serve::serve(
            l,
            None,
            Arc::new(proxy),
            stop.clone(),
        )));
        http = Some(local);
    }
    if let Some((l, local)) = secure {
        let proxy = serve::IngressProxy::new(route_table.clone(), backend.clone(), true, local);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(tls_table.clone()));
        tasks.push(tokio::spawn(serve::serve(
            l,
            Some(acceptor),
            Arc::new(proxy),
            stop.clone(),
        )));
        https = Some(local);
    }
    let bound = http.or(https).map(|a| a.ip());
    let address = match bound {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => opts.fallback_address,
    };
    let node_ports = bound.map(|host| {
        NodePorts::new(
            host,
            backend.clone(),
            Some(client.clone()),
            opts.node.clone(),
        )
    });
    let (pending_tx, pending_rx) = watch::channel(status::Pending::default());
    let ours = status::entry(&address.to_string());
    tasks.push(tokio::spawn(status::run(
        client.clone(),
        ours.clone(),
        pending_rx,
        stop.clone(),
    )));
    let state = State {
        objects: Objects::default(),
        secrets: BTreeMap::new(),
        parsed: ParsedSecrets::default(),
        fallback,
        route_table,
        tls_table,
        node_ports,
        ours,
        pending: pending_tx,
    };
    // Secrets are read only by a node that serves HTTPS.
    let watch_secrets = https.is_some();
    tasks.push(tokio::spawn(watch_loop(client, state, watch_secrets, stop)));
    Ok(IngressHandle { http, https, tasks })
}

/// What the watch task keeps.
struct State {
    objects: Objects,
    secrets: BTreeMap<ObjKey, Secret>,
    parsed: ParsedSecrets,
    fallback: Arc<rustls::sign::CertifiedKey>,
    route_table: Arc<ArcSwap<RouteTable>>,
    tls_table: Arc<ArcSwap<TlsTable>>,
    node_ports: Option<NodePorts>,
    ours: k8s_openapi::api::networking::v1::IngressLoadBalancerIngress,
    pending: watch::Sender<status::Pending>,
}

impl State {
    /// Rebuilds both tables, syncs the NodePorts and tells the status task what to write.
    async fn rebuild(&mut self) {
        self.route_table
            .store(Arc::new(RouteTable::build(&self.objects)));
        self.tls_table.store(Arc::new(TlsTable::build(
            &self.objects,
            &self.secrets,
            &mut self.parsed,
            self.fallback.clone(),
        )));
        if let Some(np) = &mut self.node_ports {
            np.sync(&self.objects.services).await;
        }
        let served: std::collections::BTreeSet<ObjKey> =
            rules::served_keys(&self.objects).into_iter().collect();
        let pending: BTreeMap<ObjKey, bool> = self
            .objects
            .ingresses
            .iter()
            .filter_map(|(k, ing)| {
                let want = served.contains(k);
                (status::has_entry(ing, &self.ours) != want).then(|| (k.clone(), want))
            })
            .collect();
        self.pending.send_if_modified(|p| {
            if **p == pending {
                false
            } else {
                *p = Arc::new(pending);
                true
            }
        });
    }
}

/// One watch event of one of the four kinds.
enum Ev {
    Ingress(Box<Event<Ingress>>),
    Class(Box<Event<IngressClass>>),
    Service(Box<Event<Service>>),
    Secret(Box<Event<Secret>>),
}

/// The lists in progress while a kind is (re)listed.
#[derive(Default)]
struct Relists {
    ingresses: Option<BTreeMap<ObjKey, Ingress>>,
    classes: Option<BTreeMap<ObjKey, IngressClass>>,
    services: Option<BTreeMap<ObjKey, Service>>,
    secrets: Option<BTreeMap<ObjKey, Secret>>,
}

fn stream<K, F>(api: Api<K>, cfg: watcher::Config, wrap: F) -> BoxStream<'static, Ev>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    F: Fn(Box<Event<K>>) -> Ev + Send + 'static,
{
    let what = K::kind(&()).to_string();
    watcher::watcher(api, cfg)
        .default_backoff()
        .filter_map(move |ev| {
            let out = match ev {
                Ok(ev) => Some(wrap(Box::new(ev))),
                Err(e) => {
                    tracing::warn!(kind = %what, error = %e, "ingress watch");
                    None
                }
            };
            std::future::ready(out)
        })
        .boxed()
}

fn key<K: Resource>(obj: &K) -> ObjKey {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

/// A watch cache of one kind: the objects, and the new list while a (re)list is in progress.
struct Cache<'a, K> {
    map: &'a mut BTreeMap<ObjKey, K>,
    relist: &'a mut Option<BTreeMap<ObjKey, K>>,
}

impl<K: Resource> Cache<'_, K> {
    /// Applies an event; whether the cache changed (a relist counts once, when it is done).
    fn apply(self, ev: Event<K>) -> bool {
        match ev {
            Event::Init => {
                *self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                if let Some(r) = self.relist.as_mut() {
                    r.insert(key(&obj), obj);
                }
                false
            }
            Event::InitDone => {
                if let Some(r) = self.relist.take() {
                    *self.map = r;
                }
                true
            }
            Event::Apply(obj) => {
                self.map.insert(key(&obj), obj);
                true
            }
            Event::Delete(obj) => {
                self.map.remove(&key(&obj));
                true
            }
        }
    }
}

async fn watch_loop(
    client: kube::Client,
    mut state: State,
    watch_secrets: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut streams = vec![
        stream(
            Api::<Ingress>::all(client.clone()),
            Default::default(),
            Ev::Ingress,
        ),
        stream(
            Api::<IngressClass>::all(client.clone()),
            Default::default(),
            Ev::Class,
        ),
        stream(
            Api::<Service>::all(client.clone()),
            Default::default(),
            Ev::Service,
        ),
    ];
    if watch_secrets {
        let cfg = watcher::Config::default().fields("type=kubernetes.io/tls");
        streams.push(stream(Api::<Secret>::all(client.clone()), cfg, Ev::Secret));
    }
    let mut events = futures::stream::select_all(streams);
    let mut relists = Relists::default();
    let mut classes: BTreeMap<ObjKey, IngressClass> = BTreeMap::new();
    // Nothing is published until Ingresses, IngressClasses and Services have been listed once:
    // an Ingress seen before its Service would answer 503 for a moment. Secrets only add
    // certificates (a node not allowed to read them still serves HTTP).
    let mut synced = [false; 4];
    loop {
        let ev = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            ev = events.next() => ev,
        };
        let Some(ev) = ev else { break };
        let (i, changed) = match ev {
            Ev::Ingress(ev) => {
                let c = Cache {
                    map: &mut state.objects.ingresses,
                    relist: &mut relists.ingresses,
                };
                (0, c.apply(*ev))
            }
            Ev::Class(ev) => {
                let c = Cache {
                    map: &mut classes,
                    relist: &mut relists.classes,
                };
                let changed = c.apply(*ev);
                if changed {
                    state.objects.classes = classes
                        .iter()
                        .map(|(k, v)| (k.1.clone(), v.clone()))
                        .collect();
                }
                (1, changed)
            }
            Ev::Service(ev) => {
                let c = Cache {
                    map: &mut state.objects.services,
                    relist: &mut relists.services,
                };
                (2, c.apply(*ev))
            }
            Ev::Secret(ev) => {
                let c = Cache {
                    map: &mut state.secrets,
                    relist: &mut relists.secrets,
                };
                (3, c.apply(*ev))
            }
        };
        if !changed {
            continue;
        }
        synced[i] = true;
        if synced[..3].iter().all(|s| *s) {
            state.rebuild().await;
        }
    }
    if let Some(np) = state.node_ports.take() {
        np.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
