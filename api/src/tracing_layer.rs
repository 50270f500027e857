//! The request span of the API server: one span per request (verb, resource, namespace, name,
//! user, code), the child of a client's W3C `traceparent`, exported when OpenTelemetry is on.
//!
//! Off (no OTLP endpoint configured), the layer is one atomic load and the request goes on.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

use crate::state::{AppState, UserInfo};

/// The tracing middleware; it runs after authentication, so the request carries its user.
pub(crate) async fn trace(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !skiff_telemetry::trace::enabled() {
        return next.run(request).await;
    }
    let user = request
        .extensions()
        .get::<UserInfo>()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let attrs = crate::audit::attributes_of(
        &state,
        request.method(),
        &path,
        request.uri().query(),
        UserInfo::default(),
    );
    let (resource, namespace, name) = match &attrs.object {
        Some(o) => (
            o.resource.as_str(),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_deref().unwrap_or(""),
        ),
        None => ("", "", ""),
    };
    let otel_name = match &attrs.object {
        Some(_) => format!("{} {resource}", attrs.verb),
        None => format!("{} {path}", request.method()),
    };
    let span = tracing::info_span!(
        "api request",
        otel.name = %otel_name,
        otel.kind = "server",
        verb = %attrs.verb,
        resource,
        namespace,
        name,
        user = %user,
        http.request.method = %request.method(),
        url.path = %path,
        http.response.status_code = Empty,
        code = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
    );
    skiff_telemetry::trace::set_parent_from(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let code = response.status().as_u16();
    span.record("code", code);
    span.record("http.response.status_code", code);
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
