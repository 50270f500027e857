//! Object metadata helpers: keys, names, timestamps, and the system fields the server owns.

use rand::Rng;
use serde_json::{Map, Value, json};
use skiff_kinds::Kind;
use skiff_store::KeyValue;

use crate::error::{ApiError, Cause};

/// The store key of one object.
pub fn key(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/{name}", kind.storage_prefix()),
        _ => format!("{}{name}", kind.storage_prefix()),
    }
}

/// The store prefix of a collection: one namespace, or all of them.
pub fn collection_prefix(kind: &Kind, namespace: Option<&str>) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/", kind.storage_prefix()),
        _ => kind.storage_prefix(),
    }
}

/// RFC 3339 UTC with seconds precision, as Kubernetes writes `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 3339 with microseconds, as Kubernetes writes `metav1.MicroTime`.
pub fn now_micro_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `metadata`, created if missing. The object must be a JSON object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let map = obj.as_object_mut().expect("objects are JSON objects");
    let entry = map.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("metadata is an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// Whether `kind` is served in a version other than the one it is stored in.
pub fn converts(kind: &Kind) -> bool {
    // Custom kinds convert with `None` conversion: only `apiVersion` differs (set on read).
    !kind.is_custom() && !std::ptr::eq(kind.storage_kind(), kind)
}

/// The bytes stored for an object: JSON of its storage version.
pub fn encode(kind: &Kind, obj: &Value) -> Result<Vec<u8>, ApiError> {
    let result = if converts(kind) {
        serde_json::to_vec(&skiff_kinds::convert::to_storage(kind, obj))
    } else if kind.is_custom() && kind.version != kind.storage_version() {
        // `None` conversion: a custom resource is stored under its CRD's storage version.
        let mut stored = obj.clone();
        if let Some(m) = stored.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                json!(format!("{}/{}", kind.group, kind.storage_version())),
            );
        }
        serde_json::to_vec(&stored)
    } else {
        serde_json::to_vec(obj)
    };
    result.map_err(|e| ApiError::internal(format!("encoding an object: {e}")))
}

/// Parses a stored value and shows its revision as `metadata.resourceVersion`.
pub fn from_kv(kind: &Kind, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        tracing::error!(key = %kv.key, error = %e, "stored object is not valid JSON");
        ApiError::internal("a stored object could not be decoded")
    })?;
    if converts(kind) {
        obj = skiff_kinds::convert::from_storage(kind, &obj);
    }
    if !obj.is_object() {
        return Err(ApiError::internal("a stored object could not be decoded"));
    }
    set_type_meta(kind, &mut obj);
    if kind.is_custom() {
        // Defaults of the CRD's schema also apply to objects stored before they existed.
        skiff_kinds::crd::default_on_read(kind, &mut obj);
    }
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(obj)
}

/// The labels of a stored object, read without decoding the rest of it.
pub fn stored_labels(value: &[u8]) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    struct Meta {
        labels: Option<Map<String, Value>>,
    }
    #[derive(serde::Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    let obj: Obj = serde_json::from_slice(value)
        .map_err(|_| ApiError::internal("a stored object could not be decoded"))?;
    let labels = obj.metadata.and_then(|m| m.labels).unwrap_or_default();
    Ok(json!({"metadata": {"labels": labels}}))
}

/// Writes a stored object as a list item — `resourceVersion` set, `apiVersion` and `kind` left
/// out, as Kubernetes lists them — decoding only its top level and `metadata`. For kinds stored
/// in their served version.
pub fn write_list_item(kv: &KeyValue, out: &mut Vec<u8>) -> Result<(), ApiError> {
    use serde_json::value::RawValue;
    let bad = |_| ApiError::internal("a stored object could not be decoded");
    let top: indexmap::IndexMap<String, &RawValue> =
        serde_json::from_slice(&kv.value).map_err(bad)?;
    out.push(b'{');
    let mut first = true;
    let mut comma = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    let mut wrote_meta = false;
    for (key, raw) in &top {
        if key == "apiVersion" || key == "kind" {
            continue;
        }
        comma(out);
        serde_json::to_writer(&mut *out, key).map_err(bad)?;
        out.push(b':');
        if key == "metadata" {
            let mut meta: indexmap::IndexMap<String, &RawValue> =
                serde_json::from_str(raw.get()).map_err(bad)?;
            let rv = RawValue::from_string(format!("\"{}\"", kv.mod_revision)).map_err(bad)?;
            meta.insert("resourceVersion".into(), &rv);
            serde_json::to_writer(&mut *out, &meta).map_err(bad)?;
            wrote_meta = true;
        } else {
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    if !wrote_meta {
        comma(out);
        out.extend_from_slice(
            format!(
                "\"metadata\":{{\"resourceVersion\":\"{}\"}}",
                kv.mod_revision
            )
            .as_bytes(),
        );
    }
    out.push(b'}');
    Ok(())
}

/// Sets `apiVersion` and `kind` to the served version of `kind`.
pub fn set_type_meta(kind: &Kind, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
}

/// Checks `apiVersion`/`kind` in a body against the URL's resource, filling them when absent.
pub fn check_type_meta(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    };
    let want_av = kind.api_version();
    if let Some(av) = map.get("apiVersion") {
        let av = av.as_str().unwrap_or_default();
        if av != want_av {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    if let Some(k) = map.get("kind") {
        let k = k.as_str().unwrap_or_default();
        if k != kind.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
    }
    if let Some(m) = map.get("metadata")
        && !m.is_object()
    {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    set_type_meta(kind, obj);
    Ok(())
}

/// Checks the body's namespace against the URL's, filling it when absent.
pub fn check_namespace(
    kind: &Kind,
    obj: &mut Value,
    url_namespace: Option<&str>,
) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace").map(str::to_string);
    match (kind.namespaced, url_namespace) {
        (true, Some(ns)) => {
            if let Some(b) = body_ns.filter(|b| !b.is_empty())
                && b != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta_mut(obj).insert("namespace".into(), json!(ns));
        }
        (true, None) => {
            return Err(ApiError::bad_request(
                "a namespace is required for namespaced resources",
            ));
        }
        (false, _) => {
            meta_mut(obj).remove("namespace");
        }
    }
    Ok(())
}

/// Fills `metadata.name` from `generateName` with five random characters, as Kubernetes does.
pub fn generate_name(obj: &mut Value) {
    let meta = meta_mut(obj);
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if has_name {
        return;
    }
    if let Some(base) = meta
        .get("generateName")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
    {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::rng();
        let base: String = base.chars().take(58).collect();
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        meta.insert("name".into(), json!(format!("{base}{suffix}")));
    }
}

/// The object's name, or a 422 naming `metadata.name` as required.
pub fn require_name(kind: &Kind, obj: &Value) -> Result<String, ApiError> {
    match meta_str(obj, "name").filter(|n| !n.is_empty()) {
        Some(n) => Ok(n.to_string()),
        None => Err(ApiError::invalid(
            kind.group,
            kind.kind,
            kind.plural,
            "",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        )),
    }
}

/// Whether anything outside `metadata` and `status` differs: what bumps `generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(old) != strip(new)
}

/// Whether objects of this kind carry `metadata.generation`: those with a spec, as in Kubernetes.
pub fn tracks_generation(kind: &Kind) -> bool {
    // Custom resources and CRDs always do, as in Kubernetes (their types have no patch schema).
    kind.is_custom()
        || (kind.group == "apiextensions.k8s.io" && kind.kind == "CustomResourceDefinition")
        || (kind.kind != "Namespace"
            && skiff_patch::schema::field(kind.openapi_type, "spec").is_some())
}

/// Bumps `generation` when the spec changed (anything outside metadata and status).
pub fn bump_generation(kind: &Kind, old: &Value, new: &mut Value) {
    // A custom resource without a status subresource counts its status as content too.
    let status_counts = kind.is_custom() && !kind.has_status();
    let changed =
        spec_changed(old, new) || (status_counts && old.get("status") != new.get("status"));
    if !tracks_generation(kind) || !changed {
        return;
    }
    let generation = meta(old)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    meta_mut(new).insert("generation".into(), json!(generation + 1));
}

/// Copies the fields the server owns from the stored object into an update.
pub fn carry_system_fields(old: &Value, new: &mut Value) {
    let old_meta = meta(old).cloned().unwrap_or_default();
    let meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    // Namespaces and names never change through an update.
    for field in ["name", "namespace"] {
        if let Some(v) = old_meta.get(field) {
            meta.insert(field.into(), v.clone());
        }
    }
    if !meta.contains_key("managedFields")
        && let Some(v) = old_meta.get("managedFields")
    {
        meta.insert("managedFields".into(), v.clone());
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(arr) = list.as_array_mut()
        && !arr.iter().any(|f| f.as_str() == Some(finalizer))
    {
        arr.push(json!(finalizer));
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// A `Status` of success, as returned by binding, eviction and some deletes.
pub fn status_success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_name_fills_five_chars() {
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        generate_name(&mut obj);
        let name = meta_str(&obj, "name").unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let mut named = json!({"metadata": {"name": "x", "generateName": "web-"}});
        generate_name(&mut named);
        assert_eq!(meta_str(&named, "name"), Some("x"));
    }

    #[test]
    fn spec_change_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        let c = json!({"metadata": {}, "spec": {"x": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }
}
