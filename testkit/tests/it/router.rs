//! The service router on the in-process tier: real nodes (the wasm backend, real sample guests)
//! against the API router on the memory store. A pod calls a Service by every name form and by
//! ClusterIP, requests spread over endpoints on two nodes (the second reached through its node
//! endpoint), a Service without endpoints answers 503, a self-calling one 508, and a
//! scale-to-zero Deployment serves held requests from one new pod, with its deadline and cap.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_controllers::{Clock, Options};
use skiff_host::net::{ServiceBackend, ServicePortRef};
use skiff_host::{NodeConfig, NodeHandle, WasmImages};
use skiff_runtime::{Network, Runtime, RuntimeConfig, Runtimes, empty_body};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_object};

const DEADLINE: Duration = Duration::from_secs(60);

fn samples() -> PathBuf {
    // At run time: a test binary reused from a shared target directory must read this checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../samples")
}

/// The frontend sample: answers `POD PATH`, calls a URL on `/call?url=`, itself on `/loop`.
fn frontend_image() -> String {
    let path = samples().join("frontend/frontend.wasm");
    let path = path.canonicalize().unwrap_or_else(|e| {
        panic!(
            "sample {} is missing ({e}); run samples/build.sh",
            path.display()
        )
    });
    format!("file://{}", path.display())
}

struct TestNode {
    network: Network,
    /// The node's Service router, reached as the ingress reaches it.
    services: Arc<dyn ServiceBackend>,
    _handle: NodeHandle,
    dir: PathBuf,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node on the wasm backend; its pod range comes from the API server.
async fn node(api: &InProcess, name: &str) -> TestNode {
    let dir = std::env::temp_dir().join(format!(
        "skiff-router-{}-{name}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    let network = Network::new();
    let mut rt_config = RuntimeConfig::new(dir.join("runtime"));
    rt_config.max_instances = 64;
    let net = network.clone();
    let runtime = tokio::task::spawn_blocking(move || Runtime::new(rt_config, net))
        .await
        .unwrap()
        .expect("the wasm runtime");
    let images = WasmImages::new(dir.join("images"), None, None, true).expect("images");
    let mut runtimes = Runtimes::new();
    runtimes.add(Arc::new(runtime), Arc::new(images));
    let mut config = NodeConfig::new(
        name,
        api.client.clone(),
        runtimes,
        network.clone(),
        "endpoint-token",
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = skiff_host::start(config).await.expect("the node starts");
    TestNode {
        network,
        services: handle.service_backend(),
        _handle: handle,
        dir,
    }
}

async fn namespace(api: &InProcess, name: &str) {
    let nss: Api<Namespace> = Api::all(api.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
}

/// A frontend pod bound to `node`, labelled `app: APP`, serving port 8080 (named `http`).
async fn run_pod(api: &InProcess, ns: &str, name: &str, node: &str, app: &str) -> IpAddr {
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": frontend_image(),
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "POD_NAME", "value": name}]
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let ready = wait_object(&pods, name, DEADLINE, |p| {
        p.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await
    .expect("the pod is Ready");
    ready.status.unwrap().pod_ip.unwrap().parse().unwrap()
}

async fn service(api: &InProcess, ns: &str, name: &str, cluster_ip: &str, app: &str) {
    let svcs: Api<Service> = Api::namespaced(api.client.clone(), ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "clusterIP": cluster_ip,
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
        }
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
}

/// GETs `url` through `network` as an in-process caller of the node: (status, body).
async fn get(network: &Network, url: &str) -> (u16, String) {
    let req = http::Request::get(url).body(empty_body()).unwrap();
    let resp = network.send(None, req).await.expect("a response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn encode(url: &str) -> String {
    url.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Has the pod at `caller` GET `url`; answers its `upstream: STATUS` line and the rest.
async fn call_from(network: &Network, caller: IpAddr, url: &str) -> (u16, String) {
    let (status, body) = get(
        network,
        &format!("http://{caller}:8080/call?url={}", encode(url)),
    )
    .await;
    assert_eq!(status, 200, "the caller pod answers: {body}");
    let (first, rest) = body.split_once('\n').unwrap_or((&body, ""));
    let upstream = first
        .strip_prefix("upstream: ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (upstream, rest.to_string())
}

/// Asks the node's router for Service `ns/name` on port 80: (status, body).
async fn serve(
    services: &Arc<dyn ServiceBackend>,
    ns: &str,
    name: &str,
    path: &str,
) -> (u16, String) {
    let req = http::Request::get(path).body(empty_body()).unwrap();
    let resp = services
        .serve(ns, name, &ServicePortRef::Number(80), req)
        .await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until the node's router has Service `ns/name` (a watch event away). Asking the router
/// itself sends nothing off the node, where a pod's request to an unknown name would go.
async fn wait_known(node: &TestNode, ns: &str, name: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = serve(&node.services, ns, name, "/").await;
        if !(status == 503 && body.contains("not found")) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the router never learns of service {ns}/{name}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_calls_a_service_by_every_name_form_and_by_cluster_ip() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    namespace(&api, "shop").await;
    namespace(&api, "other").await;
    run_pod(&api, "shop", "web-1", "node-a", "web").await;
    service(&api, "shop", "web", "10.96.7.7", "web").await;
    let client = run_pod(&api, "shop", "client", "node-a", "client").await;
    let stranger = run_pod(&api, "other", "stranger", "node-a", "stranger").await;

    wait_known(&a, "shop", "web").await;
    for url in [
        "http://web/",
        "http://web.shop/",
        "http://web.shop.svc/",
        "http://web.shop.svc.cluster.local/",
        "http://web.shop.svc.cluster.local./",
        "http://10.96.7.7/",
        "http://10.96.7.7:80/x",
    ] {
        let (status, body) = call_from(&a.network, client, url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body.starts_with("web-1 /"), "{url}: {body}");
    }
    // An ExternalName Service naming the Service is an alias of it.
    let svcs: Api<Service> = Api::namespaced(api.client.clone(), "shop");
    let alias: Service = serde_json::from_value(json!({
        "metadata": {"name": "alias"},
        "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &alias).await.unwrap();
    wait_known(&a, "shop", "alias").await;
    let (status, body) = call_from(&a.network, client, "http://alias/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web-1 /"), "{body}");
    // From another namespace, NAME.NAMESPACE (a bare name would mean its own namespace).
    let (status, body) = call_from(&a.network, stranger, "http://web.shop/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web-1 /"), "{body}");
    // A port the Service does not have.
    let (status, body) = call_from(&a.network, client, "http://web.shop:81/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("has no port 81"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_the_endpoints_of_every_node() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    let _b = node(&api, "node-b").await;
    namespace(&api, "shop").await;
    let ip1 = run_pod(&api, "shop", "web-1", "node-a", "web").await;
    let ip2 = run_pod(&api, "shop", "web-2", "node-a", "web").await;
    let ip3 = run_pod(&api, "shop", "web-3", "node-b", "web").await;
    service(&api, "shop", "web", "10.96.7.8", "web").await;
    // The EndpointSlice controller's part, written here: node-b's pods are known only from it.
    let slices: Api<EndpointSlice> = Api::namespaced(api.client.clone(), "shop");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip1.to_string()], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": [ip2.to_string()], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": [ip3.to_string()], "nodeName": "node-b", "conditions": {"ready": true}},
            // Listed but gone from node-b: node-b says so and the request goes elsewhere.
            {"addresses": ["10.255.255.1"], "nodeName": "node-b", "conditions": {"ready": true}}
        ]
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    wait_known(&a, "shop", "web").await;

    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let until = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 3 || seen.values().sum::<usize>() < 30 {
        let (status, body) = get(&a.network, "http://web.shop/").await;
        if status == 200 {
            let pod = body
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            *seen.entry(pod).or_default() += 1;
        } else {
            panic!("{status} {body}");
        }
        assert!(tokio::time::Instant::now() < until, "only {seen:?}");
    }
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["web-1", "web-2", "web-3"],
        "every endpoint on every node gets requests: {seen:?}"
    );
    // The remote pod answered through node-b's endpoint, by its ClusterIP too.
    let mut remote = 0;
    for _ in 0..30 {
        let (status, body) = get(&a.network, "http://10.96.7.8/").await;
        assert_eq!(status, 200, "{body}");
        remote += usize::from(body.starts_with("web-3 "));
    }
    assert!(remote > 0, "the endpoint on node-b is reached by ClusterIP");

    // sessionAffinity: ClientIP pins each client (the ingress's X-Forwarded-For) to one pod.
    let svcs: Api<Service> = Api::namespaced(api.client.clone(), "shop");
    let sticky: Service = serde_json::from_value(json!({
        "metadata": {"name": "sticky"},
        "spec": {"clusterIP": "10.96.7.14", "selector": {"app": "web"},
                 "sessionAffinity": "ClientIP",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &sticky).await.unwrap();
    wait_known(&a, "shop", "sticky").await;
    let mut pinned =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for i in 0..40 {
        let client = format!("192.0.2.{}", i % 4);
        let req = http::Request::get("/")
            .header("x-forwarded-for", &client)
            .body(empty_body())
            .unwrap();
        let resp = a
            .services
            .serve("shop", "sticky", &ServicePortRef::Name("http".into()), req)
            .await;
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let pod = String::from_utf8_lossy(&body)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        pinned.entry(client).or_default().insert(pod);
    }
    for (client, pods) in &pinned {
        assert_eq!(pods.len(), 1, "{client} reached {pods:?}");
    }
}

/// Deleting endpoints under continuous load loses no request: this node stops sending to its
/// own pod the moment it is terminating (which still finishes what it has), and a request for
/// the other node's deleted pod, still listed by a stale EndpointSlice, is sent elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_endpoints_under_load_loses_no_request() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    let _b = node(&api, "node-b").await;
    namespace(&api, "shop").await;
    let ip1 = run_pod(&api, "shop", "web-1", "node-a", "web").await;
    let ip2 = run_pod(&api, "shop", "web-2", "node-a", "web").await;
    let ip3 = run_pod(&api, "shop", "web-3", "node-b", "web").await;
    service(&api, "shop", "web", "10.96.7.15", "web").await;
    let slices: Api<EndpointSlice> = Api::namespaced(api.client.clone(), "shop");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip1.to_string()], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": [ip2.to_string()], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": [ip3.to_string()], "nodeName": "node-b", "conditions": {"ready": true}}
        ]
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    wait_known(&a, "shop", "web").await;
    // Until node-b's pod answers, the router has the slice.
    let until = tokio::time::Instant::now() + DEADLINE;
    while !serve(&a.services, "shop", "web", "/")
        .await
        .1
        .starts_with("web-3 ")
    {
        assert!(tokio::time::Instant::now() < until, "web-3 never answers");
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let services = a.services.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, body) = serve(&services, "shop", "web", "/").await;
                    if status == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "shop");
    for name in ["web-1", "web-3"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["web-1", "web-3"] {
        wait_deleted(&pods, name, DEADLINE).await.unwrap();
    }
    // Still under load after both are gone.
    for _ in 0..20 {
        let (status, body) = serve(&a.services, "shop", "web", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("web-2 "), "{body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in load {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 0);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_answers_503_and_a_loop_508() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    namespace(&api, "shop").await;
    let looper = run_pod(&api, "shop", "looper", "node-a", "loop").await;
    service(&api, "shop", "loop", "10.96.7.9", "loop").await;
    service(&api, "shop", "empty", "10.96.7.10", "nothing-matches").await;

    wait_known(&a, "shop", "empty").await;
    wait_known(&a, "shop", "loop").await;
    let (status, body) = call_from(&a.network, looper, "http://empty.shop/").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("no endpoints available for service \"shop/empty\""),
        "{body}"
    );
    // Through the ingress's door too.
    let (status, body) = serve(&a.services, "shop", "empty", "/").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = get(&a.network, &format!("http://{looper}:8080/loop?host=loop")).await;
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("Loop Detected"), "{body}");
    assert!(body.contains("more than 16 service hops"), "{body}");
}

fn lazy_deployment(name: &str, image: &str, deadline: &str, max_held: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            "skiff.dev/scale-to-zero": "true",
            "skiff.dev/scale-from-zero-deadline": deadline,
            "skiff.dev/scale-from-zero-max-held": max_held
        }},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app", "image": image,
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [{"name": "POD_NAME", "valueFrom":
                                 {"fieldRef": {"fieldPath": "metadata.name"}}}]
                    }]
                }
            }
        }
    }))
    .unwrap()
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sends requests for Service `ns/name` until one is held: the router has seen the Service and
/// its scale-to-zero Deployment, and that request scaled the Deployment to one. Earlier ones
/// are answered 503 at once (Service or Deployment not seen yet).
async fn first_held(
    node: &TestNode,
    deployments: &Api<Deployment>,
    ns: &'static str,
    name: &'static str,
) -> tokio::task::JoinHandle<(u16, String)> {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let services = node.services.clone();
        let mut req = tokio::spawn(async move { serve(&services, ns, name, "/").await });
        tokio::select! {
            r = &mut req => {
                let (status, body) = r.unwrap();
                assert!(
                    status == 503 && (body.contains("not found") || body.contains("no endpoints")),
                    "{status} {body}"
                );
            }
            scaled = wait_object(deployments, name, DEADLINE, |d| replicas(d) == 1) => {
                scaled.expect("the held request scales the Deployment to one");
                return req;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no request was ever held"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_from_zero_holds_requests_for_one_new_pod() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    namespace(&api, "shop").await;
    let mut opts = Options {
        scheduler: true,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("deployment,replicaset").unwrap();
    let _controllers = skiff_controllers::start(api.client.clone(), opts);

    let deployments: Api<Deployment> = Api::namespaced(api.client.clone(), "shop");
    deployments
        .create(
            &PostParams::default(),
            &lazy_deployment("lazy", &frontend_image(), "30s", "100"),
        )
        .await
        .unwrap();
    service(&api, "shop", "lazy", "10.96.7.11", "lazy").await;

    // Ten concurrent first requests: all held, all served by the one pod they scaled up.
    let first = first_held(&a, &deployments, "shop", "lazy").await;
    let calls: Vec<_> = (0..9)
        .map(|_| {
            let network = a.network.clone();
            tokio::spawn(async move { get(&network, "http://lazy.shop/x").await })
        })
        .collect();
    let mut answers = vec![first.await.unwrap()];
    for c in calls {
        answers.push(c.await.unwrap());
    }
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "shop");
    let lazy = pods
        .list(&ListParams::default().labels("app=lazy"))
        .await
        .unwrap();
    assert_eq!(lazy.items.len(), 1, "one pod for every held request");
    let pod_name = lazy.items[0].metadata.name.clone().unwrap();
    for (_, body) in &answers {
        assert!(body.starts_with(&pod_name), "{body}");
    }
    let d = deployments.get("lazy").await.unwrap();
    assert_eq!(replicas(&d), 1, "scaled once, to one");
    // Serving marks it busy for the scale-down controller.
    wait_object(&deployments, "lazy", DEADLINE, |d| {
        d.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(skiff_meta::names::LAST_REQUEST))
    })
    .await
    .expect("the router writes the last request time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_have_a_deadline_and_a_cap() {
    let api = InProcess::start().await.unwrap();
    let a = node(&api, "node-a").await;
    namespace(&api, "shop").await;
    // No controllers: the Deployment is scaled but no pod ever comes.
    let deployments: Api<Deployment> = Api::namespaced(api.client.clone(), "shop");
    deployments
        .create(
            &PostParams::default(),
            &lazy_deployment("stuck", &frontend_image(), "3s", "1"),
        )
        .await
        .unwrap();
    service(&api, "shop", "stuck", "10.96.7.12", "stuck").await;

    let held = first_held(&a, &deployments, "shop", "stuck").await;
    // The one place is taken: the next request is refused at once.
    let (status, body) = get(&a.network, "http://10.96.7.12/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("already held"), "{body}");
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("within 3s"), "{body}");
}
