//! The serving loop on real port-0 listeners (clear text): the connection caps, the header
//! timeout, the head limit, the idle timeout of HTTP/2 connections and graceful shutdown.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tokio::time::Instant;

use super::*;

/// A response body that never ends (a watch).
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

type Answer = Response<http_body_util::Either<Endless, Empty<Bytes>>>;

/// `GET /endless` answers a body that never ends; `GET /upgrade` switches protocols and then
/// echoes what it reads until the client closes; anything else an empty body.
async fn answer(mut request: Request<Incoming>) -> Result<Answer, Infallible> {
    let body = match request.uri().path() {
        "/endless" => http_body_util::Either::Left(Endless),
        "/upgrade" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let resp = Response::builder()
                .status(http::StatusCode::SWITCHING_PROTOCOLS)
                .header(http::header::CONNECTION, "upgrade")
                .header(http::header::UPGRADE, "echo")
                .body(http_body_util::Either::Right(Empty::new()))
                .unwrap();
            return Ok(resp);
        }
        _ => http_body_util::Either::Right(Empty::new()),
    };
    Ok(Response::new(body))
}

/// A server with `limits` on a port-0 listener; dropping the sender shuts it down.
async fn server(
    limits: ConnectionLimits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        name: "test",
        limits,
        tls: None,
        protocols: Protocols::Http1AndHttp2,
        drain: Duration::from_secs(5),
    };
    let task = tokio::spawn(serve(
        listener,
        options,
        |_: &Peer<'_>| hyper::service::service_fn(answer),
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

fn quick() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 8,
        max_connections_per_client_ip: 4,
        request_header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..ConnectionLimits::default()
    }
}

/// [`quick`] with timeouts longer than the tests wait.
fn patient() -> ConnectionLimits {
    ConnectionLimits {
        request_header_timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        ..quick()
    }
}

/// GETs `path` over `send` and reads the answer.
async fn get(send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>, path: &str) {
    let uri = format!("http://x{path}");
    let resp = send
        .send_request(Request::get(uri).body(Empty::new()).unwrap())
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
}

/// Waits (30 s at most) for an HTTP/2 client connection's driver to end without error: the
/// server closed it with `GOAWAY`.
async fn closed_gracefully(conn: tokio::task::JoinHandle<hyper::Result<()>>, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), conn)
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .unwrap()
        .unwrap();
}

/// Reads until the server closes the connection (within 30 s); how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    t.elapsed()
}

/// An HTTP/2 (prior knowledge) client connection; its driver's task ends when the server
/// closes it.
async fn h2(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn connections_over_the_per_ip_bound_are_closed_on_accept() {
    // Timeouts longer than `closed_after` waits: a close it sees is a refusal.
    let (addr, _stop, _task) = server(patient()).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The fifth from this IP is closed on accept.
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    closed_after(&mut fifth).await;
    // Once one closes, a new one is served.
    drop(held.pop());
    let answered = a_new_connection_is_served(addr).await;
    assert!(answered, "no new connection was served after one closed");
}

#[tokio::test]
async fn an_upgraded_connection_stays_counted_until_it_closes() {
    let (addr, _stop, _task) = server(patient()).await;
    // Four upgraded connections from this IP, its bound, each echoing.
    let mut upgraded = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(
                s.read(&mut byte).await.unwrap(),
                1,
                "closed before the head ended"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        upgraded.push(s);
    }
    // Their HTTP parts have ended, but they still hold their places: a fifth is closed on
    // accept.
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    closed_after(&mut fifth).await;
    // Once one closes, a new connection is served.
    drop(upgraded.pop());
    let answered = a_new_connection_is_served(addr).await;
    assert!(
        answered,
        "no new connection was served after an upgraded one closed"
    );
}

/// Whether a new connection is served (tried for 10 s at most).
async fn a_new_connection_is_served(addr: SocketAddr) -> bool {
    eventually(|| async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.starts_with("HTTP/1.1 200").then_some(())
    })
    .await
}

/// Tries `f` until it answers (10 s at most).
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await.is_some() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[tokio::test]
async fn silent_and_slow_clients_are_closed_after_the_header_timeout() {
    let (addr, _stop, _task) = server(quick()).await;
    // Nothing sent at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_after(&mut silent).await >= Duration::from_millis(250));
    // A head that never ends.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_after(&mut slow).await;
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431() {
    let (addr, _stop, _task) = server(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}

#[tokio::test]
async fn an_http2_connection_with_no_stream_open_is_closed_after_the_idle_timeout() {
    let (addr, _stop, _task) = server(quick()).await;
    // Idle from the start, and idle after a request.
    let (_idle, idle_conn) = h2(addr).await;
    let (mut used, used_conn) = h2(addr).await;
    let t = Instant::now();
    get(&mut used, "/").await;
    // A stream that stays open (a watch) keeps its connection.
    let (mut watching, watching_conn) = h2(addr).await;
    let watch = watching
        .send_request(Request::get("http://x/endless").body(Empty::new()).unwrap())
        .await
        .unwrap();
    closed_gracefully(idle_conn, "the idle connection stayed open").await;
    closed_gracefully(
        used_conn,
        "the connection idle after its request stayed open",
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert!(!watching_conn.is_finished());
    // Once the watch ends, its connection is idle too.
    drop(watch);
    closed_gracefully(
        watching_conn,
        "the connection idle after its watch stayed open",
    )
    .await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_ends_the_server() {
    let (addr, stop, task) = server(patient()).await;
    let (mut send, conn) = h2(addr).await;
    get(&mut send, "/").await;
    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server did not stop")
        .unwrap();
    closed_gracefully(conn, "the connection stayed open").await;
}
