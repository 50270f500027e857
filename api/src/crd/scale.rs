//! The `scale` subresource of a custom resource: an autoscaling/v1 Scale read from and written to
//! the paths its CRD names (`specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`).

use axum::response::Response;
use serde_json::{Value, json};
use skiff_kinds::Kind;
use skiff_kinds::crd::ScalePaths;

use crate::error::ApiError;
use crate::objects;
use crate::request::ResourceRequest;
use crate::state::AppState;
use crate::subresources::scale::{ScaleAccess, update_scale_with};

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

/// Custom resources: replicas at the CRD's `specReplicasPath`; strategic merge patch is 415.
const CUSTOM: ScaleAccess = ScaleAccess {
    read: scale_of,
    write: |kind, obj, replicas| {
        let spec_path = pointer(&paths(kind)?.spec_replicas_path);
        set_at(obj, &spec_path, json!(replicas));
        Ok(())
    },
    strategic_merge: false,
};

/// `PUT` or `PATCH` of a custom resource's scale.
pub(crate) async fn update_scale(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
    paths(req.kind)?;
    update_scale_with(state, req, &CUSTOM).await
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
