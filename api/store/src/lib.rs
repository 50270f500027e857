//! The `Store` trait: a revisioned key-value store with watch, the swap point between redb and etcd.
//!
//! Keys are `/{group}/{resource}/{namespace}/{name}` (cluster-scoped kinds leave out the namespace).
//! Every write gets the next value of one global, increasing revision; the API layer shows that
//! revision as `metadata.resourceVersion`. Values are opaque bytes (JSON objects, in practice).

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod conformance;
pub mod etcd;
pub mod faults;
mod history;
pub mod memory;
pub mod redb_store;
mod watch;

pub use etcd::{EtcdStore, EtcdStoreOptions};
pub use memory::MemoryStore;
pub use redb_store::{RedbStore, RedbStoreOptions, RedbStoreStats, StorageStats};

/// A global revision. Revision 0 means "before anything was written".
pub type Revision = u64;

/// One stored key with its value and the revision of its last write.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key: its `resourceVersion`.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// The answer to a list: the items in key order, the revision they were read at, and whether
/// more items follow the last one (when a limit cut the list short).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub more: bool,
}

/// How to list: keys starting with `prefix`, strictly after `start_after` if given, at most
/// `limit` items (0 or `None` is unlimited), as of `revision` (`None` is the current revision).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub prefix: String,
    pub start_after: Option<String>,
    pub limit: Option<usize>,
    pub revision: Option<Revision>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// A change seen by a watch. For `Put`, `kv` is the new state; for `Delete`, `kv` is the state
/// before deletion with `mod_revision` set to the revision of the delete. `prev` is the state
/// before the change, if the key existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of events in revision order; it ends with `Err` if the watcher fell too far behind
/// (`Error::Compacted`) or the store closed.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// How far a watch has read, whatever its prefix: every event under its prefix with a revision
/// up to `get()` has been yielded by its stream. An idle watch's progress follows the writes
/// elsewhere in the store, so that a bookmark can carry a revision its client may resume from
/// long after the last event it saw (kube-apiserver's bookmarks carry its watch cache's
/// revision, not the watch's last event's).
#[derive(Clone, Debug, Default)]
pub struct Progress(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Progress {
    /// Progress at `at` (the revision the watch started after).
    pub fn new(at: Revision) -> Progress {
        Progress(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(at)))
    }

    /// The revision up to which every event of the watch has been yielded.
    pub fn get(&self) -> Revision {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Moves the progress forward to `to` (never back).
    pub fn advance(&self, to: Revision) {
        self.0.fetch_max(to, std::sync::atomic::Ordering::AcqRel);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest retained is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The disk is full: writes fail until space is freed (the store then recovers by itself).
    #[error("no space left for the store: {0}")]
    NoSpace(String),
    #[error("the store is closed")]
    Closed,
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A revisioned key-value store with watch. Every implementation runs `conformance::run_all`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers the store's Prometheus metrics (commit latency, size on disk) in `registry`;
    /// a store that measures nothing registers nothing.
    fn register_metrics(&self, _registry: &mut skiff_telemetry::metrics::Registry) {}

    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix, in key order, read at one consistent revision.
    ///
    /// With `revision: Some(r)` the list shows the state as of `r` (so that the pages of one
    /// list agree): it fails with `Compacted` if `r` is below `compacted_revision()` and with
    /// `FutureRevision` if it is above the current revision. `Some(0)` means revision 0 (the
    /// empty state), not "any": the API layer maps `resourceVersion=0` to `None`.
    async fn list(&self, opts: ListOptions) -> Result<ListResult>;

    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision once the
    /// write is durable.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces the value of an existing `key`. With `expected` set, fails with `Conflict` unless
    /// the key's `mod_revision` equals it. Fails with `NotFound` if the key does not exist.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue>;

    /// Deletes `key` (with the same precondition as `update`); returns the deleted state, its
    /// `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Events for keys under `prefix` with revision strictly greater than `after`, first the
    /// retained history and then live changes. Fails with `Compacted` if `after` is older than
    /// the oldest retained revision. `after` may be ahead of the current revision: the stream
    /// then starts with the first write past it. A watcher that falls behind does not slow the
    /// writers: the implementations here re-read their event log for it, and end its stream with
    /// `Compacted` only if the revisions it still needs were compacted meanwhile.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// As `watch`, with the stream's `Progress`. A store that cannot tell how far it has read
    /// past the last event under the prefix reports only what its events show (the default:
    /// the API layer then bookmarks the last event's revision, as before).
    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<(WatchStream, Progress)> {
        use futures::StreamExt;
        let progress = Progress::new(after);
        let seen = progress.clone();
        let stream = self
            .watch(prefix, after)
            .await?
            .inspect(move |event| {
                if let Ok(event) = event {
                    seen.advance(event.revision());
                }
            })
            .boxed();
        Ok((stream, progress))
    }

    /// Forgets history at or before `revision`: watches and lists from older revisions then fail
    /// with `Compacted`. The current state is never touched.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The latest committed revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision a watch or list may still start from.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Finishes the writes in flight and releases the store (a file-backed store closes its
    /// file cleanly); later calls fail with `Closed`. A store with nothing to release keeps
    /// working (the default).
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
