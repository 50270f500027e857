//! The verbs on resources, one file each, and what their writes share: the field manager,
//! field validation, preconditions and the preparation of an update.

pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod get;
pub(crate) mod list;
pub(crate) mod patch;
pub(crate) mod update;

use serde_json::Value;
use skiff_kinds::validate::FieldValidation;

use crate::body::content_type;
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry::{self, Prepared, Write, map_validation};
use crate::request::ResourceRequest;
use crate::resource::{name_of, parse_rv};
use crate::strategy;

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The object, except `status` for kinds with a status subresource.
    Main,
    /// Only `status` (the status subresource).
    Status,
    /// Only the approval conditions (a CertificateSigningRequest's `approval` subresource).
    Approval,
}

impl Target {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Target::Main => None,
            Target::Status => Some("status"),
            Target::Approval => Some("approval"),
        }
    }
}

pub(crate) fn field_validation(req: &ResourceRequest) -> Result<FieldValidation, ApiError> {
    match req.query.get("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other:?}: must be Ignore, Warn or Strict"
        ))),
    }
}

/// Keys that occur twice in one object of a JSON body: an error under Strict, warnings under Warn.
pub(crate) fn duplicate_fields(req: &ResourceRequest) -> Result<Vec<String>, ApiError> {
    let media = content_type(&req.headers);
    let json = media.is_empty() || media == "application/json";
    let mode = field_validation(req)?;
    if !json || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    // A body that does not parse is reported by the decoder with its own message.
    let found: Vec<String> = skiff_kinds::validate::duplicate_fields(&req.body)
        .unwrap_or_default()
        .iter()
        .map(|p| format!("duplicate field {}", Value::String(p.clone())))
        .collect();
    if mode == FieldValidation::Strict && !found.is_empty() {
        let kind = req.kind;
        return Err(ApiError::bad_request(format!(
            "{} in version {} cannot be handled as a {}: strict decoding error: {}",
            kind.kind,
            Value::String(kind.version.to_string()),
            kind.kind,
            found.join(", ")
        )));
    }
    Ok(found)
}

/// The field manager of a write: the query parameter, else the user agent's program name.
pub(crate) fn field_manager(req: &ResourceRequest) -> Result<String, ApiError> {
    if let Some(m) = req.query.get("fieldManager") {
        if m.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager must be at most 128 characters",
            ));
        }
        return Ok(m.to_string());
    }
    let agent = req
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    Ok(agent
        .split('/')
        .next()
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect())
}

/// The write of one request's object.
pub(crate) fn write_of<'a>(req: &'a ResourceRequest, name: &'a str) -> Result<Write<'a>, ApiError> {
    Ok(Write {
        kind: req.kind,
        namespace: req.namespace.as_deref(),
        name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
        subresource: req.subresource.as_deref(),
    })
}

pub(crate) fn prepare_create(
    req: &ResourceRequest,
    obj: Value,
    manager: &str,
    applied: bool,
) -> Result<Prepared, ApiError> {
    registry::prepare_create(
        req.kind,
        req.namespace.as_deref(),
        obj,
        field_validation(req)?,
        manager,
        applied,
    )
}

/// Builds the object an update stores from the stored one and the client's version.
pub(crate) fn prepare_update(
    req: &ResourceRequest,
    old: &Value,
    mut new: Value,
    target: Target,
    manager: &str,
    applied: bool,
) -> Result<Prepared, ApiError> {
    let kind = req.kind;
    let name = name_of(req).to_string();
    objects::check_type_meta(kind, &mut new)?;
    if let Some(body_name) = meta_str(&new, "name")
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if kind.namespaced
        && let Some(ns) = meta_str(&new, "namespace").filter(|n| !n.is_empty())
        && Some(ns) != req.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let warnings = skiff_kinds::validate::decode(kind, &new, field_validation(req)?)
        .map_err(|e| map_validation(kind, &name, e))?;
    let mut new = match target {
        Target::Status => strategy::for_kind(kind).prepare_for_status_update(old, new),
        Target::Approval => strategy::for_kind(kind).prepare_for_approval_update(old, new),
        Target::Main => {
            if kind.has_status()
                && let Some(m) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            strategy::for_kind(kind).prepare_for_update(old, new)
        }
    };
    objects::carry_system_fields(old, &mut new);
    skiff_kinds::defaults::apply_update(kind, &mut new, old);
    objects::bump_generation(kind, old, &mut new);
    skiff_kinds::validate::validate(kind, &new, Some(old))
        .map_err(|e| map_validation(kind, &name, e))?;
    if !applied {
        skiff_patch::apply::record_update_subresource(
            Some(old),
            &mut new,
            manager,
            kind.openapi_type,
            &objects::now_rfc3339(),
            target.subresource(),
        );
    }
    Ok(Prepared { obj: new, warnings })
}

/// The `metadata.resourceVersion` a client sent as a precondition, if any.
pub(crate) fn precondition(obj: &Value) -> Result<Option<u64>, ApiError> {
    match meta_str(obj, "resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => parse_rv(rv).map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: Invalid value: {rv:?}: must be an integer"
            ))
        }),
        None => Ok(None),
    }
}
