//! The worker in-process: pods on the fake backend, a scripted API server behind the client,
//! and a table of status cases checked through the pure status function.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ContainerState as KState, ContainerStatus, Pod, PodStatus};
use serde_json::{Value, json};
use skiff_runtime::fake::{FakeImages, FakeRuntime, Outcome};
use skiff_runtime::{Network, PodRuntime, Runtimes};

use super::status::pod_status;
use super::*;
use crate::ctx::{IpPool, NodeCtx};

/// What the scripted API server saw: method, path and body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A client whose API server records every request; it echoes creates and patches (but refuses
/// the status writes of pod `refused`, and its first two deletes), answers RuntimeClass reads from `classes` (name -> handler) and 404
/// for everything else.
fn scripted_client(classes: HashMap<String, String>) -> (kube::Client, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = log.clone();
        let classes = classes.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            log.lock()
                .unwrap()
                .push((method.clone(), path.clone(), body.clone()));
            let class = path
                .strip_prefix("/apis/node.k8s.io/v1/runtimeclasses/")
                .and_then(|n| classes.get(n).map(|h| (n, h)));
            let (code, reply) = match (method.as_str(), class) {
                ("GET", Some((name, handler))) => (
                    200,
                    json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                           "metadata": {"name": name}, "handler": handler}),
                ),
                ("POST", _) => (201, body),
                // A pod named `refused` has its status writes refused, as an overloaded server
                // would.
                ("PATCH", _) if path.contains("/pods/refused/") => (
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "InternalError", "code": 500, "message": "refused"}),
                ),
                // ... and its first two deletes refused.
                ("DELETE", _)
                    if path.ends_with("/pods/refused")
                        && log
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(m, p, _)| m == "DELETE" && *p == path)
                            .count()
                            <= 2 =>
                {
                    (
                        503,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "ServiceUnavailable", "code": 503, "message": "refused"}),
                    )
                }
                ("PATCH", _) => (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
                ),
                _ => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(reply.to_string().into_bytes()))
                .expect("a response");
            Ok::<_, Infallible>(resp)
        }
    });
    (kube::Client::new(svc, "default"), seen)
}

struct Harness {
    rt: FakeRuntime,
    images: FakeImages,
    worker: Worker,
    seen: Seen,
}

fn pod(yaml: &str) -> Pod {
    let mut pod: Pod = serde_yaml::from_str(yaml).expect("a pod");
    pod.metadata.name.get_or_insert_with(|| "p".into());
    pod.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    pod.metadata.uid.get_or_insert_with(|| "uid-1".into());
    pod
}

fn harness_with(yaml: &str, classes: &[(&str, &str)], extra: Option<FakeRuntime>) -> Harness {
    let (client, seen) = scripted_client(
        classes
            .iter()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect(),
    );
    let network = Network::new();
    let rt = FakeRuntime::new(network.clone());
    let images = FakeImages::new();
    let mut runtimes = Runtimes::new();
    runtimes.add(Arc::new(rt.clone()), Arc::new(images.clone()));
    if let Some(other) = extra {
        runtimes.add(Arc::new(other), Arc::new(FakeImages::new()));
    }
    let ctx = NodeCtx::new(
        client,
        runtimes,
        "node-a".into(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpPool::parse("10.88.0.0/24").expect("cidr"),
    );
    Harness {
        rt,
        images,
        worker: Worker::new(Arc::new(ctx), pod(yaml)),
        seen,
    }
}

fn harness(yaml: &str) -> Harness {
    harness_with(yaml, &[], None)
}

impl Harness {
    async fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.worker.step().await;
        }
    }

    /// Makes every scheduled retry due now (the back-off has elapsed).
    fn elapse_backoff(&mut self) {
        for c in &mut self.worker.ctrs {
            if c.retry_at.is_some() {
                c.retry_at = Some(std::time::Instant::now());
            }
        }
    }

    fn status(&mut self) -> PodStatus {
        self.worker.status()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/events"))
            .filter_map(|(_, _, b)| b["reason"].as_str().map(str::to_string))
            .collect()
    }
}

fn state_str(s: &KState) -> String {
    if let Some(w) = &s.waiting {
        format!("waiting({})", w.reason.as_deref().unwrap_or(""))
    } else if s.running.is_some() {
        "running".into()
    } else if let Some(t) = &s.terminated {
        format!(
            "terminated({},{})",
            t.exit_code,
            t.reason.as_deref().unwrap_or("")
        )
    } else {
        "none".into()
    }
}

fn container_str(c: &ContainerStatus) -> String {
    let mut s = format!(
        "{}:{}",
        c.name,
        state_str(c.state.as_ref().expect("a state"))
    );
    if let Some(last) = c.last_state.as_ref().filter(|l| l.terminated.is_some()) {
        s += &format!(" last={}", state_str(last));
    }
    if c.ready {
        s += " ready";
    }
    if c.restart_count > 0 {
        s += &format!(" restarts={}", c.restart_count);
    }
    s
}

/// A one-line summary: phase, Ready (with its reason when False), QoS, then the init
/// containers and the containers.
fn summary(st: &PodStatus) -> String {
    let cond = |t: &str| {
        let c = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .expect("a condition");
        match &c.reason {
            Some(r) => format!("{}={}({r})", t, c.status),
            None => format!("{}={}", t, c.status),
        }
    };
    let mut parts = vec![
        st.phase.clone().unwrap_or_default(),
        cond("Ready"),
        cond("Initialized"),
        format!("qos={}", st.qos_class.as_deref().unwrap_or("")),
    ];
    for c in st.init_container_statuses.iter().flatten() {
        parts.push(format!("init {}", container_str(c)));
    }
    for c in st.container_statuses.iter().flatten() {
        parts.push(container_str(c));
    }
    parts.join(" | ")
}

const ONE: &str = "spec: {restartPolicy: Always, containers: [{name: c, image: app:1.0}]}";
const NEVER: &str = "spec: {restartPolicy: Never, containers: [{name: c, image: app:1.0}]}";
const ON_FAILURE: &str =
    "spec: {restartPolicy: OnFailure, containers: [{name: c, image: app:1.0}]}";
const WITH_INIT: &str = "spec: {restartPolicy: Never, initContainers: [{name: i, image: init:1.0}], containers: [{name: c, image: app:1.0}]}";
const WITH_INIT_ALWAYS: &str =
    "spec: {initContainers: [{name: i, image: init:1.0}], containers: [{name: c, image: app:1.0}]}";
const READINESS: &str = "spec: {containers: [{name: c, image: app:1.0, ports: [{containerPort: 8080}], readinessProbe: {httpGet: {port: 8080}, failureThreshold: 1}}]}";

/// What to do to the harness before (and between) the steps of a case.
#[derive(Clone, Copy)]
enum Setup {
    Nothing,
    Script(&'static str, &'static [Outcome]),
    FailPull,
    FailPullTwice,
    Unhealthy,
    HealthyProbe,
    FailSandbox,
    Terminating,
}

struct Case {
    name: &'static str,
    pod: &'static str,
    setup: Setup,
    steps: usize,
    want: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "waiting for its image",
        pod: ONE,
        setup: Setup::FailPull,
        steps: 1,
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(ErrImagePull)",
    },
    Case {
        name: "image pull failing again backs off",
        pod: ONE,
        setup: Setup::FailPullTwice,
        steps: 1,
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(ImagePullBackOff)",
    },
    Case {
        name: "sandbox cannot be created",
        pod: ONE,
        setup: Setup::FailSandbox,
        steps: 1,
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(ContainerCreating)",
    },
    Case {
        name: "running and ready",
        pod: ONE,
        setup: Setup::Nothing,
        steps: 1,
        want: "Running | Ready=True | Initialized=True | qos=BestEffort | c:running ready",
    },
    Case {
        name: "readiness probe failing",
        pod: READINESS,
        setup: Setup::Unhealthy,
        steps: 1,
        want: "Running | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:running",
    },
    Case {
        name: "readiness probe passing",
        pod: READINESS,
        setup: Setup::HealthyProbe,
        steps: 1,
        want: "Running | Ready=True | Initialized=True | qos=BestEffort | c:running ready",
    },
    Case {
        name: "exit 0 under restartPolicy Never succeeds",
        pod: NEVER,
        setup: Setup::Script("c", &[Outcome::Exit(0)]),
        steps: 2,
        want: "Succeeded | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | c:terminated(0,Completed)",
    },
    Case {
        name: "exit 3 under restartPolicy Never fails",
        pod: NEVER,
        setup: Setup::Script("c", &[Outcome::Exit(3)]),
        steps: 2,
        want: "Failed | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | c:terminated(3,Error)",
    },
    Case {
        name: "exit 3 under restartPolicy Always crash-loops",
        pod: ONE,
        setup: Setup::Script("c", &[Outcome::Exit(3)]),
        steps: 3,
        want: "Running | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(CrashLoopBackOff) last=terminated(3,Error) restarts=1",
    },
    Case {
        name: "exit 3 under restartPolicy OnFailure crash-loops",
        pod: ON_FAILURE,
        setup: Setup::Script("c", &[Outcome::Exit(3)]),
        steps: 3,
        want: "Running | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(CrashLoopBackOff) last=terminated(3,Error) restarts=1",
    },
    Case {
        name: "exit 0 under restartPolicy OnFailure succeeds",
        pod: ON_FAILURE,
        setup: Setup::Script("c", &[Outcome::Exit(0)]),
        steps: 2,
        want: "Succeeded | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | c:terminated(0,Completed)",
    },
    Case {
        name: "OOM-killed under restartPolicy Never",
        pod: NEVER,
        setup: Setup::Script("c", &[Outcome::OomKilled]),
        steps: 2,
        want: "Failed | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | c:terminated(137,OOMKilled)",
    },
    Case {
        name: "start failure waits in RunContainerError",
        pod: ONE,
        setup: Setup::Script("c", &[Outcome::FailStart(String::new())]),
        steps: 1,
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=True | qos=BestEffort | c:waiting(RunContainerError)",
    },
    Case {
        name: "init container running",
        pod: WITH_INIT,
        setup: Setup::Script("i", &[Outcome::Run]),
        steps: 2,
        // Kubelet reports a running init container as not ready; this node says ready.
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=False(ContainersNotInitialized) | qos=BestEffort | init i:running ready | c:waiting(PodInitializing)",
    },
    Case {
        name: "init container failed under restartPolicy Never",
        pod: WITH_INIT,
        setup: Setup::Script("i", &[Outcome::Exit(1)]),
        steps: 2,
        // Kubelet reports Initialized=False and the container waiting in PodInitializing.
        want: "Failed | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | init i:terminated(1,Error) | c:waiting(ContainerCreating)",
    },
    Case {
        name: "init container failing under restartPolicy Always crash-loops",
        pod: WITH_INIT_ALWAYS,
        setup: Setup::Script("i", &[Outcome::Exit(1)]),
        steps: 3,
        want: "Pending | Ready=False(ContainersNotReady) | Initialized=False(ContainersNotInitialized) | qos=BestEffort | init i:waiting(CrashLoopBackOff) last=terminated(1,Error) restarts=1 | c:waiting(PodInitializing)",
    },
    Case {
        name: "init container done, container running",
        pod: WITH_INIT,
        setup: Setup::Script("i", &[Outcome::Exit(0)]),
        steps: 3,
        want: "Running | Ready=True | Initialized=True | qos=BestEffort | init i:terminated(0,Completed) | c:running ready",
    },
    Case {
        name: "terminating",
        pod: ONE,
        setup: Setup::Terminating,
        steps: 1,
        want: "Running | Ready=False(PodTerminating) | Initialized=True | qos=BestEffort | c:running",
    },
    Case {
        name: "guaranteed pod keeps the class the API server gave it",
        pod: "spec: {containers: [{name: c, image: app:1.0, resources: {limits: {cpu: 100m, memory: 32Mi}}}]}\nstatus: {qosClass: Guaranteed}",
        setup: Setup::Nothing,
        steps: 1,
        want: "Running | Ready=True | Initialized=True | qos=Guaranteed | c:running ready",
    },
];

#[tokio::test]
async fn status_table() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut h = harness(case.pod);
        match case.setup {
            Setup::Nothing | Setup::Terminating => {}
            Setup::Script(name, outcomes) => h.rt.script(name, outcomes.iter().cloned()),
            Setup::FailPull | Setup::FailPullTwice => {
                h.images.fail_pull("app:1.0", Some("nothing here"))
            }
            Setup::Unhealthy | Setup::HealthyProbe => {}
            Setup::FailSandbox => h.rt.fail_sandbox(Some("no room")),
        }
        h.steps(case.steps).await;
        match case.setup {
            Setup::FailPullTwice => {
                h.elapse_backoff();
                h.steps(1).await;
            }
            Setup::Unhealthy | Setup::HealthyProbe => {
                // Created and started by now: flip its health, then the probe runs.
                let healthy = matches!(case.setup, Setup::HealthyProbe);
                h.rt.fake_pod("uid-1")
                    .expect("the pod")
                    .set_healthy("c", healthy)
                    .expect("the container");
                h.steps(1).await;
            }
            Setup::Terminating => h.worker.begin_terminating(),
            _ => {}
        }
        let got = summary(&h.status());
        if got != case.want {
            failures.push(format!(
                "{}:\n   got: {got}\n  want: {}",
                case.name, case.want
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The API server owns `status.qosClass` (it counts a zero request as unset: BestEffort); the
/// node once recomputed it with other rules and flipped this pod to Burstable.
#[tokio::test]
async fn qos_class_of_zero_request_pod_does_not_flip() {
    let zero = "spec: {containers: [{name: c, image: app:1.0, resources: {requests: {cpu: '0'}}}]}";
    let mut h = harness(&format!("{zero}\nstatus: {{qosClass: BestEffort}}"));
    h.steps(1).await;
    assert_eq!(h.status().qos_class.as_deref(), Some("BestEffort"));
    // Without a class from the API server, the node computes the same one.
    let mut h = harness(zero);
    h.steps(1).await;
    assert_eq!(h.status().qos_class.as_deref(), Some("BestEffort"));
}

#[tokio::test]
async fn status_is_a_pure_function_of_the_snapshot() {
    let mut h = harness(ONE);
    h.steps(1).await;
    let now = jiff::Timestamp::now();
    let a = pod_status(&h.worker.snapshot("wasm", now));
    let b = pod_status(&h.worker.snapshot("wasm", now));
    assert_eq!(a, b);
    let id = a.container_statuses.as_ref().expect("statuses")[0]
        .container_id
        .clone();
    assert_eq!(id.as_deref(), Some("wasm://uid-1/c"));
    // Conditions keep their transition time while their status holds.
    let first = h.status();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = h.status();
    assert_eq!(first.conditions, second.conditions);
}

#[tokio::test]
async fn crash_loop_records_back_off_events_and_restarts_after_it() {
    let mut h = harness(ONE);
    h.rt.script("c", [Outcome::Exit(3), Outcome::Exit(3), Outcome::Run]);
    h.steps(3).await;
    assert!(h.event_reasons().iter().any(|r| r == "BackOff"));
    h.elapse_backoff();
    h.steps(1).await;
    assert_eq!(
        summary(&h.status()),
        "Running | Ready=True | Initialized=True | qos=BestEffort | c:running last=terminated(3,Error) ready restarts=2"
    );
    let pod = h.rt.fake_pod("uid-1").expect("the pod");
    assert_eq!(pod.runs("c"), 3);
}

#[tokio::test]
async fn the_runtime_class_handler_picks_the_backend() {
    let oci = FakeRuntime::with_handler("oci", Network::new());
    let pod = "spec: {runtimeClassName: linux, containers: [{name: c, image: app:1.0}]}";
    let mut h = harness_with(pod, &[("linux", "oci")], Some(oci.clone()));
    h.steps(1).await;
    assert!(h.rt.calls().is_empty(), "{:?}", h.rt.calls());
    assert!(oci.calls().contains(&"start_container uid-1/c".to_string()));
    let st = h.status();
    let c = &st.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(c.container_id.as_deref(), Some("oci://uid-1/c"));
}

#[tokio::test]
async fn a_handler_this_node_does_not_run_waits_with_an_event() {
    let pod = "spec: {runtimeClassName: linux, containers: [{name: c, image: app:1.0}]}";
    let mut h = harness_with(pod, &[("linux", "oci")], None);
    h.steps(1).await;
    let st = h.status();
    let w = st.container_statuses.as_ref().expect("statuses")[0]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .expect("waiting");
    assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    assert!(
        w.message
            .as_deref()
            .is_some_and(|m| m.contains("no runtime for \"oci\"") && m.contains("\"wasm\"")),
        "{w:?}"
    );
    assert_eq!(h.event_reasons(), ["FailedCreatePodSandBox"]);
    assert!(h.rt.calls().is_empty());
}

#[test]
fn backoff_doubles_to_five_minutes() {
    let mut d = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..8 {
        d = next_backoff(d);
        seen.push(d.as_secs());
    }
    assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
    assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
    assert_eq!(humanize(Duration::from_secs(20)), "20s");
}

#[tokio::test]
async fn a_deleted_pod_reports_terminating_stops_and_is_deleted() {
    let h = harness(
        "spec: {terminationGracePeriodSeconds: 1, containers: [{name: c, image: app:1.0}]}",
    );
    let Harness {
        rt, worker, seen, ..
    } = h;
    let pod = worker.pod.clone();
    let (tx, rx) = watch::channel(pod.clone());
    let task = tokio::spawn(worker.run(rx));
    // The worker starts the pod first (its own copy is not deleted), then sees the deletion.
    let mut deleted = pod;
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    tx.send_replace(deleted);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the worker finishes")
        .expect("the worker task");
    let calls = rt.calls();
    for want in [
        "start_container uid-1/c",
        "stop_container uid-1/c",
        "remove uid-1",
    ] {
        assert!(calls.iter().any(|c| c == want), "no {want} in {calls:?}");
    }
    let seen = seen.lock().unwrap().clone();
    let statuses: Vec<&Value> = seen
        .iter()
        .filter(|(m, p, _)| m == "PATCH" && p.ends_with("/pods/p/status"))
        .map(|(_, _, b)| &b["status"])
        .collect();
    let ready_reasons: Vec<&str> = statuses
        .iter()
        .filter_map(|s| {
            s["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?["reason"]
                .as_str()
        })
        .collect();
    assert!(
        ready_reasons.contains(&"PodTerminating"),
        "Ready reasons written: {ready_reasons:?}"
    );
    assert!(
        seen.iter()
            .any(|(m, p, _)| m == "DELETE" && p == "/api/v1/namespaces/default/pods/p"),
        "no DELETE in {seen:?}"
    );
    let reasons: Vec<String> = seen
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/events"))
        .filter_map(|(_, _, b)| b["reason"].as_str().map(str::to_string))
        .collect();
    assert!(reasons.iter().any(|r| r == "Killing"), "{reasons:?}");
}

/// A refused final delete is tried again until the pod is gone: the pod must not stay
/// Terminating with no worker left to finish it. On tokio's paused clock, so its two retries
/// take no real time.
#[tokio::test(start_paused = true)]
async fn a_refused_final_delete_is_retried() {
    let h = harness(
        "metadata: {name: refused, deletionTimestamp: '2026-01-01T00:00:00Z'}\n\
         spec: {terminationGracePeriodSeconds: 1, containers: [{name: c, image: app:1.0}]}",
    );
    let Harness { worker, seen, .. } = h;
    let (_tx, rx) = watch::channel(worker.pod.clone());
    tokio::time::timeout(Duration::from_secs(60), worker.run(rx))
        .await
        .expect("the worker finishes");
    let deletes = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == "DELETE" && p == "/api/v1/namespaces/default/pods/refused")
        .count();
    // Two refused, the third answered (404: the scripted server holds no pods).
    assert_eq!(deletes, 3);
}

/// A pod whose sandbox the backend re-adopted after a node restart, with `c` still running:
/// not re-created or restarted, its IP kept (and never handed to another pod), its restart
/// count kept from the Pod's status.
#[tokio::test]
async fn an_adopted_running_container_keeps_running_and_its_ip() {
    let pod = "spec: {restartPolicy: Always, initContainers: [{name: i, image: init:1.0}], \
               containers: [{name: c, image: app:1.0}]}\n\
               status: {podIP: 10.88.0.2, conditions: [{type: Initialized, status: 'True'}], \
               containerStatuses: [{name: c, image: app:1.0, imageID: '', ready: true, restartCount: 2, \
               lastState: {terminated: {exitCode: 7, reason: Error, finishedAt: '2026-01-01T00:00:00Z'}}}]}";
    let mut h = harness(pod);
    let ip: IpAddr = "10.88.0.77".parse().expect("ip");
    let started_at = jiff::Timestamp::now();
    h.rt.adopted_pod(
        "uid-1",
        Some(ip),
        &[("c", ContainerState::Running { started_at })],
    )
    .expect("seeded");
    h.worker.ctx.reserve_adopted();
    // Another pod asking for the adopted address gets another one.
    assert_ne!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
    h.steps(2).await;
    let calls = h.rt.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("start_container")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"create_container uid-1/c".to_string()),
        "{calls:?}"
    );
    // The init container ran before the restart: not again.
    assert!(!calls.iter().any(|c| c.ends_with("/i")), "{calls:?}");
    let pod = h.rt.fake_pod("uid-1").expect("the pod");
    assert_eq!(pod.runs("c"), 1);
    let st = h.status();
    assert_eq!(st.pod_ip.as_deref(), Some("10.88.0.77"));
    let c = &st.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(state_str(c.state.as_ref().expect("state")), "running");
    assert_eq!(c.restart_count, 2);
    // The run before is still shown.
    assert_eq!(
        state_str(c.last_state.as_ref().expect("last state")),
        "terminated(7,Error)"
    );
    assert!(
        !h.event_reasons()
            .iter()
            .any(|r| r == "Created" || r == "Started")
    );
}

/// A pod the status shows running whose sandbox is gone after a node restart (a wasm pod: it
/// ran inside the node process): its container starts again, counted as a restart, the lost
/// run shown as the last state.
#[tokio::test]
async fn a_run_lost_with_the_node_counts_as_a_restart() {
    let pod = "spec: {restartPolicy: Always, containers: [{name: c, image: app:1.0}]}\n\
               status: {podIP: 10.88.0.2, conditions: [{type: Initialized, status: 'True'}], \
               containerStatuses: [{name: c, image: app:1.0, imageID: '', ready: true, restartCount: 1, \
               state: {running: {startedAt: '2026-01-01T00:00:00Z'}}}]}";
    let mut h = harness(pod);
    h.steps(3).await;
    let pod = h.rt.fake_pod("uid-1").expect("the pod");
    assert_eq!(pod.runs("c"), 1);
    let st = h.status();
    let c = &st.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(state_str(c.state.as_ref().expect("state")), "running");
    assert_eq!(c.restart_count, 2);
    assert_eq!(
        state_str(c.last_state.as_ref().expect("last state")),
        "terminated(137,Error)"
    );
}

/// A sandbox re-adopted after a node restart holds files from before it (a token since
/// replaced): its file-set volumes are written again.
#[tokio::test]
async fn an_adopted_sandbox_gets_its_file_volumes_written_again() {
    let pod = "spec: {containers: [{name: c, image: app:1.0}], volumes: [{name: info, \
               downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}]}";
    let mut h = harness(pod);
    let started_at = jiff::Timestamp::now();
    h.rt.adopted_pod(
        "uid-1",
        Some("10.88.0.77".parse().expect("ip")),
        &[("c", ContainerState::Running { started_at })],
    )
    .expect("seeded");
    h.worker.ctx.reserve_adopted();
    h.steps(1).await;
    let files =
        h.rt.fake_pod("uid-1")
            .expect("the pod")
            .files("info")
            .expect("the volume was written");
    assert_eq!(&files["name"].data[..], b"p");
}

/// A pod that finished gives its network back once its terminal status is written, as kubelet
/// stops a terminal pod's sandbox: its IP returns to the range (a node's range would otherwise
/// fill up with finished Job pods) but stays in its status; the sandbox, with its logs, stays
/// until the pod is deleted, and deleting it frees nothing another pod holds.
#[tokio::test]
async fn a_finished_pod_gives_its_ip_back_and_keeps_its_logs_until_deleted() {
    let mut h = harness(NEVER);
    h.rt.script("c", [Outcome::Run]);
    h.steps(2).await;
    h.worker.report().await;
    let ip: IpAddr = "10.88.0.2".parse().expect("ip");
    assert_eq!(h.worker.ip, Some(ip));
    // Running: nothing is released.
    h.worker.release_network_when_finished().await;
    assert!(
        !h.rt
            .calls()
            .iter()
            .any(|c| c.starts_with("release_network"))
    );
    assert_ne!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));

    let sb = h.rt.fake_pod("uid-1").expect("the pod");
    sb.exit("c", 0).expect("exits");
    h.steps(1).await;
    h.worker.report().await;
    h.worker.release_network_when_finished().await;
    assert!(
        h.rt.calls().contains(&"release_network uid-1".to_string()),
        "{:?}",
        h.rt.calls()
    );
    assert_eq!(sb.ip(), None);
    let st = h.status();
    assert_eq!(st.phase.as_deref(), Some("Succeeded"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.88.0.2"));
    let sandbox_cond = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodReadyToStartContainers")
        .map(|c| c.status.clone());
    assert_eq!(sandbox_cond.as_deref(), Some("False"));
    // The logs are still served: the sandbox is still the pod's.
    assert!(h.worker.ctx.sandbox("default", "p").is_some());
    // Another pod may have the address now, and keeps it when this one is deleted.
    assert_eq!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
    h.worker.release_network_when_finished().await;
    h.worker.stop(Duration::ZERO).await;
    assert!(h.rt.calls().contains(&"remove uid-1".to_string()));
    assert_eq!(
        h.rt.calls()
            .iter()
            .filter(|c| c.starts_with("release_network"))
            .count(),
        1
    );
    assert_ne!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
    assert!(h.worker.ctx.sandbox("default", "p").is_none());
}

/// After a node restart, the sandbox a backend re-adopted for a pod that had already finished
/// is the pod's again: its logs are served, its network is released (its IP free for another
/// pod), and it is removed when the pod is deleted. It used to be left behind until the next
/// node restart.
#[tokio::test]
async fn the_adopted_sandbox_of_a_finished_pod_is_released_and_removed_with_it() {
    let pod = "spec: {restartPolicy: Never, containers: [{name: c, image: app:1.0}]}\n\
               status: {phase: Succeeded, podIP: 10.88.0.77, containerStatuses: [{name: c, \
               image: app:1.0, imageID: '', ready: false, restartCount: 0, \
               state: {terminated: {exitCode: 0, reason: Completed}}}]}";
    let mut h = harness(pod);
    let ip: IpAddr = "10.88.0.77".parse().expect("ip");
    let ended = ContainerState::Terminated {
        exit_code: 0,
        reason: skiff_runtime::TerminationReason::Completed,
        message: String::new(),
        started_at: jiff::Timestamp::UNIX_EPOCH,
        finished_at: jiff::Timestamp::now(),
    };
    h.rt.adopted_pod("uid-1", Some(ip), &[("c", ended)])
        .expect("seeded");
    h.worker.ctx.reserve_adopted();
    assert_ne!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
    h.worker.adopt_finished().await;
    assert!(h.rt.calls().contains(&"release_network uid-1".to_string()));
    assert!(h.worker.ctx.sandbox("default", "p").is_some());
    assert_eq!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
    h.worker.stop(Duration::ZERO).await;
    assert!(h.rt.calls().contains(&"remove uid-1".to_string()));
    assert!(h.rt.fake_pod("uid-1").is_none());
    // The address another pod took stays taken.
    assert_ne!(h.worker.ctx.allocate_ip(Some(ip), "other"), Some(ip));
}

/// A container that ended while the node was down reports its real exit code, and restarts
/// by policy.
#[tokio::test]
async fn an_adopted_terminated_container_reports_its_exit_and_restarts_by_policy() {
    let ended = |code: i32| ContainerState::Terminated {
        exit_code: code,
        reason: skiff_runtime::TerminationReason::Error,
        message: String::new(),
        started_at: jiff::Timestamp::UNIX_EPOCH,
        finished_at: jiff::Timestamp::now(),
    };
    let mut h = harness(NEVER);
    h.rt.adopted_pod(
        "uid-1",
        Some("10.88.0.9".parse().expect("ip")),
        &[("c", ended(3))],
    )
    .expect("seeded");
    h.steps(2).await;
    assert!(
        !h.rt
            .calls()
            .iter()
            .any(|c| c.starts_with("start_container"))
    );
    assert_eq!(
        summary(&h.status()),
        "Failed | Ready=False(PodCompleted) | Initialized=True | qos=BestEffort | c:terminated(3,Error)"
    );

    let mut h = harness(ONE);
    h.rt.adopted_pod("uid-1", None, &[("c", ended(1))])
        .expect("seeded");
    h.steps(2).await;
    assert!(
        h.rt.calls()
            .contains(&"start_container uid-1/c".to_string())
    );
    assert_eq!(
        summary(&h.status()),
        "Running | Ready=True | Initialized=True | qos=BestEffort | c:running last=terminated(1,Error) ready restarts=1"
    );
}

/// After the first pod list, sandboxes of pods no longer assigned to this node are removed
/// and their IPs freed; assigned ones stay, and so does one made for a pod bound after the list.
#[tokio::test]
async fn orphaned_sandboxes_are_removed_after_the_first_list() {
    let h = harness(ONE);
    let kept: IpAddr = "10.88.0.5".parse().expect("ip");
    let orphan: IpAddr = "10.88.0.6".parse().expect("ip");
    let running = ContainerState::Running {
        started_at: jiff::Timestamp::now(),
    };
    h.rt.adopted_pod("uid-1", Some(kept), &[("c", running.clone())])
        .expect("seeded");
    h.rt.adopted_pod("gone", Some(orphan), &[("c", running)])
        .expect("seeded");
    let ctx = h.worker.ctx.clone();
    ctx.reserve_adopted();
    let assigned = std::collections::HashSet::from(["uid-1".to_string()]);
    let found = crate::orphans(&ctx, &assigned);
    // A pod bound here after the list gets its sandbox before the removal runs: it is no
    // orphan, whatever the order the tasks run in.
    let late: IpAddr = "10.88.0.7".parse().expect("ip");
    h.rt.adopted_pod(
        "late",
        Some(late),
        &[(
            "c",
            ContainerState::Running {
                started_at: jiff::Timestamp::now(),
            },
        )],
    )
    .expect("seeded");
    crate::remove_orphans(&ctx, found).await;
    assert_eq!(h.rt.pods(), vec!["late".to_string(), "uid-1".to_string()]);
    assert!(!h.rt.calls().contains(&"remove late".to_string()));
    assert!(h.rt.calls().contains(&"remove gone".to_string()));
    assert!(!h.rt.calls().contains(&"remove uid-1".to_string()));
    // The orphan's address is free again, the kept one is not.
    assert_eq!(ctx.allocate_ip(Some(orphan), "other"), Some(orphan));
    assert_ne!(ctx.allocate_ip(Some(kept), "other"), Some(kept));
}

/// The bridge services follow the local wasm pods: IP and container ports while the sandbox
/// is up, gone once it stops; pods of other backends are not wasm pods.
#[tokio::test]
async fn wasm_pods_are_published_while_their_sandbox_is_up() {
    let mut h = harness(
        "spec: {containers: [{name: c, image: app:1.0, ports: [{containerPort: 8080}, \
         {containerPort: 53, protocol: UDP}]}]}",
    );
    let rx = h.worker.ctx.services.wasm_pods();
    h.steps(1).await;
    let ip = h.worker.ip.expect("an ip");
    let IpAddr::V4(v4) = ip else {
        panic!("an IPv4 pod IP")
    };
    assert_eq!(
        rx.borrow().get(&v4).cloned(),
        Some(std::collections::BTreeSet::from([8080]))
    );
    h.worker.stop(Duration::from_secs(1)).await;
    assert!(rx.borrow().is_empty());

    let oci = FakeRuntime::with_handler("oci", Network::new());
    let pod = "spec: {runtimeClassName: linux, containers: [{name: c, image: app:1.0, ports: [{containerPort: 80}]}]}";
    let mut h = harness_with(pod, &[("linux", "oci")], Some(oci));
    let rx = h.worker.ctx.services.wasm_pods();
    h.steps(1).await;
    assert!(h.worker.ip.is_some());
    assert!(rx.borrow().is_empty());
}

/// An eviction ordered for a pod that is being deleted anyway is answered once the pod has
/// stopped: the eviction manager does not wait out its cleanup timeout for it.
#[tokio::test(start_paused = true)]
async fn an_eviction_ordered_during_a_deletion_is_answered_when_the_pod_stops() {
    let mut h = harness(
        "spec: {terminationGracePeriodSeconds: 1, containers: [{name: c, image: app:1.0}]}",
    );
    h.steps(2).await;
    h.worker.pod.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    let (done, stopped) = tokio::sync::oneshot::channel();
    h.worker.ctx.eviction.post(
        "uid-1",
        crate::eviction::Order {
            message: "low on memory".into(),
            grace: Duration::ZERO,
            done: Some(done),
        },
    );
    let Harness { worker, rt, .. } = h;
    let (_tx, rx) = watch::channel(worker.pod.clone());
    tokio::time::timeout(Duration::from_secs(10), worker.run(rx))
        .await
        .expect("the worker finishes");
    let told = tokio::time::timeout(Duration::from_secs(60), stopped).await;
    assert!(matches!(told, Ok(Ok(()))), "the manager is told: {told:?}");
    assert!(rt.pods().is_empty());
}

#[tokio::test]
async fn an_evicted_pod_is_stopped_and_failed_with_kubelets_reason() {
    let mut h = harness(ONE);
    h.steps(2).await;
    assert_eq!(h.status().phase.as_deref(), Some("Running"));
    let (done, stopped) = tokio::sync::oneshot::channel();
    let message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: \
                   10Mi. Container c was using 300Mi, request is 0, has larger consumption of \
                   memory. ";
    h.worker.ctx.eviction.post(
        "uid-1",
        crate::eviction::Order {
            message: message.into(),
            grace: Duration::ZERO,
            done: Some(done),
        },
    );
    h.worker.take_eviction().await;
    stopped.await.expect("told the manager");
    assert!(h.worker.sandbox.is_none(), "the sandbox is removed");
    assert!(h.rt.pods().is_empty());
    let st = h.status();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    assert_eq!(st.message.as_deref(), Some(message));
    let disruption = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(disruption.status, "True");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    assert!(h.event_reasons().iter().any(|r| r == "Evicted"));
    // The written status says so too, and the pod does not start again.
    let patched = h
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))
        .map(|(_, _, b)| b["status"]["reason"].clone());
    assert_eq!(patched, Some(json!("Evicted")));
    h.worker.take_eviction().await;
    assert_eq!(h.status().phase.as_deref(), Some("Failed"));
}

#[tokio::test]
async fn under_memory_pressure_a_new_besteffort_pod_is_refused() {
    let mut h = harness(ONE);
    h.worker.ctx.eviction.set_memory_pressure(true);
    h.worker.admit().await;
    let st = h.status();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        st.message.as_deref(),
        Some("The node had condition: [MemoryPressure]. ")
    );
    // A pod with requests, or one tolerating the taint, is admitted.
    let mut h = harness(
        "spec: {containers: [{name: c, image: app:1.0, resources: {requests: {memory: 64Mi}}}]}",
    );
    h.worker.ctx.eviction.set_memory_pressure(true);
    h.worker.admit().await;
    assert!(h.worker.evicted.is_none());
    let mut h = harness(
        "spec: {tolerations: [{key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}], containers: [{name: c, image: app:1.0}]}",
    );
    h.worker.ctx.eviction.set_memory_pressure(true);
    h.worker.admit().await;
    assert!(h.worker.evicted.is_none());
}

/// A refused status write is tried again `RETRY` later, not at the next change or the 30 s
/// tick; a written one schedules nothing.
#[tokio::test]
async fn a_refused_status_write_is_retried_soon() {
    let mut h =
        harness("metadata: {name: refused}\nspec: {containers: [{name: c, image: app:1.0}]}");
    h.steps(1).await;
    h.worker.report().await;
    assert!(h.worker.last_status.is_none());
    let asked = h.worker.status_retry_at.expect("a retry is scheduled");
    assert!(h.worker.next_deadline() <= asked);
    let patches = |h: &Harness| {
        h.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == "PATCH" && p.ends_with("/pods/refused/status"))
            .count()
    };
    let before = patches(&h);
    h.worker.report().await;
    assert_eq!(
        patches(&h),
        before + 1,
        "the unchanged status is sent again"
    );

    let mut h = harness(ONE);
    h.steps(1).await;
    h.worker.report().await;
    assert!(h.worker.last_status.is_some());
    assert_eq!(h.worker.status_retry_at, None);
}
