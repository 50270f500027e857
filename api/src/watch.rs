//! Watch: a chunked stream of JSON events from a revision, with bookmarks, initial events and 410.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_store::{Event, EventType};

use crate::body::{Wanted, negotiate};
use crate::error::{ApiError, StatusReason};
use crate::objects::{self, meta_mut};
use crate::request::ResourceRequest;
use crate::resource::{ListPlan, Pages, Selectors, parse_rv};
use crate::state::AppState;

/// How often a watch that allows bookmarks gets one when nothing else happens.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Longest a watch lives when the client sets no timeout (Kubernetes uses 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct WatchParams {
    table: bool,
    include_object: String,
    bookmarks: bool,
    timeout: Duration,
}

fn event_line(
    params: &WatchParams,
    kind: &skiff_kinds::Kind,
    event_type: &str,
    obj: &Value,
) -> bytes::Bytes {
    let table;
    let object = if params.table && event_type != "BOOKMARK" && event_type != "ERROR" {
        table = skiff_kinds::table::table(
            kind,
            std::slice::from_ref(obj),
            &params.include_object,
            jiff::Timestamp::now(),
        );
        &table
    } else {
        obj
    };
    // Written field by field so the object is serialized in place, not copied into a wrapper.
    let mut line = Vec::with_capacity(1024);
    line.extend_from_slice(b"{\"type\":");
    let _ = serde_json::to_writer(&mut line, event_type);
    line.extend_from_slice(b",\"object\":");
    let _ = serde_json::to_writer(&mut line, object);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

fn bookmark(kind: &skiff_kinds::Kind, revision: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta})
}

pub(crate) async fn watch(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
    let kind = req.kind;
    let mut selectors = Selectors::from_request(&req)?;
    // A watch on /namespaces/ns/pods/name is a watch on one name.
    if let Some(name) = &req.name {
        let sel = format!("metadata.name={name}");
        let mut existing = req.query.get("fieldSelector").unwrap_or("").to_string();
        if !existing.is_empty() {
            existing.push(',');
        }
        existing.push_str(&sel);
        selectors.fields = crate::selectors::FieldSelector::parse(&existing, kind)?;
    }
    let timeout = req
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let params = WatchParams {
        table: negotiate(&req.headers) == Wanted::Table,
        include_object: req
            .query
            .get("includeObject")
            .unwrap_or("Metadata")
            .to_string(),
        bookmarks: req.query.flag("allowWatchBookmarks"),
        timeout,
    };
    let send_initial = req.query.flag("sendInitialEvents");
    if send_initial && !params.bookmarks {
        return Err(ApiError::new(
            422,
            StatusReason::Invalid,
            "sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    if send_initial && req.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::new(
            422,
            StatusReason::Invalid,
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    let prefix = objects::collection_prefix(kind, req.namespace.as_deref());
    let rv = req.query.get("resourceVersion");
    // Without a revision (or with "0") the watch starts with the current state as ADDED events.
    let initial = send_initial || rv.is_none() || rv == Some("0");
    let mut lines: Vec<bytes::Bytes> = Vec::new();
    // The initial state is read a store page at a time (as a streamed list), the first page
    // here so that its revision starts the watch, the rest as the body is written.
    let mut initial_pages = None;
    let start = if initial {
        let mut pages = Pages::new(
            state.store.clone(),
            kind,
            ListPlan::everything(prefix.clone(), kind)?,
        );
        let first = pages.next().await?.unwrap_or_default();
        for kv in &first {
            let obj = objects::from_kv(kind, kv)?;
            if selectors.matches(kind, &obj) {
                lines.push(event_line(&params, kind, "ADDED", &obj));
            }
        }
        let revision = pages.revision().unwrap_or_default();
        initial_pages = Some(pages);
        revision
    } else {
        parse_rv(rv.unwrap_or("0"))?
    };
    let stream = match state.store.watch_with_progress(&prefix, start).await {
        Ok(s) => Some(s),
        Err(skiff_store::Error::Compacted {
            requested,
            compacted,
        }) => {
            let status = ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            ))
            .status();
            lines.push(event_line(&params, kind, "ERROR", &status));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let table = params.table;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let mut shutdown = state.shutdown.clone();
    let task = async move {
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let Some((mut stream, progress)) = stream else {
            return;
        };
        if let Some(mut pages) = initial_pages {
            loop {
                let items = match pages.next().await {
                    Ok(Some(items)) => items,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx
                            .send(Ok(event_line(&params, kind, "ERROR", &e.status())))
                            .await;
                        return;
                    }
                };
                for kv in &items {
                    let (line, last) = match objects::from_kv(kind, kv) {
                        Ok(obj) if selectors.matches(kind, &obj) => {
                            (event_line(&params, kind, "ADDED", &obj), false)
                        }
                        Ok(_) => continue,
                        Err(e) => (event_line(&params, kind, "ERROR", &e.status()), true),
                    };
                    if tx.send(Ok(line)).await.is_err() || last {
                        return;
                    }
                }
            }
            if send_initial {
                let end = bookmark(kind, start, true);
                if tx
                    .send(Ok(event_line(&params, kind, "BOOKMARK", &end)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + params.timeout;
        let mut last_revision = start;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        loop {
            let line = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {
                    if !params.bookmarks { continue; }
                    // The revision read up to, past writes elsewhere: an idle watch's client
                    // resumes from a recent revision, not from its last event's (which the
                    // history may have dropped, forcing a re-list).
                    let at = last_revision.max(progress.get());
                    event_line(&params, kind, "BOOKMARK", &bookmark(kind, at, false))
                }
                next = stream.next() => match next {
                    None => return,
                    Some(Err(skiff_store::Error::Compacted { requested, compacted })) => {
                        let status = ApiError::gone(format!("too old resource version: {requested} ({compacted})")).status();
                        let _ = tx.send(Ok(event_line(&params, kind, "ERROR", &status))).await;
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watch stream ended");
                        return;
                    }
                    Some(Ok(event)) => {
                        last_revision = event.revision();
                        match translate(kind, &selectors, &event) {
                            Ok(Some((t, obj))) => event_line(&params, kind, t, &obj),
                            Ok(None) => continue,
                            Err(e) => {
                                let _ = tx.send(Ok(event_line(&params, kind, "ERROR", &e.status()))).await;
                                return;
                            }
                        }
                    }
                }
            };
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
    };
    // The task ends when the client goes away (the channel closes), at the timeout, or at shutdown.
    let handle = tokio::spawn(task);
    let body_stream = AbortOnDrop {
        inner: tokio_stream::wrappers::ReceiverStream::new(rx),
        handle,
    };
    let mut response = Response::new(Body::from_stream(body_stream));
    *response.status_mut() = StatusCode::OK;
    let ct = if table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if !req.http2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A body stream that stops its producer task when the response is dropped.
struct AbortOnDrop<S> {
    inner: S,
    handle: tokio::task::JoinHandle<()>,
}

impl<S: futures::Stream + Unpin> futures::Stream for AbortOnDrop<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A store event as the watch event a client with these selectors should see, if any: an object
/// that stops matching is DELETED for it, one that starts matching is ADDED.
fn translate(
    kind: &'static skiff_kinds::Kind,
    selectors: &Selectors,
    event: &Event,
) -> Result<Option<(&'static str, Value)>, ApiError> {
    let new = objects::from_kv(kind, &event.kv)?;
    // Decodes the previous version only as far as the selectors look (not at all without any).
    let prev_matches = match &event.prev {
        Some(prev) => selectors.matches_stored(kind, prev)?,
        None => false,
    };
    Ok(match event.event_type {
        EventType::Delete => {
            let mut obj = new;
            meta_mut(&mut obj).insert(
                "resourceVersion".into(),
                json!(event.revision().to_string()),
            );
            (prev_matches || selectors.matches(kind, &obj)).then_some(("DELETED", obj))
        }
        EventType::Put => {
            let now_matches = selectors.matches(kind, &new);
            match (event.prev.is_some() && prev_matches, now_matches) {
                (true, true) => Some(("MODIFIED", new)),
                (false, true) => Some(("ADDED", new)),
                (true, false) => Some(("DELETED", new)),
                (false, false) => None,
            }
        }
    })
}
