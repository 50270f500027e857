//! `list`: a collection, written from the stored bytes, or as a Table.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::body::{Wanted, negotiate};
use crate::error::ApiError;
use crate::objects::{self};
use crate::request::ResourceRequest;
use crate::resource::list_objects;
use crate::respond::table_response;
use crate::state::AppState;

pub(crate) async fn list(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let listed = list_objects(state, req).await?;
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = &listed.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(rem) = listed.remaining {
        metadata["remainingItemCount"] = json!(rem);
    }
    if negotiate(&req.headers) == Wanted::Table {
        let items = listed
            .items
            .iter()
            .map(|kv| objects::from_kv(req.kind, kv))
            .collect::<Result<Vec<_>, _>>()?;
        let include = req.query.get("includeObject").unwrap_or("Metadata");
        let mut table =
            skiff_kinds::table::table(req.kind, &items, include, jiff::Timestamp::now());
        table["metadata"] = metadata;
        return Ok(table_response(StatusCode::OK, &table));
    }
    // The list is written directly from the stored bytes: only each object's top level and
    // metadata are decoded, to set its resourceVersion.
    let total: usize = listed.items.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 256);
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, &req.kind.list_kind())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut out, &req.kind.api_version())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut out, &metadata).map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"items\":[");
    for (i, kv) in listed.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Custom resources are decoded for the defaults their schema applies on read.
        if objects::converts(req.kind) || req.kind.is_custom() {
            let mut obj = objects::from_kv(req.kind, kv)?;
            if let Some(m) = obj.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            serde_json::to_writer(&mut out, &obj).map_err(|e| ApiError::internal(e.to_string()))?;
        } else {
            objects::write_list_item(kv, &mut out)?;
        }
    }
    out.extend_from_slice(b"]}");
    let mut response = Response::new(axum::body::Body::from(out));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
