//! Bad input gets the right Kubernetes `Status` (reason and code), and the server keeps serving.

use http::{Method, Request};
use serde_json::{Value, json};
use skiff_tests::Server;

struct Answer {
    code: u16,
    body: Value,
}

async fn send(
    client: &kube::Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => Answer {
            code: 200,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        },
        Err(kube::Error::Api(status)) => Answer {
            code: status.code,
            body: serde_json::to_value(&*status).unwrap_or(Value::Null),
        },
        Err(other) => panic!(
            "{method_path}: transport error {other:?}",
            method_path = path
        ),
    }
}

async fn still_serving(client: &kube::Client) {
    let v = client
        .apiserver_version()
        .await
        .expect("server still answers /version");
    assert_eq!(v.major, "1");
    let req = Request::get("/api/v1/namespaces/default")
        .body(Vec::new())
        .unwrap();
    client
        .request_text(req)
        .await
        .expect("server still answers reads");
}

/// What a case sends (description, method, path, content type, body) and expects (code, reason).
type Case = (
    &'static str,
    Method,
    String,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status() {
    let server = Server::start().expect("server starts");
    let c = server.client().await.expect("client");

    let cases: Vec<Case> = vec![
        ("malformed JSON", Method::POST, CMS.into(), "application/json", b"{\"metadata\": {".to_vec(), 400, "BadRequest"),
        ("malformed YAML", Method::POST, CMS.into(), "application/yaml", b"metadata: [name: x\n".to_vec(), 400, "BadRequest"),
        (
            "invalid name",
            Method::POST,
            CMS.into(),
            "application/json",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})).unwrap(),
            422,
            "Invalid",
        ),
        (
            "missing namespace",
            Method::POST,
            "/api/v1/namespaces/nope/configmaps".into(),
            "application/json",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})).unwrap(),
            404,
            "NotFound",
        ),
        ("unknown resource", Method::GET, "/api/v1/widgets".into(), "application/json", Vec::new(), 404, "NotFound"),
        ("unknown group", Method::GET, "/apis/widgets.example.com/v1/things".into(), "application/json", Vec::new(), 404, "NotFound"),
        (
            "body over 3 MiB",
            Method::POST,
            CMS.into(),
            "application/json",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"x": "a".repeat(4 << 20)}})).unwrap(),
            413,
            "RequestEntityTooLarge",
        ),
    ];
    for (what, method, path, ct, body, code, reason) in cases {
        let a = send(&c, method, &path, ct, body).await;
        assert_eq!(
            (a.code, a.body["reason"].as_str().unwrap_or_default()),
            (code, reason),
            "{what}: {}",
            a.body
        );
        assert_eq!(a.body["status"], "Failure", "{what}: a Status object");
        still_serving(&c).await;
    }

    // The invalid name names the field in its causes.
    let a = send(
        &c,
        Method::POST,
        CMS,
        "application/json",
        serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(
        a.body["details"]["causes"][0]["field"], "metadata.name",
        "{}",
        a.body
    );

    // Unknown field under Strict: 400 naming the field; under Warn: accepted.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}]}});
    let a = send(
        &c,
        Method::POST,
        "/api/v1/namespaces/default/pods?fieldValidation=Strict",
        "application/json",
        serde_json::to_vec(&pod).unwrap(),
    )
    .await;
    assert_eq!(a.code, 400, "{}", a.body);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bogus"),
        "{}",
        a.body
    );
    still_serving(&c).await;

    // Duplicate create: 409 AlreadyExists.
    let cm = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}, "data": {"a": "1"}})).unwrap();
    assert_eq!(
        send(&c, Method::POST, CMS, "application/json", cm.clone())
            .await
            .code,
        200
    );
    let a = send(&c, Method::POST, CMS, "application/json", cm).await;
    assert_eq!(
        (a.code, a.body["reason"].as_str().unwrap()),
        (409, "AlreadyExists"),
        "{}",
        a.body
    );
    still_serving(&c).await;

    // Stale resourceVersion: 409 Conflict.
    let stale = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup", "resourceVersion": "1"}, "data": {"a": "2"}})).unwrap();
    let a = send(
        &c,
        Method::PUT,
        &format!("{CMS}/dup"),
        "application/json",
        stale,
    )
    .await;
    assert_eq!(
        (a.code, a.body["reason"].as_str().unwrap()),
        (409, "Conflict"),
        "{}",
        a.body
    );
    still_serving(&c).await;

    // Unsupported patch type: 415.
    let a = send(
        &c,
        Method::PATCH,
        &format!("{CMS}/dup"),
        "text/plain",
        b"data: {}".to_vec(),
    )
    .await;
    assert_eq!(a.code, 415, "{}", a.body);
    still_serving(&c).await;

    // Without a token: 401.
    let plain = skiff_tests::client::anonymous_client(&server.kubeconfig)
        .await
        .unwrap();
    let a = send(&plain, Method::GET, CMS, "application/json", Vec::new()).await;
    assert_eq!(
        (a.code, a.body["reason"].as_str().unwrap_or_default()),
        (401, "Unauthorized"),
        "{}",
        a.body
    );
    still_serving(&c).await;
}
