//! Pruning of fields a structural schema does not specify, and defaulting from its `default`s,
//! as kube-apiserver does for custom resources (structural pruning, then dropping non-nullable
//! nulls without defaults, then defaulting).

use serde_json::{Map, Value};

use super::schema::Schema;

/// The fields of ObjectMeta a client may send (unknown fields in `metadata` are pruned too).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes from `obj` (a whole custom resource) every field `schema` does not specify, keeping
/// `apiVersion`, `kind` and the known fields of `metadata` at the root and in embedded resources.
/// Returns the removed fields' paths (`spec.foo`, `spec.items[0].bar`) in document order.
pub fn prune_object(schema: &Schema, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_node(schema, obj, "", true, &mut out);
    out
}

fn prune_node(s: &Schema, v: &mut Value, path: &str, resource_root: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let root = resource_root || s.embedded_resource;
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let p = child(path, &k);
                if root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if root && k == "metadata" {
                    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                        prune_meta(meta, &p, out);
                    }
                    continue;
                }
                match s.property(&k) {
                    Some(sub) => {
                        if let Some(x) = map.get_mut(&k) {
                            prune_node(sub, x, &p, false, out);
                        }
                    }
                    None if s.preserve_unknown_fields => {}
                    None => {
                        map.remove(&k);
                        out.push(p);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for (i, x) in items.iter_mut().enumerate() {
                    prune_node(item, x, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

fn prune_meta(meta: &mut Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let unknown: Vec<String> = meta
        .keys()
        .filter(|k| !OBJECT_META.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        meta.remove(&k);
        out.push(child(path, &k));
    }
}

/// Drops `null` values of fields that are neither nullable nor defaulted (Kubernetes'
/// `PruneNonNullableNullsWithoutDefaults`).
pub fn prune_nulls(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let Some(sub) = s.property(&k) else {
                    continue;
                };
                if map.get(&k).is_some_and(Value::is_null) {
                    if !sub.nullable && sub.default.is_none() {
                        map.remove(&k);
                    }
                } else if let Some(x) = map.get_mut(&k) {
                    prune_nulls(sub, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for x in items {
                    prune_nulls(item, x);
                }
            }
        }
        _ => {}
    }
}

fn non_nullable_null(v: &Value, s: &Schema) -> bool {
    v.is_null() && !s.nullable
}

/// Fills in `default`s: a missing property (or a `null` one that is not nullable) takes its
/// schema's default, then defaulting continues inside it (Kubernetes' structural `Default`).
pub fn apply_defaults(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, sub) in &s.properties {
                if let Some(d) = &sub.default
                    && map.get(k).is_none_or(|x| non_nullable_null(x, sub))
                {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, x) in map.iter_mut() {
                if let Some(sub) = s.properties.get(k) {
                    apply_defaults(sub, x);
                } else if let Some(ap) = &s.additional_properties {
                    if let Some(d) = &ap.default
                        && non_nullable_null(x, ap)
                    {
                        *x = d.clone();
                    }
                    apply_defaults(ap, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for x in items {
                    if let Some(d) = &item.default
                        && non_nullable_null(x, item)
                    {
                        *x = d.clone();
                    }
                    apply_defaults(item, x);
                }
            }
        }
        _ => {}
    }
}
