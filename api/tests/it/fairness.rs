//! Fairness over the router, with a store whose reads of `slow` objects wait at a gate: a
//! flooding user's requests beyond its queue get 429 with `Retry-After`, another user's
//! request is served before the flooding user's queued ones, watches are not counted (but
//! capped per user) and `system:masters` passes while the server is full.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::fairness::{Fairness, FairnessOptions};
use skiff_api::{AppState, UserInfo, app};
use skiff_store::{
    KeyValue, ListOptions, ListResult, MemoryStore, Result, Revision, Store, WatchStream,
};
use tower::ServiceExt;

/// A store whose `get` of a key naming `slow` waits for the gate to let it through, and which
/// records the order in which `slow` and `fast` keys are read.
struct GatedStore {
    inner: MemoryStore,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::watch::Sender<usize>,
    order: Mutex<Vec<String>>,
}

#[async_trait]
impl Store for GatedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        if key.contains("slow") || key.contains("fast") {
            self.order.lock().unwrap().push(key.to_string());
        }
        if key.contains("slow") {
            self.entered.send_modify(|n| *n += 1);
            let permit = self.gate.acquire().await.expect("the gate stays open");
            permit.forget();
        }
        self.inner.get(key).await
    }
    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        self.inner.list(opts).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

struct Fair {
    router: axum::Router,
    store: Arc<GatedStore>,
    fairness: Arc<Fairness>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn request(token: &str, method: Method, path: &str, body: Option<Value>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(
            body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap()
}

impl Fair {
    async fn new(max_watches_per_user: usize) -> Fair {
        let store = Arc::new(GatedStore {
            inner: MemoryStore::new(),
            gate: tokio::sync::Semaphore::new(0),
            entered: tokio::sync::watch::channel(0).0,
            order: Mutex::new(Vec::new()),
        });
        let fairness = Fairness::new(FairnessOptions {
            max_requests_inflight: 2,
            max_mutating_requests_inflight: 2,
            queue_length_per_user: 2,
            queue_wait: Duration::from_secs(600),
            max_watches_per_user,
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            store.clone(),
            vec![
                ("admin-token".into(), UserInfo::admin("admin")),
                ("alice-token".into(), UserInfo::new("alice", &[])),
                ("bob-token".into(), UserInfo::new("bob", &[])),
                (
                    "scheduler-token".into(),
                    UserInfo::new("system:kube-scheduler", &[]),
                ),
            ],
        )
        .with_shutdown(rx)
        .with_fairness(fairness.clone());
        let fair = Fair {
            router: app(Arc::new(state)),
            store,
            fairness,
            _shutdown: tx,
        };
        let (code, _) = fair
            .call(request(
                "admin-token",
                Method::POST,
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": "default"}})),
            ))
            .await;
        assert_eq!(code, 201);
        for name in ["slow", "fast"] {
            let (code, _) = fair
                .call(request(
                    "admin-token",
                    Method::POST,
                    "/api/v1/namespaces/default/configmaps",
                    Some(json!({"metadata": {"name": name}})),
                ))
                .await;
            assert_eq!(code, 201);
        }
        fair.store.order.lock().unwrap().clear();
        fair
    }

    async fn call(&self, request: Request<Body>) -> (u16, axum::response::Response) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        (response.status().as_u16(), response)
    }

    /// Sends a request in the background; the task answers its code.
    fn spawn(&self, token: &str, path: &str) -> tokio::task::JoinHandle<u16> {
        let router = self.router.clone();
        let request = request(token, Method::GET, path, None);
        tokio::spawn(async move {
            let response = router.oneshot(request).await.unwrap();
            let code = response.status().as_u16();
            let _ = response.into_body().collect().await;
            code
        })
    }

    async fn until_entered(&self, n: usize) {
        let mut entered = self.store.entered.subscribe();
        entered.wait_for(|e| *e >= n).await.unwrap();
    }

    async fn until_waiting(&self, n: usize) {
        while self.fairness.reads_waiting() < n {
            tokio::task::yield_now().await;
        }
    }
}

const SLOW: &str = "/api/v1/namespaces/default/configmaps/slow";
const FAST: &str = "/api/v1/namespaces/default/configmaps/fast";

#[tokio::test]
async fn a_flood_gets_429_and_another_user_is_served_first() {
    let fair = Fair::new(10).await;
    // alice fills both slots, then her queue of two.
    let held: Vec<_> = (0..2).map(|_| fair.spawn("alice-token", SLOW)).collect();
    fair.until_entered(2).await;
    let queued: Vec<_> = (0..2).map(|_| fair.spawn("alice-token", SLOW)).collect();
    fair.until_waiting(2).await;

    // Her next one is refused as Kubernetes refuses it.
    let (code, response) = fair
        .call(request("alice-token", Method::GET, SLOW, None))
        .await;
    assert_eq!(code, 429);
    assert_eq!(response.headers()["Retry-After"], "1");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let status: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(
        status["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);

    // The cluster's administrator and its components are exempt: served while full.
    let (code, _) = fair
        .call(request("admin-token", Method::GET, FAST, None))
        .await;
    assert_eq!(code, 200);
    let (code, _) = fair
        .call(request("scheduler-token", Method::GET, FAST, None))
        .await;
    assert_eq!(code, 200);

    // bob queues behind alice's two; the first freed slot is his.
    let bob = fair.spawn("bob-token", FAST);
    fair.until_waiting(3).await;
    fair.store.gate.add_permits(1);
    assert_eq!(bob.await.unwrap(), 200);
    fair.store.gate.add_permits(3);
    for task in held.into_iter().chain(queued) {
        assert_eq!(task.await.unwrap(), 200);
    }
    let order = fair.store.order.lock().unwrap().clone();
    let fast_reads: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, k)| k.contains("fast"))
        .map(|(i, _)| i)
        .collect();
    // Reads: alice's two held, the admin's and the scheduler's, then bob's before alice's two
    // queued ones.
    assert_eq!(order.len(), 7, "{order:?}");
    assert_eq!(fast_reads, [2, 3, 4], "{order:?}");
    assert_eq!(fair.fairness.reads_in_flight(), 0);
    assert_eq!(fair.fairness.reads_waiting(), 0);
}

#[tokio::test]
async fn watches_are_not_counted_but_capped_per_user() {
    let fair = Fair::new(1).await;
    let held: Vec<_> = (0..2).map(|_| fair.spawn("alice-token", SLOW)).collect();
    fair.until_entered(2).await;

    // The reads are full, yet alice's watch starts.
    let (code, watch) = fair
        .call(request(
            "alice-token",
            Method::GET,
            "/api/v1/namespaces/default/configmaps?watch=1",
            None,
        ))
        .await;
    assert_eq!(code, 200);
    // Her second watch passes her cap of one; bob's first does not.
    let (code, response) = fair
        .call(request(
            "alice-token",
            Method::GET,
            "/api/v1/namespaces/default/configmaps?watch=1",
            None,
        ))
        .await;
    assert_eq!(code, 429);
    assert_eq!(response.headers()["Retry-After"], "1");
    let (code, _bob_watch) = fair
        .call(request(
            "bob-token",
            Method::GET,
            "/api/v1/watch/namespaces/default/configmaps",
            None,
        ))
        .await;
    assert_eq!(code, 200);
    // Once her first watch ends, she may watch again.
    drop(watch);
    let (code, _again) = fair
        .call(request(
            "alice-token",
            Method::GET,
            "/api/v1/namespaces/default/configmaps?watch=true",
            None,
        ))
        .await;
    assert_eq!(code, 200);
    fair.store.gate.add_permits(2);
    for task in held {
        assert_eq!(task.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn mutations_have_their_own_bound() {
    let fair = Fair::new(10).await;
    let held: Vec<_> = (0..2).map(|_| fair.spawn("alice-token", SLOW)).collect();
    fair.until_entered(2).await;
    // Reads are full; a write of alice's is not queued behind them.
    let (code, _) = fair
        .call(request(
            "alice-token",
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"metadata": {"name": "written"}})),
        ))
        .await;
    assert_eq!(code, 201);
    fair.store.gate.add_permits(2);
    for task in held {
        assert_eq!(task.await.unwrap(), 200);
    }
}
