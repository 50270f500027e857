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
    ("storage.k8s.io", &["v1"]),
    ("apiextensions.k8s.io", &["v1"]),
    ("scheduling.k8s.io", &["v1"]),
    ("coordination.k8s.io", &["v1"]),
    ("node.k8s.io", &["v1"]),
    ("discovery.k8s.io", &["v1"]),
];

/// Groups served by the server from elsewhere than its store, listed after the built-in ones as
/// kube-apiserver lists an APIService's group: `metrics.k8s.io` (see
/// [`crate::aggregated_kinds`]). They have no OpenAPI document.
const AGGREGATED_GROUPS: &[(&str, &[&str])] = &[("metrics.k8s.io", &["v1beta1"])];

/// The named groups served, in discovery order.
pub fn groups() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().chain(AGGREGATED_GROUPS).map(|(g, _)| *g)
}

/// The versions of a group, preferred first (`["v1"]` for the core group `""`).
pub fn versions(group: &str) -> Option<&'static [&'static str]> {
    if group.is_empty() {
        return Some(&["v1"]);
    }
    GROUPS
        .iter()
        .chain(AGGREGATED_GROUPS)
        .find(|(g, _)| *g == group)
        .map(|(_, v)| *v)
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
    api_group_list_with(&[])
}

/// Kubernetes' ordering of version names by priority, highest first: GA before beta before
/// alpha (higher major, then higher minor first), then versions that are not of that form,
/// alphabetically (`v1 > v1beta2 > v1beta1 > v1alpha1 > foo`).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    /// (stage rank: 0 GA, 1 beta, 2 alpha, 3 other; major; minor)
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (rank, minor) = if let Some(m) = tail.strip_prefix("beta") {
            (1, m)
        } else if let Some(m) = tail.strip_prefix("alpha") {
            (2, m)
        } else {
            return None;
        };
        if minor.is_empty() || !minor.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some((rank, major, minor.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ra, ma, na)), Some((rb, mb, nb))) => ra.cmp(&rb).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The groups of custom kinds that no built-in group serves, sorted by name, each with its
/// versions in priority order (preferred first).
fn custom_groups(custom: &[&'static Kind]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for k in custom {
        if GROUPS
            .iter()
            .chain(AGGREGATED_GROUPS)
            .any(|(g, _)| *g == k.group)
            || k.group.is_empty()
        {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, vs)) if !vs.contains(&k.version) => vs.push(k.version),
            Some(_) => {}
            None => out.push((k.group, vec![k.version])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| compare_versions(a, b));
    }
    out.sort_by_key(|(g, _)| *g);
    out
}

/// Every named group, built-in first, then the aggregated ones, then those of `custom` kinds.
fn all_groups(custom: &[&'static Kind]) -> Vec<(&'static str, Vec<&'static str>)> {
    GROUPS
        .iter()
        .chain(AGGREGATED_GROUPS)
        .map(|(g, v)| (*g, v.to_vec()))
        .chain(custom_groups(custom))
        .collect()
}

/// `/apis` with the groups of the given custom kinds after the built-in ones.
pub fn api_group_list_with(custom: &[&'static Kind]) -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": all_groups(custom).iter().map(|(g, v)| group_entry(g, v)).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`.
pub fn api_group(group: &str) -> Option<Value> {
    api_group_with(group, &[])
}

/// `/apis/{group}`, for a built-in group or one of the given custom kinds'.
pub fn api_group_with(group: &str, custom: &[&'static Kind]) -> Option<Value> {
    let groups = all_groups(custom);
    let (g, v) = groups.iter().find(|(g, _)| *g == group)?;
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
    kinds_in_with(group, version, &[])
}

/// The built-in and the given custom kinds of one group-version, sorted by resource name.
pub fn kinds_in_with(group: &str, version: &str, custom: &[&'static Kind]) -> Vec<&'static Kind> {
    let mut ks: Vec<&'static Kind> = kinds()
        .iter()
        .chain(crate::aggregated_kinds())
        .chain(custom.iter().copied())
        .filter(|k| k.group == group && k.version == version)
        .collect();
    ks.sort_by_key(|k| k.plural);
    ks
}

/// The `storageVersionHash` of a kind: base64 of the first 8 bytes of sha256("group/version/Kind")
/// of the version it is stored as.
pub fn storage_version_hash(kind: &Kind) -> String {
    let gvk = if kind.is_custom() {
        format!("{}/{}/{}", kind.group, kind.storage_version(), kind.kind)
    } else {
        let storage = kind.storage_kind();
        format!("{}/{}/{}", storage.group, storage.version, storage.kind)
    };
    let digest = Sha256::digest(gvk.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    api_resource_list_with(group, version, &[])
}

/// `/api/v1` or `/apis/{group}/{version}`, for a built-in group-version or one of the given
/// custom kinds'.
pub fn api_resource_list_with(
    group: &str,
    version: &str,
    custom: &[&'static Kind],
) -> Option<Value> {
    let served = versions(group).is_some_and(|vs| vs.contains(&version))
        || custom
            .iter()
            .any(|k| k.group == group && k.version == version);
    if !served {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds_in_with(group, version, custom) {
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
        if !crate::is_aggregated(k) {
            r.insert("storageVersionHash".into(), json!(storage_version_hash(k)));
        }
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

fn discovery_group(group: &str, versions: &[&str], custom: &[&'static Kind]) -> Value {
    let mut metadata = Map::new();
    if !group.is_empty() {
        metadata.insert("name".into(), json!(group));
    }
    metadata.insert("creationTimestamp".into(), Value::Null);
    json!({
        "metadata": metadata,
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "resources": kinds_in_with(group, v, custom).into_iter().map(discovery_resource).collect::<Vec<_>>(),
            "freshness": "Current",
        })).collect::<Vec<_>>(),
    })
}

/// Aggregated discovery for `/api` (`core`) or `/apis`, as an `APIGroupDiscoveryList` of
/// `apidiscovery.k8s.io/{version}` (`"v2"` or `"v2beta1"`).
pub fn aggregated(core: bool, version: &str) -> Value {
    aggregated_with(core, version, &[])
}

/// Aggregated discovery with the given custom kinds (their groups after the built-in ones).
pub fn aggregated_with(core: bool, version: &str, custom: &[&'static Kind]) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("", &["v1"], custom)]
    } else {
        all_groups(custom)
            .iter()
            .map(|(g, v)| discovery_group(g, v, custom))
            .collect()
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
