//! Secrets encrypted at rest on a real `skiff server --encryption-provider-config`: the data
//! directory never holds a Secret's value (plain or base64), kubectl reads it back, rotation by
//! `kubectl get secrets -A -o json | kubectl replace -f -` rewrites every Secret with the new
//! key, and a key that cannot open the stored Secrets fails start-up with a clear error; `skiff
//! up` encrypts Secrets with a key it generates.

use std::path::Path;

use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use skiff_tests::{Cluster, client, ok, start_up};

const VALUE: &str = "SKIFFSECRETVALUE";
/// base64 of `VALUE` without its padding.
const VALUE_B64: &str = "U0tJRkZTRUNSRVRWQUxVRQ";
const KEY1: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";
const KEY2: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY=";
/// 32 bytes, not KEY1: what a wrong key in the file looks like.
const WRONG: &str = "enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6eno=";

fn write_config(path: &Path, keys: &[(&str, &str)]) {
    let keys: String = keys
        .iter()
        .map(|(name, secret)| {
            format!("            - name: {name}\n              secret: {secret}\n")
        })
        .collect();
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aesgcm:\n          keys:\n{keys}      - identity: {{}}\n"
    );
    std::fs::write(path, text).unwrap();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_at_rest_and_rotated_by_replace() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("encryption.yaml");
    write_config(&config, &[("key1", KEY1)]);
    let Some(mut c) = Cluster::builder()
        .kubectl()
        .server_args(&["--encryption-provider-config", config.to_str().unwrap()])
        .start()
        .await
    else {
        return;
    };
    c.k(&[
        "create",
        "secret",
        "generic",
        "s",
        &format!("--from-literal=k={VALUE}"),
    ]);
    c.k(&["create", "namespace", "other"]);
    c.k(&[
        "create",
        "secret",
        "generic",
        "t",
        "-n",
        "other",
        &format!("--from-literal=k={VALUE}"),
    ]);
    let read = c.k(&["get", "secret", "s", "-o", "jsonpath={.data.k}"]);
    assert_eq!(read.trim(), format!("{VALUE_B64}=="));
    for needle in [VALUE, VALUE_B64] {
        let found = files_containing(&c.server.dir, needle);
        assert!(found.is_empty(), "{needle} found on disk in {found:?}");
    }

    // Rotation: the new key first, the old one second; restart; rewrite every Secret.
    write_config(&config, &[("key2", KEY2), ("key1", KEY1)]);
    c.server.restart().expect("restarts with both keys");
    let all = c.k(&["get", "secrets", "-A", "-o", "json"]);
    ok(&c.try_k_stdin(&["replace", "-f", "-"], &all));
    // Only key2 now: the start-up check opens every stored Secret, so none is left under key1.
    write_config(&config, &[("key2", KEY2)]);
    c.server
        .restart()
        .expect("every Secret was rewritten with key2");
    let read = c.k(&[
        "get",
        "secret",
        "t",
        "-n",
        "other",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(read.trim(), format!("{VALUE_B64}=="));

    // A key of the right name and the wrong bytes: start-up fails, naming the Secret and key.
    write_config(&config, &[("key2", WRONG)]);
    let err = c.server.restart().expect_err("a wrong key must not start");
    let err = format!("{err:#}");
    assert!(
        err.contains(
            "no provider could decrypt: aesgcm key \"key2\": cipher: message authentication failed"
        ),
        "{err}"
    );
    assert!(err.contains("core/secrets/"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_up_generates_a_key_and_encrypts_secrets() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-up-enc-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let (_up, kubeconfig, _ingress) = start_up(dir.path());
    let show_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();

    let config = data.join("encryption-config.yaml");
    let mode = std::fs::metadata(&config)
        .expect("skiff up wrote its encryption config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("kind: EncryptionConfiguration") && text.contains("aesgcm"),
        "{text}"
    );

    let kube = client::client(std::path::Path::new(&kubeconfig))
        .await
        .expect("a kube client");
    let secrets: Api<Secret> = Api::namespaced(kube, "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s"}, "stringData": {"k": VALUE}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let read = secrets.get("s").await.unwrap();
    assert_eq!(read.data.unwrap()["k"].0, VALUE.as_bytes());
    for needle in [VALUE, VALUE_B64] {
        // The whole directory: the data dir, and the test etcd's under SKIFF_TEST_STORE=etcd.
        let found = files_containing(dir.path(), needle);
        assert!(
            found.is_empty(),
            "{needle} found on disk in {found:?}\n{}",
            show_log()
        );
    }
}
