//! The virtual pod network of a node: a routing table from pod IPs to sandboxes, so that
//! `localhost:PORT` reaches a sibling container and a pod IP on this node is served
//! in-process; a [`Resolver`] (the node's Service table) is consulted before the pod IPs;
//! everything else goes out over the real network.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
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
pub enum Route {
    /// Served in-process by a pod of this node.
    Local {
        /// The pod.
        pod: Arc<dyn PodSandbox>,
        /// The container port.
        port: u16,
    },
    /// The [`Resolver`] chose this endpoint off the node: sent over the real network to it.
    Remote(SocketAddr),
    /// The [`Resolver`] knows the destination but it has no endpoint (a Service without ready
    /// pods): the connection is refused.
    Refused,
    /// Sent over the real network to the destination as named.
    External,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Local { pod, port } => write!(f, "Local({}:{port})", pod.id()),
            Route::Remote(addr) => write!(f, "Remote({addr})"),
            Route::Refused => f.write_str("Refused"),
            Route::External => f.write_str("External"),
        }
    }
}

/// Name resolution the node plugs into its [`Network`] (for example a Service table mapping
/// virtual IPs and DNS names to endpoints). Consulted before the pod IPs; knows nothing of
/// Kubernetes as far as the runtime is concerned.
pub trait Resolver: Send + Sync {
    /// The endpoints `host:port` stands for: `None` when the resolver does not know it (the
    /// network then looks at pod IPs and the real network), an empty list when it knows it
    /// but nothing serves it (the connection is refused).
    fn resolve(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>>;
}

/// The node's pod routing table. Cheap to clone; the host creates it and gives the same one to
/// every runtime backend.
#[derive(Clone, Default)]
pub struct Network {
    pods: Arc<RwLock<HashMap<IpAddr, Weak<dyn PodSandbox>>>>,
    resolver: Arc<RwLock<Option<Arc<dyn Resolver>>>>,
    /// Round-robin position over resolved endpoints.
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pods.read().map(|p| p.len()).unwrap_or(0);
        let r = self.resolver.read().map(|r| r.is_some()).unwrap_or(false);
        f.debug_struct("Network")
            .field("pods", &n)
            .field("resolver", &r)
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

fn port_of(uri: &Uri) -> u16 {
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

    /// Plugs in (or, with `None`, removes) the resolver consulted before pod IPs. Every clone
    /// of this network sees it.
    pub fn set_resolver(&self, resolver: Option<Arc<dyn Resolver>>) {
        *self.resolver.write().unwrap_or_else(|e| e.into_inner()) = resolver;
    }

    fn resolver(&self) -> Option<Arc<dyn Resolver>> {
        self.resolver
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

    /// Decides where a request to `uri` from pod `from` (if any) goes.
    pub fn resolve(&self, from: Option<&Arc<dyn PodSandbox>>, uri: &Uri) -> Route {
        let port = port_of(uri);
        if let Some(from) = from
            && (is_localhost(uri) || (host_ip(uri).is_some() && host_ip(uri) == from.ip()))
        {
            return Route::Local {
                pod: from.clone(),
                port,
            };
        }
        if let Some(resolver) = self.resolver()
            && let Some(host) = uri.host()
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Some(endpoints) = resolver.resolve(host, port) {
                if endpoints.is_empty() {
                    return Route::Refused;
                }
                let i = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
                let ep = endpoints[i];
                return match self.lookup(ep.ip()) {
                    Some(pod) => Route::Local {
                        pod,
                        port: ep.port(),
                    },
                    None => Route::Remote(ep),
                };
            }
        }
        if let Some(ip) = host_ip(uri)
            && let Some(pod) = self.lookup(ip)
        {
            return Route::Local { pod, port };
        }
        Route::External
    }

    /// Sends a request the way a pod's outgoing `wasi:http` call is sent: in-process when the
    /// destination is a pod of this node, else over the network. For in-process callers such
    /// as probes (`from = None`).
    pub async fn send(
        &self,
        from: Option<&Arc<dyn PodSandbox>>,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>> {
        let mut req = req;
        match self.resolve(from, req.uri()) {
            Route::Local { pod, port } => pod.handle_http(port, req).await,
            Route::Refused => Err(Error::Http(format!(
                "{}: connection refused (no endpoint)",
                req.uri()
            ))),
            route @ (Route::Remote(_) | Route::External) => {
                if let Route::Remote(addr) = route {
                    redirect(&mut req, addr)?;
                }
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
        }
    }
}

/// Points a request at `addr`, keeping the name it was sent to in its `Host` header.
pub(crate) fn redirect<B>(req: &mut Request<B>, addr: SocketAddr) -> Result<()> {
    if !req.headers().contains_key(http::header::HOST)
        && let Some(authority) = req.uri().authority()
        && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let mut parts = req.uri().clone().into_parts();
    parts.authority = Some(
        addr.to_string()
            .parse()
            .map_err(|e| Error::Http(format!("endpoint {addr}: {e}")))?,
    );
    if parts.scheme.is_none() {
        parts.scheme = Some(http::uri::Scheme::HTTP);
    }
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|e| Error::Http(format!("endpoint {addr}: {e}")))?;
    Ok(())
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

    struct Table;

    impl Resolver for Table {
        fn resolve(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
            match (host, port) {
                ("10.96.0.10", 80) => Some(vec![
                    "192.0.2.1:8080".parse().unwrap(),
                    "192.0.2.2:8080".parse().unwrap(),
                ]),
                ("empty.default.svc", 80) => Some(Vec::new()),
                _ => None,
            }
        }
    }

    #[test]
    fn the_resolver_is_consulted_before_pod_ips_and_spreads_over_endpoints() {
        let net = Network::new();
        let svc: Uri = "http://10.96.0.10/".parse().unwrap();
        assert!(matches!(net.resolve(None, &svc), Route::External));
        net.set_resolver(Some(Arc::new(Table)));
        let seen: Vec<String> = (0..4)
            .map(|_| format!("{:?}", net.clone().resolve(None, &svc)))
            .collect();
        assert_eq!(
            seen,
            [
                "Remote(192.0.2.1:8080)",
                "Remote(192.0.2.2:8080)",
                "Remote(192.0.2.1:8080)",
                "Remote(192.0.2.2:8080)"
            ]
        );
        let empty: Uri = "http://empty.default.svc/".parse().unwrap();
        assert!(matches!(net.resolve(None, &empty), Route::Refused));
        let other: Uri = "http://10.96.0.10:81/".parse().unwrap();
        assert!(matches!(net.resolve(None, &other), Route::External));
        net.set_resolver(None);
        assert!(matches!(net.resolve(None, &svc), Route::External));
    }

    #[test]
    fn redirect_keeps_the_host_header_and_the_path() {
        let mut req = Request::get("http://my-svc.ns.svc:80/a?b=1")
            .body(())
            .unwrap();
        redirect(&mut req, "192.0.2.9:8080".parse().unwrap()).unwrap();
        assert_eq!(req.uri().to_string(), "http://192.0.2.9:8080/a?b=1");
        assert_eq!(req.headers()[http::header::HOST], "my-svc.ns.svc:80");
    }
}
