//! `RedbStore`: the embedded `Store` on one redb file, with a group-committing writer thread,
//! an event log for watch resume and historical lists, and bounded history and file size.
//!
//! Layout: table `kv` (key -> state), table `log` (revision -> event with the previous value),
//! table `meta` (`revision`, `compacted`). Every write goes through one `std::thread` that drains
//! all pending mutations into one durable write transaction (group commit), answers the callers
//! once the commit is durable, then publishes the batch's events. Reads run on
//! `spawn_blocking` in short read transactions whose results are copied out.
//!
//! History: a background pass on the writer thread, every `compaction_interval`, compacts the
//! log to the last `compaction_retain` revisions. After any compaction the writer checks the
//! file: when it is more than twice the space redb has in use (plus 1 MiB), it runs
//! `Database::compact`, which briefly holds back reads, so that the file stays small under churn.
//!
//! Slow watchers never block the writer: live events go through a bounded broadcast, and a
//! watcher that falls behind re-reads the event log from its last revision (see `watch.rs`); its
//! stream ends with `Error::Compacted` only if that revision was compacted meanwhile.

mod codec;
mod writer;

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use redb::{
    BackendError, Database, ReadTransaction, ReadableDatabase, ReadableTable, StorageBackend,
    TableDefinition,
};
use tokio::sync::{broadcast, oneshot};

use crate::history::{self, Overrides, Page};
use crate::watch::{self, Batch, Chunk, EventLog};
use crate::{
    Error, KeyValue, ListOptions, ListResult, Progress, Result, Revision, Store, WatchStream,
};

use writer::{Command, Op, Reply, Writer};

const KV: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Slack allowed on top of twice the used space before the file is compacted.
const FILE_SLACK: u64 = 1 << 20;

fn backend(err: impl std::fmt::Display) -> Error {
    Error::Backend(err.to_string())
}

/// An `Arc`'d backend handed to redb, which wants to own its backend.
#[derive(Debug)]
struct SharedBackend(Arc<dyn StorageBackend>);

impl StorageBackend for SharedBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

/// Opens (creating if missing, repairing after a crash) the database the options name.
fn create_database(opts: &RedbStoreOptions) -> Result<Database> {
    let mut builder = Database::builder();
    builder.set_cache_size(opts.cache_size);
    match &opts.backend {
        Some(storage) => builder.create_with_backend(SharedBackend(storage.clone())),
        None => builder.create(&opts.path),
    }
    .map_err(|err| match redb::Error::from(err) {
        err if writer::is_no_space(&err) => {
            Error::NoSpace(format!("open {}: {err}", opts.path.display()))
        }
        err => backend(format!("open {}: {err}", opts.path.display())),
    })
}

/// How to open a `RedbStore`.
#[derive(Clone, Debug)]
pub struct RedbStoreOptions {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// Revisions of history the background pass keeps (default 10 000).
    pub compaction_retain: u64,
    /// How often the background pass runs (default 60 s; `Duration::ZERO` turns it off).
    pub compaction_interval: Duration,
    /// Most mutations applied in one commit (default 1024).
    pub max_batch: usize,
    /// Commits a watcher may fall behind before it re-reads the log (default 1024).
    pub watch_buffer: usize,
    /// redb's page cache, in bytes (default 64 MiB).
    pub cache_size: usize,
    /// Whether to shrink the file after compaction when it is mostly free space (default on).
    pub file_compaction: bool,
    /// File size from which every commit also records redb's allocator state and commits in
    /// two phases (redb's quick-repair), so that opening the file after a crash or a storage
    /// error loads that state instead of scanning the whole file. Below it a crash costs that
    /// scan (about 1.5 ms per MiB on the benchmark machine); above it every commit costs a
    /// second fsync and the record (40–50% of durable commits/s there with concurrent writers). Default 256 MiB,
    /// where the scan nears 0.4 s; 0: always; `u64::MAX`: never.
    pub quick_repair_from_bytes: u64,
    /// Storage to use instead of the file at `path` (which then only names the store in logs):
    /// the seam for fault-injection tests, such as a backend that drops unsynced writes to
    /// model a power loss. `None` (the default) opens the file.
    pub backend: Option<Arc<dyn StorageBackend>>,
}

impl RedbStoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            compaction_retain: 10_000,
            compaction_interval: Duration::from_secs(60),
            max_batch: 1024,
            watch_buffer: 1024,
            cache_size: 64 << 20,
            file_compaction: true,
            quick_repair_from_bytes: 256 << 20,
            backend: None,
        }
    }
}

impl Default for RedbStoreOptions {
    fn default() -> Self {
        Self::new("skiff.redb")
    }
}

/// Counters of the writer, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbStoreStats {
    /// Durable write transactions committed for mutations and compactions.
    pub commits: u64,
    /// Batches the writer took from its queue (a batch whose every mutation failed commits
    /// nothing).
    pub batches: u64,
    /// Mutations applied (each got a revision).
    pub mutations: u64,
    /// Mutations refused by a precondition (`AlreadyExists`, `NotFound`, `Conflict`).
    pub rejected: u64,
    /// Mutations failed by a storage error.
    pub failed: u64,
    /// The largest number of commands in one batch.
    pub max_batch: u64,
    /// Compactions of history that removed events.
    pub history_compactions: u64,
    /// Runs of `Database::compact` on the file.
    pub file_compactions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    batches: AtomicU64,
    mutations: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    max_batch: AtomicU64,
    history_compactions: AtomicU64,
    file_compactions: AtomicU64,
    /// How long each durable commit took (`skiff_store_commit_duration_seconds`).
    commit_seconds: CommitSeconds,
}

#[derive(Debug)]
struct CommitSeconds(skiff_telemetry::metrics::Histogram);

impl Default for CommitSeconds {
    fn default() -> Self {
        CommitSeconds(skiff_telemetry::metrics::Histogram::new(
            skiff_telemetry::metrics::SHORT_SECONDS,
        ))
    }
}

impl Counters {
    fn snapshot(&self) -> RedbStoreStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RedbStoreStats {
            commits: get(&self.commits),
            batches: get(&self.batches),
            mutations: get(&self.mutations),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
            max_batch: get(&self.max_batch),
            history_compactions: get(&self.history_compactions),
            file_compactions: get(&self.file_compactions),
        }
    }
}

/// Space use of the database file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Size of the file on disk.
    pub file_bytes: u64,
    /// Bytes of pages redb has allocated (in use).
    pub allocated_bytes: u64,
    /// Bytes of keys and values stored in the user tables.
    pub stored_bytes: u64,
    /// Events retained in the log.
    pub log_entries: u64,
    /// Keys in the current state.
    pub keys: u64,
}

impl Shared {
    /// Bytes of the database file (or of the backend that stands for it).
    fn file_len(&self) -> Result<u64> {
        match &self.storage {
            Some(storage) => storage.len().map_err(backend),
            None => Ok(std::fs::metadata(&self.path).map_err(backend)?.len()),
        }
    }
}

/// What readers, watch streams and the writer share.
struct Shared {
    /// `None` once the writer has shut down. Reads take the read lock for one short read
    /// transaction; the writer takes the write lock only for `Database::compact`.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// The backend given in the options instead of the file, if any.
    storage: Option<Arc<dyn StorageBackend>>,
    current: AtomicU64,
    compacted: AtomicU64,
    counters: Counters,
    /// Lets `watch` subscribe without keeping the channel open: the writer holds the only
    /// strong sender, so watches end with `Closed` when it stops.
    events: broadcast::WeakSender<Batch>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("path", &self.path)
            .field("current", &self.current)
            .field("compacted", &self.compacted)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Runs `f` in a read transaction (blocking: call from `spawn_blocking`).
    fn read_blocking<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let guard = self
            .db
            .read()
            .map_err(|_| backend("database lock poisoned"))?;
        let db = guard.as_ref().ok_or(Error::Closed)?;
        let txn = db.begin_read().map_err(backend)?;
        f(&txn)
    }

    /// Runs `f` in a read transaction on the blocking pool; the result is copied out.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.read_blocking(f))
            .await
            .map_err(|err| backend(format!("read task failed: {err}")))?
    }
}

fn meta_revisions(txn: &ReadTransaction) -> Result<(Revision, Revision)> {
    let meta = txn.open_table(META).map_err(backend)?;
    let get = |name: &str| -> Result<u64> {
        Ok(meta
            .get(name)
            .map_err(backend)?
            .map_or(0, |value| value.value()))
    };
    Ok((get(META_REVISION)?, get(META_COMPACTED)?))
}

fn get_blocking(txn: &ReadTransaction, key: &str) -> Result<Option<KeyValue>> {
    let kv = txn.open_table(KV).map_err(backend)?;
    kv.get(key)
        .map_err(backend)?
        .map(|value| codec::decode_state(key, value.value()))
        .transpose()
}

fn list_blocking(txn: &ReadTransaction, opts: &ListOptions) -> Result<ListResult> {
    let (current, compacted) = meta_revisions(txn)?;
    let at = opts.revision.unwrap_or(current);
    if at > current {
        return Err(Error::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted,
        });
    }
    let kv = txn.open_table(KV).map_err(backend)?;
    let range = kv
        .range::<&str>((history::lower_bound(opts), Bound::Unbounded))
        .map_err(backend)?;
    let prefix = opts.prefix.as_str();
    let items = range
        .map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                return Ok(None);
            }
            codec::decode_state(key, value.value()).map(Some)
        })
        .map_while(Result::transpose);
    let mut page = Page::new(opts);
    if at == current {
        for item in items {
            if !page.push(item?) {
                break;
            }
        }
    } else {
        let log = txn.open_table(LOG).map_err(backend)?;
        let mut overrides = Overrides::default();
        for entry in log.range((at + 1)..).map_err(backend)? {
            let (revision, bytes) = entry.map_err(backend)?;
            let key = codec::event_key(bytes.value())?;
            if !history::in_range(opts, key) || overrides.contains(key) {
                continue;
            }
            let event = codec::decode_event(revision.value(), bytes.value())?;
            overrides.insert(event.kv.key, event.prev);
        }
        overrides.merge_into(items, &mut page)?;
    }
    Ok(ListResult {
        items: page.items,
        revision: at,
        more: page.more,
    })
}

fn read_log_blocking(
    txn: &ReadTransaction,
    prefix: &str,
    after: Revision,
    max: usize,
) -> Result<Chunk> {
    let (_, compacted) = meta_revisions(txn)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let log = txn.open_table(LOG).map_err(backend)?;
    let mut chunk = Chunk {
        scanned_to: after,
        ..Chunk::default()
    };
    let mut scanned = 0;
    for entry in log.range((after + 1)..).map_err(backend)?.take(max) {
        let (revision, bytes) = entry.map_err(backend)?;
        scanned += 1;
        chunk.scanned_to = revision.value();
        if codec::event_key(bytes.value())?.starts_with(prefix) {
            chunk
                .events
                .push(codec::decode_event(revision.value(), bytes.value())?);
        }
    }
    chunk.done = scanned < max;
    Ok(chunk)
}

struct Log(Arc<Shared>);

impl EventLog for Log {
    fn read_after(
        &self,
        prefix: &str,
        after: Revision,
        max: usize,
    ) -> BoxFuture<'_, Result<Chunk>> {
        let prefix = prefix.to_owned();
        Box::pin(
            self.0
                .read(move |txn| read_log_blocking(txn, &prefix, after, max)),
        )
    }
}

/// The redb-backed `Store`. See the module docs for the design.
///
/// Call `close().await` for an orderly shutdown (the file is released when it returns).
/// Dropping the store outside a tokio runtime joins the writer; inside one, the writer finishes
/// its last batch and releases the file on its own right after.
#[derive(Debug)]
pub struct RedbStore {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) the store. Blocks on file I/O, and on redb's repair after a crash:
    /// from async code use `open_async`.
    pub fn open(opts: RedbStoreOptions) -> Result<Self> {
        let db = create_database(&opts)?;
        let mut txn = db.begin_write().map_err(backend)?;
        let file_bytes = match &opts.backend {
            Some(storage) => storage.len().unwrap_or(u64::MAX),
            None => std::fs::metadata(&opts.path).map_or(u64::MAX, |m| m.len()),
        };
        txn.set_quick_repair(file_bytes >= opts.quick_repair_from_bytes);
        let (revision, compacted) = {
            txn.open_table(KV).map_err(backend)?;
            txn.open_table(LOG).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let get = |name: &str| -> Result<u64> {
                Ok(meta
                    .get(name)
                    .map_err(backend)?
                    .map_or(0, |value| value.value()))
            };
            (get(META_REVISION)?, get(META_COMPACTED)?)
        };
        txn.commit().map_err(backend)?;

        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db)),
            path: opts.path.clone(),
            storage: opts.backend.clone(),
            current: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            counters: Counters::default(),
            events: events.downgrade(),
        });
        let (commands, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rx, events, &opts, revision, compacted);
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|err| backend(format!("start writer thread: {err}")))?;
        tracing::debug!(path = %opts.path.display(), revision, compacted, "opened redb store");
        Ok(Self {
            shared,
            commands: Mutex::new(Some(commands)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// `open` on the blocking pool.
    pub async fn open_async(opts: RedbStoreOptions) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open(opts))
            .await
            .map_err(|err| backend(format!("open task failed: {err}")))?
    }

    /// Counters of the writer (commits, batched mutations, compactions).
    pub fn stats(&self) -> RedbStoreStats {
        self.shared.counters.snapshot()
    }

    /// Space used by the file, for tests, benchmarks and metrics.
    pub async fn storage_stats(&self) -> Result<StorageStats> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || writer::storage_stats(&shared))
            .await
            .map_err(|err| backend(format!("stats task failed: {err}")))?
    }

    /// Runs `Database::compact` now, whatever the file's free space (reads wait meanwhile).
    /// Returns whether it moved anything.
    pub async fn compact_file(&self) -> Result<bool> {
        match self.send(Op::CompactFile).await? {
            Reply::Compacted(moved) => Ok(moved),
            Reply::Kv(_) | Reply::Done => Err(backend("unexpected reply from the writer")),
        }
    }

    /// Stops the writer after the pending mutations and closes the file; later calls fail with
    /// `Closed`, and watches end with `Closed`.
    pub async fn close(&self) -> Result<()> {
        drop(
            self.commands
                .lock()
                .map_err(|_| backend("lock poisoned"))?
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .map_err(|_| backend("lock poisoned"))?
            .take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|err| backend(format!("close task failed: {err}")))?
                .map_err(|_| backend("the writer thread panicked"))?;
        }
        Ok(())
    }

    async fn send(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let commands = self.commands.lock().map_err(|_| backend("lock poisoned"))?;
            let commands = commands.as_ref().ok_or(Error::Closed)?;
            commands
                .send(Command { op, reply })
                .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn mutate(&self, op: Op) -> Result<KeyValue> {
        match self.send(op).await? {
            Reply::Kv(kv) => Ok(kv),
            Reply::Done | Reply::Compacted(_) => Err(backend("unexpected reply from the writer")),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(handle) = handle
            && tokio::runtime::Handle::try_current().is_err()
            && handle.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for RedbStore {
    fn register_metrics(&self, registry: &mut skiff_telemetry::metrics::Registry) {
        registry.register(
            "skiff_store_commit_duration_seconds",
            "Time to make one batch of writes durable (one redb commit), in seconds.",
            self.shared.counters.commit_seconds.0.clone(),
        );
        if self.shared.storage.is_none() {
            let path = self.shared.path.clone();
            registry.register_collector(Box::new(skiff_telemetry::metrics::GaugeFn::new(
                "apiserver_storage_size_bytes",
                "Size of the storage database file physically allocated in bytes.",
                move || match std::fs::metadata(&path) {
                    Ok(meta) => vec![(
                        vec![("storage_cluster_id", "redb".to_string())],
                        i64::try_from(meta.len()).unwrap_or(i64::MAX),
                    )],
                    Err(_) => Vec::new(),
                },
            )));
        }
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.shared.read(move |txn| get_blocking(txn, &key)).await
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        self.shared.read(move |txn| list_blocking(txn, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.mutate(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.mutate(Op::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.mutate(Op::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        Ok(self.watch_with_progress(prefix, after).await?.0)
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<(WatchStream, Progress)> {
        let rx = self
            .shared
            .events
            .upgrade()
            .ok_or(Error::Closed)?
            .subscribe();
        watch::start(Arc::new(Log(self.shared.clone())), rx, prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.send(Op::Compact(revision)).await? {
            Reply::Done => Ok(()),
            Reply::Kv(_) | Reply::Compacted(_) => Err(backend("unexpected reply from the writer")),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn close(&self) -> Result<()> {
        RedbStore::close(self).await
    }
}
