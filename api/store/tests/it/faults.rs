//! Model-based fault injection on the redb store: random operations against a model of what
//! each key may hold, with I/O errors, torn writes, failed fsyncs and a full disk injected at
//! random calls, then a power cut at a random point and a reopen. Every acknowledged write must
//! be there; an unacknowledged one may be there or not, but whole (one of the values the key
//! could hold), and the store must keep working after each fault.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use redb::StorageBackend;
use skiff_store::conformance::Rng;
use skiff_store::faults::{Call, Fault, FaultDisk};
use skiff_store::{Error, RedbStore, RedbStoreOptions, Revision, Store};

/// What a key may hold: `None` is absent. One element once a write is acknowledged; more after
/// a write that failed (it may or may not have landed).
type Possible = BTreeSet<Option<Vec<u8>>>;

#[derive(Default)]
struct Model {
    keys: BTreeMap<String, Possible>,
    /// The highest revision acknowledged to a writer.
    acked_revision: Revision,
    acked: u64,
    failed: u64,
}

impl Model {
    fn possible(&mut self, key: &str) -> &mut Possible {
        self.keys
            .entry(key.to_owned())
            .or_insert_with(|| BTreeSet::from([None]))
    }

    /// An acknowledged write: the key now holds exactly `value`.
    fn ack(&mut self, key: &str, value: Option<Vec<u8>>, revision: Revision) {
        *self.possible(key) = BTreeSet::from([value]);
        assert!(
            revision > self.acked_revision,
            "revisions increase: {revision} after {}",
            self.acked_revision
        );
        self.acked_revision = revision;
        self.acked += 1;
    }

    /// A failed write: the key may also hold `value` now.
    fn maybe(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.possible(key).insert(value);
        self.failed += 1;
    }

    /// A refusal (`AlreadyExists`, `NotFound`) must agree with some state the key may hold.
    fn refused(&mut self, key: &str, present: bool) {
        let possible = self.possible(key);
        assert!(
            possible.iter().any(|v| v.is_some() == present),
            "{key}: refused as {} but the model has {possible:?}",
            if present { "present" } else { "absent" },
        );
    }
}

fn options(disk: &Arc<FaultDisk>) -> RedbStoreOptions {
    let mut opts = RedbStoreOptions::new("faults.redb");
    opts.backend = Some(disk.clone() as Arc<dyn StorageBackend>);
    opts.compaction_interval = Duration::ZERO;
    opts.compaction_retain = 50;
    opts
}

/// The options of seed `seed`'s run: odd seeds commit with redb's quick-repair (its recorded
/// allocator state is what the reopen after a fault or crash loads), even ones without (the
/// reopen repairs by scanning the file).
fn options_for(disk: &Arc<FaultDisk>, seed: u64) -> RedbStoreOptions {
    let mut opts = options(disk);
    opts.quick_repair_from_bytes = if seed % 2 == 1 { 0 } else { u64::MAX };
    opts
}

fn is_fault(err: &Error) -> bool {
    matches!(err, Error::Backend(_) | Error::NoSpace(_) | Error::Closed)
}

/// One random operation on the store, checked against the model.
async fn step(store: &RedbStore, model: &mut Model, rng: &mut Rng, i: u64) {
    let key = format!("/k/{}", rng.below(12));
    // Values of varied size, so that pages split, grow the file and get freed.
    let value = format!("{i}:{}", "v".repeat(rng.below(3000) as usize)).into_bytes();
    match rng.below(10) {
        0..=2 => match store.create(&key, value.clone()).await {
            Ok(kv) => {
                assert!(
                    model.possible(&key).contains(&None),
                    "{key}: created over a value"
                );
                model.ack(&key, Some(value), kv.mod_revision);
            }
            Err(Error::AlreadyExists(_)) => model.refused(&key, true),
            Err(err) if is_fault(&err) => model.maybe(&key, Some(value)),
            Err(err) => panic!("create {key}: {err}"),
        },
        3..=5 => match store.update(&key, value.clone(), None).await {
            Ok(kv) => model.ack(&key, Some(value), kv.mod_revision),
            Err(Error::NotFound(_)) => model.refused(&key, false),
            Err(err) if is_fault(&err) => model.maybe(&key, Some(value)),
            Err(err) => panic!("update {key}: {err}"),
        },
        6 => match store.delete(&key, None).await {
            Ok(kv) => model.ack(&key, None, kv.mod_revision),
            Err(Error::NotFound(_)) => model.refused(&key, false),
            Err(err) if is_fault(&err) => model.maybe(&key, None),
            Err(err) => panic!("delete {key}: {err}"),
        },
        7 => {
            // Compaction runs in the writer like a write; its failure loses nothing.
            let _ = store.compact(model.acked_revision.saturating_sub(20)).await;
        }
        _ => match store.get(&key).await {
            Ok(found) => {
                let found = found.map(|kv| kv.value);
                assert!(
                    model.possible(&key).contains(&found),
                    "{key}: read a value the model does not allow"
                );
            }
            Err(err) if is_fault(&err) => {}
            Err(err) => panic!("get {key}: {err}"),
        },
    }
}

/// Reopens the disk's image after a power cut and checks every key against the model.
async fn check_after_crash(disk: &FaultDisk, model: &Model, keep_unsynced: f64, seed: u64) {
    let image = disk.image_after_crash(keep_unsynced, seed);
    let disk = Arc::new(FaultDisk::from_image(image));
    let store = RedbStore::open_async(options_for(&disk, seed))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the store reopens after the crash: {e}"));
    let current = store.current_revision().await.unwrap();
    assert!(
        current >= model.acked_revision,
        "seed {seed}: revision {current} is behind the acknowledged {}",
        model.acked_revision
    );
    for (key, possible) in &model.keys {
        let found = store.get(key).await.unwrap().map(|kv| kv.value);
        assert!(
            possible.contains(&found),
            "seed {seed}: {key} after the crash holds {:?}, allowed {} value(s) (acknowledged: {})",
            found
                .as_ref()
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned()),
            possible.len(),
            possible.len() == 1,
        );
    }
    // The reopened store takes writes.
    store.create("/after-crash", b"x".to_vec()).await.unwrap();
    store.close().await.unwrap();
}

/// Runs `ops` random operations with random faults at `per_mille`, cuts the power at a random
/// operation, reopens and compares. Returns (acknowledged, failed) writes.
async fn run(seed: u64, ops: u64, per_mille: u32) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let disk = Arc::new(FaultDisk::new());
    let store = RedbStore::open_async(options_for(&disk, seed))
        .await
        .expect("open");
    disk.random_faults(per_mille, seed);
    let mut model = Model::default();
    let crash_at = ops / 2 + rng.below(ops / 2);
    for i in 0..crash_at {
        step(&store, &mut model, &mut rng, i).await;
    }
    disk.crash();
    // The process dies with the disk: closing may fail, it must not hang or panic.
    let _ = tokio::time::timeout(Duration::from_secs(30), store.close()).await;
    let keep = [0.0, 0.5, 1.0][rng.below(3) as usize];
    check_after_crash(&disk, &model, keep, seed).await;
    (model.acked, model.failed)
}

/// The model test proper: 24 seeds, about one fault in 40 backend calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_and_a_power_cut_lose_no_acknowledged_write() {
    let seeds: u64 = std::env::var("SKIFF_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let (mut acked, mut failed) = (0, 0);
    for seed in 1..=seeds {
        let (a, f) = run(seed, 400, 25).await;
        acked += a;
        failed += f;
    }
    println!(
        "{seeds} runs: {acked} acknowledged writes kept, {failed} failed writes whole or absent"
    );
    assert!(
        acked > seeds * 50,
        "the store kept working between faults: {acked} acknowledged"
    );
    assert!(failed > 0, "faults were injected: {failed} writes failed");
}

/// Each kind of fault on its own, at each of the first calls of a commit: the failing write
/// is refused with a storage error, and the next write succeeds (the store reopens itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_from_each_kind_of_fault() {
    for (call, fault) in [
        (Call::Write, Fault::IoError),
        (Call::Write, Fault::ShortWrite),
        (Call::Write, Fault::NoSpace),
        (Call::Sync, Fault::SyncFailure),
        (Call::Sync, Fault::IoError),
        (Call::SetLen, Fault::NoSpace),
        (Call::Read, Fault::IoError),
    ] {
        for nth in 1..=3 {
            let disk = Arc::new(FaultDisk::new());
            let store = RedbStore::open_async(options(&disk)).await.expect("open");
            let mut model = Model::default();
            for i in 0..20u64 {
                let kv = store
                    .create(&format!("/k/{i}"), vec![1; 3000])
                    .await
                    .unwrap();
                model.ack(&format!("/k/{i}"), Some(vec![1; 3000]), kv.mod_revision);
            }
            disk.inject(nth, call, fault);
            let mut faulted = false;
            for i in 0..10u64 {
                let key = format!("/k/{i}");
                let value = vec![2; 5000 + i as usize];
                match store.update(&key, value.clone(), None).await {
                    Ok(kv) => model.ack(&key, Some(value), kv.mod_revision),
                    Err(err) if is_fault(&err) => {
                        faulted = true;
                        model.maybe(&key, Some(value));
                    }
                    Err(err) => panic!("{fault:?} on {call:?} #{nth}: {err}"),
                }
            }
            let kv = store
                .create("/after", b"ok".to_vec())
                .await
                .unwrap_or_else(|e| panic!("{fault:?} on {call:?} #{nth}: no recovery: {e}"));
            model.ack("/after", Some(b"ok".to_vec()), kv.mod_revision);
            if !matches!(call, Call::Read | Call::SetLen) {
                assert!(faulted, "{fault:?} on {call:?} #{nth} failed a write");
            }
            disk.crash();
            let _ = store.close().await;
            check_after_crash(&disk, &model, 0.0, nth).await;
        }
    }
}

/// A full disk: writes fail with `NoSpace` (which the API server answers with 507), reads keep
/// working, and writes succeed again once space is freed, with nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns() {
    let disk = Arc::new(FaultDisk::new());
    let store = RedbStore::open_async(options(&disk)).await.expect("open");
    let mut model = Model::default();
    for i in 0..10u64 {
        let kv = store
            .create(&format!("/k/{i}"), vec![1; 1000])
            .await
            .unwrap();
        model.ack(&format!("/k/{i}"), Some(vec![1; 1000]), kv.mod_revision);
    }
    disk.set_capacity(Some(disk.used()));
    let mut no_space = 0;
    for i in 10..60u64 {
        let key = format!("/k/{i}");
        match store.create(&key, vec![3; 20_000]).await {
            Ok(kv) => model.ack(&key, Some(vec![3; 20_000]), kv.mod_revision),
            Err(Error::NoSpace(message)) => {
                assert!(message.contains("No space left"), "{message}");
                no_space += 1;
                model.maybe(&key, Some(vec![3; 20_000]));
            }
            Err(err) => panic!("{key}: expected NoSpace, got {err}"),
        }
    }
    assert!(no_space > 0, "the full disk refused writes");
    let got = store
        .get("/k/0")
        .await
        .unwrap()
        .expect("reads work on a full disk");
    assert_eq!(got.value, vec![1; 1000]);
    disk.set_capacity(None);
    for i in 60..70u64 {
        let key = format!("/k/{i}");
        let kv = store
            .create(&key, vec![4; 20_000])
            .await
            .unwrap_or_else(|e| panic!("writes succeed once space returns: {e}"));
        model.ack(&key, Some(vec![4; 20_000]), kv.mod_revision);
    }
    store.close().await.unwrap();
    check_after_crash(&disk, &model, 0.0, 1).await;
}
