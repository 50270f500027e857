//! The system PriorityClasses as bootstrap writes them, and what priority admission keeps them
//! from: deletion (directly or through a finalizer's mark) and change; quota charges that a
//! stale recount of the quota controller cannot release.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::state::{AppState, UserInfo};

async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", "Bearer t")
        .header("Content-Type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn system_priority_classes_exist_at_start_and_are_protected() {
    let store = Arc::new(skiff_store::MemoryStore::new());
    let state = AppState::new(store, vec![("t".into(), UserInfo::admin("admin"))]);
    crate::bootstrap::run(&state, "127.0.0.1:6443".parse().unwrap())
        .await
        .unwrap();
    // A second start keeps them.
    crate::bootstrap::run(&state, "127.0.0.1:6443".parse().unwrap())
        .await
        .unwrap();
    let router = crate::app(Arc::new(state));
    const PCS: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
    let (code, node) = call(
        &router,
        Method::GET,
        &format!("{PCS}/system-node-critical"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["value"], 2_000_001_000);
    assert_eq!(
        node["description"],
        "Used for system critical pods that must not be moved from their current node."
    );
    assert_eq!(node["preemptionPolicy"], "PreemptLowerPriority");
    let (code, cluster) = call(
        &router,
        Method::GET,
        &format!("{PCS}/system-cluster-critical"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{cluster}");
    assert_eq!(cluster["value"], 2_000_000_000);

    let (code, body) = call(
        &router,
        Method::DELETE,
        &format!("{PCS}/system-node-critical"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"
    );
    // Marking it for deletion behind a finalizer is refused the same way.
    let mut held = cluster.clone();
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, body) = call(
        &router,
        Method::PUT,
        &format!("{PCS}/system-cluster-critical"),
        Some(held),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(
        &router,
        Method::DELETE,
        &format!("{PCS}/system-cluster-critical"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let mut changed = node.clone();
    changed["value"] = json!(1);
    let (code, body) = call(
        &router,
        Method::PUT,
        &format!("{PCS}/system-node-critical"),
        Some(changed),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let mut default = node.clone();
    default["globalDefault"] = json!(true);
    let (code, body) = call(
        &router,
        Method::PUT,
        &format!("{PCS}/system-node-critical"),
        Some(default),
    )
    .await;
    assert_eq!(code, 422, "{body}");

    // Any namespace's pods may use them.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent"},
        "spec": {"priorityClassName": "system-node-critical",
            "containers": [{"name": "c", "image": "agent.wasm"}]}});
    let (code, body) = call(
        &router,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 2_000_001_000);
}

async fn started() -> axum::Router {
    let store = Arc::new(skiff_store::MemoryStore::new());
    let state = AppState::new(store, vec![("t".into(), UserInfo::admin("admin"))]);
    crate::bootstrap::run(&state, "127.0.0.1:6443".parse().unwrap())
        .await
        .unwrap();
    crate::app(Arc::new(state))
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "hello.wasm"}]}})
}

const QUOTA: &str = "/api/v1/namespaces/q/resourcequotas/pods";

/// A namespace `q` with the quota `pods` of `hard` pods, its status as the controller writes it.
async fn quota_namespace(router: &axum::Router, hard: u32) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "q"}});
    let (code, body) = call(router, Method::POST, "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, 201, "{body}");
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": hard.to_string()}}});
    let (code, body) = call(
        router,
        Method::POST,
        "/api/v1/namespaces/q/resourcequotas",
        Some(quota),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(set_used(router, 0).await["status"]["used"]["pods"], "0");
}

/// Writes the quota's status as a controller that counted `pods` pods would.
async fn set_used(router: &axum::Router, pods: usize) -> Value {
    loop {
        let (code, mut quota) = call(router, Method::GET, QUOTA, None).await;
        assert_eq!(code, 200, "{quota}");
        quota["status"] =
            json!({"hard": quota["spec"]["hard"], "used": {"pods": pods.to_string()}});
        let (code, body) = call(router, Method::PUT, &format!("{QUOTA}/status"), Some(quota)).await;
        match code {
            200 => return body,
            409 => continue,
            _ => panic!("{code} {body}"),
        }
    }
}

async fn pods_in_q(router: &axum::Router) -> usize {
    let (code, list) = call(router, Method::GET, "/api/v1/namespaces/q/pods", None).await;
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_quota_recount_never_releases_what_stored_pods_use() {
    let router = started().await;
    quota_namespace(&router, 2).await;
    let (code, body) = call(
        &router,
        Method::POST,
        "/api/v1/namespaces/q/pods",
        Some(pod("one")),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (_, quota) = call(&router, Method::GET, QUOTA, None).await;
    assert_eq!(quota["status"]["used"]["pods"], "1", "{quota}");

    // A recount that missed the stored pod keeps it charged.
    assert_eq!(set_used(&router, 0).await["status"]["used"]["pods"], "1");
    // Once the pod is gone, the recount releases it.
    let (code, body) = call(
        &router,
        Method::DELETE,
        "/api/v1/namespaces/q/pods/one?gracePeriodSeconds=0",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(pods_in_q(&router).await, 0);
    assert_eq!(set_used(&router, 0).await["status"]["used"]["pods"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_recounts_never_let_pods_past_the_quota() {
    let router = started().await;
    quota_namespace(&router, 3).await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A quota controller that always counts too early: it lists the pods, then writes that
    // count, while creates are charged and stored in between.
    let recount = {
        let (router, done) = (router.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let seen = pods_in_q(&router).await;
                set_used(&router, seen).await;
            }
        })
    };
    let creates: Vec<_> = (0..24)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                let path = "/api/v1/namespaces/q/pods";
                // A create that lost every race for the quota's status tries again, as a
                // controller's would.
                loop {
                    let (code, body) =
                        call(&router, Method::POST, path, Some(pod(&format!("p{i}")))).await;
                    match code {
                        201 | 403 => break,
                        409 => continue,
                        _ => panic!("{code} {body}"),
                    }
                }
            })
        })
        .collect();
    for create in creates {
        create.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    recount.await.unwrap();
    assert_eq!(pods_in_q(&router).await, 3);
}
