//! ServiceAccount tokens through the router: TokenRequest's validation, tokens authenticating as
//! bearer tokens and in TokenReview, and ceasing to once their ServiceAccount or bound pod is
//! gone or they expire; the ServiceAccount admission plugin; every namespace's `default`
//! ServiceAccount and `kube-root-ca.crt`; OIDC discovery.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::serviceaccount::{
    Claims, KubernetesClaims, ObjectRef, ServiceAccountAuthenticator, ServiceAccountOptions,
    ServiceAccounts,
};
use skiff_api::{AppState, app};
use skiff_store::MemoryStore;
use tower::ServiceExt;

use super::TOKEN;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

struct SaApi {
    router: axum::Router,
    sa: Arc<ServiceAccounts>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl SaApi {
    async fn new() -> SaApi {
        SaApi::with_options(ServiceAccountOptions::default()).await
    }

    async fn with_options(opts: ServiceAccountOptions) -> SaApi {
        let sa = Arc::new(ServiceAccounts::ephemeral(&opts, CA.to_string()).unwrap());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            Arc::new(MemoryStore::new()),
            vec![(TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
        )
        .with_shutdown(rx)
        .with_service_accounts(sa.clone())
        .with_token_authenticator(Arc::new(ServiceAccountAuthenticator));
        let api = SaApi {
            router: app(Arc::new(state)),
            sa,
            _shutdown: tx,
        };
        let (code, body) = api
            .call(
                Method::POST,
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": "team"}})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        api
    }

    async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
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
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(TOKEN, method, path, body).await
    }

    /// A TokenRequest for `team/NAME` with `spec`: the answer's code and body.
    async fn request_token(&self, name: &str, spec: Value) -> (u16, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/namespaces/team/serviceaccounts/{name}/token"),
            Some(
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": spec}),
            ),
        )
        .await
    }

    async fn token(&self, name: &str, spec: Value) -> String {
        let (code, body) = self.request_token(name, spec).await;
        assert_eq!(code, 201, "{body}");
        body["status"]["token"].as_str().unwrap().to_string()
    }

    /// The user a bearer token is, through SelfSubjectReview; `None` when it is a 401.
    async fn whoami(&self, token: &str) -> Option<Value> {
        let (code, body) = self
            .call_as(
                token,
                Method::POST,
                WHOAMI,
                Some(json!({"apiVersion": "authentication.k8s.io/v1",
                    "kind": "SelfSubjectReview"})),
            )
            .await;
        match code {
            201 => Some(body["status"]["userInfo"].clone()),
            401 => None,
            other => panic!("SelfSubjectReview answered {other}: {body}"),
        }
    }

    async fn review(&self, token: &str, audiences: Value) -> Value {
        let (code, body) = self
            .call(
                Method::POST,
                TOKEN_REVIEWS,
                Some(
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token, "audiences": audiences}}),
                ),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body["status"].clone()
    }

    async fn create_pod(&self, pod: Value) -> (u16, Value) {
        self.call(Method::POST, "/api/v1/namespaces/team/pods", Some(pod))
            .await
    }

    async fn uid(&self, path: &str) -> String {
        let (code, body) = self.call(Method::GET, path, None).await;
        assert_eq!(code, 200, "{body}");
        body["metadata"]["uid"].as_str().unwrap().to_string()
    }
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "example/app:1"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn every_namespace_has_its_default_service_account_and_root_ca() {
    let api = SaApi::new().await;
    let (code, body) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/team/serviceaccounts/default",
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/team/configmaps/kube-root-ca.crt",
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["ca.crt"], CA);
}

#[tokio::test]
async fn token_requests_are_validated_as_kubernetes_does() {
    let api = SaApi::new().await;
    let (code, body) = api
        .request_token("default", json!({"expirationSeconds": 100}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "TokenRequest.authentication.k8s.io \"default\" is invalid: spec.expirationSeconds: Invalid value: 100: may not specify a duration less than 10 minutes"
    );
    let (code, body) = api.request_token("nobody", json!({})).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "serviceaccounts \"nobody\" not found");
    let (code, body) = api
        .request_token(
            "default",
            json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );
    let (code, body) = api
        .request_token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}}),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "pods \"ghost\" not found");
    let (code, body) = api.create_pod(pod("p", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .request_token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p",
                "uid": "00000000-0000-0000-0000-000000000000"}}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not match the UID in record"),
        "{body}"
    );

    // Defaults: an hour, for the API's audience.
    let (code, body) = api.request_token("default", json!({})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "TokenRequest");
    assert_eq!(body["spec"]["expirationSeconds"], 3600);
    assert_eq!(body["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(body["metadata"]["name"], "default");
    let expires = body["status"]["expirationTimestamp"].as_str().unwrap();
    let expires: jiff::Timestamp = expires.parse().unwrap();
    let left = expires.as_second() - jiff::Timestamp::now().as_second();
    assert!((3590..=3600).contains(&left), "{left}");
}

#[tokio::test]
async fn the_server_maximum_caps_a_token_lifetime() {
    let api = SaApi::with_options(ServiceAccountOptions {
        max_token_expiration: Some(std::time::Duration::from_secs(7200)),
        ..ServiceAccountOptions::default()
    })
    .await;
    let (code, body) = api
        .request_token("default", json!({"expirationSeconds": 36000}))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["expirationSeconds"], 7200);
}

#[tokio::test]
async fn a_token_is_its_service_account_as_bearer_and_in_token_review() {
    let api = SaApi::new().await;
    let sa_uid = api
        .uid("/api/v1/namespaces/team/serviceaccounts/default")
        .await;
    let token = api.token("default", json!({})).await;
    let user = api.whoami(&token).await.expect("the token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:team:default");
    assert_eq!(user["uid"], sa_uid);
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    let credential = user["extra"]["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(credential.starts_with("JTI="), "{user}");

    let status = api.review(&token, json!([])).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:team:default"
    );
    assert_eq!(status["audiences"], json!([ISSUER]));

    // A pod-bound token names the pod in its user's extra.
    let (code, body) = api.create_pod(pod("web", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    let pod_uid = body["metadata"]["uid"].as_str().unwrap().to_string();
    let bound = api
        .token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}),
        )
        .await;
    let user = api
        .whoami(&bound)
        .await
        .expect("the bound token authenticates");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web"])
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    assert!(api.whoami("not-a-token").await.is_none());
}

#[tokio::test]
async fn audiences_are_checked_by_the_authenticator_and_the_review() {
    let api = SaApi::new().await;
    let token = api
        .token("default", json!({"audiences": ["skiff.dev/node-endpoint"]}))
        .await;
    assert!(
        api.whoami(&token).await.is_none(),
        "a token for another audience is not the API's"
    );
    let status = api.review(&token, json!([])).await;
    assert_eq!(status["authenticated"], false, "{status}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("is invalid for the target audiences"),
        "{status}"
    );
    let status = api
        .review(&token, json!(["skiff.dev/node-endpoint", "other"]))
        .await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["skiff.dev/node-endpoint"]));
    // The admin token holds for the API's audience only.
    let status = api.review(TOKEN, json!(["skiff.dev/node-endpoint"])).await;
    assert_eq!(status["authenticated"], false, "{status}");
    let status = api.review(TOKEN, json!([ISSUER])).await;
    assert_eq!(status["authenticated"], true, "{status}");
}

#[tokio::test]
async fn a_token_stops_working_with_its_pod_or_its_service_account() {
    let api = SaApi::new().await;
    let (code, body) = api.create_pod(pod("web", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    let bound = api
        .token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}),
        )
        .await;
    let plain = api.token("default", json!({})).await;
    assert!(api.whoami(&bound).await.is_some());
    let (code, body) = api
        .call(Method::DELETE, "/api/v1/namespaces/team/pods/web", None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        api.whoami(&bound).await.is_none(),
        "the deleted pod's token is refused"
    );
    assert_eq!(api.review(&bound, json!([])).await["authenticated"], false);
    assert!(api.whoami(&plain).await.is_some());

    let (code, body) = api
        .call(
            Method::DELETE,
            "/api/v1/namespaces/team/serviceaccounts/default",
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(api.whoami(&plain).await.is_none());
    // A ServiceAccount of the same name made again is another one: the old token stays refused.
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/serviceaccounts",
            Some(json!({"metadata": {"name": "default"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(api.whoami(&plain).await.is_none());
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused() {
    let api = SaApi::new().await;
    let uid = api
        .uid("/api/v1/namespaces/team/serviceaccounts/default")
        .await;
    let now = jiff::Timestamp::now().as_second();
    let claims = |exp: i64| Claims {
        iss: ISSUER.into(),
        sub: "system:serviceaccount:team:default".into(),
        aud: vec![ISSUER.into()],
        exp,
        iat: exp - 3600,
        nbf: exp - 3600,
        jti: "j".into(),
        kubernetes: KubernetesClaims {
            namespace: "team".into(),
            serviceaccount: ObjectRef {
                name: "default".into(),
                uid: uid.clone(),
            },
            ..KubernetesClaims::default()
        },
    };
    let fresh = api.sa.sign(&claims(now + 600)).unwrap();
    assert!(api.whoami(&fresh).await.is_some());
    let expired = api.sa.sign(&claims(now - 120)).unwrap();
    assert!(api.whoami(&expired).await.is_none());
    let status = api.review(&expired, json!([])).await;
    assert_eq!(status["error"], "token has expired", "{status}");
    // Signed by another server's key.
    let other =
        ServiceAccounts::ephemeral(&ServiceAccountOptions::default(), CA.to_string()).unwrap();
    let foreign = other.sign(&claims(now + 600)).unwrap();
    assert!(api.whoami(&foreign).await.is_none());
}

#[tokio::test]
async fn admission_mounts_the_token_volume_unless_told_not_to() {
    let api = SaApi::new().await;
    let (code, body) = api
        .create_pod(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i", "image": "example/app:1"}],
                "containers": [{"name": "c", "image": "example/app:1"}]}}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let spec = &body["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let volumes = spec["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{spec}");
    let name = volumes[0]["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{name}"
    );
    assert_eq!(
        volumes[0]["projected"],
        json!({"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ], "defaultMode": 420})
    );
    let mount = json!([{"name": name, "readOnly": true,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(spec["containers"][0]["volumeMounts"], mount);
    assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);

    // The pod opts out.
    let (code, body) = api
        .create_pod(pod("quiet", json!({"automountServiceAccountToken": false})))
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"]["volumes"].is_null(), "{body}");
    // The ServiceAccount opts out, and the pod does not say.
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/team/serviceaccounts",
            Some(json!({"metadata": {"name": "robot"}, "automountServiceAccountToken": false})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .create_pod(pod("r", json!({"serviceAccountName": "robot"})))
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"]["volumes"].is_null(), "{body}");
    // ...but the pod's own word wins.
    let (code, body) = api
        .create_pod(pod(
            "r2",
            json!({"serviceAccountName": "robot", "automountServiceAccountToken": true}),
        ))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["volumes"].as_array().unwrap().len(), 1);

    // A missing ServiceAccount refuses the pod.
    let (code, body) = api
        .create_pod(pod("m", json!({"serviceAccountName": "missing"})))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"m\" is forbidden: error looking up service account team/missing: serviceaccount \"missing\" not found"
    );
}

#[tokio::test]
async fn oidc_discovery_publishes_the_issuer_and_its_keys() {
    let api = SaApi::new().await;
    let (code, body) = api
        .call(Method::GET, "/.well-known/openid-configuration", None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["issuer"], ISSUER);
    assert_eq!(body["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
    let (code, jwks) = api.call(Method::GET, "/openid/v1/jwks", None).await;
    assert_eq!(code, 200, "{jwks}");
    let token = api.token("default", json!({})).await;
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    // Anonymous callers get nothing.
    let (code, _) = api
        .call_as("nobody", Method::GET, "/openid/v1/jwks", None)
        .await;
    assert_eq!(code, 401);
}
