//! Tests of the bridge services: listeners for wasm pods and ClusterIPs follow the table and the
//! wasm pods (on loopback addresses, with a recording bridge); as root, a real bridge and a
//! network namespace standing for a container.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_runtime::fake::FakeRuntime;
use skiff_runtime::{ContainerSpec, Image, Network, PodRuntime, PodSandbox, PodSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;
use crate::net::Router;
use crate::net::table::{LocalPod, Table};

/// A bridge that records what is added and removed (loopback addresses need no adding).
struct Recorder {
    gateway: Ipv4Addr,
    log: Mutex<Vec<String>>,
    present: Mutex<BTreeSet<Ipv4Addr>>,
}

impl Recorder {
    fn new(gateway: Ipv4Addr, leftover: &[Ipv4Addr]) -> Arc<Recorder> {
        let mut present: BTreeSet<Ipv4Addr> = leftover.iter().copied().collect();
        present.insert(gateway);
        Arc::new(Recorder {
            gateway,
            log: Mutex::new(Vec::new()),
            present: Mutex::new(present),
        })
    }

    fn present(&self) -> BTreeSet<Ipv4Addr> {
        self.present.lock().unwrap().clone()
    }
}

impl BridgeAddresses for Recorder {
    fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    fn add(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>> {
        self.log.lock().unwrap().push(format!("add {ip}"));
        self.present.lock().unwrap().insert(ip);
        Box::pin(async { Ok(()) })
    }

    fn remove(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>> {
        self.log.lock().unwrap().push(format!("remove {ip}"));
        self.present.lock().unwrap().remove(&ip);
        Box::pin(async { Ok(()) })
    }

    fn existing(&self) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>> {
        let now = self
            .present()
            .into_iter()
            .filter(|a| *a != self.gateway)
            .collect();
        Box::pin(async { Ok(now) })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        self.log.lock().unwrap().push("release".into());
        Box::pin(async {})
    }
}

/// An API server that knows nothing (the router needs one only to scale from zero).
fn no_api() -> kube::Client {
    let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        let resp = http::Response::builder()
            .status(404)
            .body(kube::client::Body::from(b"{}".to_vec()))
            .unwrap();
        Ok::<_, Infallible>(resp)
    });
    kube::Client::new(svc, "default")
}

/// A wasm pod of the fake backend at `ip`, its container serving `port`.
async fn fake_pod(rt: &FakeRuntime, id: &str, ip: Ipv4Addr, port: u16) -> Arc<dyn PodSandbox> {
    let pod = rt
        .create_pod(PodSpec {
            id: id.into(),
            ip: Some(IpAddr::V4(ip)),
            ..Default::default()
        })
        .await
        .unwrap();
    pod.create_container(ContainerSpec {
        name: "web".into(),
        image: Image::Path("/x.wasm".into()),
        ports: vec![port],
        ..Default::default()
    })
    .await
    .unwrap();
    pod.start_container("web").await.unwrap();
    pod
}

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

/// Tells the table that the pod at `ip` runs here, Ready, labelled `app: web`.
fn local_ready(table: &Table, ip: Ipv4Addr) {
    table.set_local(
        IpAddr::V4(ip),
        LocalPod {
            namespace: "shop".into(),
            name: "web-1".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ports: vec![("http".into(), 18080)],
            ready: true,
        },
    );
}

/// `GET /` over a fresh connection: the status code and body.
async fn get(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.shop.svc.cluster.local\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

async fn wait_listening(
    rx: &mut watch::Receiver<BTreeSet<SocketAddr>>,
    f: impl Fn(&BTreeSet<SocketAddr>) -> bool,
) {
    rx.wait_for(|s| f(s)).await.unwrap();
}

#[tokio::test]
async fn listeners_for_wasm_pods_and_cluster_ips_follow_the_table() {
    // Loopback addresses unique to this test stand for the bridge's.
    let gateway = Ipv4Addr::new(127, 71, 3, 1);
    let pod_ip = Ipv4Addr::new(127, 71, 3, 5);
    let cluster_ip = Ipv4Addr::new(127, 71, 3, 10);
    let taken_ip = Ipv4Addr::new(127, 71, 3, 11);
    let leftover = Ipv4Addr::new(127, 71, 3, 99);
    let network = Network::new();
    let rt = FakeRuntime::new(network.clone());
    let _pod = fake_pod(&rt, "p1", pod_ip, 18080).await;
    let table = Arc::new(Table::new("node-a"));
    local_ready(&table, pod_ip);
    let router = Router::new(table.clone(), network.clone(), no_api(), Arc::from("t"), 8);
    let bridge = Recorder::new(gateway, &[leftover]);
    let (pods_tx, pods_rx) = watch::channel(WasmPods::new());
    let (stop, stop_rx) = watch::channel(false);
    let services = BridgeServices::start(
        BridgeConfig {
            bridge: bridge.clone(),
            table: table.clone(),
            network: network.clone(),
            router: Arc::new(router),
            wasm_pods: pods_rx,
            dns_port: 0,
            // Bounds small enough to reach: over every listener, 8 open, 4 of one client.
            limits: skiff_serve::ConnectionLimits {
                max_connections: 8,
                max_connections_per_client_ip: 4,
                ..super::LIMITS
            },
            resolv_conf: "/nonexistent/resolv.conf".into(),
        },
        stop_rx,
    )
    .await;
    let mut listening = services.listening();

    // A wasm pod: its IP on the bridge, a listener on its container port, served in-process.
    let pod_addr = SocketAddr::from((pod_ip, 18080));
    pods_tx.send_modify(|p| {
        p.insert(pod_ip, BTreeSet::from([18080]));
    });
    wait_listening(&mut listening, |s| s.contains(&pod_addr)).await;
    assert_eq!(get(pod_addr).await.unwrap(), (200, "ok".to_string()));
    // The address a node killed earlier left behind is gone.
    assert!(!bridge.present().contains(&leftover));
    assert!(bridge.present().contains(&pod_ip));

    // A Service: its ClusterIP on the bridge, a listener per port, through the router to the pod.
    table.apply_service(service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip.to_string(), "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 18081, "targetPort": 18080}]}
    })));
    table.apply_slice(slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 18080}],
        "endpoints": [{"addresses": [pod_ip.to_string()], "nodeName": "node-a",
                       "conditions": {"ready": true}}]
    })));
    let svc_addr = SocketAddr::from((cluster_ip, 18081));
    wait_listening(&mut listening, |s| s.contains(&svc_addr)).await;
    assert_eq!(get(svc_addr).await.unwrap(), (200, "ok".to_string()));

    // One client's connections are bounded over all listeners: with four open (two to each
    // listener, saying nothing), a fifth is closed at once; once one closes, it is served.
    let from_one_client = |to: SocketAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        socket.connect(to).await.unwrap()
    };
    let mut held = Vec::new();
    for to in [pod_addr, svc_addr, pod_addr, svc_addr] {
        held.push(from_one_client(to).await);
    }
    let mut fifth = from_one_client(pod_addr).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), fifth.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the fifth connection was kept: {closed:?}"
    );
    drop(held.pop());
    let mut served = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let mut s = from_one_client(svc_addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        if out.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        // The server notices the closed connection on its own task.
        tokio::task::yield_now().await;
    }
    assert!(served, "no connection was served after one closed");
    drop(held);

    // A port that cannot be bound: logged, skipped, the rest goes on.
    let squatter = std::net::TcpListener::bind((taken_ip, 18082)).unwrap();
    table.apply_service(service(json!({
        "metadata": {"name": "taken", "namespace": "shop"},
        "spec": {"clusterIP": taken_ip.to_string(), "selector": {"app": "x"},
                 "ports": [{"name": "a", "port": 18082}, {"name": "b", "port": 18083}]}
    })));
    let free = SocketAddr::from((taken_ip, 18083));
    wait_listening(&mut listening, |s| s.contains(&free)).await;
    assert!(
        !listening
            .borrow()
            .contains(&SocketAddr::from((taken_ip, 18082)))
    );
    // No endpoint: the router answers 503.
    assert_eq!(get(free).await.unwrap().0, 503);
    // Once the port is free, the next change of the table opens it.
    drop(squatter);
    table.apply_service(service(json!({
        "metadata": {"name": "other", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "y"}}
    })));
    let freed = SocketAddr::from((taken_ip, 18082));
    wait_listening(&mut listening, |s| s.contains(&freed)).await;

    // The Service goes: its listeners close and its address leaves the bridge.
    table.delete_service("shop", "web");
    wait_listening(&mut listening, |s| !s.contains(&svc_addr)).await;
    assert!(!bridge.present().contains(&cluster_ip));
    assert!(get(svc_addr).await.is_err());

    // The pod goes.
    pods_tx.send_modify(|p| {
        p.remove(&pod_ip);
    });
    wait_listening(&mut listening, |s| !s.contains(&pod_addr)).await;
    assert!(!bridge.present().contains(&pod_ip));

    // Shutdown: every listener closed, every address but the gateway removed.
    stop.send(true).unwrap();
    services.stopped().await;
    assert_eq!(bridge.present(), BTreeSet::from([gateway]));
    assert!(get(free).await.is_err());
    let log = bridge.log.lock().unwrap().clone();
    assert!(log.contains(&format!("remove {leftover}")), "{log:?}");
    assert!(log.contains(&format!("add {cluster_ip}")), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("release"));
}

#[test]
fn wanted_skips_external_names_headless_services_and_the_gateway() {
    let table = Table::new("node-a");
    for v in [
        json!({"metadata": {"name": "a", "namespace": "n"},
               "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}),
        json!({"metadata": {"name": "h", "namespace": "n"},
               "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
        json!({"metadata": {"name": "e", "namespace": "n"},
               "spec": {"type": "ExternalName", "externalName": "x.example.com",
                        "ports": [{"port": 80}]}}),
    ] {
        table.apply_service(service(v));
    }
    let gateway = Ipv4Addr::new(10, 244, 1, 1);
    let pods: WasmPods = BTreeMap::from([
        (Ipv4Addr::new(10, 244, 1, 5), BTreeSet::from([8080, 9090])),
        (gateway, BTreeSet::from([1])),
    ]);
    let got: Vec<String> = wanted(&table, &pods, gateway)
        .into_iter()
        .map(|((ip, port), t)| format!("{ip}:{port} {t:?}"))
        .collect();
    assert_eq!(
        got,
        [
            "10.96.0.1:80 Service { namespace: \"n\", name: \"a\" }",
            "10.244.1.5:8080 Pod",
            "10.244.1.5:9090 Pod",
        ]
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Removes the test's namespace and bridge, even when the test fails.
struct Cleanup {
    bridge: String,
    netns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in [
            vec!["netns", "del", self.netns.as_str()],
            vec!["link", "del", self.bridge.as_str()],
        ] {
            let _ = std::process::Command::new("ip")
                .args(&args)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A DNS A query for `name`, asked from inside `netns` of `server`: the answer's addresses.
fn dns_from_netns(netns: &std::path::Path, server: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let sock =
        skiff_runtime::oci::net::bind_udp_in_netns(netns, "0.0.0.0:0".parse().unwrap()).unwrap();
    // A safety net against a hang, not a measurement.
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    sock.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Sends a line that is not HTTP from inside `netns` to `addr`: what comes back.
fn echo_from_netns(netns: &std::path::Path, addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = skiff_runtime::oci::net::run_in_netns(netns, || std::net::TcpStream::connect(addr))
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"not http\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `GET /` from inside `netns` to `addr`: the status line and body.
fn get_from_netns(netns: &std::path::Path, addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = skiff_runtime::oci::net::run_in_netns(netns, || std::net::TcpStream::connect(addr))
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_a_container_resolves_services_and_reaches_wasm_pods_and_cluster_ips() {
    use skiff_runtime::oci::net::{Bridge, create_pod_netns};
    if !is_root() {
        println!(
            "SKIPPED: root_a_container_resolves_services_and_reaches_wasm_pods_and_cluster_ips needs root (a bridge and a network namespace)"
        );
        return;
    }
    let ip_tool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
    if skiff_tools::require("ip", ip_tool, "apt-get install iproute2").is_none() {
        return;
    }
    // Names and subnets of this test only.
    let bridge_name = "skh7root0";
    let pod_id = "h7-root-bridge-test";
    let gateway = Ipv4Addr::new(10, 217, 41, 1);
    let container_ip = Ipv4Addr::new(10, 217, 41, 2);
    let wasm_ip = Ipv4Addr::new(10, 217, 41, 5);
    let cluster_ip = Ipv4Addr::new(10, 217, 42, 10);
    let _cleanup = Cleanup {
        bridge: bridge_name.into(),
        netns: skiff_runtime::oci::net::netns_name(pod_id),
    };
    let bridge = Bridge::ensure(bridge_name, gateway, 24).await.unwrap();
    let ns = create_pod_netns(&bridge, pod_id, container_ip)
        .await
        .unwrap();

    let network = Network::new();
    let rt = FakeRuntime::new(network.clone());
    let _pod = fake_pod(&rt, "wasm-1", wasm_ip, 8080).await;
    let table = Arc::new(Table::new("node-a"));
    local_ready(&table, wasm_ip);
    table.apply_service(service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip.to_string(), "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    })));
    table.apply_slice(slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [wasm_ip.to_string()], "nodeName": "node-a",
                       "conditions": {"ready": true}}]
    })));
    // A Linux container's Service: plain TCP (an echo, not HTTP) spliced to the container.
    let db_ip = Ipv4Addr::new(10, 217, 42, 11);
    table.set_local(
        IpAddr::V4(container_ip),
        LocalPod {
            namespace: "shop".into(),
            name: "db-0".into(),
            labels: BTreeMap::from([("app".into(), "db".into())]),
            ports: vec![],
            ready: true,
        },
    );
    table.apply_service(service(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": db_ip.to_string(), "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]}
    })));
    table.apply_slice(slice(json!({
        "metadata": {"name": "db-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432}],
        "endpoints": [{"addresses": [container_ip.to_string()], "nodeName": "node-a",
                       "conditions": {"ready": true}}]
    })));
    let echo = skiff_runtime::oci::net::bind_tcp_in_netns(
        &ns.path,
        SocketAddr::from((container_ip, 5432)),
    )
    .unwrap();
    echo.set_nonblocking(true).unwrap();
    let echo = tokio::net::TcpListener::from_std(echo).unwrap();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = s.write_all(&buf[..n]).await;
        }
    });
    let router = Router::new(table.clone(), network.clone(), no_api(), Arc::from("t"), 8);
    let resolv = tempfile::NamedTempFile::new().unwrap();
    table.set_wasm_pod(IpAddr::V4(wasm_ip), BTreeSet::from([8080]));
    let (stop, stop_rx) = watch::channel(false);
    let services = BridgeServices::start(
        BridgeConfig {
            bridge: Arc::new(bridge.clone()),
            table: table.clone(),
            network,
            router: Arc::new(router),
            wasm_pods: table.wasm_pods(),
            dns_port: 53,
            limits: super::LIMITS,
            resolv_conf: resolv.path().to_path_buf(),
        },
        stop_rx,
    )
    .await;
    let mut listening = services.listening();
    let (wasm_addr, svc_addr) = (
        SocketAddr::from((wasm_ip, 8080)),
        SocketAddr::from((cluster_ip, 80)),
    );
    let db_addr = SocketAddr::from((db_ip, 5432));
    wait_listening(&mut listening, |s| {
        s.contains(&wasm_addr) && s.contains(&svc_addr) && s.contains(&db_addr)
    })
    .await;

    let path = ns.path.clone();
    let dns = SocketAddr::from((gateway, 53));
    let (answer, to_pod, to_svc, to_db) = tokio::task::spawn_blocking(move || {
        (
            dns_from_netns(&path, dns, "web.shop.svc.cluster.local."),
            get_from_netns(&path, wasm_addr),
            get_from_netns(&path, svc_addr),
            echo_from_netns(&path, db_addr),
        )
    })
    .await
    .unwrap();
    assert_eq!(to_db, "not http\n");
    echo_task.abort();
    assert_eq!(answer, vec![cluster_ip]);
    assert!(to_pod.starts_with("HTTP/1.1 200"), "{to_pod}");
    assert!(to_pod.ends_with("ok"), "{to_pod}");
    assert!(to_svc.starts_with("HTTP/1.1 200"), "{to_svc}");

    stop.send(true).unwrap();
    services.stopped().await;
    assert_eq!(bridge.addresses().await.unwrap(), Vec::<Ipv4Addr>::new());
    // A pod's veth is still on the bridge: it stays (the OCI backend removes it after its pods).
    assert!(link_exists(bridge_name));
    skiff_runtime::oci::net::remove_pod_netns(pod_id)
        .await
        .unwrap();
    // Without pods, the bridge services remove the bridge at shutdown.
    let (_stop, stop_rx) = watch::channel(true);
    let again = BridgeServices::start(
        BridgeConfig {
            bridge: Arc::new(bridge.clone()),
            table: table.clone(),
            network: Network::new(),
            router: Arc::new(Router::new(
                table.clone(),
                Network::new(),
                no_api(),
                Arc::from("t"),
                8,
            )),
            wasm_pods: table.wasm_pods(),
            dns_port: 53,
            limits: super::LIMITS,
            resolv_conf: resolv.path().to_path_buf(),
        },
        stop_rx,
    )
    .await;
    again.stopped().await;
    assert!(!link_exists(bridge_name), "the bridge is still there");
}

fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["-o", "link", "show", name])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}
