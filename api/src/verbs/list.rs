//! `list`: a collection, written from the stored bytes (streamed a store page at a time when
//! the whole collection is asked for), or as a Table.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_kinds::Kind;
use skiff_store::KeyValue;

use crate::body::{Wanted, negotiate};
use crate::error::ApiError;
use crate::objects::{self};
use crate::request::ResourceRequest;
use crate::resource::{ListPlan, Pages, list_objects};
use crate::respond::table_response;
use crate::state::AppState;

pub(crate) async fn list(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let table = negotiate(&req.headers) == Wanted::Table;
    if !table {
        let plan = ListPlan::from_request(req)?;
        if plan.streams(req) {
            return stream(state, req.kind, plan).await;
        }
    }
    let listed = list_objects(state, req).await?;
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = &listed.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(rem) = listed.remaining {
        metadata["remainingItemCount"] = json!(rem);
    }
    if table {
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
    let total: usize = listed.items.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 256);
    write_head(req.kind, &metadata, &mut out)?;
    write_items(req.kind, &listed.items, true, &mut out)?;
    out.extend_from_slice(b"]}");
    Ok(json_response(axum::body::Body::from(out)))
}

/// The whole collection, written a store page at a time as it is read: the server holds one
/// page, not the list. The first page is read before answering, so that an error (a compacted
/// revision, a bad continue token) is still a `Status`; a later failure ends the body early
/// (the client sees a truncated response, as from Kubernetes' streaming encoder).
async fn stream(
    state: &AppState,
    kind: &'static Kind,
    plan: ListPlan,
) -> Result<Response, ApiError> {
    let mut pages = Pages::new(state.store.clone(), kind, plan);
    let first = pages.next().await?.unwrap_or_default();
    let revision = pages.revision().unwrap_or_default();
    let mut head =
        Vec::with_capacity(first.iter().map(|kv| kv.value.len() + 32).sum::<usize>() + 256);
    write_head(
        kind,
        &json!({"resourceVersion": revision.to_string()}),
        &mut head,
    )?;
    write_items(kind, &first, true, &mut head)?;
    let empty = first.is_empty();
    drop(first);
    let rest = futures::stream::unfold(Some((pages, empty)), move |next| async move {
        let (mut pages, mut empty) = next?;
        loop {
            match pages.next().await {
                Ok(Some(items)) if items.is_empty() => continue,
                Ok(Some(items)) => {
                    let size = items.iter().map(|kv| kv.value.len() + 32).sum();
                    let mut out = Vec::with_capacity(size);
                    if let Err(e) = write_items(kind, &items, empty, &mut out) {
                        return Some((Err(truncated(kind, &e)), None));
                    }
                    empty = false;
                    return Some((Ok(Bytes::from(out)), Some((pages, empty))));
                }
                Ok(None) => return Some((Ok(Bytes::from_static(b"]}")), None)),
                Err(e) => return Some((Err(truncated(kind, &e)), None)),
            }
        }
    })
    .fuse();
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok(json_response(axum::body::Body::from_stream(body)))
}

/// The error that ends a streamed list's body early.
fn truncated(kind: &Kind, e: &ApiError) -> std::io::Error {
    tracing::warn!(kind = %kind.kind, error = %e.message, "a streamed list ended early");
    std::io::Error::other(e.message.clone())
}

/// `{"kind":..,"apiVersion":..,"metadata":..,"items":[`
fn write_head(kind: &Kind, metadata: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let bad = |e: serde_json::Error| ApiError::internal(e.to_string());
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut *out, &kind.list_kind()).map_err(bad)?;
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut *out, &kind.api_version()).map_err(bad)?;
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut *out, metadata).map_err(bad)?;
    out.extend_from_slice(b",\"items\":[");
    Ok(())
}

/// Items of a list, comma-separated (with a leading comma unless `first`). Only each object's
/// top level and metadata are decoded, to set its resourceVersion; kinds stored in another
/// version, and custom resources (for the defaults their schema applies on read), are decoded.
fn write_items(
    kind: &Kind,
    items: &[KeyValue],
    first: bool,
    out: &mut Vec<u8>,
) -> Result<(), ApiError> {
    for (i, kv) in items.iter().enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        if objects::converts(kind) || kind.is_custom() {
            let mut obj = objects::from_kv(kind, kv)?;
            if let Some(m) = obj.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            serde_json::to_writer(&mut *out, &obj)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        } else {
            objects::write_list_item(kv, out)?;
        }
    }
    Ok(())
}

fn json_response(body: axum::body::Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
