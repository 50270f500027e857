//! The system PriorityClasses as bootstrap writes them, and what priority admission keeps them
//! from: deletion (directly or through a finalizer's mark) and change.

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
