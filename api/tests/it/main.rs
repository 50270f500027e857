//! The HTTP API as a router, driven with `oneshot` over an in-memory store: verbs, lifecycle,
//! watch, selectors and the `Status` errors, without sockets or TLS.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::{AppState, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

mod audit;
mod authn;
mod bootstraptoken;
mod certificates;
mod crd;
mod encryption;
mod exec;
mod fairness;
mod limitranger;
mod lists;
mod metrics_api;
mod namespace_lifecycle;
mod nodeauthz;
mod openapi;
mod podsecurity;
mod priority;
mod prometheus;
mod quota;
mod rbac;
mod reviews;
mod serviceaccount;
mod services;
mod storage;

const TOKEN: &str = "test-token";

struct Api {
    router: axum::Router,
    store: Arc<dyn Store>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Api {
    async fn new() -> Api {
        Api::with_authorizer(Arc::new(skiff_api::AllowAuthenticated)).await
    }

    async fn with_authorizer(authorizer: Arc<dyn skiff_api::Authorizer>) -> Api {
        Api::with(authorizer, skiff_api::NetworkConfig::default()).await
    }

    async fn with(
        authorizer: Arc<dyn skiff_api::Authorizer>,
        network: skiff_api::NetworkConfig,
    ) -> Api {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(
            AppState::new(
                store.clone(),
                vec![(TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
            )
            .with_shutdown(rx)
            .with_authorizer(authorizer)
            .with_network(network),
        );
        let api = Api {
            router: app(state),
            store,
            _shutdown: tx,
        };
        for ns in ["default", "other"] {
            let (code, body) = api
                .call(
                    Method::POST,
                    "/api/v1/namespaces",
                    Some(json!({"metadata": {"name": ns}})),
                )
                .await;
            assert_eq!(code, 201, "{body}");
        }
        api
    }

    async fn request(&self, req: Request<Body>) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers")
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        ct: &str,
        accept: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", ct)
            .header("Accept", accept)
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.request(req).await;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, "application/json", "application/json", body)
            .await
    }

    /// Opens a watch and returns its event stream, one JSON value per line.
    async fn watch(&self, path: &str) -> impl futures::Stream<Item = Value> + use<> {
        let resp = self.request(get(path)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut buf = Vec::<u8>::new();
        resp.into_body().into_data_stream().flat_map(move |chunk| {
            buf.extend_from_slice(&chunk.unwrap_or_default());
            let mut out = Vec::new();
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                out.push(serde_json::from_slice::<Value>(&line).expect("each line is JSON"));
            }
            futures::stream::iter(out)
        })
    }
}

/// An authenticated GET of `path`.
fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": name}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "example/app:1"}]}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn create_get_list_with_selectors_and_pages() {
    let api = Api::new().await;
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front"), ("d", "db")] {
        let (code, body) = api
            .call(Method::POST, CMS, Some(cm(name, json!({"tier": tier}))))
            .await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["metadata"]["namespace"], "default");
        assert!(body["metadata"]["uid"].as_str().is_some());
    }
    let (code, body) = api.call(Method::GET, &format!("{CMS}/b"), None).await;
    assert_eq!((code, body["data"]["k"].as_str()), (200, Some("b")));

    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, body) = api
        .call(
            Method::GET,
            &format!("{CMS}?labelSelector=tier%3Dfront"),
            None,
        )
        .await;
    assert_eq!(names(&body), ["a", "c"]);
    let (_, body) = api
        .call(
            Method::GET,
            &format!("{CMS}?labelSelector=tier%20notin%20(front)"),
            None,
        )
        .await;
    assert_eq!(names(&body), ["b", "d"]);
    let (_, body) = api
        .call(
            Method::GET,
            &format!("{CMS}?fieldSelector=metadata.name%3Dd"),
            None,
        )
        .await;
    assert_eq!(names(&body), ["d"]);
    let (_, body) = api
        .call(
            Method::GET,
            &format!("{CMS}?fieldSelector=metadata.name!%3Dd"),
            None,
        )
        .await;
    assert_eq!(names(&body), ["a", "b", "c"]);

    // Pages of two, continuing at the first page's revision.
    let (_, first) = api.call(Method::GET, &format!("{CMS}?limit=2"), None).await;
    assert_eq!(names(&first), ["a", "b"]);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    api.call(Method::POST, CMS, Some(cm("bb", json!({})))).await;
    let (_, second) = api
        .call(
            Method::GET,
            &format!("{CMS}?limit=2&continue={token}"),
            None,
        )
        .await;
    assert_eq!(
        names(&second),
        ["c", "d"],
        "the second page is read at the first page's revision"
    );
    assert!(second["metadata"].get("continue").is_none(), "{second}");
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );

    // All namespaces.
    api.call(
        Method::POST,
        "/api/v1/namespaces/other/configmaps",
        Some(cm("z", json!({}))),
    )
    .await;
    let (_, all) = api.call(Method::GET, "/api/v1/configmaps", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    let (code, bad) = api
        .call(Method::GET, &format!("{CMS}?continue=garbage"), None)
        .await;
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test]
async fn tables_carry_rows_with_metadata() {
    let api = Api::new().await;
    api.call(
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p1")),
    )
    .await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (code, table) = api
        .call_with(
            Method::GET,
            "/api/v1/pods",
            "application/json",
            accept,
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &columns[..5],
        ["Name", "Ready", "Status", "Restarts", "Age"]
    );
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "p1");
    assert_eq!(row["cells"][2], "Pending");
    assert_eq!(row["object"]["metadata"]["namespace"], "default");
}

#[tokio::test]
async fn update_conflicts_and_generation() {
    let api = Api::new().await;
    let (_, created) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(pod("p")),
        )
        .await;
    assert_eq!(created["metadata"]["generation"], 1);
    let mut changed = created.clone();
    changed["spec"]["containers"][0]["image"] = json!("example/app:2");
    let (code, updated) = api
        .call(
            Method::PUT,
            "/api/v1/namespaces/default/pods/p",
            Some(changed.clone()),
        )
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    // The same body again carries a stale resourceVersion.
    let (code, err) = api
        .call(
            Method::PUT,
            "/api/v1/namespaces/default/pods/p",
            Some(changed),
        )
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (409, Some("Conflict")),
        "{err}"
    );
    // A label change does not bump generation; status writes to the main resource are ignored.
    let (_, labelled) = api
        .call_with(
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p",
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Running"}})),
        )
        .await;
    assert_eq!(labelled["metadata"]["generation"], 2);
    assert_eq!(labelled["status"]["phase"], "Pending");
    let (code, status) = api
        .call_with(
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p/status",
            "application/merge-patch+json",
            "application/json",
            Some(json!({"status": {"phase": "Running"}})),
        )
        .await;
    assert_eq!(
        (code, status["status"]["phase"].as_str()),
        (200, Some("Running")),
        "{status}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let api = Api::new().await;
    let mut body = cm("held", json!({}));
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.call(Method::POST, CMS, Some(body)).await;
    let (code, marked) = api.call(Method::DELETE, &format!("{CMS}/held"), None).await;
    assert_eq!(code, 200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let (code, _) = api.call(Method::GET, &format!("{CMS}/held"), None).await;
    assert_eq!(code, 200, "still there while the finalizer is");
    let (code, _) = api
        .call_with(
            Method::PATCH,
            &format!("{CMS}/held"),
            "application/json-patch+json",
            "application/json",
            Some(json!([{"op": "remove", "path": "/metadata/finalizers"}])),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.call(Method::GET, &format!("{CMS}/held"), None).await;
    assert_eq!(
        code, 404,
        "removing the last finalizer completes the delete"
    );
}

#[tokio::test]
async fn terminating_namespace_refuses_new_content() {
    let api = Api::new().await;
    let (code, ns) = api
        .call(Method::DELETE, "/api/v1/namespaces/other", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/other/configmaps",
            Some(cm("x", json!({}))),
        )
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (403, Some("Forbidden")),
        "{err}"
    );
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/missing/configmaps",
            Some(cm("x", json!({}))),
        )
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (404, Some("NotFound")),
        "{err}"
    );
}

#[tokio::test]
async fn binding_assigns_once_and_eviction_honours_budgets() {
    let api = Api::new().await;
    api.call(
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods/p/binding",
            Some(binding.clone()),
        )
        .await;
    assert_eq!(code, 201);
    let (_, bound) = api
        .call(Method::GET, "/api/v1/namespaces/default/pods/p", None)
        .await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods/p/binding",
            Some(binding),
        )
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (409, Some("Conflict")),
        "{err}"
    );

    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    let (code, created) = api
        .call(
            Method::POST,
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            Some(pdb),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}});
    let (code, err) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods/p/eviction",
            Some(eviction.clone()),
        )
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (429, Some("TooManyRequests")),
        "{err}"
    );
    // Once the budget's controller allows a disruption, the eviction goes through (gracefully:
    // the pod is on a node).
    api.call_with(Method::PATCH, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/b/status", "application/merge-patch+json", "application/json",
        Some(json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))).await;
    let (code, ok) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods/p/eviction",
            Some(eviction),
        )
        .await;
    assert_eq!(code, 201, "{ok}");
    let (_, evicted) = api
        .call(Method::GET, "/api/v1/namespaces/default/pods/p", None)
        .await;
    assert!(
        evicted["metadata"]["deletionTimestamp"].is_string(),
        "{evicted}"
    );
    let (_, budget) = api
        .call(
            Method::GET,
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/b",
            None,
        )
        .await;
    assert_eq!(budget["status"]["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn watch_sends_initial_events_then_changes() {
    let api = Api::new().await;
    api.call(Method::POST, CMS, Some(cm("old", json!({"w": "1"}))))
        .await;
    let mut events = Box::pin(
        api.watch(&format!("{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=w%3D1"))
            .await,
    );
    let first = events.next().await.unwrap();
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("old"))
    );
    let bookmark = events.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    api.call(Method::POST, CMS, Some(cm("new", json!({"w": "1"}))))
        .await;
    api.call(Method::POST, CMS, Some(cm("unwatched", json!({"w": "2"}))))
        .await;
    // Stops matching the selector: the watcher sees it leave.
    api.call_with(
        Method::PATCH,
        &format!("{CMS}/old"),
        "application/merge-patch+json",
        "application/json",
        Some(json!({"metadata": {"labels": {"w": "2"}}})),
    )
    .await;
    api.call(Method::DELETE, &format!("{CMS}/new"), None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = events.next().await.unwrap();
        seen.push(format!(
            "{} {}",
            e["type"].as_str().unwrap(),
            e["object"]["metadata"]["name"].as_str().unwrap()
        ));
    }
    assert_eq!(seen, ["ADDED new", "DELETED old", "DELETED new"]);
}

/// An idle watch's bookmark carries the revision the server has read up to, past writes to
/// other resources, as kube-apiserver's do: its client resumes from there rather than from its
/// last event, which the history may have dropped meanwhile (a 410 and a full re-list).
#[tokio::test(start_paused = true)]
async fn an_idle_watchs_bookmark_follows_writes_elsewhere() {
    let api = Api::new().await;
    api.call(Method::POST, CMS, Some(cm("seen", json!({}))))
        .await;
    let from = api.store.current_revision().await.unwrap();
    let mut events = Box::pin(
        api.watch(&format!(
            "{CMS}?watch=true&allowWatchBookmarks=true&resourceVersion={from}"
        ))
        .await,
    );
    for i in 0..3 {
        let (code, body) = api
            .call(
                Method::POST,
                "/api/v1/namespaces/default/pods",
                Some(pod(&format!("p{i}"))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let last = api.store.current_revision().await.unwrap();
    assert!(last > from);
    // The paused clock runs to the bookmark interval once everything else is idle.
    let bookmark = events.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    let at: u64 = bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(at, last, "{bookmark}");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_gets_410() {
    let api = Api::new().await;
    for i in 0..5 {
        api.call(Method::POST, CMS, Some(cm(&format!("c{i}"), json!({}))))
            .await;
    }
    let current = api.store.current_revision().await.unwrap();
    api.store.compact(current - 1).await.unwrap();
    let mut events = Box::pin(
        api.watch(&format!("{CMS}?watch=true&resourceVersion=2"))
            .await,
    );
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
}

#[tokio::test]
async fn authentication_and_discovery() {
    let api = Api::new().await;
    let resp = api
        .request(Request::get("/api/v1/pods").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = api
        .request(Request::get("/version").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "version is public");

    let (code, groups) = api.call(Method::GET, "/apis", None).await;
    assert_eq!((code, groups["kind"].as_str()), (200, Some("APIGroupList")));
    let v2 =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (_, agg) = api
        .call_with(Method::GET, "/apis", "application/json", v2, None)
        .await;
    assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    let v3 =
        "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json";
    let (_, plain) = api
        .call_with(Method::GET, "/apis", "application/json", v3, None)
        .await;
    assert_eq!(
        plain["kind"], "APIGroupList",
        "unknown discovery versions get the per-group form"
    );
    let (code, err) = api.call(Method::GET, "/apis/apps/v1/widgets", None).await;
    assert_eq!((code, err["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn log_and_proxy_are_forwarded_to_the_pods_node() {
    use axum::routing::{any, get};
    // A stand-in node endpoint that checks the token and echoes what it was asked.
    let node = axum::Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(
                |axum::extract::Path((ns, pod, c)): axum::extract::Path<(
                    String,
                    String,
                    String,
                )>,
                 headers: axum::http::HeaderMap,
                 q: axum::extract::RawQuery| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    format!(
                        "log {ns}/{pod}/{c} q={} auth={}\n",
                        q.0.unwrap_or_default(),
                        auth == format!("Bearer {TOKEN}")
                    )
                },
            ),
        )
        .route(
            "/proxy/{ns}/{pod}/{port}/{*rest}",
            any(
                |axum::extract::Path((ns, pod, port, rest)): axum::extract::Path<(
                    String,
                    String,
                    String,
                    String,
                )>,
                 method: Method| async move {
                    format!("{method} {ns}/{pod}:{port}/{rest}")
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, node).await });

    let api = Api::new().await;
    let node_obj = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let (code, body) = api
        .call(Method::POST, "/api/v1/nodes", Some(node_obj))
        .await;
    assert_eq!(code, 201, "{body}");
    api.call_with(Method::PATCH, "/api/v1/nodes/n1/status", "application/merge-patch+json", "application/json",
        Some(json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))).await;
    let mut p = pod("p");
    p["spec"]["nodeName"] = json!("n1");
    api.call(Method::POST, "/api/v1/namespaces/default/pods", Some(p))
        .await;

    let text = |resp: axum::response::Response| async move {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    let req = |path: &str| {
        Request::get(path)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (code, body) = text(
        api.request(req(
            "/api/v1/namespaces/default/pods/p/log?tailLines=5&follow=true",
        ))
        .await,
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "log default/p/c q=follow=true&tailLines=5 auth=true\n")
    );
    let (code, body) = text(
        api.request(req(
            "/api/v1/namespaces/default/pods/p:8080/proxy/hello/world",
        ))
        .await,
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "GET default/p:8080/hello/world")
    );
    let (code, _) = text(
        api.request(req("/api/v1/namespaces/default/pods/p/log?container=nope"))
            .await,
    )
    .await;
    assert_eq!(code, 400);
    server.abort();
}

#[tokio::test]
async fn strict_field_validation_reports_duplicate_and_unknown_fields() {
    let api = Api::new().await;
    let send = |query: &'static str, body: &'static str| {
        let req = Request::post(format!("{CMS}{query}"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let api = &api;
        async move {
            let resp = api.request(req).await;
            let code = resp.status().as_u16();
            let warnings: Vec<String> = resp
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                code,
                serde_json::from_slice::<Value>(&bytes).unwrap(),
                warnings,
            )
        }
    };
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"a":"1","a":"2"}}"#;
    let (code, body, _) = send("?fieldValidation=Strict", dup).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field \"data.a\""),
        "{body}"
    );
    let unknown = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"bogus":1}"#;
    let (code, body, _) = send("?fieldValidation=Strict", unknown).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"bogus\""),
        "{body}"
    );
    let (code, _, warnings) = send("?fieldValidation=Warn", unknown).await;
    assert_eq!(code, 201);
    assert!(
        warnings.iter().any(|w| w.contains("unknown field")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn generate_name_dry_run_and_delete_collection() {
    let api = Api::new().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-", "labels": {"batch": "1"}}});
    let (code, created) = api.call(Method::POST, CMS, Some(body.clone())).await;
    assert_eq!(code, 201);
    let name = created["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let (code, dry) = api
        .call(
            Method::POST,
            &format!("{CMS}?dryRun=All"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(code, 201);
    let dry_name = dry["metadata"]["name"].as_str().unwrap().to_string();
    let (code, _) = api
        .call(Method::GET, &format!("{CMS}/{dry_name}"), None)
        .await;
    assert_eq!(code, 404, "a dry run stores nothing");
    api.call(Method::POST, CMS, Some(body)).await;
    api.call(Method::POST, CMS, Some(cm("keep", json!({"batch": "2"}))))
        .await;

    let (code, deleted) = api
        .call(
            Method::DELETE,
            &format!("{CMS}?labelSelector=batch%3D1"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2, "{deleted}");
    let (_, left) = api.call(Method::GET, CMS, None).await;
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
}

#[tokio::test]
async fn terminating_namespace_waits_for_its_spec_finalizers() {
    let api = Api::new().await;
    api.call(Method::DELETE, "/api/v1/namespaces/other", None)
        .await;
    // A label change while terminating must not complete the delete.
    let (code, _) = api
        .call_with(
            Method::PATCH,
            "/api/v1/namespaces/other",
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, ns) = api
        .call(Method::GET, "/api/v1/namespaces/other", None)
        .await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    // Finalizing (emptying spec.finalizers) removes it.
    let mut finalized = ns.clone();
    finalized["spec"]["finalizers"] = json!([]);
    let (code, body) = api
        .call(
            Method::PUT,
            "/api/v1/namespaces/other/finalize",
            Some(finalized),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = api
        .call(Method::GET, "/api/v1/namespaces/other", None)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn concurrent_server_side_applies_of_a_new_object_both_succeed() {
    let api = Api::new().await;
    let path = format!("{CMS}/raced?fieldManager=m&force=true");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raced"}, "data": {"k": "v"}});
    let results = futures::future::join_all((0..8).map(|_| {
        api.call_with(
            Method::PATCH,
            &path,
            "application/apply-patch+yaml",
            "application/json",
            Some(body.clone()),
        )
    }))
    .await;
    for (code, body) in results {
        assert!(code == 200 || code == 201, "{code}: {body}");
    }
}

#[tokio::test]
async fn a_pod_in_its_grace_period_outlives_status_writes_and_finalizers() {
    const PODS: &str = "/api/v1/namespaces/default/pods";
    let api = Api::new().await;
    let mut body = pod("graceful");
    body["spec"]["nodeName"] = json!("node-a");
    body["spec"]["terminationGracePeriodSeconds"] = json!(15);
    let (code, _) = api.call(Method::POST, PODS, Some(body)).await;
    assert_eq!(code, 201);
    let (code, marked) = api
        .call(Method::DELETE, &format!("{PODS}/graceful"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 15);
    // The node reports the terminating pod's status: the pod stays until the node deletes it.
    let (code, _) = api
        .call_with(
            Method::PATCH,
            &format!("{PODS}/graceful/status"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api
        .call(Method::GET, &format!("{PODS}/graceful"), None)
        .await;
    assert_eq!(
        code, 200,
        "a status write does not cut the grace period short"
    );
    let (code, _) = api
        .call_with(
            Method::DELETE,
            &format!("{PODS}/graceful"),
            "application/json",
            "application/json",
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api
        .call(Method::GET, &format!("{PODS}/graceful"), None)
        .await;
    assert_eq!(code, 404, "the node's grace-0 delete removes it");

    // With a finalizer, the grace-0 delete ends the grace period and removing the finalizer
    // completes the delete.
    let mut body = pod("held");
    body["spec"]["nodeName"] = json!("node-a");
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.call(Method::POST, PODS, Some(body)).await;
    api.call(Method::DELETE, &format!("{PODS}/held"), None)
        .await;
    let (code, marked) = api
        .call_with(
            Method::DELETE,
            &format!("{PODS}/held"),
            "application/json",
            "application/json",
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 0,
        "{marked}"
    );
    let (code, _) = api
        .call_with(
            Method::PATCH,
            &format!("{PODS}/held"),
            "application/json-patch+json",
            "application/json",
            Some(json!([{"op": "remove", "path": "/metadata/finalizers"}])),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.call(Method::GET, &format!("{PODS}/held"), None).await;
    assert_eq!(
        code, 404,
        "removing the last finalizer completes the delete"
    );
}

/// Regression: `/version` said `gitCommit: "unknown"` and a 1970 build date; clients check the
/// commit against `[0-9a-f]+`.
#[tokio::test]
async fn version_reports_the_commit_and_build_date() {
    let api = Api::new().await;
    let (code, v) = api.call(Method::GET, "/version", None).await;
    assert_eq!(code, 200);
    let commit = v["gitCommit"].as_str().unwrap_or_default();
    assert!(
        !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "gitCommit {commit:?}"
    );
    let built: jiff::Timestamp = v["buildDate"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("buildDate is RFC 3339");
    assert!(
        built > "2024-01-01T00:00:00Z".parse().unwrap(),
        "buildDate {built}"
    );
    assert!(
        ["clean", "dirty", ""].contains(&v["gitTreeState"].as_str().unwrap_or("?")),
        "{v}"
    );
    assert_eq!(v["minor"], skiff_api::KUBERNETES_MINOR);
}

/// Regression: a write to a `status` subresource dropped the labels and annotations it carried;
/// Kubernetes' status strategies reset only the spec (and, per kind, a few metadata fields).
#[tokio::test]
async fn status_write_keeps_the_metadata_it_carries() {
    let api = Api::new().await;
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}});
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let (code, _) = api.call(Method::POST, path, Some(ing)).await;
    assert_eq!(code, 201);
    let patch = json!({
        "metadata": {"annotations": {"x": "y"}, "labels": {"l": "v"}},
        "spec": {"defaultBackend": {"service": {"name": "other", "port": {"number": 81}}}},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    });
    let (code, out) = api
        .call_with(
            Method::PATCH,
            &format!("{path}/web/status"),
            "application/merge-patch+json",
            "application/json",
            Some(patch),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    let (_, got) = api.call(Method::GET, &format!("{path}/web"), None).await;
    assert_eq!(got["metadata"]["annotations"]["x"], "y", "{got}");
    assert_eq!(got["metadata"]["labels"]["l"], "v", "{got}");
    assert_eq!(
        got["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );
    assert_eq!(
        got["spec"]["defaultBackend"]["service"]["name"], "web",
        "the spec does not change through status"
    );

    // A Pod's status write keeps its owner references as stored (as Kubernetes does).
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(pod("p")),
        )
        .await;
    assert_eq!(code, 201);
    let patch = json!({"metadata": {"annotations": {"a": "b"}, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"}]},
        "status": {"phase": "Running"}});
    let (code, out) = api
        .call_with(
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p/status",
            "application/merge-patch+json",
            "application/json",
            Some(patch),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["metadata"]["annotations"]["a"], "b");
    assert!(out["metadata"]["ownerReferences"].is_null(), "{out}");
    assert_eq!(out["status"]["phase"], "Running");
}

/// Regression: a pod with `requests: {cpu: "0"}` is BestEffort (a zero request is no request),
/// and a status write that does not mention the class keeps it.
#[tokio::test]
async fn qos_class_of_a_zero_request_pod_is_best_effort() {
    let api = Api::new().await;
    let mut p = pod("zero");
    p["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "0"}});
    let (code, created) = api
        .call(Method::POST, "/api/v1/namespaces/default/pods", Some(p))
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"]["qosClass"], "BestEffort");
    let (code, out) = api
        .call_with(
            Method::PATCH,
            "/api/v1/namespaces/default/pods/zero/status",
            "application/merge-patch+json",
            "application/json",
            Some(json!({"status": {"phase": "Running"}})),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["status"]["qosClass"], "BestEffort");
}

/// Refuses to delete ConfigMaps, and records what it was asked.
struct NoConfigMapDeletes(std::sync::Mutex<Vec<String>>);

impl skiff_api::Authorizer for NoConfigMapDeletes {
    fn authorize(&self, a: &skiff_api::Attributes<'_>) -> skiff_api::Decision {
        self.0.lock().unwrap().push(format!(
            "{} {} {}/{} {:?} {:?}",
            a.user.name, a.verb, a.group, a.resource, a.namespace, a.name
        ));
        if a.resource == "configmaps" && a.verb.starts_with("delete") {
            skiff_api::Decision::Deny("deletes are off".into())
        } else {
            skiff_api::Decision::Allow
        }
    }
}

/// The authorizer is asked once per resource request, with Kubernetes' attributes, and its
/// denial is Kubernetes' 403 Forbidden Status; nothing is written.
#[tokio::test]
async fn the_authorizer_decides_every_resource_request() {
    let seen = Arc::new(NoConfigMapDeletes(Default::default()));
    let api = Api::with_authorizer(seen.clone()).await;
    let (code, _) = api.call(Method::POST, CMS, Some(cm("a", json!({})))).await;
    assert_eq!(code, 201);
    let (code, status) = api.call(Method::DELETE, &format!("{CMS}/a"), None).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "configmaps \"a\" is forbidden: User \"admin\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\": deletes are off"
    );
    let (code, _) = api.call(Method::GET, &format!("{CMS}/a"), None).await;
    assert_eq!(code, 200, "the denied delete wrote nothing");
    let asked = seen.0.lock().unwrap().clone();
    assert!(
        asked.contains(&"admin create /configmaps Some(\"default\") None".to_string()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"admin delete /configmaps Some(\"default\") Some(\"a\")".to_string()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"admin get /configmaps Some(\"default\") Some(\"a\")".to_string()),
        "{asked:?}"
    );
}
