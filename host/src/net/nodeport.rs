//! NodePorts: a listener on every node for each `spec.ports[].nodePort` of the Services of type
//! `NodePort` and `LoadBalancer`, opened and closed as Services come and go, forwarding to the
//! Service port by number through [`ServiceBackend`](crate::net::ServiceBackend).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::net::ServiceBackend;
use crate::net::ServicePortRef;
use crate::net::ingress::rules::{ObjKey, Target};
use crate::net::ingress::serve::{self, NodePortProxy};

/// One open NodePort.
struct Open {
    service: ObjKey,
    target: Arc<ArcSwap<Target>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a NodePort should forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    service: ObjKey,
    resource_version: Option<String>,
    port: u16,
}

/// The node's NodePort listeners.
pub(crate) struct NodePorts {
    host: IpAddr,
    backend: Arc<dyn ServiceBackend>,
    client: Option<kube::Client>,
    node: String,
    open: HashMap<u16, Open>,
    /// Servers of closed NodePorts finishing their open requests.
    closing: Vec<JoinHandle<()>>,
    /// Ports that could not be bound, with the Service version that asked: tried again when
    /// that Service changes.
    failed: HashMap<u16, Wanted>,
}

impl NodePorts {
    /// NodePorts on `host`; bind failures are reported as Events on the Service through
    /// `client` when given.
    pub(crate) fn new(
        host: IpAddr,
        backend: Arc<dyn ServiceBackend>,
        client: Option<kube::Client>,
        node: String,
    ) -> NodePorts {
        NodePorts {
            host,
            backend,
            client,
            node,
            open: HashMap::new(),
            closing: Vec::new(),
            failed: HashMap::new(),
        }
    }

    /// The ports listening now.
    #[cfg(test)]
    pub(crate) fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.open.keys().copied().collect();
        p.sort_unstable();
        p
    }

    /// Opens, retargets and closes listeners to match `services`.
    pub(crate) async fn sync(&mut self, services: &BTreeMap<ObjKey, Service>) {
        let wanted = wanted(services);
        let gone: Vec<u16> = self
            .open
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for port in gone {
            if let Some(open) = self.open.remove(&port) {
                tracing::info!(port, service = %format!("{}/{}", open.service.0, open.service.1),
                    "closing a NodePort");
                // The server stops accepting at once and lets open requests finish.
                let _ = open.stop.send(true);
                self.closing.push(open.task);
            }
        }
        self.closing.retain(|t| !t.is_finished());
        self.failed.retain(|p, w| wanted.get(p) == Some(w));
        for (port, want) in wanted {
            let target = Target::Service {
                namespace: want.service.0.clone(),
                name: want.service.1.clone(),
                port: ServicePortRef::Number(want.port),
            };
            if let Some(open) = self.open.get_mut(&port) {
                if **open.target.load() != target {
                    open.target.store(Arc::new(target));
                    open.service = want.service.clone();
                }
                continue;
            }
            if self.failed.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.host, port);
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, service = %format!("{}/{}", want.service.0, want.service.1),
                        "NodePort listening");
                    let target = Arc::new(ArcSwap::from_pointee(target));
                    let (stop, stop_rx) = watch::channel(false);
                    let handler = Arc::new(NodePortProxy {
                        target: target.clone(),
                        backend: self.backend.clone(),
                    });
                    let task = tokio::spawn(serve::serve(listener, None, handler, stop_rx));
                    self.open.insert(
                        port,
                        Open {
                            service: want.service.clone(),
                            target,
                            stop,
                            task,
                        },
                    );
                }
                Err(e) => {
                    let message = format!("cannot listen on NodePort {addr}: {e}");
                    tracing::warn!(service = %format!("{}/{}", want.service.0, want.service.1),
                        "{message}");
                    if let Some(client) = &self.client {
                        warn_event(client, &self.node, &want.service, &message).await;
                    }
                    self.failed.insert(port, want);
                }
            }
        }
    }

    /// Waits until the servers of closed NodePorts have stopped.
    #[cfg(test)]
    pub(crate) async fn wait_closed(&mut self) {
        futures::future::join_all(std::mem::take(&mut self.closing)).await;
    }

    /// Closes every listener, letting open requests finish.
    pub(crate) async fn shutdown(self) {
        let mut tasks: Vec<JoinHandle<()>> = self
            .open
            .into_values()
            .map(|o| {
                let _ = o.stop.send(true);
                o.task
            })
            .collect();
        tasks.extend(self.closing);
        futures::future::join_all(tasks).await;
    }
}

/// The NodePorts the Services ask for: nodePort → Service port. A nodePort two Services claim
/// goes to the first by namespace and name (the API server never allocates one twice).
fn wanted(services: &BTreeMap<ObjKey, Service>) -> BTreeMap<u16, Wanted> {
    let mut out = BTreeMap::new();
    for (key, svc) in services {
        let Some(spec) = &svc.spec else { continue };
        if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
            continue;
        }
        for p in spec.ports.iter().flatten() {
            if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
                continue;
            }
            let (Some(node_port), Ok(port)) = (p.node_port, u16::try_from(p.port)) else {
                continue;
            };
            let Ok(node_port) = u16::try_from(node_port) else {
                continue;
            };
            if node_port == 0 {
                continue;
            }
            if let Some(prev) = out.get(&node_port) {
                let prev: &Wanted = prev;
                tracing::warn!(node_port, first = %format!("{}/{}", prev.service.0, prev.service.1),
                    other = %format!("{}/{}", key.0, key.1), "two Services claim one NodePort");
                continue;
            }
            out.insert(
                node_port,
                Wanted {
                    service: key.clone(),
                    resource_version: svc.metadata.resource_version.clone(),
                    port,
                },
            );
        }
    }
    out
}

/// A Warning Event on the Service.
async fn warn_event(client: &kube::Client, node: &str, service: &ObjKey, message: &str) {
    let now = Time(jiff::Timestamp::now());
    let ev = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", service.1)),
            namespace: Some(service.0.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(service.1.clone()),
            namespace: Some(service.0.clone()),
            ..Default::default()
        },
        reason: Some("FailedToListenNodePort".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("skiff-node".into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some("skiff-node".into()),
        reporting_instance: Some(node.to_string()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &service.0);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::debug!(error = %e, "writing a NodePort event");
    }
}
