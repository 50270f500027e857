//! Graceful shutdown end to end (issue 18, part 5): SIGTERM to `skiff server`, `skiff node` and
//! `skiff up` while requests are in flight.
//!
//! A request is provably in flight when the process has answered `100 Continue` to its
//! `Expect: 100-continue` head (the handler started reading the body): then the signal is
//! sent, then the body, and the answer must be the handler's. Watches must end as a stream ends
//! (kube-rs sees the end, not an error), the process must exit 0 within its drain deadline, and a
//! restarted node must take its pods back (a wasm pod runs inside the node process, so it
//! restarts, counted). The `skiff up` test needs root (it runs the Linux container backend,
//! which owns a bridge): it checks that a signal during start-up and one after leave no bridge,
//! veth, network namespace or pod cgroup behind.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{PostParams, WatchEvent, WatchParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use skiff_tests::{Cluster, Server, wait_for, wait_object_map};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The API server's and the node's drain deadlines (`skiff_api::server::SHUTDOWN_GRACE`,
/// `skiff_host::DRAIN_GRACE`) plus the time to stop everything else.
const EXIT_WITHIN: Duration = Duration::from_secs(40);
/// How long a pod may take to be what a test waits for.
const WAIT: Duration = Duration::from_secs(120);

/// Reads from `stream` until `until` holds for what was read (or the stream ends).
async fn read_until(
    stream: &mut (impl AsyncRead + Unpin),
    until: impl Fn(&str) -> bool,
) -> Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .context("no answer in time")??;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if n == 0 || until(&text) {
            return Ok(text);
        }
    }
}

/// Sends the head of a request with `Expect: 100-continue` and waits for `100 Continue`: from
/// then on the request is in the handler's hands. Returns the body still to send.
async fn start_request(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    head: &str,
    body: &str,
) -> Result<()> {
    let head = format!(
        "{head}Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let interim = read_until(stream, |t| t.contains("\r\n\r\n")).await?;
    if !interim.starts_with("HTTP/1.1 100") {
        bail!("expected 100 Continue, got {interim:?}");
    }
    Ok(())
}

/// Sends the body and reads the whole answer (the request said `Connection: close`): its status
/// and text.
async fn finish_request(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    body: &str,
) -> Result<(u16, String)> {
    stream.write_all(body.as_bytes()).await?;
    let answer = read_until(stream, |_| false).await?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("a status line in {answer:?}"))?;
    Ok((status, answer))
}

/// An HTTP/1.1 TLS connection to the API server of `server`, trusting its CA.
async fn api_connection(
    server: &Server,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let ca = std::fs::read_to_string(server.dir.join("pki/ca.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port())).await?;
    let name = ServerName::try_from("127.0.0.1")?.to_owned();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_api_server_finish_requests_end_watches_and_release_its_lease() {
    let mut server = Server::start().expect("skiff server starts");
    let client = server.client().await.expect("a client");
    // The server's own controllers lead.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = wait_object_map(
        &leases,
        skiff_controllers::leader::NAME,
        "the controllers to lead",
        WAIT,
        |l: &Lease| l.spec.as_ref()?.holder_identity.clone(),
    )
    .await
    .expect("a leader");

    // A watch, live: it has delivered a create made after it opened.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut watch = maps
        .watch(&WatchParams::default().timeout(290), "0")
        .await
        .expect("the watch opens")
        .boxed();
    let seen = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("before".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &seen)
        .await
        .expect("create");
    loop {
        match watch.next().await {
            Some(Ok(WatchEvent::Added(cm))) if cm.metadata.name.as_deref() == Some("before") => {
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("the watch ended before its first event: {other:?}"),
        }
    }

    // A create whose body the server is waiting for when the signal comes.
    let token = server.token().expect("the admin token");
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"in-flight"},"data":{"k":"v"}}"#;
    let mut conn = api_connection(&server).await.expect("a connection");
    start_request(
        &mut conn,
        &format!(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ),
        body,
    )
    .await
    .expect("the request is in flight");
    let signalled = Instant::now();
    server.terminate().expect("SIGTERM");

    let (status, answer) = finish_request(&mut conn, body)
        .await
        .expect("the in-flight request is answered");
    assert_eq!(status, 201, "{answer}");
    // The watch ends as a stream ends: no reset, no error (kube-rs would reconnect).
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(event) = watch.next().await {
            event?;
        }
        Ok::<(), kube::Error>(())
    })
    .await
    .expect("the watch ends");
    assert!(ended.is_ok(), "the watch ended with an error: {ended:?}");
    let exit = server.wait_exit(EXIT_WITHIN).expect("the server stops");
    assert!(exit.success(), "exit status {exit}\n{}", server.log());
    println!("API server: exit 0 {:?} after SIGTERM", signalled.elapsed());

    // The same data directory, without controllers: the write is there, the lease released.
    let dir = server.dir.clone();
    let again = Server::start_in(&dir, "again", &["--no-controllers", "--no-scheduler"])
        .expect("the server starts again");
    let client = again.client().await.expect("a client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let written = maps
        .get("in-flight")
        .await
        .expect("the in-flight create is stored");
    assert_eq!(
        written.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let lease = leases
        .get(skiff_controllers::leader::NAME)
        .await
        .expect("the lease");
    let spec = lease.spec.expect("a spec");
    assert_eq!(
        spec.holder_identity, None,
        "{holder} released the lease at shutdown"
    );
    assert_eq!(spec.lease_duration_seconds, Some(1));
}

/// The hello-http sample as one pod behind a Service and an Ingress for host `hello.test`.
fn hello(registry: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hello, labels: {{app: hello}}}}
spec:
  containers:
  - name: hello
    image: {registry}/samples/hello-http:1.0
    ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: hello}}
spec:
  selector: {{app: hello}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: hello}}
spec:
  ingressClassName: skiff
  rules:
  - host: hello.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: hello, port: {{number: 80}}}}}}}}
"#
    )
}

/// Waits until the ingress at `ingress` answers 200 for `hello.test`.
async fn wait_served(ingress: &str) {
    wait_for("the ingress to serve hello.test", WAIT, || async {
        let answer =
            skiff_tests::http_request(ingress, "hello.test", "/", Duration::from_secs(10)).ok()?;
        (answer.status == 200).then_some(())
    })
    .await
    .expect("served");
}

/// The pod's container status: (ready, restart count, last state's exit code).
fn container_of(pod: &Pod) -> Option<(bool, i32, Option<i32>)> {
    let s = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let last = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| t.exit_code);
    Some((s.ready, s.restart_count, last))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_node_finish_requests_to_its_pods_and_a_restart_takes_them_back() {
    let Some(mut c) = Cluster::builder()
        .kubectl()
        .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
        .loopback_zones(&["g"])
        .start()
        .await
    else {
        return;
    };
    c.apply(&hello(&c.registry().addr));
    let pods = c.pods("default");
    let ready = |p: &Pod| {
        container_of(p)
            .filter(|(ready, ..)| *ready)
            .map(|_| p.clone())
    };
    let before = wait_object_map(&pods, "hello", "hello to be ready", WAIT, ready)
        .await
        .expect("ready");
    let ingress = c.nodes[0].ingress.clone().expect("the node's ingress");
    // Through the ingress once the route is there.
    wait_served(&ingress).await;

    // hello-http's /echo reads the body: the request is inside the pod when 100 comes.
    let mut conn = tokio::net::TcpStream::connect(&ingress)
        .await
        .expect("connect");
    let body = "still served after SIGTERM";
    start_request(
        &mut conn,
        "POST /echo HTTP/1.1\r\nHost: hello.test\r\n",
        body,
    )
    .await
    .expect("the request is in the pod");
    let signalled = Instant::now();
    let node = &mut c.nodes[0];
    node.terminate().expect("SIGTERM");
    let (status, answer) = finish_request(&mut conn, body)
        .await
        .expect("the in-flight request is answered");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(body), "{answer}");
    let exit = node.wait_exit(EXIT_WITHIN).expect("the node stops");
    assert!(exit.success(), "exit status {exit}\n{}", node.log());
    println!("node: exit 0 {:?} after SIGTERM", signalled.elapsed());
    // Stopped: nothing listens there any more.
    assert!(tokio::net::TcpStream::connect(&ingress).await.is_err());

    // The node again, on its data directory: the same pod (no duplicate), started again in
    // the new process (a wasm pod runs inside it) and counted as a restart.
    let node = &mut c.nodes[0];
    node.restart().expect("the node starts again");
    let after = wait_object_map(
        &pods,
        "hello",
        "hello to be ready again",
        WAIT,
        |p: &Pod| {
            container_of(p)
                .filter(|(ready, restarts, _)| *ready && *restarts > 0)
                .map(|_| p.clone())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.nodes[0].log()));
    assert_eq!(after.metadata.uid, before.metadata.uid);
    let (_, restarts, last_exit) = container_of(&after).expect("a status");
    let (_, restarts_before, _) = container_of(&before).expect("a status");
    println!(
        "hello after the node restart: restartCount {restarts_before} -> {restarts}, lastState exit {last_exit:?}"
    );
    assert_eq!(restarts, restarts_before + 1);
    assert_eq!(last_exit, Some(137));
    let list = pods.list(&Default::default()).await.expect("list");
    assert_eq!(list.items.len(), 1, "no duplicate pod");
    let ingress = c.nodes[0].ingress.clone().expect("the node's ingress");
    wait_served(&ingress).await;
}

/// Whether this process runs as root; prints why the test is skipped when not.
fn is_root(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("SKIPPED {test}: the Linux container backend needs root (a bridge, cgroups)");
    }
    root
}

/// Names of the host's links (`ip -o link`), without the `@peer` part.
fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The host objects a `skiff up` with node `node` made and should have removed: its bridge,
/// pod veths, pod network namespaces, pod cgroups (of the uids given).
fn left_behind(bridge: &str, uids: &[String]) -> Vec<String> {
    let mut left: Vec<String> = links().into_iter().filter(|l| l == bridge).collect();
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    let netns = String::from_utf8_lossy(&netns.stdout).into_owned();
    for uid in uids {
        if netns.contains(uid.as_str()) {
            left.push(format!("netns of {uid}"));
        }
        for root in ["/sys/fs/cgroup/memory/skiff", "/sys/fs/cgroup/skiff"] {
            let dir = Path::new(root).join(uid);
            if dir.exists() {
                left.push(dir.display().to_string());
            }
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn root_skiff_up_stopped_by_a_signal_leaves_nothing_on_the_host() {
    let test = "root_skiff_up_stopped_by_a_signal_leaves_nothing_on_the_host";
    if !is_root(test) || skiff_tools::system("ip", "apt-get install iproute2").is_none() {
        return;
    }
    let node = "graceful-up";
    let bridge = skiff_runtime::oci::net::Bridge::name_for(node);
    let dir = tempfile::Builder::new()
        .prefix("skiff-graceful-")
        .tempdir()
        .expect("a temp dir");
    let dir = dir.path();
    let args = [
        "--runtimes",
        "wasm,oci",
        "--node-name",
        node,
        "--cluster-cidr",
        "10.249.0.0/16",
    ];
    let log = || std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
    let ready = dir.join("up.ready");

    // A signal while it starts: as soon as the bridge is there, before it is ready.
    let mut up = skiff_tests::spawn_up(dir, &args);
    let deadline = Instant::now() + WAIT;
    while !links().contains(&bridge) {
        assert!(Instant::now() < deadline, "no bridge {bridge}\n{}", log());
        assert!(up.0.try_wait().expect("wait").is_none(), "{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = up.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = up.0.wait().expect("skiff up ends");
    assert!(status.success(), "exit {status}\n{}", log());
    assert_eq!(left_behind(&bridge, &[]), Vec::<String>::new(), "{}", log());

    // Up again, with a wasm pod (its address is on the bridge); SIGINT this time.
    let (mut up, fields) = skiff_tests::start_up_with(dir, &args);
    let kubeconfig = fields["kubeconfig"]
        .as_str()
        .expect("a kubeconfig")
        .to_string();
    let registry = fields["registry"].as_str().expect("a registry").to_string();
    let client = skiff_tests::client::client(Path::new(&kubeconfig))
        .await
        .expect("a client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_yaml::from_str(&format!(
        "metadata: {{name: hello}}\nspec: {{nodeName: {node}, containers: [{{name: hello, \
         image: {registry}/samples/hello-http:1.0}}]}}"
    ))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let running = wait_object_map(&pods, "hello", "hello to run", WAIT, |p: &Pod| {
        container_of(p)
            .map(|_| p.clone())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
    let uid = running.metadata.uid.clone().expect("a uid");
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &up.0.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let status = up.0.wait().expect("skiff up ends");
    assert!(status.success(), "exit {status}\n{}", log());
    println!("skiff up: exit 0 {:?} after SIGINT", signalled.elapsed());
    assert_eq!(
        left_behind(&bridge, &[uid]),
        Vec::<String>::new(),
        "{}",
        log()
    );
    assert!(!ready.exists(), "the ready file is removed");
}
