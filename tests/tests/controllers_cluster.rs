//! The scheduler and controllers end to end with real nodes: one `skiff server`, one
//! `skiff registry` and three `skiff node` processes in three zones running the wasm samples.
//! A Deployment of hello-http spreads two pods per node, rolls to v2 and back under continuous
//! HTTP requests without a failed one, and comes back on the other nodes when a node process is
//! killed; a DaemonSet covers a node added later and a Job runs a real command to completion.
//!
//! Needs the `skiff` binary (`cargo build -p skiff`) and kubectl 1.32 (installed into tests/.venv
//! by scripts/install-test-deps.sh; the tests skip without it unless `SKIFF_REQUIRE_TOOLS` is set).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use skiff_tests::fixtures::is_ready;
use skiff_tests::{Cluster, http_get, image_of, node_of, wait_for, wait_object};

const V1: &str = "Hello from Skiff!\n";
const V2: &str = "Hello from Skiff v2!\n";
/// Seconds a deleted hello-http pod keeps serving (its preStop hook) before it stops.
const PRE_STOP_SECONDS: u32 = 5;
/// Seconds a node's Lease is valid: nodes renew it every quarter of this (2 s).
const LEASE: &str = "--node-lease-duration-seconds=8";
/// Node heartbeat age after which the node is Unknown.
const NODE_GRACE: &str = "--node-monitor-grace-period=8";
/// How long pods tolerate an unreachable node.
const EVICTION: &str = "--pod-eviction-timeout=2";

fn hello_deployment(registry: &str, replicas: i32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: hello
        image: {registry}/samples/hello-http:1.0
        ports:
        - {{name: http, containerPort: 8080}}
        resources:
          requests: {{cpu: 50m, memory: 16Mi}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
        lifecycle:
          preStop:
            sleep: {{seconds: {PRE_STOP_SECONDS}}}
"#
    )
}

/// A node's endpoint as the request loop reaches it.
#[derive(Clone)]
struct Endpoint {
    addr: String,
    token: String,
}

/// A server (node lifecycle grace periods shortened), a registry with the samples, and a
/// real node in each of `zones` (`node-a` in `zone-a`, ...).
async fn cluster(zones: &[&str]) -> Option<Cluster> {
    Cluster::builder()
        .kubectl()
        .server_args(&[NODE_GRACE, EVICTION])
        .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
        .push("hello-http/hello-http-v2.wasm", "samples/hello-http:2.0")
        .push("testdata/sleep.wasm", "testdata/sleep:1.0")
        .node_args(&[LEASE])
        .zones(zones)
        .start()
        .await
}

fn endpoints(c: &Cluster) -> HashMap<String, Endpoint> {
    c.nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                Endpoint {
                    addr: n.addr.clone(),
                    token: n.token.clone(),
                },
            )
        })
        .collect()
}

/// What the pod answers on `GET /` through its node's pod-port listener.
fn answer(c: &Cluster, pod: &Pod) -> String {
    let node = c.node(&node_of(pod));
    let (code, body) = node
        .get(&format!(
            "/pods/default/{}/8080/",
            pod.metadata.name.as_deref().unwrap_or_default()
        ))
        .expect("the node endpoint answers");
    assert_eq!(code, 200, "{body}");
    body
}

/// What the request loop counted.
#[derive(Default, Debug)]
struct Counts {
    requests: u64,
    failures: u64,
    v1: u64,
    v2: u64,
    /// Times the loop found no Ready pod to send to.
    no_ready_pod: u64,
    /// The first failures, for the assertion message.
    examples: Vec<String>,
}

/// How often the request loops re-list the pods: like a load balancer fed by endpoints, they
/// keep sending to what they last saw for up to this long (plus the list's own latency).
const VIEW_REFRESH: Duration = Duration::from_millis(500);
/// Request loops running at once, each one request at a time.
const CLIENTS: usize = 3;

/// Sends `GET /` continuously to the Ready pods of a selector (not being deleted), round robin,
/// through each pod's node endpoint, from [`CLIENTS`] threads. Their view of the pods is a
/// list refreshed every [`VIEW_REFRESH`].
struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<Counts>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    view: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(c: &Cluster, selector: &str) -> Load {
        let api: Api<Pod> = Api::namespaced(c.client.clone(), "default");
        let lp = ListParams::default().labels(selector);
        let first = api.list(&lp).await.expect("list pods").items;
        let pods: View = Arc::new(Mutex::new(first));
        let view = {
            let pods = pods.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(VIEW_REFRESH).await;
                    match api.list(&lp).await {
                        Ok(list) => *pods.lock().expect("view lock") = list.items,
                        Err(e) => eprintln!("listing pods for the request loops: {e}"),
                    }
                }
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let endpoints = endpoints(c);
        let threads = (0..CLIENTS)
            .map(|i| {
                let (pods, endpoints) = (pods.clone(), endpoints.clone());
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::spawn(move || request_loop(i, pods, endpoints, stop, counts))
            })
            .collect();
        Load {
            stop,
            counts,
            threads,
            view,
        }
    }

    fn counts(&self) -> (u64, u64, u64, u64) {
        let c = self.counts.lock().expect("counts lock");
        (c.requests, c.failures, c.v1, c.v2)
    }

    /// Waits until `more` further requests were answered.
    async fn wait_requests(&self, more: u64, what: &str) {
        let target = self.counts().0 + more;
        wait_for(what, Duration::from_secs(120), || async {
            (self.counts().0 >= target).then_some(())
        })
        .await
        .unwrap();
    }

    /// Stops the loop and returns what it counted.
    fn finish(mut self) -> Counts {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("the request loop does not panic");
        }
        self.view.abort();
        std::mem::take(&mut *self.counts.lock().expect("counts lock"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.view.abort();
    }
}

/// The pods the request loops last listed.
type View = Arc<Mutex<Vec<Pod>>>;

fn request_loop(
    client: usize,
    pods: View,
    endpoints: HashMap<String, Endpoint>,
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<Counts>>,
) {
    let mut turn = client;
    while !stop.load(Ordering::SeqCst) {
        let mut ready: Vec<Pod> = pods
            .lock()
            .expect("view lock")
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && is_ready(p)
                    && endpoints.contains_key(&node_of(p))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            counts.lock().expect("counts lock").no_ready_pod += 1;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        turn = turn.wrapping_add(1);
        let pod = &ready[turn % ready.len()];
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ep = &endpoints[&node_of(pod)];
        let result = http_get(
            &ep.addr,
            &format!("/pods/default/{name}/8080/"),
            Some(&ep.token),
            Duration::from_secs(20),
        );
        let mut c = counts.lock().expect("counts lock");
        c.requests += 1;
        let failure = match result {
            Ok((200, body)) if body == V1 => {
                c.v1 += 1;
                None
            }
            Ok((200, body)) if body == V2 => {
                c.v2 += 1;
                None
            }
            Ok((code, body)) => Some(format!("{name}: {code} {body:?}")),
            Err(e) => Some(format!("{name}: {e:#}")),
        };
        if let Some(f) = failure {
            c.failures += 1;
            if c.examples.len() < 10 {
                c.examples.push(f);
            }
        }
    }
}

/// Every live pod of the Deployment runs `image` and answers `body`.
async fn all_answer(c: &Cluster, image: &str, body: &str) {
    let pods = c.live_pods("default", "app=hello").await;
    assert_eq!(pods.len(), 6, "six live pods");
    for p in &pods {
        assert_eq!(image_of(p), image);
        assert_eq!(answer(c, p), body, "{:?}", p.metadata.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_spreads_rolls_without_failed_requests_and_survives_a_node_loss() {
    let Some(mut c) = cluster(&["a", "b", "c"]).await else {
        return;
    };
    let reg = c.registry().addr.clone();
    let v1_image = format!("{reg}/samples/hello-http:1.0");
    let v2_image = format!("{reg}/samples/hello-http:2.0");

    // a) Six replicas over three nodes in three zones: two per node, all serving v1.
    c.apply(&hello_deployment(&reg, 6));
    c.rollout_status("deployment/hello");
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in c.live_pods("default", "app=hello").await {
        *by_node.entry(node_of(&p)).or_default() += 1;
    }
    assert_eq!(
        by_node,
        BTreeMap::from([
            ("node-a".to_string(), 2),
            ("node-b".to_string(), 2),
            ("node-c".to_string(), 2)
        ]),
        "two pods per node"
    );
    all_answer(&c, &v1_image, V1).await;

    // A deleted pod reports Ready=False while it still serves (its preStop hook), so that
    // clients move away before it stops; its replacement lands where it was.
    let victim = c.live_pods("default", "app=hello").await[0].clone();
    let name = victim.metadata.name.clone().unwrap_or_default();
    c.k(&["delete", "pod", &name, "--wait=false"]);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let terminating = wait_object(
        &pods,
        &name,
        "the deleted pod to report Ready=False, or to be gone",
        Duration::from_secs(60),
        |p: Option<&Pod>| p.is_none_or(|p| p.metadata.deletion_timestamp.is_some() && !is_ready(p)),
    )
    .await
    .unwrap()
    .expect("the deleted pod reported Ready=False before it was gone");
    assert_eq!(
        answer(&c, &terminating),
        V1,
        "a NotReady terminating pod still serves"
    );
    c.rollout_status("deployment/hello");

    // b) Rolling update to v2 under continuous requests to the Ready pods.
    let load = Load::start(&c, "app=hello").await;
    load.wait_requests(20, "requests to v1 before the update")
        .await;
    c.k(&[
        "set",
        "image",
        "deployment/hello",
        &format!("hello={v2_image}"),
    ]);
    c.rollout_status("deployment/hello");
    all_answer(&c, &v2_image, V2).await;
    load.wait_requests(20, "requests after the update").await;
    let (requests, failures, v1, v2) = load.counts();
    println!(
        "rolling update v1 -> v2: {requests} requests, {failures} failed ({v1} answered v1, {v2} v2)"
    );

    // c) Undo returns to v1, still without a failed request.
    c.k(&["rollout", "undo", "deployment/hello"]);
    c.rollout_status("deployment/hello");
    all_answer(&c, &v1_image, V1).await;
    let v1_before = load.counts().2;
    load.wait_requests(20, "requests after the undo").await;
    let counts = load.finish();
    println!(
        "rolling update and undo: {} requests from {CLIENTS} clients re-listing pods every \
         {VIEW_REFRESH:?}, {} failed ({} answered v1, {} v2; no Ready pod {} times)",
        counts.requests, counts.failures, counts.v1, counts.v2, counts.no_ready_pod
    );
    assert_eq!(
        counts.failures,
        0,
        "failed requests: {:?}\n{}",
        counts.examples,
        c.node_logs()
    );
    assert_eq!(counts.no_ready_pod, 0, "a Ready pod was always available");
    assert!(counts.v1 > v1_before, "v1 answers again after the undo");
    assert!(counts.v2 > 0, "v2 answered during the update");
    let history = c.k(&["rollout", "history", "deployment/hello"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");

    // d) Killing node-a: its pods come back on the other nodes.
    let started = Instant::now();
    c.node_mut("node-a").kill();
    wait_for(
        "the pods of node-a to be Ready on the other nodes",
        Duration::from_secs(180),
        || async {
            let pods = c.live_pods("default", "app=hello").await;
            let ready_elsewhere = pods
                .iter()
                .filter(|p| node_of(p) != "node-a" && is_ready(p))
                .count();
            (ready_elsewhere == 6 && pods.iter().all(|p| node_of(p) != "node-a")).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.node_logs()));
    println!(
        "the pods of the killed node were Ready on the other nodes after {:.1}s \
         ({NODE_GRACE}, {EVICTION}, {LEASE})",
        started.elapsed().as_secs_f64()
    );
    for p in c.live_pods("default", "app=hello").await {
        assert_eq!(answer(&c, &p), V1, "{:?}", p.metadata.name);
    }
    let ready = c.k(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready.trim(), "Unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_covers_a_later_node_and_a_job_runs_to_completion() {
    let Some(mut c) = cluster(&["a", "b"]).await else {
        return;
    };
    let reg = c.registry().addr.clone();

    // A DaemonSet of hello-http: one pod per node, and one on a node added later.
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      containers:
      - name: hello
        image: {reg}/samples/hello-http:1.0
        ports:
        - {{containerPort: 8080}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
"#
    ));
    c.rollout_status("daemonset/agent");
    c.add_zone_node("c").await;
    let pods = wait_for(
        "a Ready agent pod on each of the three nodes",
        Duration::from_secs(120),
        || async {
            let pods = c.live_pods("default", "app=agent").await;
            let mut nodes: Vec<String> = pods.iter().filter(|p| is_ready(p)).map(node_of).collect();
            nodes.sort();
            (pods.len() == 3 && nodes == ["node-a", "node-b", "node-c"]).then_some(pods)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.node_logs()));
    for p in &pods {
        assert_eq!(answer(&c, p), V1, "{:?}", p.metadata.name);
    }

    // A Job of a real command (sleep 1 s, exit 0): completions 5, parallelism 2.
    c.apply(&format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: sleeper
spec:
  completions: 5
  parallelism: 2
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: sleep
        image: {reg}/testdata/sleep:1.0
        args: ["1"]
"#
    ));
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let most_active = std::cell::Cell::new(0);
    // Watched, so every version of the status counts towards the most pods active at once.
    let job = wait_object(
        &jobs,
        "sleeper",
        "the Job to complete",
        Duration::from_secs(180),
        |j: Option<&Job>| {
            let Some(st) = j.and_then(|j| j.status.as_ref()) else {
                return false;
            };
            most_active.set(most_active.get().max(st.active.unwrap_or(0)));
            st.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()))
    .expect("the Job exists");
    let st = job.status.expect("job status");
    assert_eq!(st.succeeded, Some(5));
    assert_eq!(st.failed.unwrap_or(0), 0);
    let most_active = most_active.get();
    assert!(
        (1..=2).contains(&most_active),
        "at most parallelism pods active, saw {most_active}"
    );
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pods = api
        .list(&ListParams::default().labels("job-name=sleeper"))
        .await
        .expect("list pods")
        .items;
    let succeeded = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .count();
    assert_eq!(succeeded, 5, "five pods succeeded");
    let first = pods[0].metadata.name.clone().unwrap_or_default();
    let log = c.k(&["logs", &first]);
    assert!(
        log.contains("started") && log.contains("done"),
        "the sleep command ran: {log:?}"
    );
}
