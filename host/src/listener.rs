//! The node endpoint (plain HTTP; every route but `/healthz` needs a caller
//! `crate::endpointauth` lets in: the API server everywhere, other nodes on `/endpoints`):
//! `GET /stats/summary` and `GET /metrics/resource` (kubelet's usage endpoints: `crate::stats`),
//! `GET /containerLogs/{ns}/{pod}/{container}` (kubelet's query: follow, tailLines, sinceSeconds,
//! sinceTime, timestamps, previous, limitBytes), `GET /exec/{ns}/{pod}/{container}` (a websocket:
//! `crate::exec`), `ANY /proxy/{ns}/{pod}/{port}/{path...}` and
//! its alias `/pods/{ns}/{pod}/{port}/{path...}` forwarding to the pod's port in-process, and
//! `ANY /endpoints/{podIP}/{port}/{path...}`, where another node's Service router sends a
//! request for a pod of this node (its own token in `skiff-node-authorization`, so the request's own
//! `Authorization` reaches the pod; an absent pod is answered with `skiff-endpoint-gone`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::StreamExt;
use skiff_runtime::{LogOptions, Network, box_body};

use crate::ctx::NodeCtx;
use crate::endpointauth::{Authenticator, Verdict};
use crate::net::{ENDPOINT_GONE_HEADER, NODE_AUTH_HEADER, POLICY_DENIED_HEADER, SOURCE_IP_HEADER};

/// What the handlers need.
#[derive(Clone)]
pub(crate) struct ListenerState {
    pub(crate) ctx: Arc<NodeCtx>,
    /// Who may call which path (`crate::endpointauth`).
    pub(crate) auth: Arc<Authenticator>,
    /// The pod network, for the Service router's requests by pod IP.
    pub(crate) network: Network,
    /// The NetworkPolicies a forwarded request's source is checked against.
    pub(crate) policies: Arc<crate::net::policy::Policies>,
    /// The node's resource usage (`/stats/summary`, `/metrics/resource`).
    pub(crate) stats: Arc<crate::stats::NodeStatsSource>,
}

/// The bearer token a request presents: in `skiff-node-authorization` on `/endpoints/...` (the
/// request's own `Authorization` is the pod's), in `Authorization` elsewhere.
fn presented_token(req: &Request) -> Option<&str> {
    let name = if req.uri().path().starts_with("/endpoints/") {
        NODE_AUTH_HEADER
    } else {
        header::AUTHORIZATION.as_str()
    };
    let value = req.headers().get(name)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn auth(
    State(state): State<ListenerState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let Some(token) = presented_token(&req) else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let endpoints = req.uri().path().starts_with("/endpoints/");
    match state.auth.check(token, endpoints).await {
        Verdict::Allowed(_) => next.run(req).await,
        Verdict::Unauthorized => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Verdict::Forbidden(why) => text(StatusCode::FORBIDDEN, why),
    }
}

/// The router of the node endpoint.
pub(crate) fn router(state: ListenerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::serve))
        .route("/stats/summary", get(crate::stats::summary))
        .route("/metrics/resource", get(crate::stats::resource_metrics))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", get(crate::exec::exec))
        .route("/proxy/{ns}/{pod}/{port}", any(proxy_root))
        .route("/proxy/{ns}/{pod}/{port}/", any(proxy_root))
        .route("/proxy/{ns}/{pod}/{port}/{*path}", any(proxy))
        .route("/pods/{ns}/{pod}/{port}", any(proxy_root))
        .route("/pods/{ns}/{pod}/{port}/", any(proxy_root))
        .route("/pods/{ns}/{pod}/{port}/{*path}", any(proxy))
        .route("/endpoints/{ip}/{port}", any(endpoint_root))
        .route("/endpoints/{ip}/{port}/", any(endpoint_root))
        .route("/endpoints/{ip}/{port}/{*path}", any(endpoint))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn logs(
    State(state): State<ListenerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(sb) = state.ctx.sandbox(&ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not running on this node"),
        );
    };
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let since = if let Some(s) = q.get("sinceSeconds") {
        match s.parse::<i64>() {
            Ok(n) if n > 0 => jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(n))
                .ok(),
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid sinceSeconds {s:?}"),
                );
            }
        }
    } else if let Some(s) = q.get("sinceTime") {
        match s.parse::<jiff::Timestamp>() {
            Ok(t) => Some(t),
            Err(_) => return text(StatusCode::BAD_REQUEST, format!("invalid sinceTime {s:?}")),
        }
    } else {
        None
    };
    let tail = match q.get("tailLines").map(|s| s.parse::<i64>()) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n as usize),
        Some(Ok(_)) => None,
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "invalid tailLines"),
    };
    let limit = match q.get("limitBytes").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => return text(StatusCode::BAD_REQUEST, "invalid limitBytes"),
    };
    let opts = LogOptions {
        follow: flag("follow"),
        tail,
        since,
        previous: flag("previous"),
    };
    let timestamps = flag("timestamps");
    let stream = match sb.logs(&container, opts) {
        Ok(s) => s,
        Err(e @ skiff_runtime::Error::UnknownContainer { .. }) => {
            return text(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\": {e}"),
            );
        }
    };
    let body = stream
        .map(move |line| {
            let mut out = Vec::with_capacity(line.line.len() + 40);
            if timestamps {
                out.extend_from_slice(
                    format!("{} ", line.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).as_bytes(),
                );
            }
            out.extend_from_slice(&line.line);
            if line.complete {
                out.push(b'\n');
            }
            out
        })
        .scan(limit, |remaining, mut chunk| {
            let out = match remaining {
                Some(0) => None,
                Some(r) => {
                    if chunk.len() as u64 > *r {
                        chunk.truncate(*r as usize);
                    }
                    *r -= chunk.len() as u64;
                    Some(chunk)
                }
                None => Some(chunk),
            };
            std::future::ready(out)
        });
    let body = body.map(|v| Ok::<Bytes, std::convert::Infallible>(Bytes::from(v)));
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

async fn proxy_root(
    State(state): State<ListenerState>,
    Path((ns, pod, port)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    forward(state, ns, pod, port, String::new(), req).await
}

async fn proxy(
    State(state): State<ListenerState>,
    Path((ns, pod, port, path)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    forward(state, ns, pod, port, path, req).await
}

async fn forward(
    state: ListenerState,
    ns: String,
    pod: String,
    port: String,
    path: String,
    req: Request,
) -> Response {
    let Ok(port) = port.parse::<u16>() else {
        return text(StatusCode::BAD_REQUEST, format!("invalid port {port:?}"));
    };
    let Some(sb) = state.ctx.sandbox(&ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not running on this node"),
        );
    };
    let (mut parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("/{path}{query}");
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(_) => return text(StatusCode::BAD_REQUEST, "invalid path"),
    };
    parts.headers.remove(header::AUTHORIZATION);
    let host = match sb.ip() {
        Some(ip) => format!("{ip}:{port}"),
        None => format!("localhost:{port}"),
    };
    if let Ok(v) = HeaderValue::from_str(&host) {
        parts.headers.insert(header::HOST, v);
    }
    let req = http::Request::from_parts(parts, box_body(body));
    let started = std::time::Instant::now();
    match sb.handle_http(port, req).await {
        Ok(resp) => {
            let elapsed = started.elapsed();
            (state.ctx.metrics).pod_request_named(&ns, &pod, resp.status().as_u16(), elapsed);
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(e @ skiff_runtime::Error::UnknownPort { .. }) => {
            text(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn gone(msg: String) -> Response {
    let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, msg);
    resp.headers_mut()
        .insert(ENDPOINT_GONE_HEADER, HeaderValue::from_static("1"));
    resp
}

async fn endpoint_root(
    State(state): State<ListenerState>,
    Path((ip, port)): Path<(String, String)>,
    req: Request,
) -> Response {
    to_endpoint(state, ip, port, req).await
}

async fn endpoint(
    State(state): State<ListenerState>,
    Path((ip, port, _path)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    to_endpoint(state, ip, port, req).await
}

/// Serves a request another node's Service router sent for pod `ip` of this node, in-process.
/// The path after the port, the query, and every header but the node's token reach the pod.
async fn to_endpoint(state: ListenerState, ip_s: String, port_s: String, req: Request) -> Response {
    let (Ok(ip), Ok(port)) = (ip_s.parse::<std::net::IpAddr>(), port_s.parse::<u16>()) else {
        return text(StatusCode::BAD_REQUEST, "invalid endpoint address");
    };
    let Some(sb) = state.network.lookup(ip) else {
        return gone(format!("no pod with IP {ip} on this node"));
    };
    let (mut parts, body) = req.into_parts();
    // The source the sending node names (absent: that node itself), checked against the
    // destination's ingress policies here, where the pod is.
    let source = parts.headers.remove(SOURCE_IP_HEADER);
    let source = match source.as_ref().map(|v| v.to_str().map(str::parse)) {
        None => None,
        Some(Ok(Ok(ip))) => Some(ip),
        Some(_) => return text(StatusCode::BAD_REQUEST, "invalid source address"),
    };
    if let Err(denied) = state.policies.check_ingress(source, ip, port) {
        tracing::debug!(reason = %denied, "refused by network policy");
        let mut resp = text(StatusCode::FORBIDDEN, denied.0);
        resp.headers_mut()
            .insert(POLICY_DENIED_HEADER, HeaderValue::from_static("1"));
        return resp;
    }
    let prefix_len = "/endpoints/".len() + ip_s.len() + 1 + port_s.len();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let rest = pq.get(prefix_len..).unwrap_or("");
    let uri = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(_) => return text(StatusCode::BAD_REQUEST, "invalid path"),
    };
    parts.headers.remove(NODE_AUTH_HEADER);
    let req = http::Request::from_parts(parts, box_body(body));
    let started = std::time::Instant::now();
    let served = if skiff_telemetry::trace::enabled() {
        // The sending node's route span is the parent (its `traceparent`).
        use tracing::Instrument;
        let span = tracing::info_span!(
            "endpoint",
            otel.name = %format!("endpoint {ip}:{port}"),
            otel.kind = "server",
            pod.ip = %ip,
            port,
            trace_id = tracing::field::Empty,
        );
        skiff_telemetry::trace::set_parent_from(&span, req.headers());
        sb.handle_http(port, req).instrument(span).await
    } else {
        sb.handle_http(port, req).await
    };
    match served {
        Ok(resp) => {
            let elapsed = started.elapsed();
            (state.ctx.metrics).pod_request(ip, resp.status().as_u16(), elapsed);
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(
            e @ (skiff_runtime::Error::UnknownPort { .. }
            | skiff_runtime::Error::PodRemoved(_)
            | skiff_runtime::Error::ContainerState { .. }),
        ) => gone(e.to_string()),
        Err(e) => text(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
