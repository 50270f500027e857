//! `metrics.k8s.io/v1beta1` and `nodes/NAME/proxy` through the router, against fake nodes: small
//! axum servers on loopback answering a canned kubelet `/stats/summary` to the API server's own
//! credential. Discovery, lists with selectors and across namespaces, get, the NotFound of a pod
//! without metrics, watch refused, a dead node skipped, RBAC (view aggregates the metrics reader;
//! nothing without a binding), tables, and the node proxy's methods and paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::{AppState, UserInfo, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

/// The first token: the one a test state presents to nodes.
const ADMIN: &str = "admin-token";

struct Cluster {
    router: axum::Router,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

/// A fake node: answers `/stats/summary` with `summary` to the admin token only, echoes other
/// paths (method, path and query), and counts the summaries it served.
struct FakeNode {
    port: u16,
    served: Arc<AtomicUsize>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {ADMIN}"))
}

async fn fake_node(summary: Value) -> FakeNode {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let router = axum::Router::new()
        .route(
            "/stats/summary",
            axum::routing::get(move |headers: HeaderMap| {
                let summary = summary.clone();
                let count = count.clone();
                async move {
                    if !authorized(&headers) {
                        return (axum::http::StatusCode::UNAUTHORIZED, "no").into_response();
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    axum::Json(summary).into_response()
                }
            }),
        )
        .fallback(move |request: Request<Body>| async move {
            let authorized = authorized(request.headers());
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            axum::Json(json!({
                "method": method,
                "uri": uri,
                "authorized": authorized,
                "body": String::from_utf8_lossy(&body),
            }))
            .into_response()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    FakeNode { port, served }
}

use axum::response::IntoResponse;

const T: &str = "2026-12-06T10:00:00Z";

fn container(name: &str, nanocores: Option<u64>, working_set: u64) -> Value {
    let mut cpu = json!({"time": T, "usageCoreNanoSeconds": 123_000_000_000u64});
    if let Some(n) = nanocores {
        cpu["usageNanoCores"] = json!(n);
    }
    json!({"name": name, "cpu": cpu, "memory": {"time": T, "workingSetBytes": working_set}})
}

fn pod_stats(ns: &str, name: &str, containers: Vec<Value>) -> Value {
    json!({"podRef": {"name": name, "namespace": ns, "uid": ""}, "containers": containers})
}

fn summary(node: &str, nanocores: u64, memory: u64, pods: Vec<Value>) -> Value {
    json!({
        "node": {"nodeName": node,
                 "cpu": {"time": T, "usageNanoCores": nanocores},
                 "memory": {"time": T, "workingSetBytes": memory}},
        "pods": pods,
    })
}

impl Cluster {
    async fn new() -> Cluster {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tokens = vec![
            (ADMIN.to_string(), UserInfo::admin("admin")),
            ("alice".to_string(), UserInfo::new("alice", &[])),
            ("bob".to_string(), UserInfo::new("bob", &[])),
        ];
        let state = AppState::new(store, tokens).with_shutdown(rx).with_rbac();
        state
            .reconcile_default_policy()
            .await
            .expect("the default policy is written");
        let c = Cluster {
            router: app(Arc::new(state)),
            _shutdown: tx,
        };
        for ns in ["team-a", "team-b"] {
            c.ok(
                Method::POST,
                "/api/v1/namespaces",
                json!({"metadata": {"name": ns}}),
            )
            .await;
        }
        c
    }

    async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        accept: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .header("Accept", accept)
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        self.call_as(
            token,
            Method::GET,
            path,
            "application/json",
            "application/json",
            None,
        )
        .await
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, out) = self
            .call_as(ADMIN, method, path, "application/json", ct, Some(body))
            .await;
        assert!((200..300).contains(&code), "{code} {out}");
        out
    }

    /// A Node whose endpoint is `127.0.0.1:port`.
    async fn node(&self, name: &str, port: u16, labels: Value) {
        self.ok(
            Method::POST,
            "/api/v1/nodes",
            json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await;
        self.ok(
            Method::PATCH,
            &format!("/api/v1/nodes/{name}/status"),
            json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }}),
        )
        .await;
    }

    async fn pod(&self, ns: &str, name: &str, node: &str, labels: Value, containers: &[&str]) {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "example/app:1"}))
            .collect();
        self.ok(
            Method::POST,
            &format!("/api/v1/namespaces/{ns}/pods"),
            json!({"metadata": {"name": name, "labels": labels},
                   "spec": {"nodeName": node, "containers": containers}}),
        )
        .await;
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// Two nodes with pods: n1 runs team-a/web-1 (two containers), team-a/db and team-b/web-2;
/// n2 runs team-b/api; team-a/fresh has no CPU rate yet; team-a/lost is on a node that is down.
async fn cluster() -> (Cluster, FakeNode, FakeNode) {
    let n1 = fake_node(summary(
        "n1",
        1_500_000_000,
        4 << 30,
        vec![
            pod_stats(
                "team-a",
                "web-1",
                vec![
                    container("app", Some(250_000_000), 64 << 20),
                    container("sidecar", Some(1_234_567), 1536 * 1024),
                ],
            ),
            pod_stats("team-a", "db", vec![container("db", Some(0), 1000)]),
            pod_stats("team-b", "web-2", vec![container("app", Some(5), 2 << 20)]),
            pod_stats("team-a", "fresh", vec![container("app", None, 4096)]),
        ],
    ))
    .await;
    let n2 = fake_node(summary(
        "n2",
        10_000_000,
        1 << 30,
        vec![pod_stats(
            "team-b",
            "api",
            vec![container("api", Some(42_000_000), 8 << 20)],
        )],
    ))
    .await;
    let c = Cluster::new().await;
    c.node("n1", n1.port, json!({"zone": "a"})).await;
    c.node("n2", n2.port, json!({"zone": "b"})).await;
    // A node whose endpoint refuses connections: a port just freed.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    c.node("n3", dead_port, json!({"zone": "c"})).await;
    c.pod(
        "team-a",
        "web-1",
        "n1",
        json!({"app": "web"}),
        &["app", "sidecar"],
    )
    .await;
    c.pod("team-a", "db", "n1", json!({"app": "db"}), &["db"])
        .await;
    c.pod("team-b", "web-2", "n1", json!({"app": "web"}), &["app"])
        .await;
    c.pod("team-a", "fresh", "n1", json!({"app": "web"}), &["app"])
        .await;
    c.pod("team-b", "api", "n2", json!({"app": "api"}), &["api"])
        .await;
    c.pod("team-a", "lost", "n3", json!({"app": "web"}), &["app"])
        .await;
    (c, n1, n2)
}

const M: &str = "/apis/metrics.k8s.io/v1beta1";

#[tokio::test]
async fn discovery_lists_the_metrics_group_in_both_formats() {
    let c = Cluster::new().await;
    let (code, groups) = c.get_as(ADMIN, "/apis").await;
    assert_eq!(code, 200);
    let metrics = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io in /apis");
    assert_eq!(
        metrics["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let (code, list) = c.get_as(ADMIN, M).await;
    assert_eq!(code, 200, "{list}");
    let resources = list["resources"].as_array().unwrap();
    let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["kind"], "PodMetrics");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["verbs"], json!(["get", "list"]));
    let nodes = resources.iter().find(|r| r["name"] == "nodes").unwrap();
    assert_eq!(
        (nodes["kind"].as_str(), nodes["namespaced"].as_bool()),
        (Some("NodeMetrics"), Some(false))
    );
    for v in ["v2", "v2beta1"] {
        let (code, agg) = c
            .call_as(
                ADMIN,
                Method::GET,
                "/apis",
                &format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"),
                "application/json",
                None,
            )
            .await;
        assert_eq!(code, 200);
        let group = agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "metrics.k8s.io")
            .unwrap_or_else(|| panic!("metrics.k8s.io in aggregated {v}"));
        let kinds: Vec<&str> = group["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["responseKind"]["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["NodeMetrics", "PodMetrics"]);
    }
}

#[tokio::test]
async fn pod_metrics_list_get_select_and_not_found() {
    let (c, n1, _n2) = cluster().await;
    let (code, list) = c
        .get_as(ADMIN, &format!("{M}/namespaces/team-a/pods"))
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    // fresh has no CPU rate yet, lost's node is down: both left out.
    assert_eq!(names(&list), ["team-a/db", "team-a/web-1"]);
    let web = &list["items"][1];
    assert_eq!(web["kind"], "PodMetrics");
    assert_eq!(web["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(web["timestamp"], T);
    assert!(web["window"].as_str().is_some_and(|w| w.ends_with('s')));
    assert_eq!(
        web["containers"],
        json!([
            {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "sidecar", "usage": {"cpu": "1234567n", "memory": "1536Ki"}},
        ])
    );
    // The wire type the HPA controller reads decodes it.
    let typed: skiff_meta::stats::PodMetrics = serde_json::from_value(web.clone()).unwrap();
    assert_eq!(typed.containers.len(), 2);
    assert_eq!(list["items"][0]["containers"][0]["usage"]["memory"], "1000");

    let (_, list) = c
        .get_as(ADMIN, &format!("{M}/pods?labelSelector=app%3Dweb"))
        .await;
    assert_eq!(names(&list), ["team-a/web-1", "team-b/web-2"]);
    let (_, list) = c.get_as(ADMIN, &format!("{M}/pods")).await;
    assert_eq!(
        names(&list),
        ["team-a/db", "team-a/web-1", "team-b/api", "team-b/web-2"]
    );
    let (_, list) = c
        .get_as(
            ADMIN,
            &format!("{M}/pods?labelSelector=app%20in%20(api,db)"),
        )
        .await;
    assert_eq!(names(&list), ["team-a/db", "team-b/api"]);
    let (_, list) = c
        .get_as(
            ADMIN,
            &format!("{M}/namespaces/team-b/pods?fieldSelector=metadata.name%3Dapi"),
        )
        .await;
    assert_eq!(names(&list), ["team-b/api"]);
    assert!(n1.served.load(Ordering::SeqCst) >= 1);

    let (code, one) = c
        .get_as(ADMIN, &format!("{M}/namespaces/team-b/pods/api"))
        .await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["kind"], "PodMetrics");
    assert_eq!(one["metadata"]["namespace"], "team-b");
    assert_eq!(
        one["containers"],
        json!([{"name": "api", "usage": {"cpu": "42m", "memory": "8Mi"}}])
    );

    for pod in ["fresh", "lost"] {
        let (code, status) = c
            .get_as(ADMIN, &format!("{M}/namespaces/team-a/pods/{pod}"))
            .await;
        assert_eq!(code, 404, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(
            status["message"],
            format!("podmetrics.metrics.k8s.io \"team-a/{pod}\" not found")
        );
        assert_eq!(status["details"]["group"], "metrics.k8s.io");
    }
    let (code, status) = c
        .get_as(ADMIN, &format!("{M}/namespaces/team-a/pods/nope"))
        .await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));

    let (code, status) = c
        .get_as(ADMIN, &format!("{M}/namespaces/team-a/pods?watch=true"))
        .await;
    assert_eq!(code, 405, "{status}");
    assert_eq!(status["reason"], "MethodNotAllowed");
    let (code, _) = c
        .call_as(
            ADMIN,
            Method::DELETE,
            &format!("{M}/namespaces/team-a/pods/db"),
            "application/json",
            "application/json",
            None,
        )
        .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn node_metrics_list_and_get() {
    let (c, _n1, _n2) = cluster().await;
    let (code, list) = c.get_as(ADMIN, &format!("{M}/nodes")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "NodeMetricsList");
    // n3 does not answer: skipped.
    assert_eq!(names(&list), ["/n1", "/n2"]);
    assert_eq!(
        list["items"][0]["usage"],
        json!({"cpu": "1500m", "memory": "4Gi"})
    );
    let typed: skiff_meta::stats::NodeMetrics =
        serde_json::from_value(list["items"][1].clone()).unwrap();
    assert_eq!(typed.metadata.name.as_deref(), Some("n2"));
    let (_, list) = c
        .get_as(ADMIN, &format!("{M}/nodes?labelSelector=zone%3Db"))
        .await;
    assert_eq!(names(&list), ["/n2"]);
    let (code, one) = c.get_as(ADMIN, &format!("{M}/nodes/n2")).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["usage"]["cpu"], "10m");
    assert_eq!(one["metadata"]["labels"]["zone"], "b");
    let (code, status) = c.get_as(ADMIN, &format!("{M}/nodes/n3")).await;
    assert_eq!(code, 404);
    assert_eq!(
        status["message"],
        "nodemetrics.metrics.k8s.io \"n3\" not found"
    );
}

#[tokio::test]
async fn metrics_tables_print_cpu_memory_and_window() {
    let (c, _n1, _n2) = cluster().await;
    let (code, table) = c
        .call_as(
            ADMIN,
            Method::GET,
            &format!("{M}/namespaces/team-a/pods"),
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            "application/json",
            None,
        )
        .await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "CPU", "Memory", "Window"]);
    let web = &table["rows"][1];
    // 250m + 1234567n, 64Mi + 1536Ki.
    assert_eq!(web["cells"][0], "web-1");
    assert_eq!(web["cells"][1], "251234567n");
    assert_eq!(web["cells"][2], "67072Ki");
    assert_eq!(web["object"]["metadata"]["namespace"], "team-a");
}

#[tokio::test]
async fn metrics_follow_rbac_and_view_aggregates_the_reader() {
    let (c, _n1, _n2) = cluster().await;
    let path = format!("{M}/namespaces/team-a/pods");
    let (code, status) = c.get_as("alice", &path).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "pods.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"team-a\""
    );
    let (code, _) = c.get_as("alice", &format!("{M}/nodes")).await;
    assert_eq!(code, 403);
    let (code, reader) = c
        .get_as(
            ADMIN,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregated-metrics-reader",
        )
        .await;
    assert_eq!(code, 200, "{reader}");
    assert_eq!(
        reader["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    c.ok(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
        json!({"metadata": {"name": "alice-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    )
    .await;
    let (code, list) = c.get_as("alice", &path).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(names(&list), ["team-a/db", "team-a/web-1"]);
    let (code, _) = c.get_as("alice", &format!("{path}/db")).await;
    assert_eq!(code, 200);
    let (code, _) = c
        .get_as("alice", &format!("{M}/namespaces/team-b/pods"))
        .await;
    assert_eq!(code, 403);
    let (code, _) = c.get_as("alice", &format!("{M}/nodes")).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn node_proxy_forwards_every_method_with_the_servers_credential() {
    let (c, n1, _n2) = cluster().await;
    let (code, summary) = c
        .get_as(ADMIN, "/api/v1/nodes/n1/proxy/stats/summary")
        .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["node"]["nodeName"], "n1");
    assert!(n1.served.load(Ordering::SeqCst) >= 1);
    let (code, echo) = c
        .get_as(ADMIN, "/api/v1/nodes/n1/proxy/metrics/resource?a=1&b=two")
        .await;
    assert_eq!(code, 200, "{echo}");
    assert_eq!(echo["uri"], "/metrics/resource?a=1&b=two");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["authorized"], true);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (code, echo) = c
            .call_as(
                ADMIN,
                method.clone(),
                "/api/v1/nodes/n1/proxy/some/path",
                "application/json",
                "application/json",
                Some(json!({"x": 1})),
            )
            .await;
        assert_eq!(code, 200, "{method} {echo}");
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["uri"], "/some/path");
        if method != Method::DELETE {
            assert_eq!(echo["body"], "{\"x\":1}");
        }
    }
    // NAME:PORT goes to that port at the node's address.
    let (code, echo) = c
        .get_as(ADMIN, &format!("/api/v1/nodes/n2:{}/proxy/x", n1.port))
        .await;
    assert_eq!((code, echo["uri"].as_str()), (200, Some("/x")));
    let (code, status) = c.get_as(ADMIN, "/api/v1/nodes/nope/proxy/x").await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    // A user without nodes/proxy is refused before anything reaches the node.
    let (code, status) = c
        .get_as("alice", "/api/v1/nodes/n1/proxy/stats/summary")
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "nodes \"n1\" is forbidden: User \"alice\" cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope"
    );
    c.ok(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"metadata": {"name": "bob-kubelet-api"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
    )
    .await;
    let (code, summary) = c
        .get_as("bob", "/api/v1/nodes/n1/proxy/stats/summary")
        .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["pods"].as_array().map(Vec::len), Some(4));
}
