//! The API server's `/metrics` through the router: kube-apiserver's series by verb, resource
//! and code, watches held in `apiserver_longrunning_requests` until they end, and the
//! non-resource URL under RBAC (cluster-admin and the `system:monitoring` group read it, other
//! users get 403, no token 401).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use serde_json::json;
use skiff_api::{AppState, UserInfo, app};
use skiff_store::{MemoryStore, Store};
use skiff_telemetry::metrics::sample;
use tower::ServiceExt;

struct Server {
    router: axum::Router,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Server {
    async fn new() -> Server {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tokens = vec![
            ("admin".to_string(), UserInfo::admin("admin")),
            ("alice".to_string(), UserInfo::new("alice", &[])),
            (
                "prometheus".to_string(),
                UserInfo::new("prometheus", &["system:monitoring"]),
            ),
        ];
        let state = AppState::new(store, tokens).with_shutdown(rx).with_rbac();
        state
            .reconcile_default_policy()
            .await
            .expect("the default policy is written");
        Server {
            router: app(Arc::new(state)),
            _shutdown: tx,
        }
    }

    async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> axum::response::Response {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .expect("the router answers")
    }

    async fn metrics(&self, token: Option<&str>) -> (u16, String, String) {
        let response = self.send(token, Method::GET, "/metrics", None).await;
        let code = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            code,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn requests_are_counted_by_verb_resource_and_code_and_watches_while_open() {
    let server = Server::new().await;
    let namespace = server
        .send(
            Some("admin"),
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "default"}})),
        )
        .await;
    assert_eq!(namespace.status(), 201);
    let created = server
        .send(
            Some("admin"),
            Method::POST,
            CMS,
            Some(json!({"metadata": {"name": "a"}})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let again = server
        .send(
            Some("admin"),
            Method::POST,
            CMS,
            Some(json!({"metadata": {"name": "a"}})),
        )
        .await;
    assert_eq!(again.status(), 409);
    for _ in 0..2 {
        let listed = server.send(Some("admin"), Method::GET, CMS, None).await;
        assert_eq!(listed.status(), 200);
    }
    let watch = server
        .send(
            Some("admin"),
            Method::GET,
            &format!("{CMS}?watch=true"),
            None,
        )
        .await;
    assert_eq!(watch.status(), 200);

    let (code, content_type, text) = server.metrics(Some("admin")).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let configmaps = [
        ("group", ""),
        ("version", "v1"),
        ("resource", "configmaps"),
        ("scope", "namespace"),
        ("component", "apiserver"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = configmaps.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    assert_eq!(
        sample(
            &text,
            "apiserver_request_total",
            &with(&[("verb", "POST"), ("code", "201")])
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_total",
            &with(&[("verb", "POST"), ("code", "409")])
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_total",
            &with(&[("verb", "LIST"), ("code", "200")])
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_duration_seconds_count",
            &with(&[("verb", "LIST")])
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_longrunning_requests",
            &with(&[("verb", "WATCH")])
        ),
        Some(1.0),
        "{text}"
    );
    // The scrape itself is in flight while it renders.
    assert_eq!(
        sample(
            &text,
            "apiserver_current_inflight_requests",
            &[("request_kind", "readOnly")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");

    drop(watch);
    let (_, _, text) = server.metrics(Some("admin")).await;
    assert_eq!(
        sample(
            &text,
            "apiserver_longrunning_requests",
            &with(&[("verb", "WATCH")])
        ),
        Some(0.0),
        "a watch whose client went away is no longer counted: {text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_total",
            &[("verb", "GET"), ("code", "200"), ("resource", "")]
        ),
        Some(1.0),
        "the first scrape is counted as a non-resource GET: {text}"
    );
}

#[tokio::test]
async fn metrics_is_a_non_resource_url_under_rbac() {
    let server = Server::new().await;
    let (code, _, _) = server.metrics(Some("prometheus")).await;
    assert_eq!(code, 200, "the system:monitoring group reads /metrics");
    let (code, _, body) = server.metrics(Some("alice")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"User \"alice\" cannot get path \"/metrics\""#),
        "{body}"
    );
    let (code, _, _) = server.metrics(None).await;
    assert_eq!(code, 401);
    let (_, _, text) = server.metrics(Some("admin")).await;
    assert_eq!(
        sample(&text, "apiserver_request_total", &[("code", "403")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "apiserver_request_total", &[("code", "401")]),
        Some(1.0),
        "{text}"
    );
}
