//! Chaos soak (issue 18, part 4): a Deployment of `hello-http` behind a Service and an Ingress
//! on a two-node cluster, with requests through both nodes' ingresses and a writer creating
//! ConfigMaps all along, while, round after round, a node is killed (`kill -9`) and started
//! again, the API server is restarted (SIGKILL and SIGTERM in turn) and a pod is evicted. At the
//! end: no acknowledged write lost; no pod, endpoint, pod IP or per-pod directory left over;
//! failed requests counted by cause (printed, not asserted: a request routed to a killed node's
//! pod fails until the node is back).
//!
//! One round in CI; `SKIFF_SOAK_SECONDS=N` rounds on until N seconds have passed (see
//! RELIABILITY.md for the documented long run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node as KNode, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{EvictParams, ListParams, PostParams};
use skiff_tests::{Cluster, lost_config_maps, wait_for, wait_object};

/// How long the cluster may take to settle after each fault.
const SETTLE: Duration = Duration::from_secs(180);
/// Replicas of the Deployment.
const REPLICAS: usize = 3;

fn manifests(registry: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: soak}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hello, namespace: soak}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: hello}}}}
  template:
    metadata: {{labels: {{app: hello}}}}
    spec:
      containers:
      - name: hello
        image: {registry}/samples/hello-http:1.0
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: hello, namespace: soak}}
spec:
  selector: {{app: hello}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: hello, namespace: soak}}
spec:
  ingressClassName: skiff
  rules:
  - host: hello.soak
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: hello, port: {{number: 80}}}}}}}}
"#
    )
}

/// Outcomes of the requests sent through the ingresses, by cause.
#[derive(Default)]
struct Traffic {
    by_outcome: BTreeMap<String, u64>,
}

impl Traffic {
    fn record(&mut self, outcome: String) {
        *self.by_outcome.entry(outcome).or_default() += 1;
    }
    fn total(&self) -> u64 {
        self.by_outcome.values().sum()
    }
    fn failed(&self) -> u64 {
        self.total() - self.by_outcome.get("200").copied().unwrap_or(0)
    }
}

/// The `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Directory names under `dir` (any depth) that are pod uids (36 characters, four dashes).
fn uid_dirs(dir: &std::path::Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 36 && name.matches('-').count() == 4 {
            found.insert(name);
        }
        uid_dirs(&e.path(), found);
    }
}

/// Waits until the Deployment has all replicas ready, no other pod of it exists, and its
/// EndpointSlices list exactly the ready pods' IPs; returns the pods.
async fn settled(c: &Cluster, what: &str) -> Vec<Pod> {
    let pods: Api<Pod> = c.api("soak");
    let slices: Api<EndpointSlice> = c.api("soak");
    wait_for(
        &format!("the cluster to settle after {what}"),
        SETTLE,
        || {
            let (pods, slices) = (pods.clone(), slices.clone());
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=hello"))
                    .await
                    .ok()?
                    .items;
                let ready = |p: &Pod| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                };
                if list.len() != REPLICAS || !list.iter().all(ready) {
                    return None;
                }
                let ips: BTreeSet<String> = list
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .collect();
                let listed: BTreeSet<String> = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=hello"))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .flat_map(|s| s.endpoints)
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .flat_map(|e| e.addresses)
                    .collect();
                (ips.len() == REPLICAS && ips == listed).then_some(list)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()))
}

/// Waits until Node `name` is Ready with the endpoint port `port` (the restarted process's).
async fn node_back(c: &Cluster, name: &str, port: Option<i32>) {
    let nodes: Api<KNode> = Api::all(c.client.clone());
    wait_object(
        &nodes,
        name,
        "to be Ready again",
        SETTLE,
        |n: Option<&KNode>| {
            n.and_then(|n| n.status.as_ref()).is_some_and(|s| {
                let ready = s
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let endpoint = s
                    .daemon_endpoints
                    .as_ref()
                    .and_then(|d| d.kubelet_endpoint.as_ref())
                    .map(|e| e.port);
                ready && endpoint == port
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
}

#[tokio::test(flavor = "multi_thread")]
async fn serial_chaos_soak_loses_no_write_and_leaks_nothing() {
    let soak = Duration::from_secs(
        std::env::var("SKIFF_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    let Some(mut c) = Cluster::builder()
        .kubectl()
        .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
        .loopback_zones(&["a", "b"])
        .start()
        .await
    else {
        return;
    };
    c.apply(&manifests(&c.registry().addr));
    let first = settled(&c, "the rollout").await;
    let mut uids: BTreeSet<String> = first
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let ingresses: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        c.nodes.iter().filter_map(|n| n.ingress.clone()).collect(),
    ));
    let first_ingresses = ingresses.lock().unwrap().clone();
    for ingress in first_ingresses {
        wait_for("the ingress to route hello.soak", SETTLE, || {
            let ingress = ingress.clone();
            async move {
                let a =
                    skiff_tests::http_request(&ingress, "hello.soak", "/", Duration::from_secs(5))
                        .ok()?;
                (a.status == 200).then_some(())
            }
        })
        .await
        .expect("routed");
    }

    // Traffic: one request at a time, each ingress in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, ingresses) = (stop.clone(), ingresses.clone());
        std::thread::spawn(move || {
            let mut t = Traffic::default();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let addr = {
                    let list = ingresses.lock().unwrap();
                    list[i % list.len()].clone()
                };
                i += 1;
                let outcome = match skiff_tests::http_request(
                    &addr,
                    "hello.soak",
                    "/",
                    Duration::from_secs(5),
                ) {
                    Ok(a) => a.status.to_string(),
                    Err(e) => match e.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
                        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
                        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".into(),
                        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            "timeout".into()
                        }
                        _ => format!("error: {e}"),
                    },
                };
                t.record(outcome);
            }
            t
        })
    };
    // Writes: ConfigMaps created one after another; what was acknowledged must survive.
    let writer = {
        let (stop, client) = (stop.clone(), c.client.clone());
        tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "soak");
            let (mut acked, mut refused) = (Vec::new(), 0u64);
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{i}");
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"soak": "w"}}, "data": {"i": i.to_string()}
                }))
                .expect("a ConfigMap");
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.push(name),
                    Err(kube::Error::Api(s)) if s.code == 409 => acked.push(name),
                    Err(_) => {
                        refused += 1;
                        // The server is down: try the next name a little later.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (acked, refused)
        })
    };

    let node_a_pid = c.nodes[0].pid().expect("node-a runs");
    let rss_before = rss_kib(node_a_pid);
    let started = Instant::now();
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        // 1. kill -9 node-b, then start it again on its data directory.
        c.nodes[1].kill();
        c.nodes[1].restart().expect("node-b starts again");
        ingresses.lock().unwrap()[1] = c.nodes[1].ingress.clone().expect("its ingress");
        let port = c.nodes[1]
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok());
        node_back(&c, "node-b", port).await;
        for p in settled(&c, "node-b's restart").await {
            uids.extend(p.metadata.uid);
        }
        // 2. the API server: SIGKILL in odd rounds, SIGTERM in even ones; same port and data.
        if rounds % 2 == 1 {
            c.server.kill();
        } else {
            let status = c.server.stop().expect("the server stops");
            assert!(status.success(), "{status}");
        }
        c.server.restart().expect("the server starts again");
        for p in settled(&c, "the API server's restart").await {
            uids.extend(p.metadata.uid);
        }
        // 3. evict one pod; the Deployment replaces it.
        let pods: Api<Pod> = c.api("soak");
        let victim = pods
            .list(&ListParams::default().labels("app=hello"))
            .await
            .expect("list")
            .items
            .into_iter()
            .next()
            .and_then(|p| p.metadata.name)
            .expect("a pod");
        pods.evict(&victim, &EvictParams::default())
            .await
            .expect("the eviction is accepted");
        for p in settled(&c, "an eviction").await {
            uids.extend(p.metadata.uid);
        }
        if started.elapsed() >= soak {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let traffic = traffic.join().expect("the traffic thread");
    let (acked, refused) = writer.await.expect("the writer");

    // Lost writes.
    let maps: Api<ConfigMap> = c.api("soak");
    let (lost, _) = lost_config_maps(&maps, &ListParams::default().labels("soak=w"), &acked)
        .await
        .expect("list the writes");
    // Leaks: pods and endpoints are checked by `settled`; pod IPs are unique there. Per-pod
    // directories on the nodes: only the live pods'.
    let live: BTreeSet<String> = settled(&c, "the soak")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    let mut on_disk = BTreeSet::new();
    for n in &c.nodes {
        uid_dirs(&n.dir.join("data"), &mut on_disk);
    }
    let left: Vec<&String> = on_disk.iter().filter(|u| !live.contains(*u)).collect();
    let rss_after = rss_kib(node_a_pid);

    println!(
        "chaos soak: {rounds} rounds in {:?} (node kill+restart, API server restart, eviction each)",
        started.elapsed()
    );
    println!(
        "requests: {} sent, {} failed; by outcome: {:?}",
        traffic.total(),
        traffic.failed(),
        traffic.by_outcome
    );
    println!(
        "writes: {} acknowledged, {} refused while the server was down, {} lost",
        acked.len(),
        refused,
        lost.len()
    );
    println!(
        "pods seen: {}, live: {}, per-pod directories left of gone pods: {}; node-a RSS {:?} KiB -> {:?} KiB",
        uids.len(),
        live.len(),
        left.len(),
        rss_before,
        rss_after
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(left.is_empty(), "directories of gone pods: {left:?}");
    assert!(traffic.by_outcome.get("200").copied().unwrap_or(0) > 0);
}
