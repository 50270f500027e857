//! Unit tests of the providers and the store wrapper: round trips, migration from identity,
//! ciphertext bound to its key, staleness, and the start-up check.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use skiff_store::{ListOptions, MemoryStore, Store};

use super::{EncryptedStore, EncryptionConfig};

const KEY16: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng=="; // 16 bytes
const KEY24: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0"; // 24 bytes
const KEY32: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="; // 32 bytes
const OTHER32: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY="; // 32 bytes

fn config(providers: &str) -> EncryptionConfig {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
    );
    EncryptionConfig::parse(&text, Path::new("test.yaml")).expect("a valid config")
}

fn aesgcm(name: &str, secret: &str) -> String {
    format!("  - aesgcm: {{keys: [{{name: {name}, secret: {secret}}}]}}\n")
}

fn secretbox(name: &str, secret: &str) -> String {
    format!("  - secretbox: {{keys: [{{name: {name}, secret: {secret}}}]}}\n")
}

const IDENTITY: &str = "  - identity: {}\n";
const SECRET_KEY: &str = "/core/secrets/default/s";
const VALUE: &[u8] = br#"{"data":{"k":"U0tJRkZTRUNSRVRWQUxVRQ=="}}"#;

fn store_with(inner: &Arc<MemoryStore>, providers: &str) -> EncryptedStore {
    EncryptedStore::new(inner.clone() as Arc<dyn Store>, config(providers))
}

async fn raw(inner: &MemoryStore, key: &str) -> Vec<u8> {
    inner.get(key).await.unwrap().expect("stored").value
}

#[tokio::test]
async fn round_trip_per_provider() {
    for (providers, prefix) in [
        (aesgcm("k16", KEY16), "k8s:enc:aesgcm:v1:k16:"),
        (aesgcm("k24", KEY24), "k8s:enc:aesgcm:v1:k24:"),
        (aesgcm("k32", KEY32), "k8s:enc:aesgcm:v1:k32:"),
        (secretbox("sb", KEY32), "k8s:enc:secretbox:v1:sb:"),
        (IDENTITY.to_string(), ""),
    ] {
        let inner = Arc::new(MemoryStore::new());
        let store = store_with(&inner, &providers);
        let created = store.create(SECRET_KEY, VALUE.to_vec()).await.unwrap();
        assert_eq!(created.value, VALUE);
        let stored = raw(&inner, SECRET_KEY).await;
        assert!(stored.starts_with(prefix.as_bytes()), "{providers}");
        if prefix.is_empty() {
            assert_eq!(stored, VALUE);
        } else {
            assert!(
                !stored.windows(8).any(|w| w == b"U0tJRkZT"),
                "no plaintext in {providers}"
            );
        }
        assert_eq!(store.get(SECRET_KEY).await.unwrap().unwrap().value, VALUE);
        let listed = store
            .list(ListOptions {
                prefix: "/core/secrets/".into(),
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.items[0].value, VALUE);
    }
}

#[tokio::test]
async fn nonce_is_random_per_write() {
    let inner = Arc::new(MemoryStore::new());
    let store = store_with(&inner, &aesgcm("k", KEY32));
    store.create(SECRET_KEY, VALUE.to_vec()).await.unwrap();
    let first = raw(&inner, SECRET_KEY).await;
    store
        .update(SECRET_KEY, VALUE.to_vec(), None)
        .await
        .unwrap();
    assert_ne!(first, raw(&inner, SECRET_KEY).await);
}

#[tokio::test]
async fn other_resources_stay_plain() {
    let inner = Arc::new(MemoryStore::new());
    let store = store_with(&inner, &aesgcm("k", KEY32));
    let key = "/core/configmaps/default/c";
    store.create(key, VALUE.to_vec()).await.unwrap();
    assert_eq!(raw(&inner, key).await, VALUE);
}

#[tokio::test]
async fn identity_then_aesgcm_migration() {
    let inner = Arc::new(MemoryStore::new());
    // Written plain, before encryption was configured.
    inner.create(SECRET_KEY, VALUE.to_vec()).await.unwrap();
    // aesgcm first, identity second: the plain value reads, and is stale.
    let store = store_with(&inner, &(aesgcm("k", KEY32) + IDENTITY));
    assert_eq!(store.verify().await.unwrap(), (1, 1));
    assert_eq!(store.get(SECRET_KEY).await.unwrap().unwrap().value, VALUE);
    // A rewrite seals it with the first provider.
    store
        .update(SECRET_KEY, VALUE.to_vec(), None)
        .await
        .unwrap();
    assert!(
        raw(&inner, SECRET_KEY)
            .await
            .starts_with(b"k8s:enc:aesgcm:v1:k:")
    );
    assert_eq!(store.verify().await.unwrap(), (1, 0));
    // Without identity, a plain value is refused.
    inner
        .create("/core/secrets/default/plain", VALUE.to_vec())
        .await
        .unwrap();
    assert_eq!(store.verify().await.unwrap(), (2, 1));
    let err = store_with(&inner, &aesgcm("k", KEY32))
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "core/secrets/default/plain: no provider could decrypt: the value is not encrypted"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn rotation_keeps_old_key_readable() {
    let inner = Arc::new(MemoryStore::new());
    store_with(&inner, &aesgcm("key1", KEY32))
        .create(SECRET_KEY, VALUE.to_vec())
        .await
        .unwrap();
    let rotated = store_with(
        &inner,
        "  - aesgcm:\n      keys:\n      - {name: key2, secret: YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY=}\n      - {name: key1, secret: MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=}\n",
    );
    assert_eq!(rotated.verify().await.unwrap(), (1, 1));
    assert_eq!(rotated.get(SECRET_KEY).await.unwrap().unwrap().value, VALUE);
    rotated
        .update(SECRET_KEY, VALUE.to_vec(), None)
        .await
        .unwrap();
    assert!(
        raw(&inner, SECRET_KEY)
            .await
            .starts_with(b"k8s:enc:aesgcm:v1:key2:")
    );
    assert_eq!(rotated.verify().await.unwrap(), (1, 0));
}

#[tokio::test]
async fn ciphertext_is_bound_to_its_key() {
    for providers in [aesgcm("k", KEY32), secretbox("k", KEY32)] {
        let inner = Arc::new(MemoryStore::new());
        let store = store_with(&inner, &providers);
        store.create(SECRET_KEY, VALUE.to_vec()).await.unwrap();
        let sealed = raw(&inner, SECRET_KEY).await;
        // Copied under another name: it must not open.
        let copy = "/core/secrets/default/copy";
        inner.create(copy, sealed).await.unwrap();
        let err = store.get(copy).await.unwrap_err().to_string();
        assert!(
            err.contains("core/secrets/default/copy: no provider could decrypt"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn wrong_key_fails_verification_with_a_clear_error() {
    let inner = Arc::new(MemoryStore::new());
    store_with(&inner, &aesgcm("key1", KEY32))
        .create("/core/secrets/default/x", VALUE.to_vec())
        .await
        .unwrap();
    // Same name, other secret.
    let err = store_with(&inner, &aesgcm("key1", OTHER32))
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "core/secrets/default/x: no provider could decrypt: aesgcm key \"key1\": cipher: message authentication failed"
    );
    // A key name no provider has.
    let err = store_with(&inner, &(aesgcm("key2", OTHER32) + IDENTITY))
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("aesgcm: no key named \"key1\" is configured"),
        "{err}"
    );
    // Only identity: encrypted values cannot be read.
    let err = store_with(&inner, IDENTITY)
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no configured provider reads values of prefix \"k8s:enc:aesgcm\""),
        "{err}"
    );
}

#[tokio::test]
async fn watch_and_delete_give_plain_values() {
    let inner = Arc::new(MemoryStore::new());
    let store = store_with(&inner, &aesgcm("k", KEY32));
    let mut watch = store.watch("/core/secrets/", 0).await.unwrap();
    store.create(SECRET_KEY, VALUE.to_vec()).await.unwrap();
    let deleted = store.delete(SECRET_KEY, None).await.unwrap();
    assert_eq!(deleted.value, VALUE);
    let created = watch.next().await.unwrap().unwrap();
    assert_eq!(created.kv.value, VALUE);
    let gone = watch.next().await.unwrap().unwrap();
    assert_eq!(gone.kv.value, VALUE);
}
