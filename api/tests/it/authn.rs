//! Authentication: users of the static token file, a connection's client-certificate user, and
//! impersonation (`Impersonate-*` headers) allowed or refused by the authorizer with
//! Kubernetes' messages, as `kubectl auth whoami` and any request see them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::auth::tokenfile;
use skiff_api::auth::x509::PeerCertificate;
use skiff_api::{AppState, Attributes, Authorizer, Decision, UserInfo, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

const TOKEN_FILE: &str = r#"# static users
alice-token,alice,uid-alice,"team-a,devs"

carol-token,carol,uid-carol
ops-token,ops,,ops
"#;

/// Lets `alice` impersonate anyone (but never the group `g-secret` nor uid `u-secret`), and
/// every user do anything else — except `bob`, who may not list pods.
struct AliceImpersonates;

impl Authorizer for AliceImpersonates {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.verb == "impersonate" {
            let refused = matches!(
                (a.resource, a.name),
                ("groups", Some("g-secret")) | ("uids", Some("u-secret"))
            );
            return if a.user.name == "alice" && !refused {
                Decision::Allow
            } else {
                Decision::NoOpinion(String::new())
            };
        }
        if a.user.name == "bob" && a.resource == "pods" {
            return Decision::Deny(String::new());
        }
        Decision::Allow
    }
}

fn router() -> axum::Router {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let users = tokenfile::parse(TOKEN_FILE, std::path::Path::new("tokens.csv")).unwrap();
    let mut tokens = vec![("admin-token".to_string(), UserInfo::admin("admin"))];
    tokens.extend(users);
    app(Arc::new(
        AppState::new(store, tokens).with_authorizer(Arc::new(AliceImpersonates)),
    ))
}

/// A request with the given bearer token (if any), extra headers and connection user.
async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    peer: Option<UserInfo>,
) -> (u16, Value) {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json");
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if method == Method::POST {
        Body::from(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}})
                .to_string(),
        )
    } else {
        Body::empty()
    };
    let mut request = builder.body(body).unwrap();
    if let Some(user) = peer {
        request.extensions_mut().insert(PeerCertificate(user));
    }
    let response = router.clone().oneshot(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `kubectl auth whoami` for a token and impersonation headers: the status code and userInfo.
async fn whoami(token: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    let (code, body) = call(&router(), Method::POST, WHOAMI, token, headers, None).await;
    if code == 201 {
        (code, body["status"]["userInfo"].clone())
    } else {
        (code, body)
    }
}

#[tokio::test]
async fn token_file_users_authenticate_with_their_uid_and_groups() {
    let (code, user) = whoami(Some("alice-token"), &[]).await;
    assert_eq!(code, 201, "{user}");
    assert_eq!(
        user,
        json!({"username": "alice", "uid": "uid-alice",
               "groups": ["team-a", "devs", "system:authenticated"]})
    );
    let (code, user) = whoami(Some("carol-token"), &[]).await;
    assert_eq!(code, 201, "{user}");
    assert_eq!(
        user,
        json!({"username": "carol", "uid": "uid-carol", "groups": ["system:authenticated"]})
    );
    let (_, user) = whoami(Some("ops-token"), &[]).await;
    assert_eq!(
        user,
        json!({"username": "ops", "groups": ["ops", "system:authenticated"]})
    );
    let (code, body) = whoami(Some("nobody-token"), &[]).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
}

#[test]
fn a_token_file_is_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.csv");
    std::fs::write(&path, TOKEN_FILE).unwrap();
    let users = tokenfile::load(&path).unwrap();
    let names: Vec<_> = users
        .iter()
        .map(|(t, u)| (t.as_str(), u.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("alice-token", "alice"),
            ("carol-token", "carol"),
            ("ops-token", "ops")
        ]
    );
    let missing = tokenfile::load(&dir.path().join("absent.csv")).unwrap_err();
    assert!(missing.to_string().contains("absent.csv"), "{missing}");
}

#[test]
fn malformed_token_files_name_the_file_and_line() {
    let path = std::path::Path::new("/etc/skiff/tokens.csv");
    let cases = [
        (
            "good,u,1\nonly-two,columns\n",
            2,
            "must have at least 3 columns (token, user name, user uid), found 2",
        ),
        ("# comment\n\n,u,1\n", 3, "the token is empty"),
        ("t,,1\n", 1, "the user name is empty"),
        (
            "t,u,1\nt,v,2\n",
            2,
            "the token is already given on an earlier line",
        ),
        ("t,u,1,g1,g2\n", 1, "has 5 columns"),
        ("t,u,1,\"g1,g2\n", 1, "a quoted field is not closed"),
    ];
    for (text, line, message) in cases {
        let err = tokenfile::parse(text, path).unwrap_err().to_string();
        let prefix = format!("token file /etc/skiff/tokens.csv, line {line}: ");
        assert!(err.starts_with(&prefix), "{text:?}: {err}");
        assert!(err.contains(message), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn a_connection_certificate_authenticates_when_no_token_does() {
    let router = router();
    let cert_user = UserInfo::new("dave", &["team-b"]);
    let (code, body) = call(
        &router,
        Method::POST,
        WHOAMI,
        None,
        &[],
        Some(cert_user.clone()),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "dave", "groups": ["team-b", "system:authenticated"]})
    );
    // A bearer token wins over the connection's certificate.
    let (code, body) = call(
        &router,
        Method::POST,
        WHOAMI,
        Some("carol-token"),
        &[],
        Some(cert_user),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["userInfo"]["username"], "carol");
    // Neither: 401.
    let (code, _) = call(&router, Method::POST, WHOAMI, None, &[], None).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn an_allowed_user_impersonates_a_user_groups_uid_and_extra() {
    let (code, user) = whoami(
        Some("alice-token"),
        &[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "g1"),
            ("Impersonate-Group", "g2"),
            ("Impersonate-Uid", "uid-bob"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Scopes", "edit"),
            ("Impersonate-Extra-example.com%2fteam", "a"),
        ],
    )
    .await;
    assert_eq!(code, 201, "{user}");
    assert_eq!(
        user,
        json!({
            "username": "bob",
            "uid": "uid-bob",
            "groups": ["g1", "g2", "system:authenticated"],
            "extra": {"example.com/team": ["a"], "scopes": ["view", "edit"]},
        })
    );
    // A user alone: only system:authenticated, and none of alice's.
    let (_, user) = whoami(Some("alice-token"), &[("Impersonate-User", "bob")]).await;
    assert_eq!(
        user,
        json!({"username": "bob", "groups": ["system:authenticated"]})
    );
    // Asking for system:authenticated does not add it twice.
    let (_, user) = whoami(
        Some("alice-token"),
        &[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:authenticated"),
        ],
    )
    .await;
    assert_eq!(user["groups"], json!(["system:authenticated"]));
}

#[tokio::test]
async fn an_impersonated_service_account_gets_its_groups() {
    let (code, user) = whoami(
        Some("alice-token"),
        &[("Impersonate-User", "system:serviceaccount:team-a:builder")],
    )
    .await;
    assert_eq!(code, 201, "{user}");
    assert_eq!(
        user,
        json!({
            "username": "system:serviceaccount:team-a:builder",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a",
                       "system:authenticated"],
        })
    );
    // Groups given replace the ServiceAccount's.
    let (_, user) = whoami(
        Some("alice-token"),
        &[
            ("Impersonate-User", "system:serviceaccount:team-a:builder"),
            ("Impersonate-Group", "g1"),
        ],
    )
    .await;
    assert_eq!(user["groups"], json!(["g1", "system:authenticated"]));
}

#[tokio::test]
async fn refused_impersonation_is_forbidden_with_kubernetes_messages() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Value);
    let cases: [Case<'_>; 5] = [
        (
            "carol-token",
            &[("Impersonate-User", "bob")],
            r#"users "bob" is forbidden: User "carol" cannot impersonate resource "users" in API group "" at the cluster scope"#,
            json!({"name": "bob", "kind": "users"}),
        ),
        (
            "carol-token",
            &[("Impersonate-User", "system:serviceaccount:team-a:builder")],
            r#"serviceaccounts "builder" is forbidden: User "carol" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "team-a""#,
            json!({"name": "builder", "kind": "serviceaccounts"}),
        ),
        (
            "alice-token",
            &[
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "g-secret"),
            ],
            r#"groups "g-secret" is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope"#,
            json!({"name": "g-secret", "kind": "groups"}),
        ),
        (
            "alice-token",
            &[("Impersonate-User", "bob"), ("Impersonate-Uid", "u-secret")],
            r#"uids.authentication.k8s.io "u-secret" is forbidden: User "alice" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#,
            json!({"name": "u-secret", "group": "authentication.k8s.io", "kind": "uids"}),
        ),
        (
            "carol-token",
            &[
                ("Impersonate-User", "carol"),
                ("Impersonate-Extra-Scopes", "x"),
            ],
            r#"users "carol" is forbidden: User "carol" cannot impersonate resource "users" in API group "" at the cluster scope"#,
            json!({"name": "carol", "kind": "users"}),
        ),
    ];
    for (token, headers, message, details) in cases {
        let (code, body) = whoami(Some(token), headers).await;
        assert_eq!(code, 403, "{headers:?}: {body}");
        assert_eq!(body["reason"], "Forbidden", "{body}");
        assert_eq!(body["message"], message, "{headers:?}");
        assert_eq!(body["details"], details, "{headers:?}");
    }
}

#[tokio::test]
async fn impersonating_groups_without_a_user_is_an_error() {
    for headers in [
        &[("Impersonate-Group", "g1")][..],
        &[("Impersonate-Uid", "u1")][..],
        &[("Impersonate-Extra-Scopes", "x")][..],
    ] {
        let (code, body) = whoami(Some("alice-token"), headers).await;
        assert_eq!(code, 500, "{headers:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.ends_with("without impersonating a user"),
            "{message}"
        );
    }
}

/// The request runs as the impersonated user: what bob may not do, alice as bob may not either.
#[tokio::test]
async fn the_request_is_authorized_as_the_impersonated_user() {
    let router = router();
    let pods = "/api/v1/namespaces/default/pods";
    let (code, body) = call(&router, Method::GET, pods, Some("alice-token"), &[], None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(
        &router,
        Method::GET,
        pods,
        Some("alice-token"),
        &[("Impersonate-User", "bob")],
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
    );
}
