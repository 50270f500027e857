//! The ingress's HTTP/1.1 servers (plain and TLS, keep-alive, graceful shutdown) and the two
//! request handlers behind them: the Ingress proxy (route table → Service, request bodies bounded
//! per Ingress, 413 past the bound) and a NodePort (one Service port). Both hand the request to
//! [`ServiceBackend::serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use skiff_runtime::{BoxError, HttpBody, box_body, full_body};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::rules::{BodyBound, Matched, RouteTable, Target};
use crate::net::{SOURCE_IP_HEADER, ServiceBackend};

/// The bounds on one listener's connections (`skiff_serve`): 4096 open, 1024 of one client IP
/// (a quarter: one client cannot take them all, many behind one NAT still get in), 30 s for the
/// TLS handshake, the first byte and each request head (which also bounds a keep-alive
/// connection's idle time), 64 KiB heads (431 past them). HTTP/1.1 only.
const LIMITS: skiff_serve::ConnectionLimits = skiff_serve::ConnectionLimits {
    max_connections_per_client_ip: 1024,
    request_header_timeout: Duration::from_secs(30),
    ..skiff_serve::ConnectionLimits::DEFAULT
};
/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Past an Ingress's body bound, the rest of the body is still read (and dropped), up to this
/// much and for at most [`BODY_DRAIN_TIME`], so that a client that sends its whole body before
/// it reads finishes and reads the 413 instead of a reset connection (nginx's lingering close,
/// `lingering_time` 30 s). A body with more left than this gets the 413 at once, and the
/// connection is closed.
const BODY_DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// How long the rest of a body past its bound is read at most.
const BODY_DRAIN_TIME: Duration = Duration::from_secs(30);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What one connection knows about its client, computed once per connection.
#[derive(Clone)]
pub(crate) struct Peer {
    /// The client's IP, as a header value.
    ip: HeaderValue,
}

/// Answers the requests of a listener.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>, peer: &Peer)
    -> BoxFuture<'static, Response<HttpBody>>;
}

/// Serves HTTP/1.1 (over TLS when `tls` is given) on `listener` until `stop` turns true, then
/// lets open connections finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<dyn Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let options = skiff_serve::ServeOptions {
        name: "ingress",
        limits: LIMITS,
        tls,
        protocols: skiff_serve::Protocols::Http1,
        drain: DRAIN_TIMEOUT,
    };
    let make_service = move |conn: &skiff_serve::Peer<'_>| {
        let peer = Peer {
            ip: HeaderValue::from_str(&conn.addr.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        };
        let handler = handler.clone();
        hyper::service::service_fn(move |req| {
            let resp = handler.handle(req, &peer);
            async move { Ok::<_, Infallible>(resp.await) }
        })
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    skiff_serve::serve(listener, options, make_service, stopped).await;
}

/// A plain-text answer of the ingress itself.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<HttpBody> {
    let mut body = String::with_capacity(msg.len() + 1);
    body.push_str(msg);
    body.push('\n');
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Removes the hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1), and those the
/// `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.get(header::CONNECTION).cloned()
        && let Ok(conn) = conn.to_str()
    {
        for name in conn.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                headers.remove(name);
            }
        }
    }
    for name in [
        &header::CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
}

/// The Ingress proxy: the request's host and path pick a Service port in the current table.
pub(crate) struct IngressProxy {
    pub(crate) table: Arc<ArcSwap<RouteTable>>,
    pub(crate) backend: Arc<dyn ServiceBackend>,
    /// `X-Forwarded-Proto`: `http` or `https`.
    pub(crate) proto: HeaderValue,
    /// `X-Forwarded-Port`: the listener's port.
    pub(crate) port: HeaderValue,
    /// How long the rest of a body past its bound is read at most ([`BODY_DRAIN_TIME`]).
    pub(crate) drain_time: Duration,
}

impl IngressProxy {
    pub(crate) fn new(
        table: Arc<ArcSwap<RouteTable>>,
        backend: Arc<dyn ServiceBackend>,
        https: bool,
        local: SocketAddr,
    ) -> IngressProxy {
        IngressProxy {
            table,
            backend,
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            port: HeaderValue::from(local.port()),
            drain_time: BODY_DRAIN_TIME,
        }
    }
}

impl Handler for IngressProxy {
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let routed = self.table.load().route(host, req.uri().path()).cloned();
        let (namespace, name, port, max_body) = match routed.as_deref() {
            Some(Matched {
                target:
                    Target::Service {
                        namespace,
                        name,
                        port,
                    },
                max_body,
            }) => (namespace, name, port, *max_body),
            Some(Matched {
                target: Target::Unavailable(reason),
                ..
            }) => {
                let resp = text(StatusCode::SERVICE_UNAVAILABLE, reason);
                return Box::pin(async move { resp });
            }
            None => {
                let msg = format!(
                    "no ingress rule matches host {:?} and path {:?}",
                    super::rules::normalize_host(host),
                    req.uri().path()
                );
                let resp = text(StatusCode::NOT_FOUND, &msg);
                return Box::pin(async move { resp });
            }
        };
        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        if let Some(h) = headers.get(header::HOST).cloned() {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        headers.insert(X_FORWARDED_FOR.clone(), peer.ip.clone());
        // The NetworkPolicies' source (a client's own value is replaced).
        headers.insert(SOURCE_IP_HEADER, peer.ip.clone());
        headers.insert(X_REAL_IP.clone(), peer.ip.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), self.proto.clone());
        headers.insert(X_FORWARDED_PORT.clone(), self.port.clone());
        let Some(bound) = max_body else {
            return self.serve(namespace, name, port, parts, box_body(body));
        };
        let drain_time = self.drain_time;
        // hyper's exact size is the request's `Content-Length`.
        if let Some(len) = body.size_hint().exact()
            && len > bound.bytes
        {
            // Known too large before a byte is sent on: the backend never sees it.
            let expect_continue = parts
                .headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            return Box::pin(async move {
                // A client waiting for `100 Continue` has sent nothing: not reading its body
                // keeps it so (hyper sends `100 Continue` only when the body is read).
                let read_whole = !expect_continue
                    && len <= BODY_DRAIN_BYTES
                    && drain(body, BODY_DRAIN_BYTES, drain_time).await;
                too_large(bound, read_whole)
            });
        }
        // A chunked body: forwarded up to the bound; past it, the backend's body fails and the
        // rest comes back here, to be read and dropped.
        let rest = Arc::new(Mutex::new(None));
        let body = LimitedBody {
            inner: Some(body),
            max: bound.bytes,
            read: 0,
            rest: rest.clone(),
        };
        let resp = self.serve(namespace, name, port, parts, box_body(body));
        Box::pin(async move {
            let resp = resp.await;
            // The backend answered after its body was cut off: whatever it made of that, the
            // client's answer is the bound. (One that answered before keeps its answer, and its
            // body is cut off beneath it.)
            let rest = rest.lock().unwrap_or_else(|e| e.into_inner()).take();
            match rest {
                Some(rest) => {
                    let read_whole = drain(rest, BODY_DRAIN_BYTES, drain_time).await;
                    too_large(bound, read_whole)
                }
                None => resp,
            }
        })
    }
}

impl IngressProxy {
    /// Hands the request to the backend, in a span of its own when tracing is on.
    fn serve(
        &self,
        namespace: &str,
        name: &str,
        port: &crate::net::ServicePortRef,
        parts: http::request::Parts,
        body: HttpBody,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        if skiff_telemetry::trace::enabled() {
            return traced(&*self.backend, namespace, name, port, parts, body);
        }
        self.backend
            .serve(namespace, name, port, Request::from_parts(parts, body))
    }
}

/// The ingress's answer to a body past its Ingress's bound; unless the body was read whole,
/// the connection closes after it.
fn too_large(bound: BodyBound, read_whole: bool) -> Response<HttpBody> {
    let set_by = match bound.set_by {
        Some(annotation) => format!("set by the Ingress annotation {annotation}"),
        None => format!(
            "the default; the Ingress annotation {} sets another",
            skiff_meta::names::INGRESS_BODY_SIZE
        ),
    };
    let mut resp = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is larger than this Ingress's limit of {} bytes ({set_by})",
            bound.bytes
        ),
    );
    if !read_whole {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and drops `body` until it ends (`true`), fails, more than `max` bytes have been
/// read, or `time` has passed.
async fn drain(mut body: Incoming, max: u64, time: Duration) -> bool {
    use http_body_util::BodyExt;
    let read_all = async {
        let mut read = 0u64;
        while read <= max {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        false
    };
    tokio::time::timeout(time, read_all).await.unwrap_or(false)
}

/// A request body cut off past `max` bytes: it forwards frames up to the bound; past it, it
/// fails at once, so that the backend sees an error (never a body that looks whole) and is not
/// held while the client sends the rest, which it leaves in `rest`.
struct LimitedBody {
    /// `None` once the body ended, failed or was cut off.
    inner: Option<Incoming>,
    max: u64,
    /// Data bytes read from `inner`.
    read: u64,
    /// Where the rest of a body cut off goes.
    rest: Arc<Mutex<Option<Incoming>>>,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                this.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.read <= this.max {
                    return Poll::Ready(Some(Ok(frame)));
                }
                *this.rest.lock().unwrap_or_else(|e| e.into_inner()) = this.inner.take();
                Poll::Ready(Some(Err(format!(
                    "the request body is larger than the ingress's limit of {} bytes",
                    this.max
                )
                .into())))
            }
            Some(Err(e)) => {
                this.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
            None => {
                this.inner = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let Some(inner) = &self.inner else {
            return SizeHint::with_exact(0);
        };
        let hint = inner.size_hint();
        match hint.upper() {
            Some(upper) if self.read + upper > self.max => {
                // More may be announced than is forwarded: promise no upper bound.
                SizeHint::new()
            }
            _ => hint,
        }
    }
}

/// Serves an ingress request in its own span, the child of the client's `traceparent` (if
/// any), whose context the request carries on (replacing the client's).
fn traced(
    backend: &dyn ServiceBackend,
    namespace: &str,
    name: &str,
    port: &crate::net::ServicePortRef,
    mut parts: http::request::Parts,
    body: HttpBody,
) -> BoxFuture<'static, Response<HttpBody>> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "ingress",
        otel.name = %format!("ingress {namespace}/{name}"),
        otel.kind = "server",
        service = %format!("{namespace}/{name}"),
        http.request.method = %parts.method,
        url.path = %parts.uri.path(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    skiff_telemetry::trace::set_parent_from(&span, &parts.headers);
    skiff_telemetry::trace::inject(&span, &mut parts.headers);
    let req = Request::from_parts(parts, body);
    let fut = span.in_scope(|| backend.serve(namespace, name, port, req));
    Box::pin(
        async move {
            let resp = fut.await;
            tracing::Span::current().record("http.response.status_code", resp.status().as_u16());
            resp
        }
        .instrument(span),
    )
}

/// A NodePort: every request goes to one Service port (swapped in place when the Service
/// changes).
pub(crate) struct NodePortProxy {
    pub(crate) target: Arc<ArcSwap<Target>>,
    pub(crate) backend: Arc<dyn ServiceBackend>,
}

impl Handler for NodePortProxy {
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let target = self.target.load();
        match &**target {
            Target::Service {
                namespace,
                name,
                port,
            } => {
                let (mut parts, body) = req.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                // The NetworkPolicies' source (a client's own value is replaced).
                parts.headers.insert(SOURCE_IP_HEADER, peer.ip.clone());
                let req = Request::from_parts(parts, box_body(body));
                self.backend.serve(namespace, name, port, req)
            }
            Target::Unavailable(reason) => {
                let resp = text(StatusCode::SERVICE_UNAVAILABLE, reason);
                Box::pin(async move { resp })
            }
        }
    }
}
