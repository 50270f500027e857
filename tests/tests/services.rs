//! Services, ingress and scale from zero end to end: one `skiff server`, a `skiff registry` and
//! real `skiff node` processes, each on its own loopback address (127.0.0.2, .3, .4) for its
//! endpoint, its ingress and its NodePorts, in zones `zone-a`, `zone-b`, `zone-c`.
//!
//! Backends run the frontend sample (samples/frontend), which answers `POD PATH` so a test
//! tells which replica answered, and calls other services with `/call?url=` from inside a pod
//! (the tests reach a frontend pod through its node's endpoint, `/proxy/NS/POD/8080/...`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node as KNode, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use skiff_tests::fixtures::{answering_pod, host_ingress, http_app, is_ready, url_encode};
use skiff_tests::{Cluster, HttpAnswer, Node, http_request, node_of, wait_for, wait_object};

/// How long a rollout, a route or a node may take to be what a test waits for.
const WAIT: Duration = Duration::from_secs(120);
/// How long one HTTP request may take (a request held for a scale from zero included).
const REQUEST: Duration = Duration::from_secs(60);

/// A server, a registry with the frontend and hello-http samples, kubectl, and one real node
/// per zone in `zones`, each on its own loopback address with an ingress.
async fn cluster(zones: &[&str]) -> Option<Cluster> {
    Cluster::builder()
        .kubectl()
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
        .push("hello-http/hello-http-v2.wasm", "samples/hello-http:2.0")
        .loopback_zones(zones)
        .start()
        .await
}

fn image(c: &Cluster, name: &str) -> String {
    format!("{}/samples/{name}", c.registry().addr)
}

/// `kubectl rollout status deployment/NAME -n NS`, asserting it rolled out.
fn rollout(c: &Cluster, ns: &str, name: &str) {
    let out = c.k(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "-n",
        ns,
        "--timeout=240s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

/// A frontend pod `name` in `ns` bound to `node`.
fn frontend_pod(c: &Cluster, ns: &str, name: &str, node: &str) {
    let image = image(c, "frontend:1.0");
    c.apply_in(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{role: caller}}}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
"#
        ),
    );
}

/// Waits until pod `ns/name` is Ready.
async fn wait_ready(c: &Cluster, ns: &str, name: &str) {
    wait_object(&c.pods(ns), name, "to be Ready", WAIT, |p: Option<&Pod>| {
        p.is_some_and(is_ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
}

/// Has frontend pod `ns/pod` (on `node`) GET `url`; its status and body.
fn call(node: &Node, ns: &str, pod: &str, url: &str) -> (u16, String) {
    node.get(&format!(
        "/proxy/{ns}/{pod}/8080/call?url={}",
        url_encode(url)
    ))
    .unwrap_or_else(|e| panic!("the node endpoint of {} answers: {e:#}", node.name))
}

/// The backend pod in a frontend's `/call` answer when the upstream answered 200.
fn upstream_ok(status: u16, body: &str) -> Option<String> {
    let rest = body.strip_prefix("upstream: 200\n")?;
    (status == 200).then(|| answering_pod(rest).to_string())
}

/// Polls `get` until `check` accepts its answer (routes converge within a watch event, but
/// the test cannot watch a route); fails with the last answer.
async fn until<T>(
    what: &str,
    mut get: impl FnMut() -> anyhow::Result<HttpAnswer>,
    check: impl Fn(&HttpAnswer) -> Option<T>,
) -> T {
    let mut last = String::from("no answer");
    let found = wait_for(what, WAIT, || {
        let answer = get();
        let got = match &answer {
            Ok(a) => check(a),
            Err(_) => None,
        };
        last = format!("{answer:?}");
        async move { got }
    })
    .await;
    found.unwrap_or_else(|e| panic!("{e:#}; last answer: {last}"))
}

fn ingress(node: &Node) -> &str {
    node.ingress
        .as_deref()
        .expect("the node was started with an ingress")
}

fn tls_ingress(node: &Node) -> &str {
    node.ingress_tls
        .as_deref()
        .expect("the node was started with an HTTPS ingress")
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_calls_a_service_by_every_name_and_reaches_every_replica_on_every_node() {
    let Some(c) = cluster(&["a", "b", "c"]).await else {
        return;
    };
    c.k(&["create", "namespace", "shop"]);
    c.k(&["create", "namespace", "other"]);
    c.apply_in(
        "shop",
        &http_app("backend", &image(&c, "frontend:1.0"), 6, "", true),
    );
    let callers: Vec<(String, &Node)> = c
        .nodes
        .iter()
        .map(|n| (format!("fe-{}", n.name), n))
        .collect();
    for (pod, node) in &callers {
        frontend_pod(&c, "shop", pod, &node.name);
    }
    frontend_pod(&c, "other", "fe-other", &c.nodes[0].name);
    rollout(&c, "shop", "backend");
    for (pod, _) in &callers {
        wait_ready(&c, "shop", pod).await;
    }
    wait_ready(&c, "other", "fe-other").await;

    let backends = c.live_pods("shop", "app=backend").await;
    let names: BTreeSet<String> = backends
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let nodes: BTreeSet<String> = backends.iter().map(node_of).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(
        nodes.len(),
        3,
        "the replicas spread over the zones: {nodes:?}"
    );

    let svc = c.api::<Service>("shop").get("backend").await.unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.expect("a ClusterIP");
    let forms = [
        "backend".to_string(),
        "backend.shop".to_string(),
        "backend.shop.svc".to_string(),
        "backend.shop.svc.cluster.local".to_string(),
        "backend:80".to_string(),
        cluster_ip.clone(),
        format!("{cluster_ip}:80"),
    ];
    // Every name form from every node (the first call of each waits for the routes).
    for (pod, node) in &callers {
        for form in &forms {
            let url = format!("http://{form}/");
            let (status, body) = until(
                &format!("{pod} on {} to reach {url}", node.name),
                || {
                    let (status, body) = call(node, "shop", pod, &url);
                    Ok(HttpAnswer {
                        status,
                        headers: Vec::new(),
                        body,
                    })
                },
                |a| upstream_ok(a.status, &a.body).map(|_| (a.status, a.body.clone())),
            )
            .await;
            let answered = upstream_ok(status, &body).unwrap();
            assert!(names.contains(&answered), "{answered} is a backend pod");
        }
    }

    // Every replica, wherever it runs, receives traffic from every node.
    for (pod, node) in &callers {
        let mut seen = BTreeMap::<String, usize>::new();
        for _ in 0..120 {
            let (status, body) = call(node, "shop", pod, "http://backend/");
            let answered = upstream_ok(status, &body)
                .unwrap_or_else(|| panic!("{pod}: a call failed: {status} {body}"));
            *seen.entry(answered).or_default() += 1;
            if seen.len() == names.len() {
                break;
            }
        }
        let seen_names: BTreeSet<String> = seen.keys().cloned().collect();
        assert_eq!(
            seen_names, names,
            "calls from {pod} on {} reach every backend replica: {seen:?}",
            node.name
        );
    }

    // From another namespace a bare name is that namespace's Service (there is none);
    // NAME.NAMESPACE reaches it.
    let node_a = &c.nodes[0];
    let (status, body) = call(node_a, "other", "fe-other", "http://backend.shop/");
    assert!(
        upstream_ok(status, &body).is_some_and(|p| names.contains(&p)),
        "{status} {body}"
    );
    let (status, body) = call(node_a, "other", "fe-other", "http://backend/");
    assert!(
        upstream_ok(status, &body).is_none(),
        "a bare name does not cross namespaces: {status} {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_ingress_routes_by_host_and_path_serves_tls_by_sni_and_nodeports() {
    let Some(c) = cluster(&["a", "b", "c"]).await else {
        return;
    };
    let fe = image(&c, "frontend:1.0");
    for app in ["exact", "prefix-short", "prefix-long", "wild"] {
        c.apply_in("default", &http_app(app, &fe, 1, "", false));
    }
    // A certificate for shop.example in a kubernetes.io/tls Secret.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=shop.example"])
        .args(["-addext", "subjectAltName=DNS:shop.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.k(&[
        "create",
        "secret",
        "tls",
        "shop-tls",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    c.apply_in(
        "default",
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
spec:
  ingressClassName: skiff
  tls:
  - hosts: [shop.example]
    secretName: shop-tls
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /api, pathType: Exact, backend: {service: {name: exact, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: prefix-short, port: {number: 80}}}}
      - {path: /api/v2, pathType: Prefix, backend: {service: {name: prefix-long, port: {number: 80}}}}
  - host: "*.wild.example"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wild, port: {name: http}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: np
spec:
  type: NodePort
  selector: {app: exact}
  ports:
  - {port: 80, targetPort: 8080}
"#,
    );
    for app in ["exact", "prefix-short", "prefix-long", "wild"] {
        rollout(&c, "default", app);
    }

    // (host, path, the app that answers or None for 404)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("shop.example", "/api", Some("exact")),
        ("shop.example", "/api/", Some("prefix-short")),
        ("shop.example", "/api/x", Some("prefix-short")),
        ("shop.example", "/api/v2", Some("prefix-long")),
        ("shop.example", "/api/v2/orders", Some("prefix-long")),
        ("shop.example", "/api/v2x", Some("prefix-short")),
        ("shop.example", "/apix", None),
        ("shop.example", "/", None),
        ("a.wild.example", "/anything", Some("wild")),
        ("unknown.example", "/api", None),
    ];
    for node in &c.nodes {
        let addr = ingress(node).to_string();
        // The first request waits for this node's routes.
        until(
            &format!("the ingress of {} to route shop.example", node.name),
            || http_request(&addr, "shop.example", "/api", REQUEST),
            |a| (a.status == 200).then_some(()),
        )
        .await;
        for (host, path, app) in cases {
            let a = http_request(&addr, host, path, REQUEST).expect("the ingress answers");
            match app {
                Some(app) => {
                    assert_eq!(a.status, 200, "{host}{path} on {}: {a:?}", node.name);
                    let pod = answering_pod(&a.body);
                    assert!(
                        pod.starts_with(&format!("{app}-")),
                        "{host}{path} on {} reaches {app}, not {pod}",
                        node.name
                    );
                }
                None => assert_eq!(a.status, 404, "{host}{path} on {}: {a:?}", node.name),
            }
        }

        // HTTPS: the certificate chosen by SNI is the Secret's (curl verifies it against it).
        let tls = tls_ingress(node);
        let port = port_of(tls);
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("shop.example:{port}:{}", node.ip)])
            .arg(format!("https://shop.example:{port}/api/v2/x"))
            .output()
            .expect("curl runs");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && answering_pod(&body).starts_with("prefix-long-"),
            "HTTPS through {} ({tls}): {body} {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The NodePort answers on every node's address.
    let svc = c.api::<Service>("default").get("np").await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("a NodePort is allocated");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    for node in &c.nodes {
        let addr = format!("{}:{node_port}", node.ip);
        let a = until(
            &format!("NodePort {node_port} on {}", node.name),
            || http_request(&addr, "np", "/", REQUEST),
            |a| (a.status == 200).then(|| a.clone()),
        )
        .await;
        assert!(answering_pod(&a.body).starts_with("exact-"), "{a:?}");
    }
}

/// Parses `a.b.c.d/n` into (address, prefix length).
fn parse_cidr(cidr: &str) -> (u32, u32) {
    let (ip, len) = cidr.split_once('/').expect("CIDR has a /");
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 CIDR");
    (u32::from(ip), len.parse().expect("a prefix length"))
}

fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let (net, len) = parse_cidr(cidr);
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == net & mask
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_distinct_pod_cidrs_and_an_overlapping_one_is_refused_with_a_reason() {
    let Some(c) = cluster(&["a", "b", "c"]).await else {
        return;
    };
    let nodes: Api<KNode> = Api::all(c.client.clone());
    let mut cidrs = BTreeMap::new();
    for node in &c.nodes {
        let cidr = skiff_tests::wait_object_map(&nodes, &node.name, "a podCIDR", WAIT, |n| {
            n.spec.as_ref()?.pod_cidr.clone()
        })
        .await
        .unwrap();
        assert!(
            cidr_contains("10.244.0.0/16", &cidr_network(&cidr)),
            "{cidr}"
        );
        cidrs.insert(node.name.clone(), cidr);
    }
    let distinct: BTreeSet<&String> = cidrs.values().collect();
    assert_eq!(distinct.len(), 3, "{cidrs:?}");

    c.apply_in(
        "default",
        &http_app("spread", &image(&c, "frontend:1.0"), 3, "", true),
    );
    rollout(&c, "default", "spread");
    let pods = c.live_pods("default", "app=spread").await;
    let mut ips = BTreeSet::new();
    for p in &pods {
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("a pod IP");
        let cidr = &cidrs[&node_of(p)];
        assert!(cidr_contains(cidr, &ip), "{ip} lies in its node's {cidr}");
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 3, "pods on different nodes have different IPs");

    // A node told to use node-a's range says why it cannot.
    let taken = cidrs["node-a"].clone();
    let started = Node::start_at(
        &c.server,
        "node-d",
        "127.0.0.5",
        false,
        &["--zone", "zone-d", "--pod-cidr", &taken],
    );
    let says_overlap = |text: &str| text.to_ascii_lowercase().contains("overlap");
    match started {
        Err(e) => assert!(says_overlap(&format!("{e:#}")), "{e:#}"),
        Ok(node) => {
            let c = &c;
            let node = &node;
            wait_for("node-d to say its podCIDR overlaps", WAIT, || async move {
                let events = c.events_about("default", "node-d").await;
                (says_overlap(&node.log())
                    || events
                        .iter()
                        .any(|e| says_overlap(e.message.as_deref().unwrap_or(""))))
                .then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log()));
            let d = nodes.get_opt("node-d").await.unwrap();
            let cidr = d.and_then(|n| n.spec?.pod_cidr);
            assert_ne!(
                cidr.as_deref(),
                Some(taken.as_str()),
                "the range is not shared"
            );
        }
    }
}

/// The network address of a CIDR, as a dotted quad.
fn cidr_network(cidr: &str) -> String {
    let (net, _) = parse_cidr(cidr);
    std::net::Ipv4Addr::from(net).to_string()
}

/// Sends a request every few milliseconds through the ingresses in turn until `stop` is set
/// and at least `min` has passed; returns (answers, failures as text, the last body).
fn load(
    ingresses: Vec<String>,
    host: &'static str,
    stop: Arc<AtomicBool>,
    min: Duration,
) -> std::thread::JoinHandle<(usize, Vec<String>, String)> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let (mut ok, mut failures, mut last) = (0usize, Vec::new(), String::new());
        let mut i = 0usize;
        while !(stop.load(Ordering::SeqCst) && start.elapsed() >= min) {
            let addr = &ingresses[i % ingresses.len()];
            i += 1;
            match http_request(addr, host, "/", REQUEST) {
                Ok(a) if (200..300).contains(&a.status) => {
                    ok += 1;
                    last = a.body;
                }
                Ok(a) => failures.push(format!(
                    "{:?} via {addr}: {} {}",
                    start.elapsed(),
                    a.status,
                    a.body.trim()
                )),
                Err(e) => failures.push(format!("{:?} via {addr}: {e:#}", start.elapsed())),
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        (ok, failures, last)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_through_the_ingress_fails_while_scaling_1_5_1_and_rolling_out() {
    let Some(c) = cluster(&["a", "b", "c"]).await else {
        return;
    };
    c.apply_in(
        "default",
        &http_app("web", &image(&c, "hello-http:1.0"), 1, "", false),
    );
    c.apply_in("default", &host_ingress("web", "web.test", "web"));
    rollout(&c, "default", "web");
    let ingresses: Vec<String> = c.nodes.iter().map(|n| ingress(n).to_string()).collect();
    for addr in &ingresses {
        until(
            &format!("{addr} to serve web.test"),
            || http_request(addr, "web.test", "/", REQUEST),
            |a| (a.status == 200).then_some(()),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let loader = load(ingresses, "web.test", stop.clone(), Duration::from_secs(20));
    c.k(&["scale", "deployment/web", "--replicas=5"]);
    rollout(&c, "default", "web");
    c.k(&["scale", "deployment/web", "--replicas=1"]);
    rollout(&c, "default", "web");
    c.k(&[
        "set",
        "image",
        "deployment/web",
        &format!("app={}", image(&c, "hello-http:2.0")),
    ]);
    rollout(&c, "default", "web");
    // The old pods drain (terminating ones included) while the load goes on.
    let pods = c.pods("default");
    let pods = &pods;
    wait_for("one pod of web to remain", WAIT, || async move {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=web"))
            .await
            .ok()?;
        (list.items.len() == 1).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (ok, failures, last) = tokio::task::spawn_blocking(move || loader.join().unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(20));
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first ones:\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(ok > 0, "the load ran");
    assert_eq!(
        last, "Hello from Skiff v2!\n",
        "the rollout reached the ingress"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_to_zero_deployment_answers_its_first_requests_from_one_new_pod_then_idles_to_zero()
{
    let Some(c) = cluster(&["a"]).await else {
        return;
    };
    let annotations = format!(
        "{}: \"true\", {}: 3s",
        skiff_meta::names::SCALE_TO_ZERO,
        skiff_meta::names::SCALE_TO_ZERO_IDLE
    );
    c.apply_in(
        "default",
        &http_app("sleepy", &image(&c, "frontend:1.0"), 0, &annotations, false),
    );
    c.apply_in("default", &host_ingress("sleepy", "sleepy.test", "sleepy"));
    let addr = ingress(&c.nodes[0]).to_string();
    let deployments: Api<Deployment> = c.api("default");
    let at_zero = || async {
        wait_object(
            &deployments,
            "sleepy",
            "to be back at zero replicas",
            WAIT,
            |d: Option<&Deployment>| {
                d.and_then(|d| d.spec.as_ref()?.replicas) == Some(0)
                    && d.and_then(|d| d.status.as_ref()?.replicas).unwrap_or(0) == 0
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
        let c = &c;
        wait_for("the pods of sleepy to go", WAIT, || async move {
            c.live_pods("default", "app=sleepy")
                .await
                .is_empty()
                .then_some(())
        })
        .await
        .unwrap();
    };
    at_zero().await;
    // The ingress must know the route before a request can be held for it.
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> = c.api("default");
    wait_object(&ingresses, "sleepy", "an address", WAIT, |i| {
        i.and_then(|i| i.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
            .is_some_and(|l| !l.is_empty())
    })
    .await
    .unwrap();

    // The first request is held while a pod starts, then answered.
    let first = http_request(&addr, "sleepy.test", "/", REQUEST).expect("an answer");
    assert_eq!(first.status, 200, "{first:?}\n{}", c.node_logs());
    assert!(
        answering_pod(&first.body).starts_with("sleepy-"),
        "{first:?}"
    );
    at_zero().await;

    // Ten concurrent first requests share one new pod.
    let answers: Vec<HttpAnswer> = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    http_request(&addr, "sleepy.test", "/", REQUEST).expect("an answer")
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
    .await
    .unwrap();
    let pods: BTreeSet<&str> = answers.iter().map(|a| answering_pod(&a.body)).collect();
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_eq!(pods.len(), 1, "one new pod answers them all: {pods:?}");
    // (Zero again if the idle period has already run out.)
    let d = deployments.get("sleepy").await.unwrap();
    let replicas = d.spec.unwrap().replicas.unwrap_or(0);
    assert!(replicas <= 1, "scaled to one, not more: {replicas}");
    at_zero().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_routes_answer_503_or_508_with_a_reason_and_cluster_ips_are_never_shared() {
    let Some(c) = cluster(&["a"]).await else {
        return;
    };
    let addr = ingress(&c.nodes[0]).to_string();
    c.apply_in("default", &host_ingress("broken", "broken.test", "missing"));
    c.apply_in(
        "default",
        r#"
apiVersion: v1
kind: Service
metadata: {name: lonely}
spec:
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    c.apply_in("default", &host_ingress("lonely", "lonely.test", "lonely"));
    c.apply_in(
        "default",
        &http_app("loopy", &image(&c, "frontend:1.0"), 1, "", false),
    );
    c.apply_in("default", &host_ingress("loopy", "loopy.test", "loopy"));
    for (host, path, code) in [
        ("broken.test", "/", 503),
        ("lonely.test", "/", 503),
        ("loopy.test", "/loop?host=loopy", 508),
    ] {
        let a = until(
            &format!("{host}{path} to answer {code}"),
            || http_request(&addr, host, path, REQUEST),
            |a| (a.status == code).then(|| a.clone()),
        )
        .await;
        assert!(!a.body.trim().is_empty(), "{host}: a reason: {a:?}");
    }

    // Explicit ClusterIPs: outside the range, or taken, are refused with 422.
    let services: Api<Service> = c.api("default");
    let svc = |name: &str, ip: Option<&str>| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}], "selector": {"app": name}},
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    let code = |r: Result<Service, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code,
        Ok(s) => panic!("created {:?}", s.spec.and_then(|s| s.cluster_ip)),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        code(
            services
                .create(&pp, &svc("outside", Some("192.168.77.1")))
                .await
        ),
        422
    );
    let first = services.create(&pp, &svc("first", None)).await.unwrap();
    let taken = first.spec.unwrap().cluster_ip.unwrap();
    assert_eq!(
        code(services.create(&pp, &svc("second", Some(&taken))).await),
        422
    );

    // Many concurrent creates, and deletes racing creates, never share a ClusterIP.
    let creates = (0..40).map(|i| {
        let services = services.clone();
        let s = svc(&format!("many-{i}"), None);
        async move { services.create(&PostParams::default(), &s).await }
    });
    for r in futures::future::join_all(creates).await {
        r.expect("created");
    }
    let deletes = (0..20).map(|i| {
        let services = services.clone();
        async move {
            services
                .delete(&format!("many-{i}"), &DeleteParams::default())
                .await
                .map(|_| ())
        }
    });
    let recreates = (40..60).map(|i| {
        let services = services.clone();
        let s = svc(&format!("many-{i}"), None);
        async move {
            services
                .create(&PostParams::default(), &s)
                .await
                .map(|_| ())
        }
    });
    let (d, r) = futures::future::join(
        futures::future::join_all(deletes),
        futures::future::join_all(recreates),
    )
    .await;
    for x in d.into_iter().chain(r) {
        x.expect("deleted or created");
    }
    let list = services.list(&Default::default()).await.unwrap();
    let mut owners = BTreeMap::<String, Vec<String>>::new();
    for s in list.items {
        if let Some(ip) = s.spec.and_then(|s| s.cluster_ip).filter(|ip| ip != "None") {
            owners
                .entry(ip)
                .or_default()
                .push(s.metadata.name.unwrap_or_default());
        }
    }
    let shared: Vec<_> = owners.iter().filter(|(_, names)| names.len() > 1).collect();
    assert!(shared.is_empty(), "ClusterIPs shared: {shared:?}");
    assert!(owners.len() >= 42, "{owners:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_expose_get_describe_and_the_python_client_see_services_and_endpoint_slices() {
    let Some(c) = cluster(&["a"]).await else {
        return;
    };
    let Some(python) = skiff_tests::tools::python() else {
        return;
    };
    c.k(&[
        "create",
        "deployment",
        "web",
        &format!("--image={}", image(&c, "hello-http:1.0")),
        "--port=8080",
    ]);
    rollout(&c, "default", "web");
    let out = c.k(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    assert!(out.contains("service/web exposed"), "{out}");
    c.apply_in("default", &host_ingress("web", "web.test", "web"));
    let pod_ip = c.live_pods("default", "app=web").await[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");

    // The EndpointSlice controller lists the pod behind the Service.
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = c.api("default");
    let slices = &slices;
    let pod_ip_ref = &pod_ip;
    wait_for(
        "an EndpointSlice of web with the pod",
        WAIT,
        || async move {
            let list = slices
                .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            list.items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .any(|e| e.addresses.contains(pod_ip_ref))
                .then_some(())
        },
    )
    .await
    .unwrap();

    let out = c.k(&["get", "svc,endpointslices,ingress"]);
    for want in [
        "service/web",
        "service/kubernetes",
        "endpointslice.discovery.k8s.io/web-",
        "ingress.networking.k8s.io/web",
        pod_ip.as_str(),
        "web.test",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let svc = c.api::<Service>("default").get("web").await.unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    let out = c.k(&["describe", "svc", "web"]);
    let line = |key: &str, value: &str| {
        out.lines()
            .any(|l| l.starts_with(key) && l.split_whitespace().any(|w| w == value))
    };
    for (key, value) in [
        ("Name:", "web".to_string()),
        ("Selector:", "app=web".to_string()),
        ("IP:", cluster_ip.clone()),
        ("TargetPort:", "8080/TCP".to_string()),
        ("Endpoints:", format!("{pod_ip}:8080")),
    ] {
        assert!(line(key, &value), "{key} {value} in:\n{out}");
    }

    let script = skiff_tests::repo_root().join("tests/python/endpoint_slices.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&c.server.kubeconfig)
        .args(["default", "web", &pod_ip])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
