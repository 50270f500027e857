//! Kubernetes patch semantics over `serde_json::Value`: JSON patch, merge patch, strategic merge
//! patch and server-side apply with managed fields.
//!
//! How the API server uses it, by request content type:
//! - `application/json-patch+json`: [`json_patch()`];
//! - `application/merge-patch+json`: [`merge_patch`];
//! - `application/strategic-merge-patch+json`: [`strategic_merge_patch`] with the OpenAPI type
//!   name of the kind ([`schema::type_for_kind`] maps `apiVersion`/`kind` to it);
//! - `application/apply-patch+yaml`: [`apply::apply`] (the body parsed to JSON first), or
//!   [`apply::apply_subresource`] for `/status`;
//! - after every other write (create, update, the three patches above):
//!   [`apply::record_update`] (or [`apply::record_update_subresource`]) with the old and new
//!   object, so that `metadata.managedFields` stays current.
//!
//! Errors map to Kubernetes statuses through [`Error::http_status`] and [`Error::reason`];
//! a conflict carries one [`FieldConflict`] per field for `Status.details.causes`
//! (type `FieldManagerConflict`), and its `Display` is the API server's message.

pub mod apply;
mod fieldpath;
pub mod schema;
mod smp;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use apply::FieldConflict;

/// Errors of the patch functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The patch document itself is malformed (wrong JSON shape, unknown directive, missing merge
    /// key). The API server answers 400 BadRequest.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// The patch is well formed but cannot be applied to this object: a JSON patch `test` failed
    /// or a path does not exist. The API server answers 422 Invalid.
    #[error("patch cannot be applied: {0}")]
    Invalid(String),
    /// Server-side apply found fields owned by other managers with different values. The API
    /// server answers 409 Conflict with one cause per conflict.
    #[error("{}", apply::conflicts_message(.0))]
    Conflict(Vec<FieldConflict>),
}

impl Error {
    /// The HTTP status code the API server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidPatch(_) => 400,
            Error::Invalid(_) => 422,
            Error::Conflict(_) => 409,
        }
    }

    /// The Kubernetes `Status.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidPatch(_) => "BadRequest",
            Error::Invalid(_) => "Invalid",
            Error::Conflict(_) => "Conflict",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// RFC 6902 JSON patch: `patch` must be an array of operations.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value> {
    if !patch.is_array() {
        return Err(Error::InvalidPatch(
            "json patch must be an array of operations".to_string(),
        ));
    }
    let mut patch = patch.clone();
    if let Value::Array(ops) = &mut patch {
        for op in ops.iter_mut() {
            // A `test` without a value tests for null, as in the API server.
            if let Value::Object(op) = op
                && op.get("op").and_then(Value::as_str) == Some("test")
                && !op.contains_key("value")
            {
                op.insert("value".to_string(), Value::Null);
            }
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| Error::InvalidPatch(format!("json patch: {e}")))?;
    let mut out = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
        {
            // As in the API server, `test` for null passes when the member is absent but its
            // parent exists (kube-rs tests `/metadata/finalizers` for null before adding it).
            let path = test.path.as_str();
            match out.pointer(path) {
                Some(Value::Null) => continue,
                None if parent_is_object(&out, path) => continue,
                _ => {}
            }
        }
        let replace_absent;
        let op = match op {
            // As in the API server, `replace` of an absent object member adds it.
            json_patch::PatchOperation::Replace(r)
                if out.pointer(r.path.as_str()).is_none()
                    && parent_is_object(&out, r.path.as_str()) =>
            {
                replace_absent = json_patch::PatchOperation::Add(json_patch::AddOperation {
                    path: r.path.clone(),
                    value: r.value.clone(),
                });
                &replace_absent
            }
            op => op,
        };
        json_patch::patch(&mut out, std::slice::from_ref(op)).map_err(|e| {
            Error::Invalid(format!("operation {index} ({}): {}", op_name(op), e.kind))
        })?;
    }
    Ok(out)
}

fn parent_is_object(doc: &Value, path: &str) -> bool {
    let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
    !path.is_empty() && doc.pointer(parent).is_some_and(Value::is_object)
}

fn op_name(op: &json_patch::PatchOperation) -> String {
    use json_patch::PatchOperation as Op;
    let name = match op {
        Op::Add(_) => "add",
        Op::Remove(_) => "remove",
        Op::Replace(_) => "replace",
        Op::Move(_) => "move",
        Op::Copy(_) => "copy",
        Op::Test(_) => "test",
    };
    format!("{name} {}", op.path())
}

/// RFC 7386 JSON merge patch. Like the API server, only an object is accepted as the patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value> {
    if !patch.is_object() {
        return Err(Error::InvalidPatch(
            "merge patch must be a JSON object".to_string(),
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Kubernetes strategic merge patch. `type_name` is the OpenAPI definition name of the object's
/// type, e.g. "io.k8s.api.apps.v1.Deployment". Unknown types (no schema) fall back to merge patch
/// semantics, as Kubernetes does for CRDs; patch directives are still honoured and never stored.
pub fn strategic_merge_patch(doc: &Value, patch: &Value, type_name: &str) -> Result<Value> {
    smp::strategic_merge_patch(doc, patch, type_name)
}
