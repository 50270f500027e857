//! NamespaceLifecycle through the router: nothing is created in a missing or terminating
//! namespace, and the system namespaces cannot be deleted, with Kubernetes' answers.

use axum::http::Method;
use serde_json::json;

use super::{Api, cm};

#[tokio::test]
async fn creates_need_an_open_namespace() {
    let api = Api::new().await;
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/nope/configmaps",
            Some(cm("x", json!({}))),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "namespaces \"nope\" not found");

    // `other` keeps its `kubernetes` finalizer (no namespace controller runs here): Terminating.
    let (code, body) = api
        .call(Method::DELETE, "/api/v1/namespaces/other", None)
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/other/configmaps",
            Some(cm("x", json!({}))),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "configmaps \"x\" is forbidden: unable to create new content in namespace other because it is being terminated"
    );
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "app.wasm"}]}}}});
    let (code, body) = api
        .call(
            Method::POST,
            "/apis/apps/v1/namespaces/other/deployments",
            Some(deploy),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "deployments.apps \"d\" is forbidden: unable to create new content in namespace other because it is being terminated"
    );
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted() {
    let api = Api::new().await;
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        let (code, body) = api
            .call(
                Method::POST,
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": ns}})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let (code, body) = api
            .call(Method::DELETE, &format!("/api/v1/namespaces/{ns}"), None)
            .await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
        let (code, body) = api
            .call(Method::GET, &format!("/api/v1/namespaces/{ns}"), None)
            .await;
        assert_eq!(code, 200);
        assert_eq!(body["status"]["phase"], "Active");
    }
}
