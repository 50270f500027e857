//! Secrets encrypted at rest through the router: the store holds only ciphertext, reads give
//! the plain object, and a replace of an unchanged Secret rewrites it with the new first key
//! (rotation by rewriting, as `kubectl get secrets -A -o json | kubectl replace -f -`).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::encryption::{EncryptedStore, EncryptionConfig};
use skiff_api::{AppState, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

const TOKEN: &str = "t";
const KEY1: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";
const KEY2: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY=";
/// base64 of `SKIFFSECRETVALUE`, as the Secret's `data` holds it.
const VALUE_B64: &str = "U0tJRkZTRUNSRVRWQUxVRQ==";

fn config(keys: &[(&str, &str)]) -> EncryptionConfig {
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, secret)| format!("{{name: {name}, secret: {secret}}}"))
        .collect();
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm: {{keys: [{}]}}\n  - identity: {{}}\n",
        keys.join(", ")
    );
    EncryptionConfig::parse(&text, Path::new("config.yaml")).unwrap()
}

struct Server {
    router: axum::Router,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Server {
    fn over(raw: &Arc<MemoryStore>, config: EncryptionConfig) -> Server {
        let store = Arc::new(EncryptedStore::new(raw.clone(), config));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            store as Arc<dyn Store>,
            vec![(TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
        )
        .with_shutdown(rx);
        Server {
            router: app(Arc::new(state)),
            _shutdown: tx,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {TOKEN}"))
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
}

async fn raw_value(raw: &MemoryStore, key: &str) -> Vec<u8> {
    raw.get(key).await.unwrap().expect("stored").value
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_are_stored_sealed_and_rotated_by_replace() {
    let raw = Arc::new(MemoryStore::new());
    let one = Server::over(&raw, config(&[("key1", KEY1)]));
    let (code, body) = one
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "default"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    for name in ["a", "b"] {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {"k": VALUE_B64}});
        let (code, body) = one
            .call(
                Method::POST,
                "/api/v1/namespaces/default/secrets",
                Some(secret),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["data"]["k"], VALUE_B64);
    }
    let key = "/core/secrets/default/a";
    let stored = raw_value(&raw, key).await;
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    assert!(!contains(&stored, VALUE_B64) && !contains(&stored, "SKIFFSECRETVALUE"));
    // Other kinds stay plain.
    assert!(contains(
        &raw_value(&raw, "/core/namespaces/default").await,
        "default"
    ));

    // Rotation: the new key first, the old one second; everything still reads.
    let two = Server::over(&raw, config(&[("key2", KEY2), ("key1", KEY1)]));
    let rotated = EncryptedStore::new(raw.clone(), config(&[("key2", KEY2), ("key1", KEY1)]));
    assert_eq!(rotated.verify().await.unwrap(), (2, 2));
    let (code, list) = two.call(Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(code, 200, "{list}");
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["data"]["k"], VALUE_B64);
        let mut item = item.clone();
        item["apiVersion"] = json!("v1");
        item["kind"] = json!("Secret");
        let name = item["metadata"]["name"].as_str().unwrap().to_string();
        let before = item["metadata"]["resourceVersion"].clone();
        // The object is unchanged, yet the replace writes it with the new key.
        let (code, body) = two
            .call(
                Method::PUT,
                &format!("/api/v1/namespaces/default/secrets/{name}"),
                Some(item),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_ne!(body["metadata"]["resourceVersion"], before);
    }
    assert_eq!(rotated.verify().await.unwrap(), (2, 0));
    for name in ["a", "b"] {
        let stored = raw_value(&raw, &format!("/core/secrets/default/{name}")).await;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    }
    // The old key alone no longer opens them: a start with it would fail, naming the key.
    let err = EncryptedStore::new(raw.clone(), config(&[("key1", KEY1)]))
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "core/secrets/default/a: no provider could decrypt: aesgcm: no key named \"key2\""
        ),
        "{err}"
    );
}
