//! Kubernetes' `ServiceAccount` admission plugin, on pod create: the pod's ServiceAccount
//! (`default` unless named) must exist; its `imagePullSecrets` become the pod's when it has none;
//! and unless automounting is turned off (on the pod, or on the ServiceAccount when the pod does
//! not say) every container and init container gets the projected `kube-api-access-XXXXX`
//! volume (token, `ca.crt` from `kube-root-ca.crt`, namespace) read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount`, unless it already mounts something there.
//!
//! The plugin runs when the server issues ServiceAccount tokens (`AppState::service_accounts`).

use rand::Rng;
use serde_json::{Value, json};

use super::forbidden;
use crate::error::ApiError;
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::serviceaccount::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIGMAP, TOKEN_MOUNT_PATH};
use crate::state::AppState;

/// The prefix of the generated volume's name.
pub(crate) const VOLUME_PREFIX: &str = "kube-api-access-";
/// The lifetime of the projected token, as Kubernetes asks for it (an hour and 7 seconds, so the
/// kubelet can tell the plugin's tokens from a user's).
pub(crate) const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The plugin.
pub(crate) struct ServiceAccount;

impl Admission for ServiceAccount {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            match (write.kind.group, write.kind.plural, op) {
                ("", "pods", Operation::Create) if state.service_accounts.is_some() => {
                    admit_pod(state, write, obj).await
                }
                _ => Ok(()),
            }
        })
    }
}

async fn admit_pod(state: &AppState, write: &Write<'_>, pod: &mut Value) -> Result<(), ApiError> {
    let namespace = write.namespace.unwrap_or_default();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => DEFAULT_SERVICE_ACCOUNT.to_string(),
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let kind = skiff_kinds::find("", "v1", "serviceaccounts").expect("a known kind");
    let account = match state
        .store
        .get(&objects::key(kind, Some(namespace), &name))
        .await?
    {
        Some(kv) => objects::from_kv(kind, &kv)?,
        None => {
            return Err(forbidden(
                write,
                format!(
                    "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
                ),
            ));
        }
    };
    let no_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_pull_secrets
        && let Some(secrets) = account
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
    {
        spec.insert("imagePullSecrets".into(), json!(secrets));
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Five random characters of `[a-z0-9]`, as Kubernetes' generated names end.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The projected volume of the token, the cluster CA and the namespace.
pub(crate) fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 0o644,
        },
    })
}

/// Kubernetes' `mountServiceAccountToken`.
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|volumes| {
            volumes.iter().find_map(|v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .filter(|n| n.starts_with(VOLUME_PREFIX))
                    .map(str::to_string)
            })
        });
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix()));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut() {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                needs_volume = true;
            }
        }
    }
    if existing.is_none() && needs_volume {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_container_gets_the_mount_and_the_pod_one_volume() {
        let mut s = spec(json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}],
        }));
        mount_token(&mut s);
        let volumes = s["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(volumes[0]["projected"]["defaultMode"], 420);
        for (list, i) in [("initContainers", 0), ("containers", 0), ("containers", 1)] {
            let mounts = s[list][i]["volumeMounts"].as_array().unwrap();
            assert_eq!(
                mounts.last().unwrap(),
                &json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH})
            );
        }
    }

    #[test]
    fn a_container_mounting_the_path_itself_keeps_its_mount() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut s = spec(json!({"containers": [{"name": "a", "volumeMounts": [own.clone()]}]}));
        mount_token(&mut s);
        assert!(s.get("volumes").is_none());
        assert_eq!(s["containers"][0]["volumeMounts"], json!([own]));
    }
}
