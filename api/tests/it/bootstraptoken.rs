//! Bootstrap tokens through the router: a `bootstrap.kubernetes.io/token` Secret written with
//! `stringData` makes `ID.SECRET` authenticate as `system:bootstrap:ID` (SelfSubjectReview
//! shows its groups); a wrong secret, an expired token and a deleted Secret are 401.

use super::*;

/// A router whose state asks the bootstrap token authenticator, as the server's does.
fn router(store: Arc<dyn Store>) -> axum::Router {
    let state = AppState::new(
        store,
        vec![(TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
    )
    .with_token_authenticator(Arc::new(skiff_api::bootstraptoken::BootstrapTokens));
    app(Arc::new(state))
}

async fn send(
    router: &axum::Router,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(
            body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn secret(id: &str, expiration: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": id,
            "token-secret": "0123456789abcdef",
            "expiration": expiration,
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": "system:bootstrappers:skiff:default-node-token",
        }
    })
}

#[tokio::test]
async fn a_bootstrap_token_authenticates_until_it_expires_or_goes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let r = router(store);
    let (code, body) = send(
        &r,
        Method::POST,
        "/api/v1/namespaces",
        TOKEN,
        Some(json!({"metadata": {"name": "kube-system"}})),
    )
    .await;
    assert!(code == 201 || code == 409, "{body}");
    for (id, expiration) in [
        ("abcdef", "2999-01-01T00:00:00Z"),
        ("zzzzzz", "2001-01-01T00:00:00Z"),
    ] {
        let (code, body) = send(
            &r,
            Method::POST,
            "/api/v1/namespaces/kube-system/secrets",
            TOKEN,
            Some(secret(id, expiration)),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let (code, body) = send(
        &r,
        Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "abcdef.0123456789abcdef",
        Some(review.clone()),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:bootstrap:abcdef"
    );
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:skiff:default-node-token",
            "system:authenticated"
        ])
    );
    for refused in [
        "abcdef.0123456789abcdeX",
        "zzzzzz.0123456789abcdef",
        "qqqqqq.0123456789abcdef",
    ] {
        let (code, _) = send(&r, Method::GET, "/api", refused, None).await;
        assert_eq!(code, 401, "{refused}");
    }
    let (code, body) = send(
        &r,
        Method::DELETE,
        "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef",
        TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = send(&r, Method::GET, "/api", "abcdef.0123456789abcdef", None).await;
    assert_eq!(code, 401, "a deleted token's Secret authenticates nobody");
}
