//! `EtcdStore` beyond the conformance suite: several stores (API servers) on one etcd see each
//! other's writes, preconditions and compaction; key prefixes keep clusters apart; an etcd that
//! is not there fails `connect` with a clear error.

use std::sync::Arc;
use std::time::Duration;

use skiff_store::conformance::next_event;
use skiff_store::etcd::launch::{Etcd, available};
use skiff_store::{Error, EtcdStore, EtcdStoreOptions, ListOptions, Store};

async fn connect(etcd: &Etcd, prefix: &str) -> Arc<EtcdStore> {
    let mut opts = EtcdStoreOptions::new(vec![etcd.endpoint()]);
    opts.prefix = prefix.to_owned();
    opts.compaction_interval = Duration::ZERO;
    Arc::new(EtcdStore::connect(opts).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_etcd_share_writes_preconditions_and_compaction() {
    if available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path()).expect("start etcd");
    let (a, b) = (
        connect(&etcd, "/registry").await,
        connect(&etcd, "/registry").await,
    );

    let base = a.current_revision().await.unwrap();
    let mut watch = a.watch("/pods/", base).await.unwrap();
    let created = b.create("/pods/default/p", b"1".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut watch).await.kv, created, "A sees B's write");
    assert_eq!(
        a.get("/pods/default/p").await.unwrap(),
        Some(created.clone())
    );

    let updated = a
        .update("/pods/default/p", b"2".to_vec(), Some(created.mod_revision))
        .await
        .unwrap();
    match b
        .update("/pods/default/p", b"3".to_vec(), Some(created.mod_revision))
        .await
    {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!(
            (expected, actual),
            (created.mod_revision, updated.mod_revision)
        ),
        other => panic!("B's stale update must conflict, got {other:?}"),
    }
    assert_eq!(next_event(&mut watch).await.kv, updated);

    // B compacts; A learns of it from etcd.
    b.compact(updated.mod_revision).await.unwrap();
    assert_eq!(a.compacted_revision().await.unwrap(), updated.mod_revision);
    let too_old = created.mod_revision;
    match a
        .list(ListOptions {
            prefix: "/pods/".to_owned(),
            revision: Some(too_old),
            ..ListOptions::default()
        })
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (too_old, updated.mod_revision)),
        other => panic!("a list below B's compaction must fail, got {other:?}"),
    }
    assert!(matches!(
        a.watch("/pods/", too_old).await.map(|_| ()),
        Err(Error::Compacted { .. })
    ));
    // Compacting again from A at an older revision changes nothing.
    a.compact(too_old).await.unwrap();
    assert_eq!(b.compacted_revision().await.unwrap(), updated.mod_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_clusters_apart() {
    if available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path()).expect("start etcd");
    let (one, two) = (
        connect(&etcd, "/one").await,
        connect(&etcd, "/one-more").await,
    );
    let base = one.current_revision().await.unwrap();
    let mut everything = one.watch("", base).await.unwrap();
    two.create("/x", b"two".to_vec()).await.unwrap();
    let mine = one.create("/x", b"one".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut everything).await.kv, mine);
    let list = one.list(ListOptions::default()).await.unwrap();
    assert_eq!(list.items, vec![mine]);
    assert_eq!(
        two.get("/x").await.unwrap().map(|kv| kv.value),
        Some(b"two".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_fails_connect_with_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut opts = EtcdStoreOptions::new(vec![url.clone()]);
    opts.connect_timeout = Duration::from_secs(3);
    let err = EtcdStore::connect(opts).await.expect_err("nothing listens");
    assert!(err.to_string().contains(&url), "{err}");
    let err = EtcdStore::connect(EtcdStoreOptions::new(vec!["localhost:2379".to_owned()]))
        .await
        .expect_err("not a URL");
    assert!(err.to_string().contains("http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_read_in_chunks_agree_with_one_revision() {
    if available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path()).expect("start etcd");
    let store = connect(&etcd, "/registry").await;
    let mut writers = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..2_500).step_by(16) {
                store
                    .create(&format!("/cm/{i:05}"), b"v".to_vec())
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let keys = |items: &[skiff_store::KeyValue]| -> Vec<String> {
        items.iter().map(|kv| kv.key.clone()).collect()
    };
    let expected: Vec<String> = (0..2_500).map(|i| format!("/cm/{i:05}")).collect();
    let all = store
        .list(ListOptions {
            prefix: "/cm/".to_owned(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert!(!all.more);
    assert_eq!(keys(&all.items), expected);

    // Pages of 1 200 at the first page's revision, with deletes between them.
    let mut paged = Vec::new();
    let mut start_after = None;
    loop {
        let page = store
            .list(ListOptions {
                prefix: "/cm/".to_owned(),
                start_after: start_after.clone(),
                limit: Some(1_200),
                revision: Some(all.revision),
            })
            .await
            .unwrap();
        assert_eq!(page.revision, all.revision);
        assert!(page.items.len() <= 1_200);
        paged.extend(keys(&page.items));
        start_after = paged.last().cloned();
        store
            .delete(&expected[paged.len() - 1], None)
            .await
            .unwrap();
        if !page.more {
            break;
        }
    }
    assert_eq!(paged, expected);
}
