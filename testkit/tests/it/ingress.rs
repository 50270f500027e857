//! The node's ingress on the in-process tier: two real `skiff_host` nodes (fake runtime backend,
//! ingress on 127.0.0.1 and 127.0.0.2, a fake Service backend) against the API router on the
//! memory store — Ingresses served from their watches, `status.loadBalancer` merged by both
//! nodes (and withdrawn by a node that stops), NodePorts opened and closed with Services (one a
//! node cannot bind reported in an Event), another class ignored.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_host::NodeConfig;
use skiff_host::net::{ServiceBackend, ServicePortRef};
use skiff_runtime::fake::{FakeImages, FakeRuntime};
use skiff_runtime::{HttpBody, Network, Runtimes, full_body};
use skiff_testkit::inproc::{InProcess, wait_list, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

/// Answers `NODE NS/NAME PORT PATH`.
struct Echo(&'static str);

impl ServiceBackend for Echo {
    fn serve(
        &self,
        namespace: &str,
        name: &str,
        port: &ServicePortRef,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let port = match port {
            ServicePortRef::Number(n) => n.to_string(),
            ServicePortRef::Name(n) => n.clone(),
        };
        let body = format!("{} {namespace}/{name} {port} {}", self.0, req.uri().path());
        Box::pin(async move { Response::new(full_body(body)) })
    }
}

async fn start_node(
    api: &InProcess,
    name: &str,
    ip: [u8; 4],
    echo: &'static str,
) -> skiff_host::NodeHandle {
    let network = Network::new();
    let mut runtimes = Runtimes::new();
    runtimes.add(
        Arc::new(FakeRuntime::new(network.clone())),
        Arc::new(FakeImages::new()),
    );
    let mut config = NodeConfig::new(name, api.client.clone(), runtimes, network, "token");
    config.listen = SocketAddr::from((ip, 0));
    config.ingress_listen = Some(SocketAddr::from((ip, 0)));
    config.service_backend = Some(Arc::new(Echo(echo)));
    skiff_host::start(config).await.expect("the node starts")
}

/// One HTTP/1.1 request (`Connection: close`): status and body, or the connection error.
async fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(DEADLINE))?;
        tcp.write_all(request.as_bytes())?;
        let mut out = String::new();
        tcp.read_to_string(&mut out)?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    })
    .await
    .expect("the request task")
}

/// Asks until the answer satisfies `cond` (the ingress converges on its watch events, which
/// this test cannot observe directly); fails after the deadline.
async fn until(
    addr: SocketAddr,
    host: &str,
    path: &str,
    cond: impl Fn(&std::io::Result<(u16, String)>) -> bool,
) -> std::io::Result<(u16, String)> {
    let start = tokio::time::Instant::now();
    loop {
        let got = get(addr, host, path).await;
        if cond(&got) {
            return got;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{host}{path} on {addr}: still {got:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lb_ips(ing: &Ingress) -> BTreeSet<String> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|v| v.iter().filter_map(|e| e.ip.clone()).collect())
        .unwrap_or_default()
}

/// A port in the NodePort range free on 127.0.0.1 and 127.0.0.2 now.
fn node_port() -> u16 {
    node_port_except(0)
}

fn node_port_except(taken: u16) -> u16 {
    let offset = std::process::id() as u16 % 2000;
    (30000 + offset..=32767)
        .chain(30000..30000 + offset)
        .filter(|p| *p != taken)
        .find(|p| {
            std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.2", *p)).is_ok()
        })
        .expect("a free port in the NodePort range")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_an_ingress_merge_its_status_and_open_node_ports() {
    let api = InProcess::start().await.expect("the API");
    let classes: Api<IngressClass> = Api::all(api.client.clone());
    let class: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": "skiff",
                     "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "skiff.dev/ingress"}
    }))
    .expect("an IngressClass");
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the IngressClass: {e}"),
    }
    let a = start_node(&api, "node-a", [127, 0, 0, 1], "a").await;
    let b = start_node(&api, "node-b", [127, 0, 0, 2], "b").await;
    let (a_addr, b_addr) = (
        a.ingress_addr().expect("node a's ingress"),
        b.ingress_addr().expect("node b's ingress"),
    );

    let services: Api<Service> = Api::namespaced(api.client.clone(), "default");
    let np = node_port();
    for svc in [
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
               "ports": [{"name": "http", "port": 80}]}}),
        json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "selector": {"app": "np"},
               "ports": [{"port": 8080, "nodePort": np}]}}),
    ] {
        let svc: Service = serde_json::from_value(svc).expect("a Service");
        services
            .create(&PostParams::default(), &svc)
            .await
            .expect("create the Service");
    }
    let ingresses: Api<Ingress> = Api::namespaced(api.client.clone(), "default");
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "skiff",
            "rules": [{"host": "app.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                {"path": "/missing", "pathType": "Exact",
                 "backend": {"service": {"name": "nope", "port": {"number": 80}}}}
            ]}}]
        }
    }))
    .expect("an Ingress");
    ingresses
        .create(&PostParams::default(), &ing)
        .await
        .expect("create the Ingress");

    // Both nodes write their address and keep the other's.
    let both: BTreeSet<String> = ["127.0.0.1", "127.0.0.2"].map(String::from).into();
    wait_object(&ingresses, "web", DEADLINE, |i| lb_ips(i) == both)
        .await
        .expect("both nodes' addresses in status.loadBalancer");

    for (addr, node) in [(a_addr, "a"), (b_addr, "b")] {
        let ok = |r: &std::io::Result<(u16, String)>| matches!(r, Ok((200, _)));
        let (_, body) = until(addr, "app.test", "/hello", ok)
            .await
            .expect("an answer");
        assert_eq!(body, format!("{node} default/web http /hello"));
        let (status, body) = get(addr, "app.test", "/missing").await.expect("an answer");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("\"default/nope\" not found"), "{body}");
        let (status, _) = get(addr, "other.test", "/").await.expect("an answer");
        assert_eq!(status, 404);
        // The NodePort listens on every node at its ingress host.
        let np_addr = SocketAddr::new(addr.ip(), np);
        let (_, body) = until(np_addr, "x", "/np", ok).await.expect("an answer");
        assert_eq!(body, format!("{node} default/np 8080 /np"));
    }

    // A NodePort another process holds on node a's host: node a says so in an Event on the
    // Service (node b, on another host, listens).
    let busy_port = node_port_except(np);
    let holder = std::net::TcpListener::bind(("127.0.0.1", busy_port)).expect("hold the port");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "busy"},
        "spec": {"type": "NodePort", "selector": {"app": "busy"},
                 "ports": [{"port": 80, "nodePort": busy_port}]}}))
    .expect("a Service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create the Service");
    let events: Api<Event> = Api::namespaced(api.client.clone(), "default");
    let found = wait_list(&events, "", DEADLINE, |evs| {
        evs.iter().any(|e| {
            e.reason.as_deref() == Some("FailedToListenNodePort")
                && e.involved_object.name.as_deref() == Some("busy")
        })
    })
    .await
    .expect("an Event about the NodePort");
    let event = found
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedToListenNodePort"))
        .expect("the Event");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&format!("127.0.0.1:{busy_port}"))),
        "{event:?}"
    );
    let ok = |r: &std::io::Result<(u16, String)>| matches!(r, Ok((200, _)));
    until(SocketAddr::new(b_addr.ip(), busy_port), "x", "/", ok)
        .await
        .expect("node b listens");
    drop(holder);

    // The Service goes: so does its NodePort.
    services
        .delete("np", &DeleteParams::default())
        .await
        .expect("delete the Service");
    for addr in [a_addr, b_addr] {
        until(SocketAddr::new(addr.ip(), np), "x", "/", |r| r.is_err())
            .await
            .expect_err("the NodePort is closed");
    }

    // Moved to another class: neither node serves it, and both take their address off.
    ingresses
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingressClassName": "other"}})),
        )
        .await
        .expect("patch the Ingress");
    wait_object(&ingresses, "web", DEADLINE, |i| lb_ips(i).is_empty())
        .await
        .expect("the addresses are taken off");
    for addr in [a_addr, b_addr] {
        until(addr, "app.test", "/hello", |r| matches!(r, Ok((404, _))))
            .await
            .expect("not served any more");
    }

    // Back to Skiff's class; then a node that stops takes its address off.
    ingresses
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingressClassName": "skiff"}})),
        )
        .await
        .expect("patch the Ingress");
    wait_object(&ingresses, "web", DEADLINE, |i| lb_ips(i) == both)
        .await
        .expect("both nodes' addresses again");
    a.shutdown().await;
    let after = ingresses.get("web").await.expect("the Ingress");
    assert_eq!(lb_ips(&after), ["127.0.0.2".to_string()].into());
    b.shutdown().await;
}
