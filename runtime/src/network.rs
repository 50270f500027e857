//! The virtual pod network of a node: a routing table from pod IPs to sandboxes, so that
//! `localhost:PORT` reaches a sibling container and a pod IP on this node is served
//! in-process; a [`ServiceRouter`] (the node's Service router) is offered every other request
//! before the pod IPs; everything else goes out over the real network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::PodSandbox;
use crate::error::{Error, Result};

/// A boxed error of an HTTP body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of requests and responses crossing the runtime's API.
pub type HttpBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body with all of `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> HttpBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty_body() -> HttpBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Converts any body (for example hyper's `Incoming`) into an [`HttpBody`].
pub fn box_body<B>(body: B) -> HttpBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Where a request goes.
// Moved, never stored: boxing the request would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
pub enum Route {
    /// Served in-process by a pod of this node.
    Local {
        /// The pod.
        pod: Arc<dyn PodSandbox>,
        /// The container port.
        port: u16,
        /// The request.
        req: Request<HttpBody>,
    },
    /// Taken over by the [`ServiceRouter`]: the response it produces (its own errors included).
    Routed(BoxFuture<'static, Response<HttpBody>>),
    /// Sent over the real network to the destination as named.
    External(Request<HttpBody>),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Local { pod, port, .. } => write!(f, "Local({}:{port})", pod.id()),
            Route::Routed(_) => f.write_str("Routed"),
            Route::External(req) => write!(f, "External({})", req.uri()),
        }
    }
}

/// What a [`ServiceRouter`] did with a request offered to it.
// Moved, never stored: boxing the request would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
pub enum Routed {
    /// Not a destination it knows: the request goes on (pod IPs, then the real network).
    Declined(Request<HttpBody>),
    /// Taken over: the response, always produced (a router answers its own failures, such as
    /// "no endpoint", with an HTTP status).
    Taken(BoxFuture<'static, Response<HttpBody>>),
}

/// Marks a response a [`ServiceRouter`] produced for a connection it refuses (a network policy
/// denies it): the calling pod sees a refused connection, never this response.
#[derive(Clone, Debug)]
pub struct ConnectionRefused(pub Arc<str>);

/// The response standing for a refused connection: `502` with `reason` as plain text (what an
/// HTTP caller outside a pod sees), marked with [`ConnectionRefused`].
pub fn refused_response(reason: impl Into<String>) -> Response<HttpBody> {
    let reason: String = reason.into();
    let mut resp = Response::new(full_body(format!("connection refused: {reason}\n")));
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.extensions_mut()
        .insert(ConnectionRefused(Arc::from(reason)));
    resp
}

/// Why the connection behind `resp` was refused, when it stands for one.
pub fn refused(resp: &Response<HttpBody>) -> Option<&str> {
    resp.extensions().get::<ConnectionRefused>().map(|r| &*r.0)
}

/// The node's request router (for example its Service table: names and virtual IPs to
/// endpoints), offered every outgoing request before the pod IPs; knows nothing of Kubernetes
/// as far as the runtime is concerned. Not offered requests to `localhost` or to the calling
/// pod's own IP (those reach its sibling containers).
pub trait ServiceRouter: Send + Sync {
    /// Takes over `req` sent by the pod with IP `from` (`None`: an in-process caller of the
    /// node, such as a probe), or gives it back.
    fn route(&self, from: Option<IpAddr>, req: Request<HttpBody>) -> Routed;

    /// Whether a connection from `from` (`None`: the node itself) to `to`:`port` may be made,
    /// for a caller that reaches a pod of this node without [`ServiceRouter::route`] (a
    /// listener for the pod's address); `Err` says why not. Everything is admitted unless the
    /// router says otherwise.
    fn admits(&self, from: Option<IpAddr>, to: IpAddr, port: u16) -> Result<(), String> {
        let _ = (from, to, port);
        Ok(())
    }
}

/// The node's pod routing table. Cheap to clone; the host creates it and gives the same one to
/// every runtime backend.
#[derive(Clone, Default)]
pub struct Network {
    pods: Arc<RwLock<HashMap<IpAddr, Weak<dyn PodSandbox>>>>,
    router: Arc<RwLock<Option<Arc<dyn ServiceRouter>>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pods.read().map(|p| p.len()).unwrap_or(0);
        let r = self.router.read().map(|r| r.is_some()).unwrap_or(false);
        f.debug_struct("Network")
            .field("pods", &n)
            .field("router", &r)
            .finish()
    }
}

fn host_ip(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse().ok()
}

fn is_localhost(uri: &Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        _ => host_ip(uri).is_some_and(|ip| ip.is_loopback()),
    }
}

/// The port a request URI names (80 or 443 by scheme when absent).
pub fn port_of(uri: &Uri) -> u16 {
    uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    })
}

impl Network {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plugs in (or, with `None`, removes) the router offered requests before pod IPs. Every
    /// clone of this network sees it.
    pub fn set_router(&self, router: Option<Arc<dyn ServiceRouter>>) {
        *self.router.write().unwrap_or_else(|e| e.into_inner()) = router;
    }

    fn router(&self) -> Option<Arc<dyn ServiceRouter>> {
        self.router
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Registers a pod under its IP. Fails if another live pod holds the IP.
    pub fn register(&self, ip: IpAddr, pod: Weak<dyn PodSandbox>) -> Result<()> {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = pods.get(&ip)
            && existing.strong_count() > 0
            && !Weak::ptr_eq(existing, &pod)
        {
            return Err(Error::AlreadyExists(format!("a pod with IP {ip}")));
        }
        pods.insert(ip, pod);
        Ok(())
    }

    /// Removes the IP from the table if it still points at `pod` (or at a dropped pod).
    pub fn unregister(&self, ip: IpAddr, pod: &Weak<dyn PodSandbox>) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = pods.get(&ip)
            && (Weak::ptr_eq(existing, pod) || existing.strong_count() == 0)
        {
            pods.remove(&ip);
        }
    }

    /// The live pod holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<dyn PodSandbox>> {
        self.pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .and_then(Weak::upgrade)
    }

    /// Number of registered pods.
    pub fn len(&self) -> usize {
        self.pods.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no pod is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides where a request from pod `from` (if any) goes: `localhost` and the pod's own IP
    /// reach its siblings; then the [`ServiceRouter`] may take it over; then a pod IP of this
    /// node is served in-process; anything else goes out as named.
    pub fn resolve(&self, from: Option<&Arc<dyn PodSandbox>>, req: Request<HttpBody>) -> Route {
        let uri = req.uri();
        let port = port_of(uri);
        let ip = host_ip(uri);
        if let Some(from) = from
            && (is_localhost(uri) || (ip.is_some() && ip == from.ip()))
        {
            return Route::Local {
                pod: from.clone(),
                port,
                req,
            };
        }
        let req = match self.router() {
            Some(router) => match router.route(from.and_then(|p| p.ip()), req) {
                Routed::Taken(fut) => return Route::Routed(fut),
                Routed::Declined(req) => req,
            },
            None => req,
        };
        if let Some(ip) = ip
            && let Some(pod) = self.lookup(ip)
        {
            return Route::Local { pod, port, req };
        }
        Route::External(req)
    }

    /// Sends a request the way a pod's outgoing `wasi:http` call is sent: in-process when the
    /// destination is a pod of this node, through the router when it takes it, else over the
    /// network. For in-process callers such as probes (`from = None`).
    pub async fn send(
        &self,
        from: Option<&Arc<dyn PodSandbox>>,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>> {
        match self.resolve(from, req) {
            Route::Local { pod, port, req } => pod.handle_http(port, req).await,
            Route::Routed(fut) => {
                let resp = fut.await;
                match refused(&resp) {
                    Some(why) => Err(Error::Http(format!("connection refused: {why}"))),
                    None => Ok(resp),
                }
            }
            Route::External(req) => send_external(req).await,
        }
    }
}

/// Sends a request over the real network (HTTP/1.1, a new connection).
pub async fn send_external(req: Request<HttpBody>) -> Result<Response<HttpBody>> {
    let req = req.map(|b| {
        b.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
            .boxed_unsync()
    });
    let (resp, io) = wasmtime_wasi_http::default_send_request(req, None)
        .await
        .map_err(|e| Error::Http(e.to_string()))?;
    // The connection task must run while the body is read: hold it in the body.
    let conn = tokio::spawn(async move {
        if let Err(e) = io.await {
            tracing::debug!(error = %e, "outgoing connection ended with an error");
        }
    });
    Ok(resp.map(|b| {
        WithTask {
            body: b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
            _task: AbortOnDrop(conn),
        }
        .boxed_unsync()
    }))
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A body that keeps a background task alive until the body is dropped.
pub(crate) struct WithTask {
    pub(crate) body: HttpBody,
    pub(crate) _task: AbortOnDrop,
}

impl hyper::body::Body for WithTask {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_localhost_and_ports() {
        let u: Uri = "http://localhost:8080/x".parse().unwrap();
        assert!(is_localhost(&u));
        assert_eq!(port_of(&u), 8080);
        let u: Uri = "http://[::1]/".parse().unwrap();
        assert!(is_localhost(&u));
        assert_eq!(port_of(&u), 80);
        let u: Uri = "https://10.0.0.7/".parse().unwrap();
        assert!(!is_localhost(&u));
        assert_eq!(host_ip(&u), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(port_of(&u), 443);
    }

    /// Takes requests for one virtual IP and answers them itself, with who sent them.
    struct Table;

    impl ServiceRouter for Table {
        fn route(&self, from: Option<IpAddr>, req: Request<HttpBody>) -> Routed {
            if req.uri().host() != Some("10.96.0.10") {
                return Routed::Declined(req);
            }
            let who = format!("{from:?} {}", req.uri().path());
            Routed::Taken(Box::pin(async move {
                Response::builder()
                    .status(299)
                    .body(full_body(who))
                    .expect("a response")
            }))
        }
    }

    /// Refuses every request, as a router does for a connection a network policy denies.
    struct Refuser;

    impl ServiceRouter for Refuser {
        fn route(&self, _from: Option<IpAddr>, _req: Request<HttpBody>) -> Routed {
            Routed::Taken(Box::pin(async { refused_response("denied by policy") }))
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_never_a_response() {
        let resp = refused_response("why");
        assert_eq!(resp.status(), 502);
        assert_eq!(refused(&resp), Some("why"));
        assert_eq!(refused(&Response::new(empty_body())), None);
        let net = Network::new();
        net.set_router(Some(Arc::new(Refuser)));
        let err = net
            .send(None, get("http://10.96.0.10/"))
            .await
            .expect_err("a refused connection");
        assert!(err.to_string().contains("denied by policy"), "{err}");
    }

    fn get(uri: &str) -> Request<HttpBody> {
        Request::get(uri).body(empty_body()).unwrap()
    }

    #[tokio::test]
    async fn the_router_is_offered_requests_before_pod_ips_and_may_decline() {
        let net = Network::new();
        assert!(matches!(
            net.resolve(None, get("http://10.96.0.10/")),
            Route::External(_)
        ));
        net.set_router(Some(Arc::new(Table)));
        let resp = net
            .clone()
            .send(None, get("http://10.96.0.10/a"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 299);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"None /a");
        match net.resolve(None, get("http://192.0.2.1:8080/b")) {
            Route::External(req) => assert_eq!(req.uri().path(), "/b"),
            other => panic!("declined requests go out as named, got {other:?}"),
        }
        net.set_router(None);
        assert!(matches!(
            net.resolve(None, get("http://10.96.0.10/")),
            Route::External(_)
        ));
    }
}
