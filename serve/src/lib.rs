//! The HTTP serving loop every Skiff surface shares — the API server, the node endpoint, the
//! ingress and NodePorts, the registry — with the bounds that keep one client from holding what
//! others need:
//!
//! | bound ([`ConnectionLimits`]) | over it |
//! |---|---|
//! | open connections (`max_connections`), and of one client IP (`max_connections_per_client_ip`) | accepted and closed at once, before TLS |
//! | TLS handshake, first byte, each HTTP/1.1 request head, HTTP/1.1 keep-alive idle (`request_header_timeout`) | connection closed |
//! | no request in flight — an HTTP/2 connection with no open stream, an HTTP/1.1 one between requests (`idle_timeout`) | closed gracefully (HTTP/2 `GOAWAY`) |
//! | request head: HTTP/1.1 start line and headers, HTTP/2 header list (`max_header_bytes`) | 431 |
//! | HTTP/2 streams open at once on one connection (`http2_max_concurrent_streams`) | the client waits for a stream |
//!
//! A connection upgraded to another protocol (a websocket; exec's, attach's and port-forward's
//! streams) stays counted until it closes: its permit travels with its stream.
//!
//! These are Go's `http.Server` bounds as kube-apiserver sets them (`ReadHeaderTimeout` 32 s,
//! also bounding the TLS handshake; `IdleTimeout` 90 s, which Go's HTTP/2 server applies to a
//! connection with no stream open; `MaxHeaderBytes`; `--http2-max-streams-per-connection`), plus
//! the connection caps Go leaves to the listener. Each surface picks its values (see its crate).
//! Bodies, URLs and request rates are bounded by the surfaces themselves.

mod activity;
mod gate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use activity::TrackedBody;
pub use gate::{ConnectionGate, ConnectionPermit, Refused};

/// Serves TLS on a listener (`ServeOptions::tls`).
pub use tokio_rustls::TlsAcceptor;
/// The TLS library's types a surface sees a connection through (its client certificates).
pub use tokio_rustls::rustls;

/// The default largest request head: an HTTP/1.1 start line and headers, or an HTTP/2 header
/// list. Past it hyper (HTTP/1.1) or h2 (HTTP/2) answers 431 Request Header Fields Too Large,
/// with no body, as Go's server does. Go's default (and kube-apiserver's) is 1 MiB; 64 KiB holds
/// any real client's headers (a bearer token is a few KiB) and bounds a connection's buffered head.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bounds one listener enforces on its connections (see the crate's table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (0: unbounded). Past it a new connection is closed as soon as
    /// it is accepted.
    pub max_connections: usize,
    /// Connections open at once from one client IP address (0: unbounded), so that one client
    /// cannot take every connection. Clients behind one NAT or proxy share it.
    pub max_connections_per_client_ip: usize,
    /// How long a client may take for the TLS handshake, to send its first byte, and to send
    /// each HTTP/1.1 request head — which is also how long an HTTP/1.1 keep-alive connection may
    /// sit idle between requests (hyper's header read timer runs from the end of a response).
    pub request_header_timeout: Duration,
    /// How long a connection may have no request in flight (a request counts until its response
    /// body has been sent: a watch keeps its connection busy) before it is closed gracefully:
    /// HTTP/2 with `GOAWAY`. Never shorter than `request_header_timeout`, so that an HTTP/1.1
    /// head in progress is bounded by that alone.
    pub idle_timeout: Duration,
    /// The largest request head (at least 8 KiB, hyper's smallest read buffer).
    pub max_header_bytes: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// The API server's defaults, which the other surfaces start from: 4096 connections, 512
    /// per client IP, 32 s for a head, 90 s idle, 64 KiB heads, 100 HTTP/2 streams
    /// (kube-apiserver's when `--http2-max-streams-per-connection` is 0, its default: the
    /// streams Go's client opens before it learns the server's bound).
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        max_connections: 4096,
        max_connections_per_client_ip: 512,
        request_header_timeout: Duration::from_secs(32),
        idle_timeout: Duration::from_secs(90),
        max_header_bytes: MAX_HEADER_BYTES,
        http2_max_concurrent_streams: 100,
    };
}

impl Default for ConnectionLimits {
    /// [`ConnectionLimits::DEFAULT`].
    fn default() -> Self {
        ConnectionLimits::DEFAULT
    }
}

/// The HTTP versions a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only (upgrades, such as websockets, included).
    Http1,
    /// HTTP/1.1 and HTTP/2 (chosen by ALPN over TLS, by the client's preface in clear text).
    Http1AndHttp2,
}

/// How to serve one listener.
pub struct ServeOptions {
    /// The surface's name, for logs ("API server", "node endpoint", ...).
    pub name: &'static str,
    /// The bounds on its connections.
    pub limits: ConnectionLimits,
    /// TLS, if it serves HTTPS.
    pub tls: Option<TlsAcceptor>,
    /// The HTTP versions it speaks.
    pub protocols: Protocols,
    /// How long open connections get to finish their requests once shutdown starts; then
    /// they are closed.
    pub drain: Duration,
}

/// What a surface may know about a connection when it makes the connection's service.
pub struct Peer<'a> {
    /// The client's address.
    pub addr: SocketAddr,
    /// The TLS session (its ALPN protocol, the client's certificates), over HTTPS.
    pub tls: Option<&'a rustls::ServerConnection>,
}

/// The parts every connection task shares.
struct Shared<M> {
    name: &'static str,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    make_service: M,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a connection's service must be for hyper to serve it on its own task: any
/// `hyper::service::Service` (`hyper::service::service_fn`, or a tower service such as an axum
/// `Router` through `hyper_util::service::TowerToHyperService`) whose future and response body
/// can move between threads. Implemented for every such service.
pub trait ConnectionService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Self::ResponseBody>,
        Future: Send + 'static,
        Error: Into<BoxError> + Send + 'static,
    > + Send
    + 'static
{
    /// The response body.
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static;
}

impl<S, B> ConnectionService for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResponseBody = B;
}

/// Serves `listener` until `shutdown` resolves: each admitted connection gets the service
/// `make_service` makes for it (after TLS), within `options.limits`. At shutdown it stops
/// accepting, closes idle connections, lets requests in flight finish for `options.drain`,
/// then closes what is left.
pub async fn serve<M, S>(
    listener: TcpListener,
    options: ServeOptions,
    make_service: M,
    shutdown: impl Future<Output = ()> + Send,
) where
    M: Fn(&Peer<'_>) -> S + Send + Sync + 'static,
    S: ConnectionService,
{
    let limits = options.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if options.protocols == Protocols::Http1 {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let gate = ConnectionGate::new(limits.clone());
    let shared = Arc::new(Shared {
        name: options.name,
        limits,
        tls: options.tls,
        builder,
        make_service,
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(server = shared.name, error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over a connection bound: closed at once, before any TLS work.
                let permit = match gate.admit(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refused) => {
                        tracing::debug!(server = shared.name, %peer, ?refused, "connection refused: too many open");
                        continue;
                    }
                };
                // Responses written in several parts (streams, chunks) go out at once rather
                // than waiting for the client's delayed ACK (Nagle).
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                let stopped = stopped.clone();
                connections.spawn(async move {
                    let tcp = gate::PermittedStream::new(tcp, permit);
                    connection(tcp, peer, &shared, stopped).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain, drained).await.is_err() {
        tracing::warn!(
            server = shared.name,
            "requests still in flight after {:?}; closing them",
            options.drain
        );
    }
    connections.shutdown().await;
}

/// `work`, unless it takes longer than `limit` or shutdown starts first.
async fn within<T>(
    limit: Duration,
    stopped: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        done = tokio::time::timeout(limit, work) => done.ok(),
        _ = stopped.wait_for(|s| *s) => None,
    }
}

/// One connection: TLS and the first byte within the request header timeout, then HTTP.
async fn connection<M, S>(
    tcp: gate::PermittedStream,
    addr: SocketAddr,
    shared: &Shared<M>,
    mut stopped: watch::Receiver<bool>,
) where
    M: Fn(&Peer<'_>) -> S + Send + Sync + 'static,
    S: ConnectionService,
{
    // The handshake and the first byte get the request header timeout, as Go's server gives
    // kube-apiserver's: a client that connects and says nothing (or nothing after the
    // handshake, which HTTP/2 would wait for) holds its connection that long at most.
    let timeout = shared.limits.request_header_timeout;
    match &shared.tls {
        None => {
            let first = within(timeout, &mut stopped, tcp.peek(&mut [0u8; 1])).await;
            if !matches!(first, Some(Ok(n)) if n > 0) {
                return;
            }
            let service = (shared.make_service)(&Peer { addr, tls: None });
            http(TokioIo::new(tcp), service, shared, stopped).await;
        }
        Some(acceptor) => {
            let tls = match within(timeout, &mut stopped, acceptor.accept(tcp)).await {
                Some(Ok(tls)) => tls,
                Some(Err(err)) => {
                    tracing::debug!(server = shared.name, peer = %addr, error = %err, "TLS handshake failed");
                    return;
                }
                None => return,
            };
            let mut tls = tokio::io::BufReader::with_capacity(1, tls);
            let first = within(
                timeout,
                &mut stopped,
                tokio::io::AsyncBufReadExt::fill_buf(&mut tls),
            )
            .await;
            if !matches!(first, Some(Ok(bytes)) if !bytes.is_empty()) {
                return;
            }
            let session = tls.get_ref().get_ref().1;
            let service = (shared.make_service)(&Peer {
                addr,
                tls: Some(session),
            });
            http(TokioIo::new(tls), service, shared, stopped).await;
        }
    }
}

/// Serves HTTP on one connection until it ends, is idle for the idle timeout, or shutdown has
/// closed it gracefully.
async fn http<I, M, S: ConnectionService>(
    io: TokioIo<I>,
    service: S,
    shared: &Shared<M>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(activity::Activity::default());
    let service = activity::Tracked {
        inner: service,
        activity: activity.clone(),
    };
    let conn = shared.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let header_timeout = shared.limits.request_header_timeout;
    let idle = shared.limits.idle_timeout.max(header_timeout);
    let mut closing = false;
    loop {
        // Once closing, a connection that still has nothing in flight after the header timeout
        // (an HTTP/2 client stalled in its preface, which hyper waits for) is dropped.
        let quiet = if closing { header_timeout } else { idle };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(server = shared.name, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = activity.idle_for(quiet) => {
                if closing {
                    return;
                }
                tracing::trace!(server = shared.name, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopped.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
