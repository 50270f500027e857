//! The audit log over the router: the Event lines of a create, a 403, a 404 and a watch, the
//! policy's levels (first match wins), impersonation and the `Audit-Id` header.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::audit::{AuditSink, Auditor, Policy};
use skiff_api::{AppState, UserInfo, app};
use skiff_store::MemoryStore;
use tower::ServiceExt;

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses everything user `bob` asks; allows everyone else.
struct DenyBob;

impl skiff_api::Authorizer for DenyBob {
    fn authorize(&self, attributes: &skiff_api::Attributes<'_>) -> skiff_api::Decision {
        if attributes.user.name == "bob" {
            skiff_api::Decision::Deny(String::new())
        } else {
            skiff_api::Decision::Allow
        }
    }
}

struct Audited {
    router: axum::Router,
    auditor: Arc<Auditor>,
    buffer: Buffer,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Audited {
    async fn new(policy: Policy) -> Audited {
        let buffer = Buffer::default();
        let auditor = Auditor::start(policy, AuditSink::writer(Box::new(buffer.clone()))).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            Arc::new(MemoryStore::new()),
            vec![
                ("admin-token".into(), UserInfo::admin("admin")),
                ("alice-token".into(), {
                    let mut alice = UserInfo::new("alice", &["devs"]);
                    alice.uid = "u-1".into();
                    alice
                }),
                ("bob-token".into(), UserInfo::new("bob", &[])),
            ],
        )
        .with_shutdown(rx)
        .with_authorizer(Arc::new(DenyBob))
        .with_audit(auditor.clone());
        let api = Audited {
            router: app(Arc::new(state)),
            auditor,
            buffer,
            _shutdown: tx,
        };
        let (code, _) = api
            .call(
                "admin-token",
                Method::POST,
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": "default"}})),
            )
            .await;
        assert_eq!(code, 201);
        api
    }

    fn request(token: &str, method: Method, path: &str, body: Option<Value>) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .header("User-Agent", "audit-test/1.0")
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap()
    }

    async fn send(&self, request: Request<Body>) -> (u16, String, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let code = response.status().as_u16();
        let id = response
            .headers()
            .get("Audit-Id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            code,
            id,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let (code, id, _) = self.send(Audited::request(token, method, path, body)).await;
        (code, id)
    }

    /// Every event written so far.
    async fn events(&self) -> Vec<Value> {
        self.auditor.flush().await;
        let bytes = self.buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is a JSON Event"))
            .collect()
    }

    async fn events_of(&self, audit_id: &str) -> Vec<Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["auditID"] == audit_id)
            .collect()
    }

    /// The `ResponseComplete` event of a request whose policy omits no stage, after its
    /// `RequestReceived` event (which has no response status).
    async fn completed(&self, audit_id: &str) -> Value {
        let events = self.events_of(audit_id).await;
        let stages: Vec<&str> = events
            .iter()
            .map(|e| e["stage"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            stages,
            ["RequestReceived", "ResponseComplete"],
            "{events:?}"
        );
        assert!(events[0].get("responseStatus").is_none(), "{events:?}");
        assert_eq!(events[0]["requestURI"], events[1]["requestURI"]);
        events[1].clone()
    }
}

fn is_micro_time(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_suffix('Z'))
        .and_then(|s| s.split_once('.'))
        .is_some_and(|(_, fraction)| fraction.len() == 6)
}

#[tokio::test]
async fn a_create_a_403_and_a_404_are_written_as_events() {
    let api = Audited::new(Policy::metadata_for_all()).await;
    let (code, _) = api
        .call(
            "admin-token",
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "team"}})),
        )
        .await;
    assert_eq!(code, 201);

    let (code, id) = api
        .call(
            "alice-token",
            Method::POST,
            "/api/v1/namespaces/team/configmaps",
            Some(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(id.len(), 36, "the Audit-Id header is a uuid: {id}");
    let events = api.events_of(&id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "Metadata");
    assert_eq!(e["stage"], "ResponseComplete");
    assert_eq!(e["verb"], "create");
    assert_eq!(e["requestURI"], "/api/v1/namespaces/team/configmaps");
    assert_eq!(e["user"]["username"], "alice");
    assert_eq!(e["user"]["uid"], "u-1");
    assert_eq!(e["user"]["groups"], json!(["devs", "system:authenticated"]));
    assert_eq!(e["userAgent"], "audit-test/1.0");
    assert_eq!(
        e["objectRef"],
        json!({"resource": "configmaps", "namespace": "team", "name": "cfg", "apiGroup": "", "apiVersion": "v1"})
    );
    assert_eq!(e["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(e.get("requestObject").is_none(), "Metadata logs no body");
    assert!(is_micro_time(&e["requestReceivedTimestamp"]), "{e}");
    assert!(is_micro_time(&e["stageTimestamp"]), "{e}");
    assert!(e.get("impersonatedUser").is_none());

    let (code, id) = api
        .call(
            "bob-token",
            Method::GET,
            "/api/v1/namespaces/team/configmaps/cfg",
            None,
        )
        .await;
    assert_eq!(code, 403);
    let e = &api.events_of(&id).await[0];
    assert_eq!(e["verb"], "get");
    assert_eq!(e["objectRef"]["name"], "cfg");
    assert_eq!(e["responseStatus"]["code"], 403);
    assert_eq!(e["responseStatus"]["status"], "Failure");
    assert_eq!(e["responseStatus"]["reason"], "Forbidden");
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "forbid");
    let reason = e["annotations"]["authorization.k8s.io/reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("bob"), "{reason}");

    let (code, id) = api
        .call(
            "alice-token",
            Method::DELETE,
            "/api/v1/namespaces/team/configmaps/missing",
            None,
        )
        .await;
    assert_eq!(code, 404);
    let e = &api.events_of(&id).await[0];
    assert_eq!(e["verb"], "delete");
    assert_eq!(e["responseStatus"]["code"], 404);
    assert_eq!(e["responseStatus"]["reason"], "NotFound");
    assert!(
        e["responseStatus"]["message"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
}

#[tokio::test]
async fn a_watch_logs_response_started_then_response_complete() {
    let api = Audited::new(Policy::metadata_for_all()).await;
    let request = Audited::request(
        "alice-token",
        Method::GET,
        "/api/v1/namespaces/default/configmaps?watch=1",
        None,
    );
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let id = response.headers()["Audit-Id"].to_str().unwrap().to_string();
    let started = api.events_of(&id).await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["stage"], "ResponseStarted");
    assert_eq!(started[0]["verb"], "watch");
    drop(response);
    let both = api.events_of(&id).await;
    let stages: Vec<&Value> = both.iter().map(|e| &e["stage"]).collect();
    assert_eq!(
        stages,
        [&json!("ResponseStarted"), &json!("ResponseComplete")]
    );
}

#[tokio::test]
async fn the_first_matching_rule_sets_the_level_and_bodies() {
    let policy = Policy::parse(
        r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  users: ["bob"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Request
  verbs: ["create"]
"#,
    )
    .unwrap();
    let api = Audited::new(policy).await;
    let (_, id) = api
        .call(
            "alice-token",
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"metadata": {"name": "c"}, "data": {"k": "v"}})),
        )
        .await;
    let e = &api.completed(&id).await;
    assert_eq!(e["level"], "RequestResponse");
    assert_eq!(e["requestObject"]["data"]["k"], "v");
    assert_eq!(e["responseObject"]["metadata"]["name"], "c");
    assert_eq!(e["responseObject"]["kind"], "ConfigMap");

    let (_, id) = api
        .call(
            "alice-token",
            Method::POST,
            "/api/v1/namespaces/default/secrets",
            Some(json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})),
        )
        .await;
    let e = &api.completed(&id).await;
    assert_eq!(
        e["level"], "Metadata",
        "secrets match before the create rule"
    );
    assert!(!e.to_string().contains("hunter2"));

    let (_, id) = api
        .call(
            "alice-token",
            Method::POST,
            "/api/v1/namespaces/default/services",
            Some(json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})),
        )
        .await;
    let e = &api.completed(&id).await;
    assert_eq!(e["level"], "Request");
    assert_eq!(e["requestObject"]["metadata"]["name"], "svc");
    assert!(e.get("responseObject").is_none());

    // No rule matches a get of a Service: not logged; bob is never logged.
    let (code, id) = api
        .call(
            "alice-token",
            Method::GET,
            "/api/v1/namespaces/default/services/svc",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert!(api.events_of(&id).await.is_empty());
    let (_, id) = api
        .call(
            "bob-token",
            Method::GET,
            "/api/v1/namespaces/default/configmaps",
            None,
        )
        .await;
    assert!(
        !id.is_empty(),
        "Audit-Id is sent even when nothing is logged"
    );
    assert!(api.events_of(&id).await.is_empty());
}

#[tokio::test]
async fn impersonation_names_both_users_and_a_client_audit_id_is_kept() {
    let api = Audited::new(Policy::metadata_for_all()).await;
    let request = Request::builder()
        .method(Method::GET)
        .uri("/api/v1/namespaces/default/configmaps")
        .header("Authorization", "Bearer admin-token")
        .header("Impersonate-User", "carol")
        .header("Impersonate-Group", "qa")
        .header("Audit-ID", "my-request-1")
        .header("X-Forwarded-For", "10.1.2.3")
        .body(Body::empty())
        .unwrap();
    let (code, id, _) = api.send(request).await;
    assert_eq!(code, 200);
    assert_eq!(id, "my-request-1");
    let e = &api.events_of(&id).await[0];
    assert_eq!(e["verb"], "list");
    assert_eq!(e["user"]["username"], "admin");
    assert_eq!(e["impersonatedUser"]["username"], "carol");
    assert!(
        e["impersonatedUser"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("qa"))
    );
    assert_eq!(e["sourceIPs"], json!(["10.1.2.3"]));
}

#[tokio::test]
async fn non_resource_requests_are_logged_by_path() {
    let policy = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  nonResourceURLs: [\"/version*\"]\n",
    )
    .unwrap();
    let api = Audited::new(policy).await;
    let (code, id) = api.call("alice-token", Method::GET, "/apis", None).await;
    assert_eq!(code, 200);
    assert!(
        api.events_of(&id).await.is_empty(),
        "/apis is not /version*"
    );
    let (code, id) = api.call("alice-token", Method::GET, "/version", None).await;
    assert_eq!(code, 200);
    let event = api.completed(&id).await;
    // /version is public (no user): still logged by path, with an empty user.
    assert_eq!(event["verb"], "get");
    assert!(event.get("objectRef").is_none());
}

#[tokio::test]
async fn a_file_path_is_appended_and_dash_is_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.log");
    let auditor = Auditor::start(Policy::metadata_for_all(), AuditSink::path(&path)).unwrap();
    let state = AppState::new(
        Arc::new(MemoryStore::new()),
        vec![("t".into(), UserInfo::new("dana", &[]))],
    )
    .with_audit(auditor.clone());
    let router = app(Arc::new(state));
    let request = Request::builder()
        .uri("/api/v1/namespaces")
        .header("Authorization", "Bearer t")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    auditor.flush().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["user"]["username"], "dana");
    assert_eq!(event["verb"], "list");
    assert!(AuditSink::path(std::path::Path::new("-")).is_stdout());
    assert!(!AuditSink::path(&path).is_stdout());
}

/// A request no authenticator accepts is logged with its 401 and an empty user, at the
/// `ResponseStarted` stage, as Kubernetes' failed-authentication audit does.
#[tokio::test]
async fn a_failed_authentication_is_logged_with_its_401() {
    let api = Audited::new(Policy::metadata_for_all()).await;
    let (code, id) = api
        .call(
            "no-such-token",
            Method::GET,
            "/api/v1/namespaces/default/secrets/s",
            None,
        )
        .await;
    assert_eq!(code, 401);
    assert!(!id.is_empty(), "the 401 carries its Audit-Id");
    let events = api.events_of(&id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["stage"], "ResponseStarted");
    assert_eq!(e["user"], json!({}));
    assert_eq!(e["verb"], "get");
    assert_eq!(e["objectRef"]["resource"], "secrets");
    assert_eq!(e["objectRef"]["name"], "s");
    assert_eq!(e["responseStatus"]["code"], 401);
    assert_eq!(e["responseStatus"]["reason"], "Unauthorized");
    assert_eq!(e["userAgent"], "audit-test/1.0");
    assert!(is_micro_time(&e["stageTimestamp"]), "{e}");
}
