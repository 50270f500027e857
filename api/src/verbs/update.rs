//! `update` (PUT), of an object or its status.

use axum::http::StatusCode;
use axum::response::Response;

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::registry::{self, Change};
use crate::request::ResourceRequest;
use crate::resource::{check_namespace_param, name_of, not_found};
use crate::respond::{respond_object, with_warnings};
use crate::state::AppState;
use crate::verbs::{
    Target, duplicate_fields, field_manager, precondition, prepare_update, write_of,
};

pub(crate) async fn update(
    state: &AppState,
    req: &ResourceRequest,
    target: Target,
) -> Result<Response, ApiError> {
    let body = decode_object(&req.body, &content_type(&req.headers))?;
    let duplicates = duplicate_fields(req)?;
    let manager = field_manager(req)?;
    let wanted = precondition(&body)?;
    check_namespace_param(req)?;
    let write = write_of(req, name_of(req))?;
    let mut warnings = Vec::new();
    let obj = registry::guaranteed_update(state, &write, |current| {
        let Some((old, kv)) = current else {
            return Err(not_found(req));
        };
        if let Some(w) = wanted
            && w != kv.mod_revision
        {
            return Err(ApiError::conflict(
                req.kind.group,
                req.kind.plural,
                name_of(req),
            ));
        }
        let prepared = prepare_update(req, old, body.clone(), target, &manager, false)?;
        warnings = prepared.warnings;
        Ok(Change::Update(prepared.obj))
    })
    .await?;
    warnings.splice(0..0, duplicates);
    if matches!(target, Target::Main) {
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
    Ok(with_warnings(
        respond_object(req, StatusCode::OK, &obj),
        &warnings,
    ))
}
