//! The ingress on real sockets with a fake Service backend: HTTP/1.1 keep-alive with Host
//! headers through the route table, forwarded headers, 404/503 answers, HTTPS certificates chosen
//! by SNI from TLS Secrets (and the fallback), and NodePorts opening and closing with Services.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use skiff_runtime::{HttpBody, full_body};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::rules::{ObjKey, Objects, RouteTable};
use super::serve::{self, IngressProxy};
use super::tls::{self, ParsedSecrets, TlsTable};
use crate::net::nodeport::NodePorts;
use crate::net::{ServiceBackend, ServicePortRef};

/// What the fake backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    port: ServicePortRef,
    headers: http::HeaderMap,
}

/// Answers `NS/NAME PATH` and records every request.
#[derive(Default)]
struct FakeBackend {
    seen: Mutex<Vec<Seen>>,
}

impl FakeBackend {
    fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request reached the backend")
    }
}

impl ServiceBackend for FakeBackend {
    fn serve(
        &self,
        namespace: &str,
        name: &str,
        port: &ServicePortRef,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let service = format!("{namespace}/{name}");
        let path = req.uri().path().to_string();
        self.seen.lock().expect("lock").push(Seen {
            port: port.clone(),
            headers: req.headers().clone(),
        });
        Box::pin(async move { Response::new(full_body(format!("{service} {path}"))) })
    }
}

fn ingress(ns: &str, name: &str, spec: serde_json::Value) -> (ObjKey, Ingress) {
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .expect("an Ingress");
    ((ns.into(), name.into()), ing)
}

fn service(ns: &str, name: &str, spec: serde_json::Value) -> (ObjKey, Service) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": spec,
    }))
    .expect("a Service");
    ((ns.into(), name.into()), svc)
}

fn backend(svc: &str) -> serde_json::Value {
    json!({"service": {"name": svc, "port": {"number": 80}}})
}

fn objects() -> Objects {
    Objects {
        ingresses: [ingress(
            "default",
            "web",
            json!({
                "ingressClassName": "skiff",
                "rules": [
                    {"host": "app.test", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend("front")},
                        {"path": "/api", "pathType": "Prefix", "backend": backend("api")},
                        {"path": "/gone", "pathType": "Prefix", "backend": backend("missing")},
                    ]}},
                ],
            }),
        )]
        .into_iter()
        .collect(),
        classes: BTreeMap::new(),
        services: [
            service("default", "front", json!({"ports": [{"port": 80}]})),
            service("default", "api", json!({"ports": [{"port": 80}]})),
        ]
        .into_iter()
        .collect(),
    }
}

/// An HTTP/1.1 connection to `addr` (kept alive across requests).
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    handshake(tcp).await
}

async fn handshake<IO, B>(io: IO) -> hyper::client::conn::http1::SendRequest<B>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    send
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> (StatusCode, String) {
    get_with(send, host, path, &[]).await
}

async fn get_with(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    send.ready().await.expect("the connection is ready");
    let mut req = Request::get(path)
        .header(http::header::HOST, host)
        .header("x-forwarded-for", "6.6.6.6");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).expect("a request");
    let resp = send.send_request(req).await.expect("a response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn proxy_routes_by_host_and_path_on_one_keep_alive_connection() {
    let table = Arc::new(ArcSwap::from_pointee(RouteTable::build(&objects())));
    let fake = Arc::new(FakeBackend::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let proxy = IngressProxy::new(table.clone(), fake.clone(), false, addr);
    let (stop_tx, stop) = watch::channel(false);
    let server = tokio::spawn(serve::serve(listener, None, Arc::new(proxy), stop));

    let mut conn = connect(addr).await;
    assert_eq!(
        get(&mut conn, "app.test", "/api/v1?x=1").await,
        (StatusCode::OK, "default/api /api/v1".into())
    );
    let seen = fake.last();
    assert_eq!(seen.port, ServicePortRef::Number(80));
    let header = |name: &str| {
        seen.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("host").as_deref(), Some("app.test"));
    assert_eq!(header("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    // A client's own X-Forwarded-For is not trusted: the ingress names the peer.
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-port"), Some(addr.port().to_string()));

    // Hop-by-hop headers stay at the ingress; end-to-end ones go through.
    get_with(
        &mut conn,
        "app.test",
        "/api",
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("x-end", "2"),
        ],
    )
    .await;
    let seen = fake.last();
    for gone in ["connection", "x-hop", "keep-alive"] {
        assert!(!seen.headers.contains_key(gone), "{gone} was forwarded");
    }
    assert_eq!(
        seen.headers.get("x-end").map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );

    assert_eq!(
        get(&mut conn, "APP.test:8080", "/apix").await,
        (StatusCode::OK, "default/front /apix".into())
    );
    let (status, body) = get(&mut conn, "other.test", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no ingress rule"), "{body}");
    let (status, body) = get(&mut conn, "app.test", "/gone").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "ingress backend: service \"default/missing\" not found\n"
    );

    // A new table is seen by the next request on the same connection.
    let mut objs = objects();
    objs.services.extend([service(
        "default",
        "missing",
        json!({"ports": [{"port": 80}]}),
    )]);
    table.store(Arc::new(RouteTable::build(&objs)));
    assert_eq!(
        get(&mut conn, "app.test", "/gone/x").await,
        (StatusCode::OK, "default/missing /gone/x".into())
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 4);

    stop_tx.send(true).expect("the server listens");
    drop(conn);
    server.await.expect("the server stops");
}

fn tls_secret(
    name: &str,
    rv: &str,
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (ObjKey, Secret) {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(cert.cert.pem().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(cert.signing_key.serialize_pem().into_bytes()),
                ),
            ]
            .into_iter()
            .collect(),
        ),
        ..Default::default()
    };
    (("default".into(), name.into()), secret)
}

/// Accepts any server certificate: the test looks at which one came back.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects with `sni` and returns the certificate the server sent and the TLS stream.
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
) -> (
    CertificateDer<'static>,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(sni.to_string()).expect("a server name");
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
        .into_owned();
    (cert, stream)
}

#[tokio::test]
async fn https_chooses_the_secret_certificate_by_sni() {
    let exact = rcgen::generate_simple_self_signed(vec!["app.test".into()]).expect("cert");
    let wild = rcgen::generate_simple_self_signed(vec!["*.wild.test".into()]).expect("cert");
    let renewed = rcgen::generate_simple_self_signed(vec!["app.test".into()]).expect("cert");
    let mut objs = objects();
    objs.ingresses.extend([ingress(
        "default",
        "secure",
        json!({
            "ingressClassName": "skiff",
            "tls": [
                {"hosts": ["app.test"], "secretName": "app-tls"},
                {"hosts": ["*.wild.test"], "secretName": "wild-tls"},
                {"hosts": ["broken.test"], "secretName": "no-such-secret"},
            ],
            "rules": [{"host": "a.wild.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend("api")}]}}],
        }),
    )]);
    let mut secrets: BTreeMap<ObjKey, Secret> = [
        tls_secret("app-tls", "1", &exact),
        tls_secret("wild-tls", "1", &wild),
    ]
    .into_iter()
    .collect();
    let fallback = tls::fallback_certificate().expect("a fallback certificate");
    let fallback_der = fallback.cert[0].clone();
    let mut parsed = ParsedSecrets::default();
    let certs = Arc::new(ArcSwap::from_pointee(TlsTable::build(
        &objs,
        &secrets,
        &mut parsed,
        fallback.clone(),
    )));
    let table = Arc::new(ArcSwap::from_pointee(RouteTable::build(&objs)));
    let fake = Arc::new(FakeBackend::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let proxy = IngressProxy::new(table, fake.clone(), true, addr);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(certs.clone()));
    let (stop_tx, stop) = watch::channel(false);
    let server = tokio::spawn(serve::serve(
        listener,
        Some(acceptor),
        Arc::new(proxy),
        stop,
    ));

    let (cert, _) = tls_connect(addr, "app.test").await;
    assert_eq!(cert, *exact.cert.der(), "the exact host's Secret");
    let (cert, stream) = tls_connect(addr, "a.wild.test").await;
    assert_eq!(cert, *wild.cert.der(), "the wildcard Secret");
    let mut conn = handshake(stream).await;
    assert_eq!(
        get(&mut conn, "a.wild.test", "/x").await,
        (StatusCode::OK, "default/api /x".into())
    );
    let proto = fake.last().headers.get("x-forwarded-proto").cloned();
    assert_eq!(proto.as_ref().and_then(|v| v.to_str().ok()), Some("https"));
    for sni in ["b.a.wild.test", "other.test", "broken.test"] {
        let (cert, _) = tls_connect(addr, sni).await;
        assert_eq!(cert, fallback_der, "{sni}: the fallback certificate");
    }

    // A changed Secret is served from the next handshake.
    secrets.extend([tls_secret("app-tls", "2", &renewed)]);
    certs.store(Arc::new(TlsTable::build(
        &objs,
        &secrets,
        &mut parsed,
        fallback,
    )));
    let (cert, _) = tls_connect(addr, "app.test").await;
    assert_eq!(cert, *renewed.cert.der(), "the renewed Secret");

    stop_tx.send(true).expect("the server listens");
    drop(conn);
    server.await.expect("the server stops");
}

#[test]
fn a_secret_that_is_not_a_key_pair_is_refused() {
    let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("cert");
    let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).expect("cert");
    let (_, mut secret) = tls_secret("s", "1", &a);
    assert!(tls::certified_key("default/s", &secret).is_ok());
    secret.data.as_mut().expect("data").insert(
        "tls.key".into(),
        k8s_openapi::ByteString(b.signing_key.serialize_pem().into_bytes()),
    );
    let err = tls::certified_key("default/s", &secret).expect_err("a mismatched key");
    assert!(
        err.to_string()
            .starts_with("secret default/s: the key pair"),
        "{err}"
    );
    secret.data.as_mut().expect("data").remove("tls.crt");
    let err = tls::certified_key("default/s", &secret).expect_err("no certificate");
    assert_eq!(err.to_string(), "secret default/s has no tls.crt");
}

/// A free port on 127.0.0.1 (bound and released: nothing else on the loopback takes ports from
/// the ephemeral range this fast).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn node_ports_open_and_close_with_services() {
    let fake = Arc::new(FakeBackend::default());
    let mut np = NodePorts::new(
        "127.0.0.1".parse().expect("ip"),
        fake.clone(),
        None,
        "node-a".into(),
    );
    let port = free_port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let mut services: BTreeMap<ObjKey, Service> = [
        service(
            "default",
            "web",
            json!({"type": "NodePort", "ports": [{"port": 8080, "nodePort": port}]}),
        ),
        service(
            "default",
            "busy",
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": taken_port}]}),
        ),
        service(
            "default",
            "udp",
            json!({"type": "NodePort", "ports": [{"port": 53, "protocol": "UDP", "nodePort": free_port()}]}),
        ),
        service("default", "plain", json!({"ports": [{"port": 80}]})),
    ]
    .into_iter()
    .collect();
    np.sync(&services).await;
    assert_eq!(
        np.ports(),
        vec![port],
        "only the bindable TCP NodePort listens"
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = connect(addr).await;
    assert_eq!(
        get(&mut conn, "anything", "/hello").await,
        (StatusCode::OK, "default/web /hello".into())
    );
    assert_eq!(fake.last().port, ServicePortRef::Number(8080));

    // The Service's port changes: the same listener forwards to the new port.
    services.extend([service(
        "default",
        "web",
        json!({"type": "NodePort", "ports": [{"port": 9090, "nodePort": port}]}),
    )]);
    np.sync(&services).await;
    assert_eq!(
        get(&mut conn, "anything", "/again").await,
        (StatusCode::OK, "default/web /again".into())
    );
    assert_eq!(fake.last().port, ServicePortRef::Number(9090));
    drop(conn);

    // The port is freed: the Service that could not bind it gets it on its next change.
    drop(taken);
    services.extend([service(
        "default",
        "busy",
        json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": taken_port}]}),
    )]);
    services
        .get_mut(&("default".to_string(), "busy".to_string()))
        .expect("busy")
        .metadata
        .resource_version = Some("2".into());
    np.sync(&services).await;
    assert_eq!(np.ports(), vec![port.min(taken_port), port.max(taken_port)]);

    // The Services go away: the listeners close.
    services.clear();
    np.sync(&services).await;
    assert!(np.ports().is_empty());
    np.wait_closed().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens on the NodePort any more"
    );
    np.shutdown().await;
}

/// Reads each request's whole body and answers `read N`, or 502 with the body's error; records
/// what each request's body came to.
#[derive(Default)]
struct BodyReader {
    bodies: Mutex<Vec<Result<usize, String>>>,
}

impl ServiceBackend for Arc<BodyReader> {
    fn serve(
        &self,
        _namespace: &str,
        _name: &str,
        _port: &ServicePortRef,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let me = self.clone();
        Box::pin(async move {
            let read = match req.into_body().collect().await {
                Ok(body) => Ok(body.to_bytes().len()),
                Err(e) => Err(e.to_string()),
            };
            me.bodies.lock().expect("lock").push(read.clone());
            match read {
                Ok(n) => Response::new(full_body(format!("read {n}"))),
                Err(e) => {
                    let mut resp = Response::new(full_body(format!("body error: {e}")));
                    *resp.status_mut() = StatusCode::BAD_GATEWAY;
                    resp
                }
            }
        })
    }
}

/// Sends `body` (`Content-Length` when `chunks` is 1, else chunked in `chunks` pieces) to
/// `host` on `send`; the answer's status and text.
async fn post(
    send: &mut hyper::client::conn::http1::SendRequest<HttpBody>,
    host: &str,
    len: usize,
    chunks: usize,
) -> (StatusCode, String) {
    send.ready().await.expect("the connection is ready");
    let body = if chunks == 1 {
        full_body(vec![b'x'; len])
    } else {
        let piece = len / chunks;
        let frames = (0..chunks).map(move |i| {
            let n = if i + 1 == chunks {
                len - piece * i
            } else {
                piece
            };
            Ok::<_, skiff_runtime::BoxError>(hyper::body::Frame::data(Bytes::from(vec![b'x'; n])))
        });
        http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(
            futures::stream::iter(frames),
        ))
    };
    let req = Request::post("/upload")
        .header(http::header::HOST, host)
        .body(body)
        .expect("a request");
    let resp = send.send_request(req).await.expect("a response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn request_bodies_past_an_ingress_bound_are_answered_413() {
    use skiff_meta::names::INGRESS_BODY_SIZE;
    const MIB: usize = 1024 * 1024;
    let annotated = |name: &str, host: &str, annotations: serde_json::Value| {
        let (key, mut ing) = ingress(
            "default",
            name,
            json!({
                "ingressClassName": "skiff",
                "rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("front")},
                ]}}],
            }),
        );
        ing.metadata.annotations = serde_json::from_value(annotations).expect("annotations");
        (key, ing)
    };
    let mut objs = objects();
    objs.ingresses.extend([
        annotated("small", "small.test", json!({})),
        annotated("big", "big.test", json!({INGRESS_BODY_SIZE: "4m"})),
        annotated(
            "free",
            "free.test",
            json!({"nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
        ),
        annotated(
            "both",
            "both.test",
            json!({INGRESS_BODY_SIZE: "2k", "nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
        ),
        annotated("bad", "bad.test", json!({INGRESS_BODY_SIZE: "10mb"})),
        annotated(
            "huge",
            "huge.test",
            json!({"nginx.ingress.kubernetes.io/proxy-body-size": "20m"}),
        ),
    ]);
    let table = Arc::new(ArcSwap::from_pointee(RouteTable::build(&objs)));
    let reader = Arc::new(BodyReader::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut proxy = IngressProxy::new(table, Arc::new(reader.clone()), false, addr);
    // How long the rest of a body past its bound is read (30 s in service).
    proxy.drain_time = Duration::from_millis(500);
    let (stop_tx, stop) = watch::channel(false);
    let server = tokio::spawn(serve::serve(listener, None, Arc::new(proxy), stop));
    let bodies = || reader.bodies.lock().expect("lock").clone();

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut send: hyper::client::conn::http1::SendRequest<HttpBody> = handshake(tcp).await;

    // The default bound (ingress-nginx's 1m): up to it the body goes through whole.
    assert_eq!(
        post(&mut send, "small.test", MIB, 1).await,
        (StatusCode::OK, format!("read {MIB}"))
    );
    // One byte past it, announced by Content-Length: 413 before the backend sees anything.
    let (status, text) = post(&mut send, "small.test", MIB + 1, 1).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        text.contains("limit of 1048576 bytes (the default; the Ingress annotation")
            && text.contains(INGRESS_BODY_SIZE),
        "{text}"
    );
    assert_eq!(bodies(), vec![Ok(MIB)], "the backend saw the refused body");
    // The refused body was read to its end, so the connection goes on.
    assert_eq!(
        post(&mut send, "small.test", 10, 1).await,
        (StatusCode::OK, "read 10".into())
    );
    // Chunked, with no length to check first: cut off at the bound, and still 413, while the
    // backend saw an error rather than a body that looked whole.
    let (status, text) = post(&mut send, "small.test", 2 * MIB, 32).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    match bodies().last() {
        Some(Err(e)) => assert!(e.contains("larger than the ingress's limit"), "{e}"),
        other => panic!("the backend read a cut-off body as {other:?}"),
    }

    // Skiff's annotation raises the bound; `0` (here ingress-nginx's annotation) removes it.
    assert_eq!(
        post(&mut send, "big.test", 3 * MIB, 1).await,
        (StatusCode::OK, format!("read {}", 3 * MIB))
    );
    let (status, text) = post(&mut send, "big.test", 5 * MIB, 1).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        text.contains("limit of 4194304 bytes (set by the Ingress annotation skiff.dev/"),
        "{text}"
    );
    assert_eq!(
        post(&mut send, "free.test", 20 * MIB, 64).await,
        (StatusCode::OK, format!("read {}", 20 * MIB))
    );
    // A bound past the 16 MiB the ingress reads of a refused body: what is left past the bound
    // is read all the same, so the connection goes on.
    let (status, text) = post(&mut send, "huge.test", 21 * MIB, 84).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        text.contains(
            "(set by the Ingress annotation nginx.ingress.kubernetes.io/proxy-body-size)"
        ),
        "{text}"
    );
    assert_eq!(
        post(&mut send, "small.test", 10, 1).await,
        (StatusCode::OK, "read 10".into())
    );
    // Skiff's own annotation wins over ingress-nginx's.
    let (status, text) = post(&mut send, "both.test", 4096, 1).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    // A bound that is not a size: the Ingress's rules say so rather than guess one.
    let (status, text) = post(&mut send, "bad.test", 10, 1).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.contains(INGRESS_BODY_SIZE) && text.contains("\"10mb\" is not a size"),
        "{text}"
    );

    // A client that waits for `100 Continue` before sending a body past the bound gets the 413
    // instead, and sends nothing.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(
        b"POST / HTTP/1.1\r\nhost: small.test\r\ncontent-length: 100000000\r\n\
          expect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = raw.read(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");

    // A client that stops sending past the bound holds neither the backend nor its
    // connection: the backend's body fails at once, and the 413 comes after the drain time,
    // closing the connection.
    for (head, first) in [
        ("content-length: 2000000\r\n", vec![b'x'; 1000]),
        ("transfer-encoding: chunked\r\n", {
            let mut chunk = format!("{:x}\r\n", 2 * MIB).into_bytes();
            chunk.extend(vec![b'x'; 2 * MIB]);
            chunk.extend(b"\r\n");
            chunk
        }),
    ] {
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        raw.write_all(format!("POST / HTTP/1.1\r\nhost: small.test\r\n{head}\r\n").as_bytes())
            .await
            .expect("write");
        raw.write_all(&first).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
            .await
            .expect("the stalled request was answered and closed")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413 "), "{head}: {answer}");
        assert!(answer.contains("connection: close"), "{head}: {answer}");
    }
    match bodies().last() {
        Some(Err(e)) => assert!(e.contains("larger than the ingress's limit"), "{e}"),
        other => panic!("the backend read a stalled cut-off body as {other:?}"),
    }

    let calls = bodies().len();
    assert_eq!(calls, 8, "{:?}", bodies());
    stop_tx.send(true).expect("the server listens");
    drop(send);
    drop(raw);
    server.await.expect("the server stops");
}
