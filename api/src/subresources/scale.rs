//! `scale`: the autoscaling/v1 Scale of a workload, read and written through its `spec.replicas`.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;
use crate::resource::name_of;
use crate::respond::json_response;
use crate::state::AppState;
use crate::strategy;
use crate::verbs;
use crate::verbs::patch::PatchType;
use skiff_kinds::Kind;

/// The autoscaling/v1 Scale of a workload.
pub(crate) fn scale_of(kind: &Kind, obj: &Value) -> Result<Value, ApiError> {
    let meta = objects::meta(obj).cloned().unwrap_or_default();
    let selector = strategy::for_kind(kind).scale_selector(obj);
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
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    }))
}

/// How one family of kinds exposes its Scale: built-in workloads through `spec.replicas`, custom
/// resources through their CRD's paths.
pub(crate) struct ScaleAccess {
    /// The Scale of a stored object.
    pub(crate) read: fn(&Kind, &Value) -> Result<Value, ApiError>,
    /// Writes the wanted replicas into a copy of the stored object.
    pub(crate) write: fn(&Kind, &mut Value, i64) -> Result<(), ApiError>,
    /// Whether a strategic merge patch is taken (as a merge patch); custom resources answer 415
    /// to it and to an apply patch.
    pub(crate) strategic_merge: bool,
}

/// The Scale of built-in workloads.
const WORKLOADS: ScaleAccess = ScaleAccess {
    read: scale_of,
    write: |_, obj, replicas| {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("replicas".into(), json!(replicas));
        }
        Ok(())
    },
    strategic_merge: true,
};

/// `PUT` or `PATCH` of a built-in workload's scale.
pub(crate) async fn update_scale(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
    update_scale_with(state, req, &WORKLOADS).await
}

/// `PUT` or `PATCH` of a scale: the wanted Scale from the body or the patch applied to the
/// current one, replicas checked, the request's resourceVersion compared with the stored one,
/// the replicas written through `access` in the one read-modify-write loop.
pub(crate) async fn update_scale_with(
    state: &AppState,
    req: &ResourceRequest,
    access: &ScaleAccess,
) -> Result<Response, ApiError> {
    let kind = req.kind;
    let name = name_of(req).to_string();
    let write = Write {
        kind,
        namespace: req.namespace.as_deref(),
        name: &name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
        subresource: Some("scale"),
    };
    let stored = registry::guaranteed_update(state, &write, |current| {
        let Some((obj, kv)) = current else {
            return Err(ApiError::not_found(kind.group, kind.plural, &name));
        };
        let current = (access.read)(kind, obj)?;
        let wanted = if req.method == Method::PUT {
            decode_object(&req.body, &content_type(&req.headers))?
        } else {
            let ptype = verbs::patch::patch_type(req)?;
            let doc = verbs::patch::decode_patch(req, ptype)?;
            match ptype {
                PatchType::Json => skiff_patch::json_patch(&current, &doc),
                PatchType::Merge => skiff_patch::merge_patch(&current, &doc),
                PatchType::Strategic | PatchType::Apply if !access.strategic_merge => {
                    return Err(ApiError::unsupported_media_type(&content_type(
                        &req.headers,
                    )));
                }
                PatchType::Strategic => skiff_patch::merge_patch(&current, &doc),
                PatchType::Apply => {
                    return Err(ApiError::not_supported(
                        "server-side apply on the scale subresource is not supported",
                    ));
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
                vec![crate::error::Cause {
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
        (access.write)(kind, &mut new, replicas)?;
        objects::bump_generation(kind, obj, &mut new);
        Ok(Change::Store(new))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &(access.read)(kind, &stored)?,
    ))
}
