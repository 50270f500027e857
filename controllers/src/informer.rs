//! One watch per kind shared by every controller: an in-memory store plus a fan-out of touched
//! objects (applied and deleted) to each subscribing controller.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
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
    synced: watch::Sender<bool>,
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
            synced: watch::Sender::new(false),
        }
    }

    /// Resolves once the store holds the first complete list.
    pub fn synced(&self) -> Synced {
        Synced(self.synced.subscribe())
    }

    /// The store, filled once the informer runs.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of every object touched from now on (for `owns_stream`/`watches_stream`).
    pub fn subscribe(&mut self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders.push(tx);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }

    /// Runs the watch, filling the store and feeding subscribers.
    pub fn start(self) -> JoinHandle<()> {
        let Informer {
            api,
            writer,
            mut senders,
            synced,
            ..
        } = self;
        tokio::spawn(async move {
            let stream = reflector::reflector(
                writer,
                watcher::watcher(api, watcher::Config::default().page_size(5000)).default_backoff(),
            );
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(
                        watcher::Event::Apply(obj)
                        | watcher::Event::Delete(obj)
                        | watcher::Event::InitApply(obj),
                    ) => senders.retain(|s| s.send(Ok(obj.clone())).is_ok()),
                    Ok(watcher::Event::InitDone) => {
                        synced.send_replace(true);
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::debug!(error = %e, kind = %K::kind(&()), "watch error"),
                }
            }
        })
    }
}
