//! `patch`: JSON, merge, strategic merge and server-side apply patches.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_kinds::Kind;

use crate::body::{content_type, decode_yaml};
use crate::error::{ApiError, Cause, StatusReason};
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::{self, Change, Prepared};
use crate::request::ResourceRequest;
use crate::resource::{check_namespace_param, name_of, not_found};
use crate::respond::{respond_object, with_warnings};
use crate::state::AppState;
use crate::verbs::{Target, field_manager, precondition, prepare_create, prepare_update, write_of};

/// The patch formats Kubernetes accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub(crate) fn patch_type(req: &ResourceRequest) -> Result<PatchType, ApiError> {
    let ct = content_type(&req.headers);
    match ct.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" if req.kind.is_custom() => {
            // Custom resources have no patch strategies: Kubernetes refuses the format.
            Err(ApiError::new(
                415,
                StatusReason::UnsupportedMediaType,
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ))
        }
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(crate) fn map_patch_error(kind: &Kind, name: &str, err: skiff_patch::Error) -> ApiError {
    match err {
        skiff_patch::Error::Conflict(ref conflicts) => {
            let causes: Vec<Cause> = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.message.clone(),
                    field: c.field.clone(),
                })
                .collect();
            ApiError::conflict_message(kind.group, kind.plural, name, err.to_string())
                .with_causes(causes)
        }
        skiff_patch::Error::Invalid(msg) => ApiError::new(422, StatusReason::Invalid, msg)
            .with_details(kind.group, kind.plural, name),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// A decoded patch and how to apply it.
pub(crate) struct PatchInput<'a> {
    pub(crate) ptype: PatchType,
    pub(crate) doc: &'a Value,
    pub(crate) manager: &'a str,
    pub(crate) force: bool,
    pub(crate) subresource: Option<&'a str>,
}

/// Applies a patch document of the given type to an object.
pub(crate) fn apply_patch(
    kind: &Kind,
    name: &str,
    old: &Value,
    input: &PatchInput<'_>,
) -> Result<Value, ApiError> {
    let PatchInput {
        ptype,
        doc: patch_doc,
        manager,
        force,
        subresource,
    } = *input;
    let result = match ptype {
        PatchType::Json => skiff_patch::json_patch(old, patch_doc),
        PatchType::Merge => skiff_patch::merge_patch(old, patch_doc),
        PatchType::Strategic => {
            skiff_patch::strategic_merge_patch(old, patch_doc, kind.openapi_type)
        }
        PatchType::Apply => skiff_patch::apply::apply_subresource(
            Some(old),
            patch_doc,
            manager,
            force,
            kind.openapi_type,
            &objects::now_rfc3339(),
            subresource,
        ),
    };
    result.map_err(|e| map_patch_error(kind, name, e))
}

pub(crate) fn decode_patch(req: &ResourceRequest, ptype: PatchType) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    let doc = match ptype {
        PatchType::Apply => decode_yaml(&req.body)?,
        _ => serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (ptype, &doc) {
        (PatchType::Json, Value::Array(_)) => Ok(doc),
        (PatchType::Json, _) => Err(ApiError::bad_request(
            "a JSON patch must be an array of operations",
        )),
        (_, Value::Object(_)) => Ok(doc),
        _ => Err(ApiError::bad_request("the patch must be a JSON object")),
    }
}

pub(crate) async fn patch(
    state: &AppState,
    req: &ResourceRequest,
    target: Target,
) -> Result<Response, ApiError> {
    let ptype = patch_type(req)?;
    let doc = decode_patch(req, ptype)?;
    let manager = match ptype {
        PatchType::Apply => req
            .query
            .get("fieldManager")
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH with the apply patch type requires a fieldManager parameter",
                )
            })?,
        _ => field_manager(req)?,
    };
    let force = req.query.flag("force");
    if force && ptype != PatchType::Apply {
        return Err(ApiError::bad_request(
            "force is only allowed with the apply patch type",
        ));
    }
    let name = name_of(req).to_string();
    check_namespace_param(req)?;
    let write = write_of(req, &name)?;
    let mut warnings = Vec::new();
    let mut created = false;
    let obj = registry::guaranteed_update(state, &write, |current| {
        let Some((old, kv)) = current else {
            if ptype == PatchType::Apply && target == Target::Main {
                let prepared = apply_create(req, &doc, &manager, force)?;
                warnings = prepared.warnings;
                created = true;
                return Ok(Change::Create(prepared.obj));
            }
            return Err(not_found(req));
        };
        created = false;
        let input = PatchInput {
            ptype,
            doc: &doc,
            manager: &manager,
            force,
            subresource: target.subresource(),
        };
        let patched = apply_patch(req.kind, &name, old, &input)?;
        let wanted =
            precondition(&patched)?.filter(|rv| Some(*rv) != precondition(old).ok().flatten());
        if let Some(w) = wanted
            && w != kv.mod_revision
        {
            return Err(ApiError::conflict(req.kind.group, req.kind.plural, &name));
        }
        let prepared = prepare_update(
            req,
            old,
            patched,
            target,
            &manager,
            ptype == PatchType::Apply,
        )?;
        warnings = prepared.warnings;
        Ok(Change::Update(prepared.obj))
    })
    .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if target == Target::Main {
        warnings.extend(
            crate::admission::podsecurity::workload_warnings(
                state,
                req.kind,
                req.namespace.as_deref(),
                &obj,
            )
            .await,
        );
    }
    Ok(with_warnings(respond_object(req, code, &obj), &warnings))
}

/// Server-side apply of an object that does not exist yet creates it.
pub(crate) fn apply_create(
    req: &ResourceRequest,
    doc: &Value,
    manager: &str,
    force: bool,
) -> Result<Prepared, ApiError> {
    let mut obj = doc.clone();
    objects::check_type_meta(req.kind, &mut obj)?;
    if let Some(body_name) = meta_str(&obj, "name")
        && body_name != name_of(req)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            name_of(req)
        )));
    }
    meta_mut(&mut obj).insert("name".into(), json!(name_of(req)));
    let applied = skiff_patch::apply::apply(
        None,
        &obj,
        manager,
        force,
        req.kind.openapi_type,
        &objects::now_rfc3339(),
    )
    .map_err(|e| map_patch_error(req.kind, name_of(req), e))?;
    prepare_create(req, applied, manager, true)
}
