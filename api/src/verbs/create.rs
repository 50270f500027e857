//! `create` (POST to a collection).

use axum::http::StatusCode;
use axum::response::Response;

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::objects::meta_str;
use crate::registry::{self};
use crate::request::ResourceRequest;
use crate::respond::{respond_object, with_warnings};
use crate::state::AppState;
use crate::verbs::{duplicate_fields, field_manager, prepare_create, write_of};

pub(crate) async fn create(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    if req.kind.namespaced && req.namespace.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "{} must be created in a namespace",
            req.kind.plural
        )));
    }
    let obj = decode_object(&req.body, &content_type(&req.headers))?;
    let duplicates = duplicate_fields(req)?;
    let manager = field_manager(req)?;
    let mut prepared = prepare_create(req, obj, &manager, false)?;
    prepared.warnings.splice(0..0, duplicates);
    let name = meta_str(&prepared.obj, "name")
        .unwrap_or_default()
        .to_string();
    let obj = registry::create(state, &write_of(req, &name)?, prepared.obj).await?;
    prepared.warnings.extend(
        crate::admission::podsecurity::workload_warnings(
            state,
            req.kind,
            req.namespace.as_deref(),
            &obj,
        )
        .await,
    );
    Ok(with_warnings(
        respond_object(req, StatusCode::CREATED, &obj),
        &prepared.warnings,
    ))
}
