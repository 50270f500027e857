//! The redb store's writer thread: group commit of every pending mutation in one durable write
//! transaction, per-mutation preconditions, history compaction and file compaction.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    WriteTransaction,
};
use tokio::sync::{broadcast, oneshot};

use super::{
    FILE_SLACK, KV, LOG, META, META_COMPACTED, META_REVISION, RedbStoreOptions, Shared,
    StorageStats, backend, codec,
};
use crate::watch::Batch;
use crate::{Error, Event, EventType, KeyValue, Result, Revision};

/// A request to the writer.
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact(Revision),
    CompactFile,
}

pub(super) enum Reply {
    Kv(KeyValue),
    Done,
    Compacted(bool),
}

pub(super) struct Command {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Reply>>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    events: broadcast::Sender<Batch>,
    revision: Revision,
    compacted: Revision,
    retain: u64,
    interval: Option<Duration>,
    max_batch: usize,
    file_compaction: bool,
    /// File size from which commits use redb's quick-repair (see
    /// `RedbStoreOptions::quick_repair_from_bytes`).
    quick_repair_from_bytes: u64,
    /// How to reopen the database after a storage error (redb refuses every later transaction
    /// with `PreviousIo` until the database is reopened, which repairs it).
    reopen: RedbStoreOptions,
    /// A storage error failed the last commit: reopen before the next one.
    broken: bool,
}

/// What one batch did inside its transaction.
struct Applied {
    outcomes: Vec<Result<Reply>>,
    events: Vec<Event>,
    revision: Revision,
    compacted: Revision,
    compact_file: bool,
    explicit_compaction: bool,
}

/// When to shrink the file after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileCheck {
    /// After a background pass: when the file is over four times the used space. Under steady
    /// churn redb's file settles at two to four times the used space (it grows by doubling and
    /// reuses freed pages), so a lower bar would compact, regrow and compact again.
    Background,
    /// After an explicit `compact`: when the file is over twice the used space.
    Explicit,
    /// `compact_file`: always.
    Force,
}

struct Tables<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Command>,
        events: broadcast::Sender<Batch>,
        opts: &RedbStoreOptions,
        revision: Revision,
        compacted: Revision,
    ) -> Self {
        Self {
            shared,
            rx,
            events,
            revision,
            compacted,
            retain: opts.compaction_retain,
            interval: Some(opts.compaction_interval).filter(|interval| !interval.is_zero()),
            max_batch: opts.max_batch.max(1),
            file_compaction: opts.file_compaction,
            quick_repair_from_bytes: opts.quick_repair_from_bytes,
            reopen: opts.clone(),
            broken: false,
        }
    }

    pub(super) fn run(mut self) {
        let mut next_pass = self
            .interval
            .and_then(|interval| Instant::now().checked_add(interval));
        loop {
            let first = match next_pass {
                Some(deadline) => {
                    match self
                        .rx
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(command) => Some(command),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.rx.recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::RecvError) => break,
                },
            };
            let mut batch: Vec<Command> = first.into_iter().collect();
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let auto_compact = next_pass.is_some_and(|deadline| Instant::now() >= deadline);
            if auto_compact {
                next_pass = self
                    .interval
                    .and_then(|interval| Instant::now().checked_add(interval));
            }
            self.process(batch, auto_compact);
        }
        // Release the file; watches see `Closed` once `self.events` drops with this writer.
        match self.shared.db.write() {
            Ok(mut db) => drop(db.take()),
            Err(_) => tracing::error!("database lock poisoned at shutdown"),
        }
        tracing::debug!(revision = self.revision, "store writer stopped");
    }

    fn process(&mut self, batch: Vec<Command>, auto_compact: bool) {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        if !batch.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .max_batch
                .fetch_max(batch.len() as u64, Ordering::Relaxed);
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch
            .into_iter()
            .map(|command| (command.op, command.reply))
            .unzip();
        let applied = match self.recover() {
            Ok(()) => self.apply(&ops, auto_compact).map_err(|err| {
                self.broken = true;
                classify(&err)
            }),
            Err(err) => Err(err),
        };
        let applied = match applied {
            Ok(applied) => applied,
            Err(err) => {
                tracing::error!(error = %err, "store write transaction failed");
                let mutations = ops.iter().filter(|op| is_mutation(op)).count() as u64;
                counters.failed.fetch_add(mutations, Ordering::Relaxed);
                // Reopen before answering rather than at the next write, so that reads work
                // by the time the callers see the error.
                if let Err(err) = self.recover() {
                    tracing::error!(error = %err, "reopening the store failed; retrying at the next write");
                }
                for reply in replies {
                    let _ = reply.send(Err(same(&err)));
                }
                return;
            }
        };
        let history_compacted = applied.compacted > self.compacted;
        self.revision = applied.revision;
        self.compacted = applied.compacted;
        self.shared
            .current
            .store(applied.revision, Ordering::Release);
        self.shared
            .compacted
            .store(applied.compacted, Ordering::Release);
        counters
            .mutations
            .fetch_add(applied.events.len() as u64, Ordering::Relaxed);
        let rejected = applied
            .outcomes
            .iter()
            .zip(&ops)
            .filter(|(outcome, op)| is_mutation(op) && outcome.is_err())
            .count() as u64;
        counters.rejected.fetch_add(rejected, Ordering::Relaxed);
        if history_compacted {
            counters.history_compactions.fetch_add(1, Ordering::Relaxed);
        }

        // The commit is durable: answer the mutations, then publish. Compactions are answered
        // after the file check below, so that their callers see its effect.
        let mut deferred = Vec::new();
        for ((outcome, reply), op) in applied.outcomes.into_iter().zip(replies).zip(&ops) {
            match op {
                Op::Compact(_) | Op::CompactFile => deferred.push((outcome, reply)),
                Op::Create { .. } | Op::Update { .. } | Op::Delete { .. } => {
                    let _ = reply.send(outcome);
                }
            }
        }
        if !applied.events.is_empty() {
            // No receiver is not an error: nobody is watching.
            let _ = self.events.send(Batch::from(applied.events));
        }

        let check = if applied.compact_file {
            Some(FileCheck::Force)
        } else if !self.file_compaction || !history_compacted {
            None
        } else if applied.explicit_compaction {
            Some(FileCheck::Explicit)
        } else {
            Some(FileCheck::Background)
        };
        let result = check.map(|check| self.compact_file(check));
        if let Some(Err(err)) = &result {
            tracing::warn!(error = %err, "database file compaction failed");
            self.broken = true;
        }
        for (outcome, reply) in deferred {
            let outcome = match (outcome, &result) {
                (Ok(Reply::Compacted(_)), Some(Ok(moved))) => Ok(Reply::Compacted(*moved)),
                (Ok(Reply::Compacted(_)), Some(Err(err))) => Err(backend(err)),
                (outcome, _) => outcome,
            };
            let _ = reply.send(outcome);
        }
    }

    /// After a storage error, reopens the database (redb repairs it on open) and catches up
    /// with what is on disk: a commit that failed late (its fsync, say) may have landed, and
    /// its events are then published as if it had succeeded. Until this works every write
    /// fails with the reopen's error, and reads fail with `Closed`.
    fn recover(&mut self) -> Result<()> {
        if !self.broken {
            return Ok(());
        }
        let mut guard = self
            .shared
            .db
            .write()
            .map_err(|_| backend("database lock poisoned"))?;
        // Release the file (and its lock) before opening it again.
        drop(guard.take());
        let db = super::create_database(&self.reopen)?;
        let (revision, compacted, events) = {
            let txn = db.begin_read().map_err(backend)?;
            let (revision, compacted) = super::meta_revisions(&txn)?;
            let events = if revision > self.revision {
                super::read_log_blocking(&txn, "", self.revision.max(compacted), usize::MAX)?.events
            } else {
                Vec::new()
            };
            (revision, compacted, events)
        };
        *guard = Some(db);
        drop(guard);
        tracing::warn!(
            revision,
            landed = revision.saturating_sub(self.revision),
            "reopened the store after a storage error"
        );
        self.broken = false;
        self.revision = revision;
        self.compacted = compacted;
        self.shared.current.store(revision, Ordering::Release);
        self.shared.compacted.store(compacted, Ordering::Release);
        if !events.is_empty() {
            let _ = self.events.send(Batch::from(events));
        }
        Ok(())
    }

    /// Applies a batch in one write transaction and commits it durably (if it changed anything).
    fn apply(&self, ops: &[Op], auto_compact: bool) -> Result<Applied, redb::Error> {
        let guard = self
            .shared
            .db
            .read()
            .map_err(|_| storage("database lock poisoned"))?;
        let db = guard
            .as_ref()
            .ok_or_else(|| storage("the database is closed"))?;
        let mut txn = db.begin_write()?;
        // redb's default, stated: the commit is on disk when `commit` returns.
        txn.set_durability(Durability::Immediate)?;
        // A file whose size is unknown counts as large.
        let quick_repair = self.quick_repair_from_bytes == 0
            || self.shared.file_len().unwrap_or(u64::MAX) >= self.quick_repair_from_bytes;
        txn.set_quick_repair(quick_repair);
        let mut applied = Applied {
            outcomes: Vec::with_capacity(ops.len()),
            events: Vec::new(),
            revision: self.revision,
            compacted: self.compacted,
            compact_file: false,
            explicit_compaction: false,
        };
        {
            let mut tables = Tables {
                kv: txn.open_table(KV)?,
                log: txn.open_table(LOG)?,
            };
            for op in ops {
                let outcome = match op {
                    Op::Create { key, value } => create(&mut tables, &mut applied, key, value),
                    Op::Update {
                        key,
                        value,
                        expected,
                    } => update(&mut tables, &mut applied, key, value, *expected),
                    Op::Delete { key, expected } => {
                        delete(&mut tables, &mut applied, key, *expected)
                    }
                    Op::Compact(revision) => {
                        let before = applied.compacted;
                        let outcome = compact(&mut tables, &mut applied, *revision);
                        applied.explicit_compaction |= applied.compacted > before;
                        outcome
                    }
                    Op::CompactFile => {
                        applied.compact_file = true;
                        Ok(Ok(Reply::Compacted(false)))
                    }
                }?;
                applied.outcomes.push(outcome);
            }
            if auto_compact {
                let target = applied.revision.saturating_sub(self.retain);
                if target > applied.compacted {
                    // `target` is at most the current revision, so this cannot be refused.
                    if let Err(err) = compact(&mut tables, &mut applied, target)? {
                        tracing::warn!(error = %err, "background compaction refused");
                    }
                    tracing::debug!(compacted = target, "compacted store history");
                }
            }
        }
        if applied.revision == self.revision && applied.compacted == self.compacted {
            txn.abort()?;
        } else {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_REVISION, applied.revision)?;
            meta.insert(META_COMPACTED, applied.compacted)?;
            drop(meta);
            let committing = Instant::now();
            commit(txn)?;
            self.shared
                .counters
                .commit_seconds
                .0
                .observe_duration(committing.elapsed());
            self.shared.counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(applied)
    }

    /// Shrinks the file when it is mostly free space (see `FileCheck`).
    fn compact_file(&self, check: FileCheck) -> Result<bool> {
        let stats = storage_stats(&self.shared)?;
        let file_bytes = stats.file_bytes;
        let limit = match check {
            FileCheck::Background => 4 * stats.allocated_bytes + FILE_SLACK,
            FileCheck::Explicit => 2 * stats.allocated_bytes + FILE_SLACK,
            FileCheck::Force => 0,
        };
        if file_bytes <= limit {
            return Ok(false);
        }
        let mut guard = self
            .shared
            .db
            .write()
            .map_err(|_| backend("database lock poisoned"))?;
        let db = guard.as_mut().ok_or(Error::Closed)?;
        let started = Instant::now();
        let moved = db.compact().map_err(backend)?;
        self.shared
            .counters
            .file_compactions
            .fetch_add(1, Ordering::Relaxed);
        let after = self.shared.file_len()?;
        tracing::debug!(
            before = file_bytes,
            after,
            in_use = stats.allocated_bytes,
            took = ?started.elapsed(),
            "compacted the database file"
        );
        Ok(moved)
    }
}

/// Space use of the file (blocking).
pub(super) fn storage_stats(shared: &Shared) -> Result<StorageStats> {
    let file_bytes = shared.file_len()?;
    let guard = shared
        .db
        .read()
        .map_err(|_| backend("database lock poisoned"))?;
    let db: &Database = guard.as_ref().ok_or(Error::Closed)?;
    // `stats` lives on write transactions; this one is aborted. The writer is the only other
    // user of write transactions, so this waits for at most one commit.
    let txn = db.begin_write().map_err(backend)?;
    let stats = txn.stats().map_err(backend)?;
    let read = db.begin_read().map_err(backend)?;
    let keys = read
        .open_table(KV)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    let log_entries = read
        .open_table(LOG)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    txn.abort().map_err(backend)?;
    Ok(StorageStats {
        file_bytes,
        allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
        stored_bytes: stats.stored_bytes(),
        log_entries,
        keys,
    })
}

fn is_mutation(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. } | Op::Update { .. } | Op::Delete { .. }
    )
}

/// Whether a redb error is the disk being full (`ENOSPC`).
pub(super) fn is_no_space(err: &redb::Error) -> bool {
    match err {
        redb::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28)
        }
        _ => false,
    }
}

/// The store's error for a failed write transaction.
fn classify(err: &redb::Error) -> Error {
    if is_no_space(err) {
        Error::NoSpace(err.to_string())
    } else {
        backend(err)
    }
}

/// A copy of a batch's error for each of its callers.
fn same(err: &Error) -> Error {
    match err {
        Error::NoSpace(message) => Error::NoSpace(message.clone()),
        Error::Backend(message) => Error::Backend(message.clone()),
        other => backend(other),
    }
}

fn storage(message: &str) -> redb::Error {
    redb::Error::Io(std::io::Error::other(message.to_owned()))
}

fn commit(txn: WriteTransaction) -> Result<(), redb::Error> {
    txn.commit()?;
    Ok(())
}

/// The outcome of one op: the outer error fails the whole batch (storage), the inner one only
/// this op (precondition).
type OpResult = Result<Result<Reply>, redb::Error>;

fn current(tables: &Tables<'_>, key: &str) -> Result<Option<KeyValue>, redb::Error> {
    let Some(bytes) = tables.kv.get(key)? else {
        return Ok(None);
    };
    codec::decode_state(key, bytes.value())
        .map(Some)
        .map_err(|err| storage(&err.to_string()))
}

fn existing(
    tables: &Tables<'_>,
    key: &str,
    expected: Option<Revision>,
) -> Result<Result<KeyValue>, redb::Error> {
    let Some(current) = current(tables, key)? else {
        return Ok(Err(Error::NotFound(key.to_owned())));
    };
    if let Some(expected) = expected
        && expected != current.mod_revision
    {
        return Ok(Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        }));
    }
    Ok(Ok(current))
}

fn record(
    tables: &mut Tables<'_>,
    applied: &mut Applied,
    event_type: EventType,
    kv: KeyValue,
    prev: Option<KeyValue>,
) -> OpResult {
    let event = Event {
        event_type,
        kv,
        prev,
    };
    let bytes = codec::encode_event(&event).map_err(|err| storage(&err.to_string()))?;
    match event_type {
        EventType::Put => {
            tables.kv.insert(
                event.kv.key.as_str(),
                codec::encode_state(&event.kv).as_slice(),
            )?;
        }
        EventType::Delete => {
            tables.kv.remove(event.kv.key.as_str())?;
        }
    }
    tables.log.insert(event.kv.mod_revision, bytes.as_slice())?;
    applied.revision = event.kv.mod_revision;
    let reply = event.kv.clone();
    applied.events.push(event);
    Ok(Ok(Reply::Kv(reply)))
}

fn create(tables: &mut Tables<'_>, applied: &mut Applied, key: &str, value: &[u8]) -> OpResult {
    if current(tables, key)?.is_some() {
        return Ok(Err(Error::AlreadyExists(key.to_owned())));
    }
    let revision = applied.revision + 1;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: revision,
        mod_revision: revision,
    };
    record(tables, applied, EventType::Put, kv, None)
}

fn update(
    tables: &mut Tables<'_>,
    applied: &mut Applied,
    key: &str,
    value: &[u8],
    expected: Option<Revision>,
) -> OpResult {
    let prev = match existing(tables, key, expected)? {
        Ok(prev) => prev,
        Err(err) => return Ok(Err(err)),
    };
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: prev.create_revision,
        mod_revision: applied.revision + 1,
    };
    record(tables, applied, EventType::Put, kv, Some(prev))
}

fn delete(
    tables: &mut Tables<'_>,
    applied: &mut Applied,
    key: &str,
    expected: Option<Revision>,
) -> OpResult {
    let prev = match existing(tables, key, expected)? {
        Ok(prev) => prev,
        Err(err) => return Ok(Err(err)),
    };
    let kv = KeyValue {
        mod_revision: applied.revision + 1,
        ..prev.clone()
    };
    record(tables, applied, EventType::Delete, kv, Some(prev))
}

fn compact(tables: &mut Tables<'_>, applied: &mut Applied, revision: Revision) -> OpResult {
    if revision > applied.revision {
        return Ok(Err(Error::FutureRevision {
            requested: revision,
            current: applied.revision,
        }));
    }
    if revision > applied.compacted {
        tables.log.retain_in(..=revision, |_, _| false)?;
        applied.compacted = revision;
    }
    Ok(Ok(Reply::Done))
}
