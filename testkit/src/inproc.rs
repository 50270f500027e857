//! The in-process test tier: the API server's axum router over a `MemoryStore`, reached by a
//! `kube::Client` through a tower service (no TLS, no socket, no process), plus watch-based
//! waits with a deadline.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_api::{AppState, UserInfo};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

/// The bearer token the in-process client sends.
pub const TOKEN: &str = "in-process-token";

/// The namespaces a served API server bootstraps, created here through the API.
pub const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Errors of the in-process tier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A watch failed.
    #[error("watch failed: {0}")]
    Watch(#[from] watcher::Error),
    /// The condition did not hold before the deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
}

/// An API server in this process over an empty memory store, and a client of it.
pub struct InProcess {
    /// A client authenticated as the cluster administrator.
    pub client: Client,
    /// The store behind the API.
    pub store: Arc<dyn Store>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl InProcess {
    /// An API server over a fresh memory store, with the bootstrap namespaces created.
    pub async fn start() -> Result<InProcess, Error> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            store.clone(),
            vec![(TOKEN.into(), UserInfo::admin("admin"))],
        )
        .with_shutdown(rx);
        let client = client_over(skiff_api::app(Arc::new(state)), TOKEN);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in NAMESPACES {
            let obj: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": ns}
            }))
            .expect("a namespace literal");
            match namespaces.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(InProcess {
            client,
            store,
            _shutdown: tx,
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Ends open watches so controllers' streams finish.
        self._shutdown.send_replace(true);
    }
}

/// A kube client over `router`, sending `token` as its bearer token on every request.
pub fn client_over(router: axum::Router, token: &str) -> Client {
    let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token is a valid header value");
    let service = router.map_request(move |mut req: http::Request<kube::client::Body>| {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, value.clone());
        req
    });
    Client::new(service, "default")
}

/// Waits until the object `name` of `api` exists and satisfies `cond`, watching it; fails after
/// `deadline`. Returns the object that satisfied it.
pub async fn wait_object<K>(
    api: &Api<K>,
    name: &str,
    deadline: Duration,
    cond: impl Fn(&K) -> bool,
) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let what = format!("{} {name}", std::any::type_name::<K>());
    let watch = async {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(api.clone(), cfg).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) if cond(&o) => {
                    return Ok(o);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "wait_object watch"),
            }
        }
        Err(Error::Timeout {
            what: what.clone(),
            after: deadline,
        })
    };
    match tokio::time::timeout(deadline, watch).await {
        Ok(done) => done,
        Err(_) => {
            // Say what the object looked like at the deadline: a failure on a busy CI machine
            // must be diagnosable from its message alone.
            let last = match api.get_opt(name).await {
                Ok(Some(obj)) => match serde_json::to_value(&obj) {
                    Ok(mut v) => {
                        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                            meta.remove("managedFields");
                        }
                        v.to_string()
                    }
                    Err(e) => e.to_string(),
                },
                Ok(None) => "absent".to_owned(),
                Err(e) => format!("not readable: {e}"),
            };
            Err(Error::Timeout {
                what: format!("{what}; at the deadline it was: {last}"),
                after: deadline,
            })
        }
    }
}

/// Waits until the objects of `api` matching `labels` (a label selector, may be empty) satisfy
/// `cond` as a whole, watching them; fails after `deadline`. Returns the satisfying list.
pub async fn wait_list<K>(
    api: &Api<K>,
    labels: &str,
    deadline: Duration,
    cond: impl Fn(&[K]) -> bool,
) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let what = format!("{} list ({labels})", std::any::type_name::<K>());
    let watch = async {
        let (store, writer) = kube::runtime::reflector::store();
        let mut cfg = watcher::Config::default();
        if !labels.is_empty() {
            cfg = cfg.labels(labels);
        }
        let mut stream =
            kube::runtime::reflector::reflector(writer, watcher::watcher(api.clone(), cfg)).boxed();
        let mut listed = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "wait_list watch");
                    continue;
                }
            }
            if !listed {
                continue;
            }
            let mut objs: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
            objs.sort_by_key(|o| o.name_any());
            if cond(&objs) {
                return Ok(objs);
            }
        }
        Err(Error::Timeout {
            what: what.clone(),
            after: deadline,
        })
    };
    tokio::time::timeout(deadline, watch)
        .await
        .unwrap_or(Err(Error::Timeout {
            what,
            after: deadline,
        }))
}

/// Waits until the object `name` of `api` is gone (watching it); fails after `deadline`.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, deadline: Duration) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let sel = format!("metadata.name={name}");
    let what = format!("{} {name} to be deleted", std::any::type_name::<K>());
    let watch = async {
        let (store, writer) = kube::runtime::reflector::store();
        let cfg = watcher::Config::default().fields(&sel);
        let mut stream =
            kube::runtime::reflector::reflector(writer, watcher::watcher(api.clone(), cfg)).boxed();
        let mut listed = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Ok(_) => {}
                Err(_) => continue,
            }
            if listed && store.state().is_empty() {
                return Ok(());
            }
        }
        Err(Error::Timeout {
            what: what.clone(),
            after: deadline,
        })
    };
    tokio::time::timeout(deadline, watch)
        .await
        .unwrap_or(Err(Error::Timeout {
            what,
            after: deadline,
        }))
}

/// The messages of the Events in `events` with `reason` about the object named `object`.
pub fn event_messages(events: &[Event], object: &str, reason: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(object) && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.message.clone())
        .collect()
}

/// Waits (watching the Events of `api`) for an Event with `reason` about the object named
/// `object`; returns its message. Fails after `deadline`.
pub async fn wait_event(
    api: &Api<Event>,
    object: &str,
    reason: &str,
    deadline: Duration,
) -> Result<String, Error> {
    let all = wait_list(api, "", deadline, |evs| {
        !event_messages(evs, object, reason).is_empty()
    })
    .await?;
    Ok(event_messages(&all, object, reason)
        .pop()
        .unwrap_or_default())
}
