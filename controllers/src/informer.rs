//! One watch per kind shared by every controller: an in-memory store plus a fan-out of touched
//! objects (applied and deleted) to each subscribing controller.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Becomes true once an informer has listed its kind for the first time.
///
/// Use this rather than `Store::wait_until_ready` when more than one task waits on a store:
/// kube-runtime's store readiness is a oneshot receiver that keeps only the waker of the task
/// that polled it last, so with several waiters all but one can sleep forever.
#[derive(Clone, Debug)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    /// Waits until the first list has been applied to the store (or the informer stopped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Waits for every one of `all`.
    pub async fn all(all: &[Synced]) {
        for s in all {
            s.wait().await;
        }
    }
}

/// A shared watch of one kind.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    api: Api<K>,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    senders: Vec<mpsc::UnboundedSender<Result<K, watcher::Error>>>,
    event_senders: Vec<mpsc::UnboundedSender<watcher::Event<K>>>,
    synced: watch::Sender<bool>,
    /// Whether anyone asked for the store: without a reader, no reflector copies every object.
    store_used: std::sync::atomic::AtomicBool,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over every object of the kind.
    pub fn new(api: Api<K>) -> Informer<K> {
        let (store, writer) = reflector::store();
        Informer {
            api,
            store,
            writer,
            senders: Vec::new(),
            event_senders: Vec::new(),
            synced: watch::Sender::new(false),
            store_used: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Resolves once the store holds the first complete list.
    pub fn synced(&self) -> Synced {
        Synced(self.synced.subscribe())
    }

    /// The store, filled once the informer runs. Ask for it before `start`: an informer whose
    /// store nobody asked for keeps none.
    pub fn store(&self) -> Store<K> {
        self.store_used
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.store.clone()
    }

    /// A stream of every object touched from now on (for `owns_stream`/`watches_stream`).
    pub fn subscribe(&mut self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders.push(tx);
        receiver_stream(rx)
    }

    /// A stream of the watch's own events (list start, listed objects, list end, applies and
    /// deletes), for a consumer that keeps its own state (the scheduler).
    pub fn events(&mut self) -> impl Stream<Item = watcher::Event<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.event_senders.push(tx);
        receiver_stream(rx)
    }

    /// Runs the watch, filling the store and feeding subscribers.
    pub fn start(self) -> JoinHandle<()> {
        let Informer {
            api,
            writer,
            mut senders,
            mut event_senders,
            synced,
            store_used,
            ..
        } = self;
        tokio::spawn(async move {
            // managedFields are dropped as objects arrive, as kube-controller-manager's informers
            // do: no controller reads them, and they are often the larger part of the metadata
            // every cached object carries (an update without them keeps the stored ones).
            let watch = watcher::watcher(api, watcher::Config::default().page_size(5000))
                .modify(|obj: &mut K| obj.meta_mut().managed_fields = None)
                .default_backoff();
            // Each consumer costs a copy of every object: the store only when someone reads it,
            // and the last event subscriber takes the event itself.
            let stream = if store_used.into_inner() {
                reflector::reflector(writer, watch).boxed()
            } else {
                watch.boxed()
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let ev = match item {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(error = %e, kind = %K::kind(&()), "watch error");
                        continue;
                    }
                };
                if let watcher::Event::Apply(obj)
                | watcher::Event::Delete(obj)
                | watcher::Event::InitApply(obj) = &ev
                {
                    senders.retain(|s| s.send(Ok(obj.clone())).is_ok());
                }
                let init_done = matches!(ev, watcher::Event::InitDone);
                if let Some(last) = event_senders.len().checked_sub(1) {
                    let mut open = Vec::with_capacity(event_senders.len());
                    for s in &event_senders[..last] {
                        open.push(s.send(ev.clone()).is_ok());
                    }
                    open.push(event_senders[last].send(ev).is_ok());
                    let mut open = open.into_iter();
                    event_senders.retain(|_| open.next().unwrap_or(false));
                }
                if init_done {
                    synced.send_replace(true);
                }
            }
        })
    }
}

/// The items of `rx` as a stream that stays ended once the senders are gone: polling it again
/// after its end yields `None` again (a bare `unfold` panics then, and a controller's merged
/// streams may poll an ended one while the others shut down).
fn receiver_stream<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).fuse()
}

trait AnyInformer: Send {
    fn kind(&self) -> String;
    fn start(self: Box<Self>) -> JoinHandle<()>;
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<K> AnyInformer for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn kind(&self) -> String {
        K::kind(&()).into_owned()
    }
    fn start(self: Box<Self>) -> JoinHandle<()> {
        Informer::start(*self)
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The informers of one controller manager: at most one per kind (and namespace), created the
/// first time a controller asks for it, and started together once every controller has
/// subscribed. A kind no running controller needs is never watched.
pub struct Informers {
    client: Client,
    kinds: HashMap<(TypeId, Option<String>), Box<dyn AnyInformer>>,
}

impl Informers {
    /// No informers yet, over `client`.
    pub fn new(client: Client) -> Informers {
        Informers {
            client,
            kinds: HashMap::new(),
        }
    }

    /// The client the informers watch with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer of every object of kind `K` (in all namespaces), created on first use.
    pub fn all<K>(&mut self) -> &mut Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.get_or_insert(None, |client| Api::all(client.clone()))
    }

    /// The informer of kind `K` in one namespace, created on first use.
    pub fn namespaced<K>(&mut self, namespace: &str) -> &mut Informer<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        self.get_or_insert(Some(namespace.to_string()), |client| {
            Api::namespaced(client.clone(), namespace)
        })
    }

    fn get_or_insert<K>(
        &mut self,
        namespace: Option<String>,
        api: impl FnOnce(&Client) -> Api<K>,
    ) -> &mut Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let client = &self.client;
        self.kinds
            .entry((TypeId::of::<K>(), namespace))
            .or_insert_with(|| Box::new(Informer::<K>::new(api(client))))
            .as_any()
            .downcast_mut::<Informer<K>>()
            .expect("an informer is keyed by its kind's TypeId")
    }

    /// The kinds watched (a namespaced informer as `Kind/namespace`), sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .kinds
            .iter()
            .map(|((_, ns), i)| match ns {
                Some(ns) => format!("{}/{ns}", i.kind()),
                None => i.kind(),
            })
            .collect();
        out.sort();
        out
    }

    /// How many informers have been created.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether no informer has been created.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Starts every informer created so far.
    pub fn start(self) -> Vec<JoinHandle<()>> {
        self.kinds.into_values().map(|i| i.start()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn api() -> Api<ConfigMap> {
        // Never connected: the informer is not started.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        Api::all(Client::try_from(config).expect("a client"))
    }

    #[tokio::test]
    async fn streams_may_be_polled_after_their_end() {
        let mut informer = Informer::new(api());
        let mut objects = Box::pin(informer.subscribe());
        let mut events = Box::pin(informer.events());
        // Dropping the informer drops its senders: both streams end.
        drop(informer);
        for _ in 0..3 {
            assert!(objects.next().await.is_none());
            assert!(events.next().await.is_none());
        }
    }
}
