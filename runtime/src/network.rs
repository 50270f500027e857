//! The virtual pod network of a node: a routing table from pod IPs to sandboxes, so that
//! `localhost:PORT` reaches a sibling container and a pod IP on this node is served
//! in-process; everything else goes out over the real network.

use std::collections::HashMap;
use std::net::IpAddr;
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
    /// Sent over the real network.
    External,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Local { pod, port } => write!(f, "Local({}:{port})", pod.id()),
            Route::External => f.write_str("External"),
        }
    }
}

/// The node's pod routing table. Cheap to clone; the host owns it and gives it to the runtime.
#[derive(Clone, Default)]
pub struct Network {
    pods: Arc<RwLock<HashMap<IpAddr, Weak<dyn PodSandbox>>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pods.read().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("Network").field("pods", &n).finish()
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
        match self.resolve(from, req.uri()) {
            Route::Local { pod, port } => pod.handle_http(port, req).await,
            Route::External => {
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
}
