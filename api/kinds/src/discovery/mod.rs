//! Discovery documents: `/api`, `/apis`, `/apis/{group}`, the per-group-version resource lists, and
//! aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1).

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{Kind, kinds};

/// API groups in the order the server lists them, each with its versions, preferred first.
const GROUPS: &[(&str, &[&str])] = &[
    ("apps", &["v1"]),
    ("events.k8s.io", &["v1"]),
    ("authentication.k8s.io", &["v1"]),
    ("authorization.k8s.io", &["v1"]),
    ("autoscaling", &["v2", "v1"]),
    ("batch", &["v1"]),
    ("certificates.k8s.io", &["v1"]),
    ("networking.k8s.io", &["v1"]),
    ("policy", &["v1"]),
    ("rbac.authorization.k8s.io", &["v1"]),
    ("scheduling.k8s.io", &["v1"]),
    ("coordination.k8s.io", &["v1"]),
    ("node.k8s.io", &["v1"]),
    ("discovery.k8s.io", &["v1"]),
];

/// The named groups served, in discovery order.
pub fn groups() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().map(|(g, _)| *g)
}

/// The versions of a group, preferred first (`["v1"]` for the core group `""`).
pub fn versions(group: &str) -> Option<&'static [&'static str]> {
    if group.is_empty() {
        return Some(&["v1"]);
    }
    GROUPS.iter().find(|(g, _)| *g == group).map(|(_, v)| *v)
}

/// The preferred version of a group.
pub fn preferred_version(group: &str) -> Option<&'static str> {
    versions(group).and_then(|v| v.first().copied())
}

/// Every group-version path served: `api/v1`, `apis/apps/v1`, …
pub fn group_version_paths() -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    for (g, vs) in GROUPS {
        for v in *vs {
            out.push(format!("apis/{g}/{v}"));
        }
    }
    out
}

/// `/api`: the core group's versions.
pub fn api_versions() -> Value {
    api_versions_with_address("")
}

/// `/api` naming the address clients reach the server at.
pub fn api_versions_with_address(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    json!({
        "name": group,
        "versions": versions.iter().map(|v| group_version(group, v)).collect::<Vec<_>>(),
        "preferredVersion": group_version(group, versions[0]),
    })
}

/// `/apis`: every named group with its versions and preferred version.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|(g, v)| group_entry(g, v)).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`.
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let mut entry = group_entry(g, v);
    let obj = entry.as_object_mut()?;
    let mut out = Map::new();
    out.insert("kind".into(), json!("APIGroup"));
    out.insert("apiVersion".into(), json!("v1"));
    out.append(obj);
    Some(Value::Object(out))
}

/// The kinds of one group-version, sorted by resource name as the server lists them.
pub fn kinds_in(group: &str, version: &str) -> Vec<&'static Kind> {
    let mut ks: Vec<&Kind> = kinds()
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    ks.sort_by_key(|k| k.plural);
    ks
}

/// The `storageVersionHash` of a kind: base64 of the first 8 bytes of sha256("group/version/Kind")
/// of the version it is stored as.
pub fn storage_version_hash(kind: &Kind) -> String {
    let storage = kind.storage_kind();
    let gvk = format!("{}/{}/{}", storage.group, storage.version, storage.kind);
    let digest = Sha256::digest(gvk.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    if !versions(group)?.contains(&version) {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds_in(group, version) {
        let mut r = Map::new();
        r.insert("name".into(), json!(k.plural));
        r.insert("singularName".into(), json!(k.singular));
        r.insert("namespaced".into(), json!(k.namespaced));
        r.insert("kind".into(), json!(k.kind));
        r.insert("verbs".into(), json!(k.verbs));
        if !k.short_names.is_empty() {
            r.insert("shortNames".into(), json!(k.short_names));
        }
        if !k.categories.is_empty() {
            r.insert("categories".into(), json!(k.categories));
        }
        r.insert("storageVersionHash".into(), json!(storage_version_hash(k)));
        resources.push(Value::Object(r));
        for sub in k.subresource_infos() {
            let mut r = Map::new();
            r.insert("name".into(), json!(format!("{}/{}", k.plural, sub.name)));
            r.insert("singularName".into(), json!(""));
            r.insert("namespaced".into(), json!(k.namespaced));
            if sub.group != k.group || sub.version != k.version {
                r.insert("group".into(), json!(sub.group));
                r.insert("version".into(), json!(sub.version));
            }
            r.insert("kind".into(), json!(sub.kind));
            r.insert("verbs".into(), json!(sub.verbs));
            resources.push(Value::Object(r));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn discovery_resource(k: &Kind) -> Value {
    let mut r = Map::new();
    r.insert("resource".into(), json!(k.plural));
    r.insert(
        "responseKind".into(),
        json!({"group": "", "kind": k.kind, "version": ""}),
    );
    r.insert(
        "scope".into(),
        json!(if k.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    r.insert("singularResource".into(), json!(k.singular));
    r.insert("verbs".into(), json!(k.verbs));
    if !k.short_names.is_empty() {
        r.insert("shortNames".into(), json!(k.short_names));
    }
    if !k.categories.is_empty() {
        r.insert("categories".into(), json!(k.categories));
    }
    let subs: Vec<Value> = k
        .subresource_infos()
        .into_iter()
        .map(|s| {
            let rk = if s.group == k.group && s.version == k.version && s.kind == k.kind {
                json!({"group": "", "kind": s.kind, "version": ""})
            } else {
                json!({"group": s.group, "kind": s.kind, "version": s.version})
            };
            json!({"subresource": s.name, "responseKind": rk, "verbs": s.verbs})
        })
        .collect();
    if !subs.is_empty() {
        r.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(r)
}

fn discovery_group(group: &str, versions: &[&str]) -> Value {
    let mut metadata = Map::new();
    if !group.is_empty() {
        metadata.insert("name".into(), json!(group));
    }
    metadata.insert("creationTimestamp".into(), Value::Null);
    json!({
        "metadata": metadata,
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "resources": kinds_in(group, v).into_iter().map(discovery_resource).collect::<Vec<_>>(),
            "freshness": "Current",
        })).collect::<Vec<_>>(),
    })
}

/// Aggregated discovery for `/api` (`core`) or `/apis`, as an `APIGroupDiscoveryList` of
/// `apidiscovery.k8s.io/{version}` (`"v2"` or `"v2beta1"`).
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("", &["v1"])]
    } else {
        GROUPS.iter().map(|(g, v)| discovery_group(g, v)).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests;
