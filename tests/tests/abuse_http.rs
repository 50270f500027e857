//! Abuse of the HTTP surfaces of a real `skiff up` (the API server, the node endpoint, the
//! registry and the ingress): slow clients, thousands of idle connections, idle HTTP/2
//! connections, huge headers, long URLs and label selectors, huge bodies, deeply nested JSON and
//! YAML, floods of tiny requests and thousands of watches. Each case must get its documented
//! answer (RELIABILITY.md, "HTTP surfaces under abuse") while a well-behaved user keeps getting
//! answers: its GET latency (p50/p99) and the server's RSS are printed per case, as a Markdown
//! table. `SKIFF_BIN` runs another build (a release one) of `skiff`; `ABUSE_HTTP_SERVER_ARGS` adds
//! flags to its `skiff up`.
//!
//! The abusive clients connect from 127.0.0.2 where a case is about connections, so the
//! per-client-IP bound is what stops them; the well-behaved client is on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// The request header timeout the API server runs with here (its default is 32 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// The API server's idle connection timeout here (its default is 90 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// The node endpoint's request header timeout and per-client-IP bound (constants).
const NODE_HEADER_TIMEOUT: Duration = skiff_host::ENDPOINT_CONNECTION_LIMITS.request_header_timeout;
const NODE_PER_IP: usize = skiff_host::ENDPOINT_CONNECTION_LIMITS.max_connections_per_client_ip;
/// The server's per-client-IP connection bound (its default).
const PER_IP: usize = 512;
/// The namespace the abuse works in.
const NS: &str = "abuse";

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<hyper::body::Bytes>>;

/// One user's TLS client configuration: the cluster CA, a client certificate.
#[derive(Clone)]
struct Tls {
    server: SocketAddr,
    config_h1: Arc<rustls::ClientConfig>,
    config_h2: Arc<rustls::ClientConfig>,
}

impl Tls {
    fn new(server: SocketAddr, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>> {
            let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Tls {
            server,
            config_h1: config(b"http/1.1")?,
            config_h2: config(b"h2")?,
        })
    }

    async fn connect(&self, h2: bool) -> Result<TlsStream<TcpStream>> {
        let tcp = tcp_from(self.server, None).await?;
        let config = if h2 { &self.config_h2 } else { &self.config_h1 };
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name = ServerName::try_from("127.0.0.1")?.to_owned();
        Ok(connector.connect(name, tcp).await?)
    }

    /// One HTTP/2 connection's request sender.
    async fn h2(&self) -> Result<H2Sender> {
        Ok(self.h2_connection().await?.0)
    }

    /// One HTTP/2 connection's request sender and its driver, which ends when the connection
    /// does (`Ok` after the server's `GOAWAY`).
    async fn h2_connection(
        &self,
    ) -> Result<(H2Sender, tokio::task::JoinHandle<hyper::Result<()>>)> {
        let tls = self.connect(true).await?;
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await?;
        Ok((send, tokio::spawn(conn)))
    }
}

/// A TCP connection to `server`, from `source` when given (another loopback address).
async fn tcp_from(server: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket.connect(server).await?)
}

/// An HTTP/1.1 answer read to the end (the requests say `Connection: close`).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` (whole, head and body) over a new HTTP/1.1 connection and reads the answer.
async fn h1(tls: &Tls, request: &[u8]) -> Result<Answer> {
    exchange(tls.connect(false).await?, request).await
}

/// [`h1`] over plain HTTP, to `addr`.
async fn plain_h1(addr: SocketAddr, request: &[u8]) -> Result<Answer> {
    exchange(tcp_from(addr, None).await?, request).await
}

async fn exchange<S>(mut stream: S, request: &[u8]) -> Result<Answer>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The server may answer (and close) before it has read everything (431, 414).
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn request(method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The `reason` of a JSON `Status` body (chunked bodies: the JSON between the chunk sizes).
fn status_reason(body: &str) -> String {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    serde_json::from_str::<serde_json::Value>(&body[start..end])
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A well-behaved user GETting one ConfigMap in a loop, recording each answer's latency.
struct Probe {
    samples: Arc<Mutex<(Vec<Duration>, usize)>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(client: kube::Client) -> Probe {
        let samples = Arc::new(Mutex::new((Vec::new(), 0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, NS);
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = api.get("probe").await.is_ok();
                let took = t.elapsed();
                {
                    let mut s = s.lock().unwrap();
                    if ok {
                        s.0.push(took);
                    } else {
                        s.1 += 1;
                    }
                }
                // A steady client's pace, not a wait for a condition.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Probe {
            samples,
            stop,
            task,
        }
    }

    /// Answers and failures since the last [`Probe::take`].
    fn count(&self) -> usize {
        let s = self.samples.lock().unwrap();
        s.0.len() + s.1
    }

    /// The answers since the last call: sorted latencies and the failures.
    fn take(&self) -> (Vec<Duration>, usize) {
        let mut s = self.samples.lock().unwrap();
        let mut lat = std::mem::take(&mut s.0);
        let failed = std::mem::take(&mut s.1);
        lat.sort();
        (lat, failed)
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The figures of the cases, printed as a Markdown table at the end.
struct Report {
    pid: u32,
    rows: Vec<String>,
}

impl Report {
    /// Runs `case` while the probe measures; records its outcome, the probe's figures and RSS.
    async fn case<F, Fut>(&mut self, name: &str, probe: &Probe, case: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let before = rss_mib(self.pid);
        probe.take();
        let outcome = case().await.with_context(|| format!("case {name}"))?;
        // A case quicker than the probe's pace still gets a few of its answers counted.
        skiff_tests::wait_for("the probe's answers", Duration::from_secs(30), || async {
            (probe.count() >= 20).then_some(())
        })
        .await?;
        let (lat, failed) = probe.take();
        let after = rss_mib(self.pid);
        let row = format!(
            "| {name} | {outcome} | {} | {failed} | {:.1} | {:.1} | {before:.0} → {after:.0} |",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
        );
        println!("{row}");
        self.rows.push(row);
        assert!(
            !lat.is_empty(),
            "{name}: the well-behaved client got no answer"
        );
        assert_eq!(failed, 0, "{name}: the well-behaved client's GETs failed");
        Ok(())
    }
}

/// Holds `n` connections from `source` that never send a byte, runs `during` while they are
/// open; returns how many the server closed within `quick` of their connect (refused on
/// accept) and how long until it had closed them all.
async fn idle_connections(
    server: SocketAddr,
    source: IpAddr,
    n: usize,
    quick: Duration,
    during: impl Future<Output = Result<()>>,
) -> Result<(usize, Duration)> {
    let start = Instant::now();
    // Each connection is read from its connect on: (open for, closed at).
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = tcp_from(server, Some(source)).await?;
        conns.push(tokio::spawn(async move {
            let connected = Instant::now();
            let mut b = [0u8; 1];
            let _ = c.read(&mut b).await;
            (connected.elapsed(), start.elapsed())
        }));
    }
    during.await?;
    let (mut quick_closed, mut last) = (0, Duration::ZERO);
    for conn in conns {
        let (open_for, closed_at) = conn.await?;
        quick_closed += usize::from(open_for <= quick);
        last = last.max(closed_at);
    }
    Ok((quick_closed, last))
}

/// Slow clients: each connects (`connect`: TLS included), then sends a request head one line
/// every 500 ms, never finishing it. Returns how long until the server had closed every one;
/// fails if one stays open three times the server's header `timeout`.
async fn slowloris<S, F, Fut>(n: usize, timeout: Duration, connect: F) -> Result<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let one = |conn: Fut| async move {
        let mut s = conn.await?;
        s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n").await?;
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let line = format!("X-Slow-{i}: y\r\n");
            if s.write_all(line.as_bytes()).await.is_err() || s.flush().await.is_err() {
                break;
            }
            let mut b = [0u8; 256];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
            {
                break;
            }
            if start.elapsed() > timeout * 3 {
                bail!(
                    "a slow client's connection stayed open for {:?}",
                    start.elapsed()
                );
            }
        }
        Ok::<_, anyhow::Error>(start.elapsed())
    };
    let all = futures::future::join_all((0..n).map(|_| one(connect()))).await;
    let mut last = Duration::ZERO;
    for r in all {
        last = last.max(r?);
    }
    Ok(last)
}

/// The probe ConfigMap, and a watch of the namespace's ConfigMaps.
const PROBE: &str = "/api/v1/namespaces/abuse/configmaps/probe";
const WATCH: &str = "/api/v1/namespaces/abuse/configmaps?watch=true";

/// An HTTP/2 GET of `path` on the API server.
fn get(path: &str) -> Result<http::Request<Empty<hyper::body::Bytes>>> {
    Ok(http::Request::get(format!("https://127.0.0.1{path}")).body(Empty::new())?)
}

/// `loops` concurrent request loops over one HTTP/2 connection for `secs`; returns the counts
/// of 200 and 429 answers and whether every 429 said Retry-After.
async fn flood(tls: &Tls, loops: usize, secs: u64) -> Result<(usize, usize, bool)> {
    let send = tls.h2().await?;
    let (ok, refused, retry_after) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(true)),
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks = (0..loops).map(|_| {
        let (mut send, ok, refused, retry_after) = (
            send.clone(),
            ok.clone(),
            refused.clone(),
            retry_after.clone(),
        );
        async move {
            while Instant::now() < deadline {
                send.ready().await?;
                let resp = send.send_request(get(PROBE)?).await?;
                match resp.status().as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => {
                        if !resp.headers().contains_key("retry-after") {
                            retry_after.store(false, Ordering::Relaxed);
                        }
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    other => bail!("the flood got {other}"),
                };
                resp.into_body().collect().await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    Ok((
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        retry_after.load(Ordering::Relaxed),
    ))
}

/// Opens `n` watches over HTTP/2 connections of `STREAMS` streams each (the server's bound
/// per connection) and holds them for `hold`; returns the counts of watches started (200) and
/// refused (429).
async fn watches(tls: &Tls, n: usize, hold: Duration) -> Result<(usize, usize)> {
    const STREAMS: usize = 100;
    let mut senders = Vec::new();
    for _ in 0..n.div_ceil(STREAMS) {
        senders.push(tls.h2().await?);
    }
    let open = (0..n).map(|i| {
        let mut send = senders[i / STREAMS].clone();
        async move {
            send.ready().await?;
            Ok::<_, anyhow::Error>(send.send_request(get(WATCH)?).await?)
        }
    });
    let mut held = Vec::new();
    let (mut started, mut refused) = (0, 0);
    for r in futures::future::join_all(open).await {
        let resp = r?;
        match resp.status().as_u16() {
            200 => started += 1,
            429 => refused += 1,
            other => bail!("a watch got {other}"),
        }
        held.push(resp);
    }
    tokio::time::sleep(hold).await;
    drop(held);
    Ok((started, refused))
}

/// A client-certificate kubeconfig for `user` (no groups: not exempt from the in-flight
/// bounds), and the certificate and key.
fn mint(data: &Path, url: &str, user: &str, out: &Path) -> Result<(String, String, String)> {
    let pki = data.join("pki");
    let ca = std::fs::read_to_string(pki.join("ca.crt"))?;
    let ca_key = std::fs::read_to_string(pki.join("ca.key"))?;
    let (cert, key) = skiff_api::pki::client_certificate(
        &ca,
        &ca_key,
        user,
        &[],
        Duration::from_secs(24 * 3600),
    )?;
    let text = skiff_api::pki::client_kubeconfig(url, &ca, user, &cert, &key, None);
    skiff_api::pki::write_private(out, text.as_bytes(), 0o600)?;
    Ok((ca, cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_abuse_gets_its_status_and_other_clients_keep_their_answers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let timeout = HEADER_TIMEOUT.as_secs().to_string();
    let idle = IDLE_TIMEOUT.as_secs().to_string();
    // `ABUSE_HTTP_SERVER_ARGS` adds flags (comparisons such as
    // `--http2-max-streams-per-connection 1000`).
    let extra = std::env::var("ABUSE_HTTP_SERVER_ARGS").unwrap_or_default();
    let mut args = vec![
        "--request-header-timeout-seconds",
        &timeout,
        "--idle-connection-timeout-seconds",
        &idle,
    ];
    args.extend(extra.split_whitespace());
    let (up, ready) = skiff_tests::start_up_with(tmp.path(), &args);
    let pid = up.0.id();
    let url = ready["apiServer"]
        .as_str()
        .context("apiServer")?
        .to_string();
    let server: SocketAddr = url.trim_start_matches("https://").parse()?;
    let node: SocketAddr = ready["nodeEndpoint"]
        .as_str()
        .context("nodeEndpoint")?
        .parse()?;
    let admin_kubeconfig = ready["kubeconfig"].as_str().context("kubeconfig")?;
    let admin = skiff_tests::client::client(Path::new(admin_kubeconfig)).await?;
    let data = tmp.path().join("data");

    // Two users bound to cluster-admin through RBAC, neither exempt from the in-flight bounds.
    let (ca, cert, key) = mint(&data, &url, "abuser", &tmp.path().join("abuser.kubeconfig"))?;
    mint(&data, &url, "steady", &tmp.path().join("steady.kubeconfig"))?;
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(admin.clone());
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "abuse-test-users"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "abuser"},
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "steady"},
                ],
            }))?,
        )
        .await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            serde_json::json!({"metadata": {"name": "probe"}, "data": {"a": "b"}}),
        )?,
    )
    .await?;
    // An Ingress path to a Service (with no endpoints: a body that passes the bound would be
    // answered 503), for the ingress's body bound.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), NS);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "upload"},
                "spec": {"ports": [{"port": 80}]},
            }))?,
        )
        .await?;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(admin.clone(), NS);
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "upload"},
                "spec": {"rules": [{"http": {"paths": [{
                    "path": "/upload", "pathType": "Prefix",
                    "backend": {"service": {"name": "upload", "port": {"number": 80}}},
                }]}}]},
            }))?,
        )
        .await?;
    let steady = skiff_tests::client::client(&tmp.path().join("steady.kubeconfig")).await?;
    let steady_cms: Api<ConfigMap> = Api::namespaced(steady.clone(), NS);
    skiff_tests::wait_for(
        "the steady user's RBAC",
        Duration::from_secs(30),
        || async { steady_cms.get("probe").await.ok() },
    )
    .await?;
    let tls = Tls::new(server, &ca, &cert, &key)?;
    let abuser_ip: IpAddr = "127.0.0.2".parse()?;

    let probe = Probe::start(steady.clone());
    let mut report = Report {
        pid,
        rows: Vec::new(),
    };
    println!(
        "| case | outcome | steady GETs | failed | GET p50 ms | GET p99 ms | server RSS MiB |\n|---|---|---|---|---|---|---|"
    );

    report
        .case("baseline", &probe, || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok("—".to_string())
        })
        .await?;

    report
        .case("200 slow clients (slowloris)", &probe, || async {
            let last = slowloris(200, HEADER_TIMEOUT, || tls.connect(false)).await?;
            Ok(format!("all closed after {:.1} s", last.as_secs_f64()))
        })
        .await?;

    report
        .case("2000 idle connections from one IP", &probe, || async {
            let n = 2000;
            // While they are open a new client (a new connection from 127.0.0.1) is answered.
            let fresh = async {
                let client =
                    skiff_tests::client::client(&tmp.path().join("steady.kubeconfig")).await?;
                Api::<ConfigMap>::namespaced(client, NS)
                    .get("probe")
                    .await?;
                Ok(())
            };
            let (refused, last) =
                idle_connections(server, abuser_ip, n, HEADER_TIMEOUT / 2, fresh).await?;
            assert!(
                refused >= n - PER_IP,
                "only {refused} of {n} connections over the per-IP bound were closed at once"
            );
            Ok(format!(
                "{refused} closed at once, all closed after {:.1} s",
                last.as_secs_f64()
            ))
        })
        .await?;

    report
        .case("idle HTTP/2 connection", &probe, || async {
            // One connection idle after a request, one holding a watch.
            let (mut idle, idle_conn) = tls.h2_connection().await?;
            let resp = idle.send_request(get(PROBE)?).await?;
            anyhow::ensure!(resp.status() == 200, "GET: {}", resp.status());
            resp.into_body().collect().await?;
            let t = Instant::now();
            let (mut watching, watching_conn) = tls.h2_connection().await?;
            let watch = watching.send_request(get(WATCH)?).await?;
            anyhow::ensure!(watch.status() == 200, "watch: {}", watch.status());
            let ended = tokio::time::timeout(IDLE_TIMEOUT * 5, idle_conn)
                .await
                .context("the idle HTTP/2 connection stayed open")??;
            let closed = t.elapsed();
            anyhow::ensure!(
                ended.is_ok(),
                "the idle connection was not closed with GOAWAY: {ended:?}"
            );
            anyhow::ensure!(
                !watching_conn.is_finished(),
                "the connection with a watch open was closed"
            );
            drop(watch);
            Ok(format!(
                "closed with GOAWAY after {:.1} s; the one with a watch open stayed open",
                closed.as_secs_f64()
            ))
        })
        .await?;

    report
        .case(
            "node endpoint: 200 slow clients and 1500 idle connections from one IP",
            &probe,
            || async {
                let n = 1500;
                let slow = slowloris(200, NODE_HEADER_TIMEOUT, || tcp_from(node, None));
                // While they are open a new client (from 127.0.0.1) is answered.
                let fresh = async {
                    let a = plain_h1(node, &request("GET", "/healthz", "", b"")).await?;
                    anyhow::ensure!(a.status == 200, "/healthz: {}", a.head);
                    Ok(())
                };
                let idle =
                    idle_connections(node, abuser_ip, n, NODE_HEADER_TIMEOUT / 2, fresh);
                let (slow, idle) = tokio::join!(slow, idle);
                let (slow, (refused, last)) = (slow?, idle?);
                assert!(
                    refused >= n - NODE_PER_IP,
                    "only {refused} of {n} connections over the per-IP bound were closed at once"
                );
                Ok(format!(
                    "slow: all closed after {:.1} s; idle: {refused} closed at once, all closed after {:.1} s",
                    slow.as_secs_f64(),
                    last.as_secs_f64()
                ))
            },
        )
        .await?;

    report
        .case("256 KiB header", &probe, || async {
            let header = format!("X-Big: {}\r\n", "a".repeat(256 * 1024));
            let a = h1(&tls, &request("GET", "/api", &header, b"")).await?;
            assert_eq!(a.status, 431, "{}", a.head);
            Ok("431".to_string())
        })
        .await?;

    report
        .case(
            "256 KiB header at the registry, the ingress and the node endpoint",
            &probe,
            || async {
                let header = format!("X-Big: {}\r\n", "a".repeat(256 * 1024));
                for surface in ["registry", "ingress", "nodeEndpoint"] {
                    let addr: SocketAddr = ready[surface].as_str().context("address")?.parse()?;
                    let a = plain_h1(addr, &request("GET", "/v2/", &header, b"")).await?;
                    assert_eq!(a.status, 431, "{surface}: {}", a.head);
                }
                Ok("431".to_string())
            },
        )
        .await?;

    report
        .case("40 KiB label selector", &probe, || async {
            let values: Vec<String> = (0..6000).map(|i| format!("v{i:05}")).collect();
            let selector = format!("app%20in%20({})", values.join(","));
            let target = format!("/api/v1/namespaces/{NS}/configmaps?labelSelector={selector}");
            let a = h1(&tls, &request("GET", &target, "", b"")).await?;
            assert_eq!(a.status, 414, "{}", a.head);
            assert_eq!(status_reason(&a.body), "RequestURITooLong", "{}", a.body);
            // A request line past the head limit is refused as a head: 431.
            let target = format!(
                "/api/v1/namespaces/{NS}/configmaps?x={}",
                "a".repeat(70_000)
            );
            let a = h1(&tls, &request("GET", &target, "", b"")).await?;
            assert_eq!(a.status, 431, "{}", a.head);
            Ok("414 Status (70 KB URL: 431)".to_string())
        })
        .await?;

    report
        .case("4 × 8 MiB bodies", &probe, || async {
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
                "x".repeat(8 << 20)
            );
            let req = request("POST", &format!("/api/v1/namespaces/{NS}/configmaps"), "", body.as_bytes());
            let answers =
                futures::future::join_all((0..4).map(|_| h1(&tls, &req))).await;
            for a in answers {
                let a = a?;
                assert_eq!(a.status, 413, "{}", a.head);
                assert_eq!(status_reason(&a.body), "RequestEntityTooLarge", "{}", a.body);
            }
            Ok("413 Status".to_string())
        })
        .await?;

    report
        .case("4 × 8 MiB bodies at the ingress", &probe, || async {
            let ingress: SocketAddr = ready["ingress"].as_str().context("ingress")?.parse()?;
            let body = vec![b'x'; 8 << 20];
            let req = request("POST", "/upload", "", &body);
            // The node serves the Ingress once its watch has seen it: until then, 404.
            skiff_tests::wait_for(
                "the ingress to route /upload",
                Duration::from_secs(30),
                || {
                    let probe = request("POST", "/upload", "", b"x");
                    async move {
                        let a = plain_h1(ingress, &probe).await.ok()?;
                        (a.status != 404).then_some(())
                    }
                },
            )
            .await?;
            let answers = futures::future::join_all((0..4).map(|_| plain_h1(ingress, &req))).await;
            for a in answers {
                let a = a?;
                assert_eq!(a.status, 413, "{}", a.head);
                assert!(a.body.contains("limit of 1048576 bytes"), "{}", a.body);
            }
            Ok("413 (the 1 MiB default)".to_string())
        })
        .await?;

    report
        .case("JSON and YAML nested 100000 deep", &probe, || async {
            let depth = 100_000;
            let json = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"data":{{"a":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let path = format!("/api/v1/namespaces/{NS}/configmaps");
            let a = h1(&tls, &request("POST", &path, "", json.as_bytes())).await?;
            assert_eq!(a.status, 400, "{}", a.head);
            assert_eq!(status_reason(&a.body), "BadRequest", "{}", a.body);
            let yaml = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n  a: {}{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let req = request("POST", &path, "", yaml.as_bytes());
            let text = String::from_utf8_lossy(&req).replace(
                "Content-Type: application/json",
                "Content-Type: application/yaml",
            );
            let a = h1(&tls, text.as_bytes()).await?;
            assert_eq!(a.status, 400, "{}", a.head);
            Ok("400 Status (JSON and YAML)".to_string())
        })
        .await?;

    report
        .case("400 concurrent tiny GETs for 5 s", &probe, || async {
            let (ok, refused, retry_after) = flood(&tls, 400, 5).await?;
            assert!(refused > 0, "no 429 among {ok} answers");
            assert!(retry_after, "a 429 came without Retry-After");
            Ok(format!("{ok} × 200, {refused} × 429 + Retry-After"))
        })
        .await?;

    report
        .case("1200 watches of one user", &probe, || async {
            let (started, refused) = watches(&tls, 1200, Duration::from_secs(3)).await?;
            assert_eq!(
                started, 1000,
                "watches started (the per-user bound is 1000)"
            );
            assert_eq!(refused, 200);
            Ok(format!("{started} started, {refused} × 429"))
        })
        .await?;

    probe.stop.store(true, Ordering::Relaxed);
    let _ = probe.task.await;
    // The server still answers a new client.
    steady_cms.get("probe").await?;
    println!("\n{}", report.rows.join("\n"));
    // The machine's load beside the figures (other builds and tests share the cores).
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average (1, 5, 15 min): {}", load.trim());
    drop(up);
    Ok(())
}
