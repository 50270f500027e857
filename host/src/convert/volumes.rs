//! Pod volumes as runtime volume specs: emptyDir, hostPath, persistentVolumeClaim (the
//! directory its bound volume resolved to on this node), and the file sets of configMap,
//! secret, downwardAPI and projected volumes (configMap, secret, downwardAPI and
//! serviceAccountToken sources). Secret data and tokens are marked sensitive: the runtime keeps
//! them on a tmpfs, never on the node's disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{KeyToPath, Pod, ServiceAccountTokenProjection, Volume};
use skiff_runtime::{FileContent, VolumeSource, VolumeSpec};

use super::Addrs;
use super::env::{field_value, find_container};
use super::refs::{Refs, config_map_data, secret_data, token_source};
use super::resources::resource_value;
use crate::storage::ClaimPaths;

/// Applies `items` (key -> path) to a data map, as kubelet does for configMap/secret volumes.
fn project(
    what: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<BTreeMap<String, FileContent>, String> {
    let mode = |m: Option<i32>| m.or(default_mode).map(|m| (m & 0o777) as u32);
    let mut out = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            FileContent {
                                data: v.clone().into(),
                                mode: mode(item.mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(format!("couldn't find key {} in {what}", item.key)),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(
                    k,
                    FileContent {
                        data: v.into(),
                        mode: mode(None),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Where a volume's files come from.
#[derive(Clone, Copy)]
enum Source {
    ConfigMap,
    Secret,
}

/// The files of a ConfigMap or Secret volume (or projected source).
fn source_files(
    source: Source,
    ns: &str,
    name: &str,
    refs: &Refs,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<BTreeMap<String, FileContent>, String> {
    let (data, kind, lower) = match source {
        Source::ConfigMap => (
            refs.config_maps
                .get(name)
                .and_then(Option::as_ref)
                .map(config_map_data),
            "ConfigMap",
            "configmap",
        ),
        Source::Secret => (
            refs.secrets
                .get(name)
                .and_then(Option::as_ref)
                .map(secret_data),
            "Secret",
            "secret",
        ),
    };
    match data {
        Some(data) => project(
            &format!("{kind} {ns}/{name}"),
            data,
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("{lower} \"{name}\" not found")),
    }
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<k8s_openapi::api::core::v1::DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    addrs: Addrs,
) -> Result<BTreeMap<String, FileContent>, String> {
    let mut out = BTreeMap::new();
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, addrs)?
        } else if let Some(r) = &item.resource_field_ref {
            let c = find_container(pod, r.container_name.as_deref().unwrap_or(""))
                .ok_or_else(|| format!("downwardAPI {}: unknown container", item.path))?;
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileContent {
                data: value.into_bytes().into(),
                mode: item.mode.or(default_mode).map(|m| (m & 0o777) as u32),
            },
        );
    }
    Ok(out)
}

/// The file of a projected `serviceAccountToken` source: the token [`Refs`] holds for it (read
/// by [`super::fetch`]), at its `path`, with the volume's `defaultMode`.
fn token_file(
    t: &ServiceAccountTokenProjection,
    refs: &Refs,
    default_mode: Option<i32>,
) -> Result<BTreeMap<String, FileContent>, String> {
    let token = refs
        .tokens
        .get(&token_source(t))
        .ok_or_else(|| "failed to fetch token: no token was requested for it".to_string())?;
    Ok(BTreeMap::from([(
        t.path.clone(),
        FileContent {
            data: token.0.clone().into_bytes().into(),
            mode: default_mode.map(|m| (m & 0o777) as u32),
        },
    )]))
}

/// Files of a volume and whether they are secret.
pub(crate) type VolumeFiles = (BTreeMap<String, FileContent>, bool);

/// The files of a file-set volume (configMap, secret, downwardAPI, projected); `None` for the
/// other kinds.
pub(crate) fn volume_files(
    pod: &Pod,
    v: &Volume,
    refs: &Refs,
    addrs: Addrs,
) -> Option<Result<VolumeFiles, String>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(cm) = &v.config_map {
        let optional = cm.optional.unwrap_or(false);
        return Some(
            source_files(
                Source::ConfigMap,
                ns,
                &cm.name,
                refs,
                cm.items.as_ref(),
                cm.default_mode,
                optional,
            )
            .map(|f| (f, false)),
        );
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional.unwrap_or(false);
        return Some(
            source_files(
                Source::Secret,
                ns,
                &name,
                refs,
                s.items.as_ref(),
                s.default_mode,
                optional,
            )
            .map(|f| (f, true)),
        );
    }
    if let Some(d) = &v.downward_api {
        return Some(
            downward_files(pod, d.items.as_ref(), d.default_mode, addrs).map(|f| (f, false)),
        );
    }
    if let Some(p) = &v.projected {
        let mut files = BTreeMap::new();
        let mut sensitive = false;
        for src in p.sources.iter().flatten() {
            let part = if let Some(cm) = &src.config_map {
                source_files(
                    Source::ConfigMap,
                    ns,
                    &cm.name,
                    refs,
                    cm.items.as_ref(),
                    p.default_mode,
                    cm.optional.unwrap_or(false),
                )
            } else if let Some(s) = &src.secret {
                sensitive = true;
                source_files(
                    Source::Secret,
                    ns,
                    &s.name,
                    refs,
                    s.items.as_ref(),
                    p.default_mode,
                    s.optional.unwrap_or(false),
                )
            } else if let Some(d) = &src.downward_api {
                downward_files(pod, d.items.as_ref(), p.default_mode, addrs)
            } else if let Some(t) = &src.service_account_token {
                // A token is a credential: kept off disk like a secret.
                sensitive = true;
                token_file(t, refs, p.default_mode)
            } else if src.cluster_trust_bundle.is_some() {
                Err("clusterTrustBundle projections are not supported".to_string())
            } else if src.pod_certificate.is_some() {
                Err("podCertificate projections are not supported".to_string())
            } else {
                Ok(BTreeMap::new())
            };
            match part {
                Ok(part) => files.extend(part),
                Err(e) => return Some(Err(e)),
            }
        }
        return Some(Ok((files, sensitive)));
    }
    None
}

/// The runtime volumes of a pod; `claims` are its claims resolved to directories
/// ([`crate::storage::resolve_claims`]).
pub(crate) fn volumes(
    pod: &Pod,
    refs: &Refs,
    claims: &ClaimPaths,
    addrs: Addrs,
) -> Result<Vec<VolumeSpec>, String> {
    let mut out = Vec::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let source = if let Some(e) = &v.empty_dir {
            VolumeSource::EmptyDir {
                memory: e.medium.as_deref() == Some("Memory"),
            }
        } else if let Some(h) = &v.host_path {
            VolumeSource::HostPath {
                path: PathBuf::from(&h.path),
            }
        } else if let Some(c) = &v.persistent_volume_claim {
            let path = claims.get(&c.claim_name).ok_or_else(|| {
                format!(
                    "volume {}: persistentvolumeclaim \"{}\" is not resolved on this node",
                    v.name, c.claim_name
                )
            })?;
            VolumeSource::HostPath { path: path.clone() }
        } else if let Some(files) = volume_files(pod, v, refs, addrs) {
            let (files, sensitive) = files.map_err(|e| format!("volume {}: {e}", v.name))?;
            VolumeSource::Files { files, sensitive }
        } else {
            return Err(format!(
                "volume {}: this kind of volume is not supported by the wasm runtime",
                v.name
            ));
        };
        out.push(VolumeSpec {
            name: v.name.clone(),
            source,
        });
    }
    Ok(out)
}
