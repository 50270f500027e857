//! The conformance suite every `Store` implementation runs: CRUD and preconditions, revisions,
//! lists (pagination, old revisions), watches (history, live, prefixes), compaction, a
//! model-based random test and a concurrency test.
//!
//! Each case takes a fresh store that nobody else writes to (its revision may start anywhere)
//! and panics on a violation, so it is meant for tests: either call `run_all` with a factory, or
//! one case at a time from `CASES` (one `#[test]` each gives clearer failures).

mod model;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use crate::{Error, Event, EventType, KeyValue, ListOptions, Revision, Store, WatchStream};

pub use model::{Rng, model_based, model_based_seeded};

/// One conformance case.
pub type Case = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("crud_and_preconditions", |s| {
        Box::pin(crud_and_preconditions(s))
    }),
    ("revisions_are_monotonic", |s| {
        Box::pin(revisions_are_monotonic(s))
    }),
    ("list_and_pagination", |s| Box::pin(list_and_pagination(s))),
    ("list_at_old_revision", |s| {
        Box::pin(list_at_old_revision(s))
    }),
    ("watch_replays_history", |s| {
        Box::pin(watch_replays_history(s))
    }),
    ("watch_live", |s| Box::pin(watch_live(s))),
    ("watch_progress", |s| Box::pin(watch_progress(s))),
    ("watch_prefix_filtering", |s| {
        Box::pin(watch_prefix_filtering(s))
    }),
    ("compaction", |s| Box::pin(compaction(s))),
    ("delete_events_carry_prior_value", |s| {
        Box::pin(delete_events_carry_prior_value(s))
    }),
    ("model_based", |s| Box::pin(model_based(s))),
    ("concurrent_writers_and_watchers", |s| {
        Box::pin(concurrent_writers_and_watchers(s))
    }),
];

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        case(make().await).await;
    }
}

/// How long a case waits for an expected event before failing (a guard against hangs, not a
/// speed check).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// The next event of a watch; panics if it ends, fails or stays silent too long.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended early"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// The next `n` events of a watch.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

/// Whether two errors are the same variant with the same fields (backend messages aside).
pub fn same_error(a: &Error, b: &Error) -> bool {
    match (a, b) {
        (Error::NotFound(a), Error::NotFound(b))
        | (Error::AlreadyExists(a), Error::AlreadyExists(b)) => a == b,
        (
            Error::Conflict {
                key: ka,
                expected: ea,
                actual: aa,
            },
            Error::Conflict {
                key: kb,
                expected: eb,
                actual: ab,
            },
        ) => ka == kb && ea == eb && aa == ab,
        (
            Error::Compacted {
                requested: ra,
                compacted: ca,
            },
            Error::Compacted {
                requested: rb,
                compacted: cb,
            },
        ) => ra == rb && ca == cb,
        (
            Error::FutureRevision {
                requested: ra,
                current: ca,
            },
            Error::FutureRevision {
                requested: rb,
                current: cb,
            },
        ) => ra == rb && ca == cb,
        (Error::Closed, Error::Closed) | (Error::Backend(_), Error::Backend(_)) => true,
        _ => false,
    }
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(result: crate::Result<T>, expected: &Error) {
    match result {
        Err(err) if same_error(&err, expected) => {}
        other => panic!("expected error {expected:?}, got {other:?}"),
    }
}

async fn list_all(store: &dyn Store, prefix: &str, revision: Option<Revision>) -> Vec<KeyValue> {
    let opts = ListOptions {
        prefix: prefix.to_owned(),
        revision,
        ..ListOptions::default()
    };
    let list = store.list(opts).await.expect("list");
    assert!(!list.more, "an unlimited list has no more items");
    list.items
}

pub async fn crud_and_preconditions(store: Arc<dyn Store>) {
    let base = store.current_revision().await.unwrap();
    let key = "/c/crud/a";
    let a = store.create(key, bytes("1")).await.unwrap();
    assert!(a.mod_revision > base);
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!((a.key.as_str(), a.value.as_slice()), (key, b"1".as_slice()));
    assert_eq!(store.get(key).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get("/c/crud/missing").await.unwrap(), None);

    expect_err(
        store.create(key, bytes("x")).await,
        &Error::AlreadyExists(key.to_owned()),
    );
    let wrong = a.mod_revision + 1000;
    expect_err(
        store.update(key, bytes("x"), Some(wrong)).await,
        &Error::Conflict {
            key: key.to_owned(),
            expected: wrong,
            actual: a.mod_revision,
        },
    );
    assert_eq!(
        store.get(key).await.unwrap(),
        Some(a.clone()),
        "failed update changed nothing"
    );

    let b = store
        .update(key, bytes("2"), Some(a.mod_revision))
        .await
        .unwrap();
    assert!(b.mod_revision > a.mod_revision);
    assert_eq!(b.create_revision, a.create_revision);
    assert_eq!(b.value, b"2");
    let c = store.update(key, bytes("3"), None).await.unwrap();
    assert!(c.mod_revision > b.mod_revision);
    assert_eq!(store.get(key).await.unwrap(), Some(c.clone()));

    let missing = "/c/crud/missing";
    expect_err(
        store.update(missing, bytes("x"), None).await,
        &Error::NotFound(missing.to_owned()),
    );
    expect_err(
        store.delete(missing, None).await,
        &Error::NotFound(missing.to_owned()),
    );
    expect_err(
        store.delete(key, Some(b.mod_revision)).await,
        &Error::Conflict {
            key: key.to_owned(),
            expected: b.mod_revision,
            actual: c.mod_revision,
        },
    );

    let d = store.delete(key, Some(c.mod_revision)).await.unwrap();
    assert!(d.mod_revision > c.mod_revision);
    assert_eq!(
        (d.value.as_slice(), d.create_revision),
        (b"3".as_slice(), a.create_revision)
    );
    assert_eq!(store.get(key).await.unwrap(), None);
    expect_err(
        store.delete(key, None).await,
        &Error::NotFound(key.to_owned()),
    );
    expect_err(
        store.update(key, bytes("x"), None).await,
        &Error::NotFound(key.to_owned()),
    );

    let e = store.create(key, bytes("again")).await.unwrap();
    assert!(
        e.create_revision > d.mod_revision,
        "a re-created key has a new create revision"
    );
    assert_eq!(store.current_revision().await.unwrap(), e.mod_revision);
}

pub async fn revisions_are_monotonic(store: Arc<dyn Store>) {
    let mut last = store.current_revision().await.unwrap();
    for i in 0..30 {
        let key = format!("/c/mono/{}", i % 7);
        let result = match i % 3 {
            0 => store.create(&key, bytes("c")).await,
            1 => store.update(&key, bytes("u"), None).await,
            _ => store.delete(&key, None).await,
        };
        let now = store.current_revision().await.unwrap();
        match result {
            Ok(kv) => {
                assert!(
                    kv.mod_revision > last,
                    "write {i} did not advance the revision"
                );
                assert_eq!(now, kv.mod_revision, "current revision after write {i}");
                last = kv.mod_revision;
            }
            Err(err) => {
                assert!(
                    matches!(err, Error::AlreadyExists(_) | Error::NotFound(_)),
                    "unexpected error {err}"
                );
                assert_eq!(now, last, "a failed write {i} changed the revision");
            }
        }
    }
}

pub async fn list_and_pagination(store: Arc<dyn Store>) {
    for i in 0..10 {
        store
            .create(&format!("/c/list/a/{i:02}"), bytes(&i.to_string()))
            .await
            .unwrap();
    }
    store.create("/c/list/ab", bytes("ab")).await.unwrap();
    store.create("/c/list/b/x", bytes("bx")).await.unwrap();
    store.create("/c/lisu", bytes("outside")).await.unwrap();

    let all = store
        .list(ListOptions {
            prefix: "/c/list/a/".to_owned(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(all.revision, store.current_revision().await.unwrap());
    assert!(!all.more);
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    let expected: Vec<_> = (0..10).map(|i| format!("/c/list/a/{i:02}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(
        list_all(&*store, "/c/list/a", None).await.len(),
        11,
        "raw prefix match"
    );
    assert_eq!(list_all(&*store, "/c/list/", None).await.len(), 12);
    for kv in &all.items {
        assert_eq!(store.get(&kv.key).await.unwrap().as_ref(), Some(kv));
    }

    let limited =
        |start_after: Option<String>, limit: usize, revision: Option<Revision>| ListOptions {
            prefix: "/c/list/".to_owned(),
            start_after,
            limit: Some(limit),
            revision,
        };
    let everything = list_all(&*store, "/c/list/", None).await;
    let unlimited = store.list(limited(None, 0, None)).await.unwrap();
    assert_eq!(unlimited.items, everything, "limit 0 is unlimited");
    assert!(!unlimited.more);
    let exact = store
        .list(limited(None, everything.len(), None))
        .await
        .unwrap();
    assert_eq!(exact.items, everything);
    assert!(
        !exact.more,
        "a limit equal to the count leaves nothing more"
    );
    let before_prefix = store
        .list(limited(Some("/c/a".to_owned()), 0, None))
        .await
        .unwrap();
    assert_eq!(
        before_prefix.items, everything,
        "start_after before the prefix"
    );

    // Pages of 5 at the first page's revision, with writes between the pages.
    let first = store.list(limited(None, 5, None)).await.unwrap();
    assert!(first.more);
    let at = first.revision;
    let mut pages = first.items.clone();
    let mut more = first.more;
    let mut writes = 0;
    while more {
        let kv = &everything[everything.len() - 1 - writes % 3];
        store.update(&kv.key, bytes("changed"), None).await.unwrap();
        store
            .create(&format!("/c/list/a/new{writes}"), bytes("new"))
            .await
            .unwrap();
        writes += 1;
        let after = pages.last().map(|kv| kv.key.clone());
        let page = store.list(limited(after, 5, Some(at))).await.unwrap();
        assert_eq!(page.revision, at);
        assert!(page.items.len() <= 5);
        more = page.more;
        pages.extend(page.items);
    }
    assert_eq!(
        pages, everything,
        "pages at one revision ignore later writes"
    );
    let empty = store
        .list(limited(Some("/c/list/zzz".to_owned()), 5, None))
        .await
        .unwrap();
    assert!(empty.items.is_empty() && !empty.more);
}

pub async fn list_at_old_revision(store: Arc<dyn Store>) {
    let prefix = "/c/old/";
    let mut snapshots = vec![(store.current_revision().await.unwrap(), Vec::new())];
    let a = store.create("/c/old/a", bytes("a1")).await.unwrap();
    snapshots.push((a.mod_revision, list_all(&*store, prefix, None).await));
    let b = store.create("/c/old/b", bytes("b1")).await.unwrap();
    snapshots.push((b.mod_revision, list_all(&*store, prefix, None).await));
    let c = store.create("/c/old/c", bytes("c1")).await.unwrap();
    store.create("/c/other", bytes("x")).await.unwrap();
    snapshots.push((c.mod_revision, list_all(&*store, prefix, None).await));
    let a2 = store.update("/c/old/a", bytes("a2"), None).await.unwrap();
    snapshots.push((a2.mod_revision, list_all(&*store, prefix, None).await));
    let b_gone = store.delete("/c/old/b", None).await.unwrap();
    snapshots.push((b_gone.mod_revision, list_all(&*store, prefix, None).await));
    let d = store.create("/c/old/d", bytes("d1")).await.unwrap();
    snapshots.push((d.mod_revision, list_all(&*store, prefix, None).await));
    let b2 = store.create("/c/old/b", bytes("b2")).await.unwrap();
    snapshots.push((b2.mod_revision, list_all(&*store, prefix, None).await));
    store.update("/c/old/a", bytes("a3"), None).await.unwrap();
    store.delete("/c/old/c", None).await.unwrap();

    for (revision, expected) in &snapshots {
        let list = store
            .list(ListOptions {
                prefix: prefix.to_owned(),
                revision: Some(*revision),
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(list.revision, *revision);
        assert_eq!(&list.items, expected, "state at revision {revision}");
        // And page by page, one item at a time.
        let mut paged = Vec::new();
        let mut start_after = None;
        loop {
            let page = store
                .list(ListOptions {
                    prefix: prefix.to_owned(),
                    start_after: start_after.clone(),
                    limit: Some(1),
                    revision: Some(*revision),
                })
                .await
                .unwrap();
            paged.extend(page.items.iter().cloned());
            start_after = paged.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        assert_eq!(&paged, expected, "paged state at revision {revision}");
    }
    let current = store.current_revision().await.unwrap();
    expect_err(
        store
            .list(ListOptions {
                revision: Some(current + 1),
                ..ListOptions::default()
            })
            .await,
        &Error::FutureRevision {
            requested: current + 1,
            current,
        },
    );
}

fn check_event(event: &Event, event_type: EventType, key: &str, value: &str, prev: Option<&str>) {
    assert_eq!(event.event_type, event_type, "type of {event:?}");
    assert_eq!(event.kv.key, key);
    assert_eq!(event.kv.value, value.as_bytes(), "value of {event:?}");
    assert_eq!(
        event.prev.as_ref().map(|prev| prev.value.as_slice()),
        prev.map(str::as_bytes)
    );
}

pub async fn watch_replays_history(store: Arc<dyn Store>) {
    let base = store.current_revision().await.unwrap();
    let a = store.create("/c/w/a", bytes("1")).await.unwrap();
    store.create("/c/x/a", bytes("other")).await.unwrap();
    let a2 = store.update("/c/w/a", bytes("2"), None).await.unwrap();
    let b = store.create("/c/w/b", bytes("b")).await.unwrap();
    let a3 = store.delete("/c/w/a", None).await.unwrap();

    let mut watch = store.watch("/c/w/", base).await.unwrap();
    let events = next_events(&mut watch, 4).await;
    check_event(&events[0], EventType::Put, "/c/w/a", "1", None);
    check_event(&events[1], EventType::Put, "/c/w/a", "2", Some("1"));
    check_event(&events[2], EventType::Put, "/c/w/b", "b", None);
    check_event(&events[3], EventType::Delete, "/c/w/a", "2", Some("2"));
    let revisions: Vec<_> = events.iter().map(Event::revision).collect();
    assert_eq!(
        revisions,
        [
            a.mod_revision,
            a2.mod_revision,
            b.mod_revision,
            a3.mod_revision
        ]
    );
    assert_eq!(events[1].kv, a2);
    assert_eq!(events[1].prev.as_ref(), Some(&a));

    // From the middle: strictly after `a2`.
    let mut watch = store.watch("/c/w/", a2.mod_revision).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(events[0].kv, b);
    assert_eq!(events[1].revision(), a3.mod_revision);
    // Then live, after the history.
    let c = store.create("/c/w/c", bytes("c")).await.unwrap();
    assert_eq!(next_event(&mut watch).await.kv, c);

    // From a revision between two events of the prefix.
    let mut watch = store.watch("/c/w/", a.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await.kv, a2);
}

/// A watch's progress never claims an event it has not yielded, and covers each one it has.
pub async fn watch_progress(store: Arc<dyn Store>) {
    let now = store.current_revision().await.unwrap();
    let (mut watch, progress) = store.watch_with_progress("/c/p/", now).await.unwrap();
    assert!(progress.get() >= now);
    store.create("/c/q/x", bytes("other")).await.unwrap();
    let a = store.create("/c/p/a", bytes("a")).await.unwrap();
    assert!(
        progress.get() < a.mod_revision,
        "progress {} claims the unread event at {}",
        progress.get(),
        a.mod_revision
    );
    assert_eq!(next_event(&mut watch).await.kv, a);
    assert!(progress.get() >= a.mod_revision);
    let b = store.create("/c/p/b", bytes("b")).await.unwrap();
    assert!(progress.get() < b.mod_revision);
    assert_eq!(next_event(&mut watch).await.kv, b);
    assert!(progress.get() >= b.mod_revision);
}

/// Where a store reports how far its watches read (the embedded stores do): an idle watch's
/// progress passes writes under other prefixes, so a bookmark can carry a recent revision.
pub async fn watch_progress_passes_other_prefixes(store: Arc<dyn Store>) {
    let now = store.current_revision().await.unwrap();
    let (mut watch, progress) = store.watch_with_progress("/c/idle/", now).await.unwrap();
    let mut last = now;
    for i in 0..5 {
        last = store
            .create(&format!("/c/busy/{i}"), bytes("v"))
            .await
            .unwrap()
            .mod_revision;
    }
    // The stream reads only when polled, as the API server's watch loop polls it: poll it each
    // time it is woken (by a published batch) until its progress reaches the last write.
    let caught_up = futures::future::poll_fn(|cx| match watch.poll_next_unpin(cx) {
        std::task::Poll::Ready(item) => panic!("an idle watch yielded {item:?}"),
        std::task::Poll::Pending if progress.get() >= last => std::task::Poll::Ready(()),
        std::task::Poll::Pending => std::task::Poll::Pending,
    });
    tokio::time::timeout(EVENT_TIMEOUT, caught_up)
        .await
        .unwrap_or_else(|_| panic!("progress stayed at {} below {last}", progress.get()));
    assert_eq!(progress.get(), last);
}

pub async fn watch_live(store: Arc<dyn Store>) {
    let now = store.current_revision().await.unwrap();
    let mut live = store.watch("/c/live/", now).await.unwrap();
    let early = store.create("/c/live/0", bytes("0")).await.unwrap();
    // A second watch from before `early`: history then live, no gap and no duplicate.
    let mut late = store.watch("/c/live/", now).await.unwrap();
    let mut expected = vec![early];
    for i in 1..20 {
        expected.push(
            store
                .create(&format!("/c/live/{i}"), bytes("v"))
                .await
                .unwrap(),
        );
        store
            .create(&format!("/c/elsewhere/{i}"), bytes("v"))
            .await
            .unwrap();
    }
    for watch in [&mut live, &mut late] {
        let events = next_events(watch, expected.len()).await;
        let kvs: Vec<_> = events.into_iter().map(|event| event.kv).collect();
        assert_eq!(kvs, expected);
    }
    // Nothing else is pending: the next event is the next write.
    let last = store
        .update("/c/live/3", bytes("again"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut live).await.kv, last);
    assert_eq!(next_event(&mut late).await.kv, last);

    // A watch from a future revision starts with the first write past it.
    let current = store.current_revision().await.unwrap();
    let mut future = store.watch("/c/live/", current + 2).await.unwrap();
    store
        .update("/c/live/4", bytes("skip1"), None)
        .await
        .unwrap();
    store
        .update("/c/live/4", bytes("skip2"), None)
        .await
        .unwrap();
    let seen = store
        .update("/c/live/4", bytes("seen"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut future).await.kv, seen);
}

pub async fn watch_prefix_filtering(store: Arc<dyn Store>) {
    let base = store.current_revision().await.unwrap();
    let mut narrow = store.watch("/c/f/a/", base).await.unwrap();
    let mut raw = store.watch("/c/f/a", base).await.unwrap();
    let mut everything = store.watch("", base).await.unwrap();
    store.create("/c/f/ab/1", bytes("ab")).await.unwrap();
    store.create("/c/f/b/1", bytes("b")).await.unwrap();
    let a = store.create("/c/f/a/1", bytes("a")).await.unwrap();
    store.create("/c/f/", bytes("root")).await.unwrap();
    let a2 = store.update("/c/f/a/1", bytes("a2"), None).await.unwrap();

    let events = next_events(&mut narrow, 2).await;
    assert_eq!([&events[0].kv, &events[1].kv], [&a, &a2]);
    let keys: Vec<_> = next_events(&mut raw, 3)
        .await
        .into_iter()
        .map(|e| e.kv.key)
        .collect();
    assert_eq!(keys, ["/c/f/ab/1", "/c/f/a/1", "/c/f/a/1"]);
    let all = next_events(&mut everything, 5).await;
    assert!(
        all.windows(2).all(|w| w[0].revision() < w[1].revision()),
        "events in order"
    );
    assert_eq!(all[4].kv, a2);
}

pub async fn compaction(store: Arc<dyn Store>) {
    let base = store.current_revision().await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..6 {
        let key = format!("/c/compact/{}", i % 3);
        let kv = if i < 3 {
            store.create(&key, bytes(&format!("v{i}"))).await.unwrap()
        } else {
            store
                .update(&key, bytes(&format!("v{i}")), None)
                .await
                .unwrap()
        };
        revisions.push(kv.mod_revision);
    }
    let middle = revisions[2];
    let at_middle = list_all(&*store, "/c/compact/", Some(middle)).await;
    let current_state = list_all(&*store, "/c/compact/", None).await;
    let mut survivor = store.watch("/c/compact/", revisions[4]).await.unwrap();

    store.compact(middle).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), middle);
    let too_old = middle - 1;
    expect_err(
        store.watch("/c/compact/", too_old).await.map(|_| ()),
        &Error::Compacted {
            requested: too_old,
            compacted: middle,
        },
    );
    expect_err(
        store
            .list(ListOptions {
                revision: Some(too_old),
                ..ListOptions::default()
            })
            .await,
        &Error::Compacted {
            requested: too_old,
            compacted: middle,
        },
    );
    if base < too_old {
        expect_err(
            store.watch("", base).await.map(|_| ()),
            &Error::Compacted {
                requested: base,
                compacted: middle,
            },
        );
    }
    // At the compacted revision itself, history is complete.
    assert_eq!(
        list_all(&*store, "/c/compact/", Some(middle)).await,
        at_middle
    );
    let mut watch = store.watch("/c/compact/", middle).await.unwrap();
    let events = next_events(&mut watch, 3).await;
    let seen: Vec<_> = events.iter().map(Event::revision).collect();
    assert_eq!(seen, revisions[3..]);
    assert_eq!(
        list_all(&*store, "/c/compact/", None).await,
        current_state,
        "state untouched"
    );
    assert_eq!(
        next_event(&mut survivor).await.revision(),
        revisions[5],
        "running watch goes on"
    );

    // Compacting an older revision again changes nothing; a future one is refused.
    store.compact(too_old).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), middle);
    let current = store.current_revision().await.unwrap();
    expect_err(
        store.compact(current + 1).await,
        &Error::FutureRevision {
            requested: current + 1,
            current,
        },
    );
    store.compact(current).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current);
    let mut watch = store.watch("/c/compact/", current).await.unwrap();
    let next = store
        .update("/c/compact/0", bytes("after"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.kv, next);
    assert_eq!(
        store.get("/c/compact/1").await.unwrap().map(|kv| kv.value),
        Some(bytes("v4"))
    );
}

pub async fn delete_events_carry_prior_value(store: Arc<dyn Store>) {
    let base = store.current_revision().await.unwrap();
    let created = store.create("/c/del/a", bytes("first")).await.unwrap();
    let updated = store.update("/c/del/a", bytes("last"), None).await.unwrap();
    let deleted = store
        .delete("/c/del/a", Some(updated.mod_revision))
        .await
        .unwrap();
    assert_eq!(deleted.value, b"last");
    assert_eq!(deleted.create_revision, created.create_revision);

    let mut watch = store.watch("/c/del/", base).await.unwrap();
    let events = next_events(&mut watch, 3).await;
    let delete = &events[2];
    assert_eq!(delete.event_type, EventType::Delete);
    assert_eq!(delete.kv, deleted);
    assert_eq!(delete.prev.as_ref(), Some(&updated));
    assert_eq!(delete.revision(), deleted.mod_revision);
}

pub async fn concurrent_writers_and_watchers(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const UPDATES: usize = 15;
    const INCREMENTS: usize = 5;
    let base = store.current_revision().await.unwrap();
    let mut early = store.watch("/c/cc/", base).await.unwrap();
    store.create("/c/cc/counter", bytes("0")).await.unwrap();

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/c/cc/w{writer}");
            let mut kv = store.create(&key, bytes("0")).await.unwrap();
            for i in 1..=UPDATES {
                let value = bytes(&i.to_string());
                kv = store
                    .update(&key, value, Some(kv.mod_revision))
                    .await
                    .unwrap();
                if i % (UPDATES / INCREMENTS) == 0 {
                    increment(&*store, "/c/cc/counter").await;
                }
            }
        }));
    }
    // A watcher that joins midway, from the start.
    let mut midway = store.watch("/c/cc/", base).await.unwrap();
    for task in tasks {
        task.await.expect("writer task");
    }
    let total = 1 + WRITERS * (1 + UPDATES + INCREMENTS);
    let counter = store.get("/c/cc/counter").await.unwrap().unwrap();
    assert_eq!(counter.value, bytes(&(WRITERS * INCREMENTS).to_string()));
    assert_eq!(store.current_revision().await.unwrap(), base + total as u64);

    let mut late = store.watch("/c/cc/", base).await.unwrap();
    let mut sequences = Vec::new();
    for watch in [&mut early, &mut midway, &mut late] {
        let events = next_events(watch, total).await;
        let revisions: Vec<_> = events.iter().map(Event::revision).collect();
        let dense: Vec<_> = (base + 1..=base + total as u64).collect();
        assert_eq!(revisions, dense, "every revision once, in order");
        // Each writer's key moves 0, 1, 2, ... in order.
        for writer in 0..WRITERS {
            let key = format!("/c/cc/w{writer}");
            let values: Vec<_> = events
                .iter()
                .filter(|e| e.kv.key == key)
                .map(|e| e.kv.value.clone())
                .collect();
            let expected: Vec<_> = (0..=UPDATES).map(|i| bytes(&i.to_string())).collect();
            assert_eq!(values, expected, "events of {key}");
        }
        sequences.push(events);
    }
    assert!(
        sequences.windows(2).all(|w| w[0] == w[1]),
        "every watcher saw the same events"
    );
}

/// Adds one to a decimal counter with compare-and-swap retries.
async fn increment(store: &dyn Store, key: &str) {
    loop {
        let kv = store.get(key).await.unwrap().expect("counter exists");
        let n: usize = String::from_utf8_lossy(&kv.value)
            .parse()
            .expect("counter is a number");
        match store
            .update(key, bytes(&(n + 1).to_string()), Some(kv.mod_revision))
            .await
        {
            Ok(_) => return,
            Err(Error::Conflict { .. }) => continue,
            Err(err) => panic!("increment failed: {err}"),
        }
    }
}
