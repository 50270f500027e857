//! The `scale` subresource of a custom resource: an autoscaling/v1 Scale read from and written to
//! the paths its CRD names (`specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_kinds::Kind;
use skiff_kinds::crd::ScalePaths;

use crate::body::{content_type, decode_object};
use crate::error::{ApiError, Cause};
use crate::objects::{self, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;
use crate::resource::name_of;
use crate::respond::json_response;
use crate::state::AppState;
use crate::verbs;
use crate::verbs::patch::PatchType;

/// `.spec.replicas` as the JSON pointer `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn paths(kind: &Kind) -> Result<&ScalePaths, ApiError> {
    kind.custom
        .and_then(|c| c.subresources.scale.as_ref())
        .ok_or_else(|| ApiError::no_route(&format!("{}/scale", kind.plural)))
}

/// The Scale of a custom resource.
pub(crate) fn scale_of(kind: &Kind, obj: &Value) -> Result<Value, ApiError> {
    let paths = paths(kind)?;
    let meta = objects::meta(obj).cloned().unwrap_or_default();
    let replicas = |p: &str| {
        obj.pointer(&pointer(p))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let mut status = json!({"replicas": replicas(&paths.status_replicas_path)});
    if let Some(selector) = paths
        .label_selector_path
        .as_deref()
        .and_then(|p| obj.pointer(&pointer(p)))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": replicas(&paths.spec_replicas_path)},
        "status": status,
    }))
}

/// Sets `value` at a JSON pointer, creating the objects on the way.
fn set_at(obj: &mut Value, pointer: &str, value: Value) {
    let mut at = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !at.is_object() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert(part, value);
            return;
        }
        at = map.entry(part).or_insert_with(|| json!({}));
    }
}

/// `PUT` or `PATCH` of a custom resource's scale.
pub(crate) async fn update_scale(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
    let kind = req.kind;
    let spec_path = pointer(&paths(kind)?.spec_replicas_path);
    let name = name_of(req).to_string();
    let write = Write {
        kind,
        namespace: req.namespace.as_deref(),
        name: &name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
    };
    let stored = registry::guaranteed_update(state, &write, |current| {
        let Some((obj, kv)) = current else {
            return Err(ApiError::not_found(kind.group, kind.plural, &name));
        };
        let current = scale_of(kind, obj)?;
        let wanted = if req.method == Method::PUT {
            decode_object(&req.body, &content_type(&req.headers))?
        } else {
            let ptype = verbs::patch::patch_type(req)?;
            let doc = verbs::patch::decode_patch(req, ptype)?;
            match ptype {
                PatchType::Json => skiff_patch::json_patch(&current, &doc),
                PatchType::Merge => skiff_patch::merge_patch(&current, &doc),
                PatchType::Strategic | PatchType::Apply => {
                    return Err(ApiError::unsupported_media_type(&content_type(
                        &req.headers,
                    )));
                }
            }
            .map_err(|e| verbs::patch::map_patch_error(kind, &name, e))?
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                kind.plural,
                &name,
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        if let Some(rv) = meta_str(&wanted, "resourceVersion").filter(|r| !r.is_empty())
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(kind.group, kind.plural, &name));
        }
        let mut new = obj.clone();
        set_at(&mut new, &spec_path, json!(replicas));
        objects::bump_generation(kind, obj, &mut new);
        Ok(Change::Store(new))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &scale_of(kind, &stored)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_pointers_and_are_created_when_set() {
        assert_eq!(pointer(".spec.replicas"), "/spec/replicas");
        let mut obj = json!({"metadata": {}});
        set_at(&mut obj, &pointer(".spec.size.count"), json!(3));
        assert_eq!(obj["spec"]["size"]["count"], 3);
        set_at(&mut obj, &pointer(".spec.size.count"), json!(4));
        assert_eq!(obj["spec"]["size"]["count"], 4);
    }
}
