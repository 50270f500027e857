//! Scheduling by WIT world, the API server's part: on pod create, each container whose image is
//! hosted by the cluster's registry (ConfigMap `kube-public/skiff-info`, key `registry`, which
//! `skiff up` writes) is looked up there; the imports its artifact records (manifest annotation
//! `dev.skiff.wit.imports`, written by `skiff push` and the SDK) are copied into the pod's
//! `skiff.dev/imports` annotation for the scheduler, and a pod importing an interface that no
//! node provides (Node annotation `skiff.dev/interfaces`) is refused — dry runs included — with
//! the interface named.
//!
//! Not checked, never refused: images of other registries, a registry that cannot be reached
//! within [`LOOKUP_TIMEOUT`] or asks for credentials (the lookup is an anonymous pull, as the
//! registry allows by default), artifacts without the annotation, and clusters where some node
//! does not advertise its interfaces (it may provide anything). Manifests are looked up once per
//! digest: a pod pinned by digest costs one registry request per server lifetime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use skiff_meta::wit;
use skiff_registry::{ClientOptions, RegistryClient};

use super::{forbidden, list};
use crate::error::ApiError;
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// How long a pod create waits for the registry before admitting the pod unchecked.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The ConfigMap naming the cluster's registry.
const INFO_CONFIGMAP: (&str, &str) = ("kube-public", "skiff-info");

/// Digests remembered before the cache is emptied (each entry is a short list of names).
const CACHE_LIMIT: usize = 4096;

/// Looks images up in the registry; one per server (`AppState.wit`).
#[derive(Default)]
pub(crate) struct WitResolver {
    client: OnceLock<Result<RegistryClient, String>>,
    /// Imports recorded by manifest digest (`None`: the artifact records none).
    by_digest: Mutex<HashMap<String, Option<Vec<String>>>>,
}

impl WitResolver {
    fn client(&self) -> Result<&RegistryClient, &str> {
        self.client
            .get_or_init(|| {
                // Content-addressed and written through renames: servers may share it.
                let dir = std::env::temp_dir().join("skiff-apiserver-manifests");
                RegistryClient::new(ClientOptions::new(dir)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The imports the artifact `image` records, `None` when it records none or cannot be
    /// looked up now.
    async fn imports(&self, image: &str) -> Option<Vec<String>> {
        let pinned = image.split_once('@').map(|(_, d)| d.to_string());
        if let Some(d) = &pinned
            && let Some(hit) = self.cached(d)
        {
            return hit;
        }
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = e, "no registry client: pod imports are not checked");
                return None;
            }
        };
        let (digest, annotations) = match tokio::time::timeout(
            LOOKUP_TIMEOUT,
            client.manifest_annotations(image),
        )
        .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(image, error = %e, "image not looked up: its imports are not checked");
                return None;
            }
            Err(_) => {
                tracing::debug!(image, "registry lookup timed out: imports not checked");
                return None;
            }
        };
        let imports = annotations
            .get(wit::IMPORTS_ANNOTATION)
            .and_then(|v| wit::parse_list(v).ok());
        let mut cache = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(digest.to_string(), imports.clone());
        imports
    }

    fn cached(&self, digest: &str) -> Option<Option<Vec<String>>> {
        let cache = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(digest).cloned()
    }
}

/// The plugin.
pub(crate) struct WitImports;

impl Admission for WitImports {
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
                ("", "pods", Operation::Create) if write.subresource.is_none() => {
                    admit_pod(state, write, obj).await
                }
                _ => Ok(()),
            }
        })
    }
}

/// The cluster's registry, `HOST:PORT`, when the cluster publishes one.
async fn cluster_registry(state: &AppState) -> Result<Option<String>, ApiError> {
    let kind = skiff_kinds::find("", "v1", "configmaps").expect("configmaps are a known kind");
    let (ns, name) = INFO_CONFIGMAP;
    let Some(kv) = state.store.get(&objects::key(kind, Some(ns), name)).await? else {
        return Ok(None);
    };
    let cm = objects::from_kv(kind, &kv)?;
    Ok(cm
        .pointer("/data/registry")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|r| !r.is_empty()))
}

/// The registry part (`HOST[:PORT]`) of an image reference that names one.
fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

async fn admit_pod(state: &AppState, write: &Write<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let containers: Vec<(String, String)> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| obj.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_string(),
                c.get("image")?.as_str()?.to_string(),
            ))
        })
        .collect();
    if containers.is_empty() {
        return Ok(());
    }
    let Some(registry) = cluster_registry(state).await? else {
        return Ok(());
    };
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, image) in &containers {
        if registry_of(image) != Some(registry.as_str()) {
            continue;
        }
        if let Some(imports) = state.wit.imports(image).await {
            found.insert(name.clone(), imports);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    record(obj, &found);
    check(state, write, &found).await
}

/// Writes `found` into the pod's `skiff.dev/imports`, over the entries of the same containers.
fn record(obj: &mut Value, found: &BTreeMap<String, Vec<String>>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    let mut all = annotations
        .get(wit::POD_IMPORTS)
        .and_then(Value::as_str)
        .and_then(|v| wit::parse_pod_imports(v).ok())
        .unwrap_or_default();
    all.extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
    let value = serde_json::to_string(&all).unwrap_or_else(|_| "{}".into());
    annotations[wit::POD_IMPORTS] = Value::String(value);
}

/// Refuses the pod when one of its containers imports an interface no node provides.
async fn check(
    state: &AppState,
    write: &Write<'_>,
    found: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    let kind = skiff_kinds::find("", "v1", "nodes").expect("nodes are a known kind");
    let nodes = list(state, kind, None).await?;
    if nodes.is_empty() {
        return Ok(());
    }
    let mut advertised: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        let Some(value) = n
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(wit::NODE_INTERFACES))
            .and_then(Value::as_str)
        else {
            // A node that does not say may provide anything.
            return Ok(());
        };
        advertised.push(wit::parse_list(value).unwrap_or_default());
    }
    for (container, imports) in found {
        let unknown: Vec<&str> = imports
            .iter()
            .filter(|i| advertised.iter().all(|have| !wit::provides(have, i)))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let names = unknown.join(", ");
            let what = if unknown.len() == 1 {
                "an interface"
            } else {
                "interfaces"
            };
            return Err(forbidden(
                write,
                format!(
                    "container \"{container}\" imports {names}, {what} no node provides \
                     (0/{} nodes provide {names})",
                    nodes.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_of_an_image() {
        assert_eq!(
            registry_of("127.0.0.1:5000/kv@sha256:ab"),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            registry_of("registry.example/app:1"),
            Some("registry.example")
        );
        assert_eq!(registry_of("localhost/app"), Some("localhost"));
        assert_eq!(registry_of("library/nginx"), None);
        assert_eq!(registry_of("nginx"), None);
    }

    #[test]
    fn recording_keeps_other_containers() {
        let mut pod = serde_json::json!({"metadata": {"annotations": {
            wit::POD_IMPORTS: r#"{"side":["a:b/c"]}"#
        }}});
        let found = BTreeMap::from([(
            "app".to_string(),
            vec!["wasi:keyvalue/store@0.2.0-draft".to_string()],
        )]);
        record(&mut pod, &found);
        let value = pod["metadata"]["annotations"][wit::POD_IMPORTS]
            .as_str()
            .unwrap();
        let all = wit::parse_pod_imports(value).unwrap();
        assert_eq!(all["side"], ["a:b/c"]);
        assert_eq!(all["app"], ["wasi:keyvalue/store@0.2.0-draft"]);
        let mut bare = serde_json::json!({"metadata": {}});
        record(&mut bare, &found);
        assert!(bare["metadata"]["annotations"][wit::POD_IMPORTS].is_string());
    }
}
