//! The conformance suite, one test per case, against `MemoryStore`, `RedbStore` and `EtcdStore`
//! (each etcd case on its own etcd, started by the test; skipped when `etcd` is missing).

use std::sync::Arc;

use skiff_store::{RedbStore, RedbStoreOptions, Store};

/// A fresh redb store in its own directory (kept alive by the returned guard).
pub(crate) fn open_redb() -> (tempfile::TempDir, Arc<RedbStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        RedbStore::open(RedbStoreOptions::new(dir.path().join("store.redb"))).expect("open");
    (dir, Arc::new(store))
}

/// A fresh etcd (in its own directory) and a store on it, or `None` when `etcd` is missing.
pub(crate) async fn open_etcd() -> Option<(
    tempfile::TempDir,
    skiff_store::etcd::launch::Etcd,
    Arc<skiff_store::EtcdStore>,
)> {
    skiff_store::etcd::launch::available()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = skiff_store::etcd::launch::Etcd::start(dir.path()).expect("start etcd");
    let mut opts = skiff_store::EtcdStoreOptions::new(vec![etcd.endpoint()]);
    opts.compaction_interval = std::time::Duration::ZERO;
    let store = skiff_store::EtcdStore::connect(opts)
        .await
        .expect("connect to etcd");
    Some((dir, etcd, Arc::new(store)))
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = std::sync::Arc::new(skiff_store::MemoryStore::new());
                    skiff_store::conformance::$case(store).await;
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_dir, store) = super::open_redb();
                    skiff_store::conformance::$case(store.clone()).await;
                    store.close().await.expect("close");
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((_dir, _etcd, store)) = super::open_etcd().await else {
                        return;
                    };
                    skiff_store::conformance::$case(store).await;
                }
            )*
        }
    };
}

cases!(
    crud_and_preconditions,
    revisions_are_monotonic,
    list_and_pagination,
    list_at_old_revision,
    watch_replays_history,
    watch_live,
    watch_progress,
    watch_prefix_filtering,
    compaction,
    delete_events_carry_prior_value,
    model_based,
    concurrent_writers_and_watchers,
);

#[test]
fn every_case_has_a_test() {
    // The macro above lists cases by hand; this catches a case added to the suite but not here.
    let listed = [
        "crud_and_preconditions",
        "revisions_are_monotonic",
        "list_and_pagination",
        "list_at_old_revision",
        "watch_replays_history",
        "watch_live",
        "watch_progress",
        "watch_prefix_filtering",
        "compaction",
        "delete_events_carry_prior_value",
        "model_based",
        "concurrent_writers_and_watchers",
    ];
    let suite: Vec<_> = skiff_store::conformance::CASES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(suite, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_memory() {
    skiff_store::conformance::run_all(|| async {
        Arc::new(skiff_store::MemoryStore::new()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_based_many_seeds_memory() {
    for seed in 1..=20 {
        let store = Arc::new(skiff_store::MemoryStore::new());
        skiff_store::conformance::model_based_seeded(store, seed, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_based_many_seeds_redb() {
    for seed in 1..=3 {
        let (_dir, store) = open_redb();
        skiff_store::conformance::model_based_seeded(store.clone(), seed, 300).await;
        store.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_passes_other_prefixes_memory() {
    let store = Arc::new(skiff_store::MemoryStore::new());
    skiff_store::conformance::watch_progress_passes_other_prefixes(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_passes_other_prefixes_redb() {
    let (_dir, store) = open_redb();
    skiff_store::conformance::watch_progress_passes_other_prefixes(store.clone()).await;
    store.close().await.expect("close");
}
