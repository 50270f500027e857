//! ResourceQuota admission through the router: refusals with Kubernetes' messages, compute
//! resources a quota requires pods to state, and usage charged so that concurrent creates never
//! exceed the quota.

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const QUOTAS: &str = "/api/v1/namespaces/default/resourcequotas";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c1", "image": "app.wasm", "resources": resources}]}})
}

/// Creates quota `name` with `hard` and gives it the status the quota controller would (this
/// test runs no controller): `status.hard` from the spec, `used` zero.
async fn quota(api: &Api, name: &str, hard: Value) -> Value {
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
        "spec": {"hard": hard}});
    let (code, mut body) = api.call(Method::POST, QUOTAS, Some(q)).await;
    assert_eq!(code, 201, "{body}");
    let used: serde_json::Map<String, Value> = hard
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), json!("0")))
        .collect();
    body["status"] = json!({"hard": hard, "used": used});
    let (code, body) = api
        .call(Method::PUT, &format!("{QUOTAS}/{name}/status"), Some(body))
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn used(api: &Api, name: &str) -> Value {
    let (code, body) = api
        .call(Method::GET, &format!("{QUOTAS}/{name}"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    body["status"]["used"].clone()
}

#[tokio::test]
async fn a_pod_over_the_quota_is_refused_with_kubernetes_message() {
    let api = Api::new().await;
    quota(&api, "q", json!({"pods": "2", "count/configmaps": "1"})).await;
    for name in ["p1", "p2"] {
        let (code, body) = api
            .call(Method::POST, PODS, Some(pod(name, json!({}))))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    assert_eq!(used(&api, "q").await["pods"], "2");
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("p3", json!({}))))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
    // A dry run is checked but charges nothing.
    let cm =
        |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            Some(cm("c0")),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(used(&api, "q").await["count/configmaps"], "0");
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm("c1")),
        )
        .await;
    assert_eq!(code, 201);
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm("c2")),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "configmaps \"c2\" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
    );
    // Another namespace has no quota.
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/other/pods",
            Some(pod("p3", json!({}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn compute_quota_needs_pods_to_state_their_resources() {
    let api = Api::new().await;
    quota(
        &api,
        "compute",
        json!({"limits.cpu": "1", "requests.memory": "1Gi"}),
    )
    .await;
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("bare", json!({}))))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: c1; requests.memory for: c1"
    );
    let res = json!({"limits": {"cpu": "600m", "memory": "512Mi"}});
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("a", res.clone())))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        used(&api, "compute").await,
        json!({"limits.cpu": "600m", "requests.memory": "512Mi"})
    );
    let (code, body) = api.call(Method::POST, PODS, Some(pod("b", res))).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"b\" is forbidden: exceeded quota: compute, requested: limits.cpu=600m, used: limits.cpu=600m, limited: limits.cpu=1"
    );
}

#[tokio::test]
async fn a_quota_the_controller_has_not_counted_refuses_nothing_yet_and_unknown_usage_refuses() {
    let api = Api::new().await;
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "fresh"},
        "spec": {"hard": {"pods": "0"}}});
    let (code, body) = api.call(Method::POST, QUOTAS, Some(q)).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("p1", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    let (_, mut quota) = api
        .call(Method::GET, &format!("{QUOTAS}/fresh"), None)
        .await;
    quota["status"] = json!({"hard": {"pods": "0"}});
    let (code, body) = api
        .call(Method::PUT, &format!("{QUOTAS}/fresh/status"), Some(quota))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("p2", json!({}))))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"p2\" is forbidden: status unknown for quota: fresh, resources: pods"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_quota() {
    let api = Api::new().await;
    quota(&api, "q", json!({"pods": "5"})).await;
    // Creates on several threads at once, so that admissions interleave.
    let creates: Vec<_> = (0..64)
        .map(|i| {
            let router = api.router.clone();
            tokio::spawn(async move {
                let req = axum::http::Request::post(PODS)
                    .header("Authorization", format!("Bearer {}", super::TOKEN))
                    .header("Content-Type", "application/json")
                    .body(axum::body::Body::from(
                        pod(&format!("p{i}"), json!({})).to_string(),
                    ))
                    .unwrap();
                tower::ServiceExt::oneshot(router, req)
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for c in creates {
        codes.push(c.await.unwrap());
    }
    let created = codes.iter().filter(|c| **c == 201).count();
    let refused = codes.iter().filter(|c| **c == 403).count();
    assert_eq!((created, refused), (5, 59), "{codes:?}");
    assert_eq!(used(&api, "q").await["pods"], "5");
    let (_, list) = api.call(Method::GET, PODS, None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn an_update_that_adds_node_ports_is_charged() {
    let api = Api::new().await;
    quota(
        &api,
        "q",
        json!({"services.nodeports": "1", "services": "5"}),
    )
    .await;
    const SVCS: &str = "/api/v1/namespaces/default/services";
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}});
    let (code, body) = api.call(Method::POST, SVCS, Some(svc)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        used(&api, "q").await,
        json!({"services": "1", "services.nodeports": "0"})
    );
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{SVCS}/web"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"type": "NodePort"}})),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "services \"web\" is forbidden: exceeded quota: q, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
    );
}

#[tokio::test]
async fn a_priority_class_scope_limits_only_the_pods_of_that_class() {
    let api = Api::new().await;
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "high"}, "value": 100});
    let (code, body) = api
        .call(
            Method::POST,
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            Some(pc),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "high-pods"},
        "spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
    let (code, mut body) = api.call(Method::POST, QUOTAS, Some(q)).await;
    assert_eq!(code, 201, "{body}");
    body["status"] = json!({"hard": {"pods": "1"}, "used": {"pods": "0"}});
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{QUOTAS}/high-pods/status"),
            Some(body),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let high = |name: &str| {
        let mut p = pod(name, json!({}));
        p["spec"]["priorityClassName"] = json!("high");
        p
    };
    let (code, body) = api.call(Method::POST, PODS, Some(high("h1"))).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api.call(Method::POST, PODS, Some(high("h2"))).await;
    assert_eq!(code, 403, "{body}");
    for name in ["plain1", "plain2"] {
        let (code, body) = api
            .call(Method::POST, PODS, Some(pod(name, json!({}))))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    assert_eq!(used(&api, "high-pods").await, json!({"pods": "1"}));
}
