//! Simulated nodes, as kwok does: Node objects with Leases kept fresh, and every pod bound to
//! them marked Running and Ready through the status subresource. Used by tests and benchmarks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event as WEvent};
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use skiff_controllers::{Error, util};
use skiff_meta::names::{FAKE_EXIT_CODE, FAKE_NODE_LABEL};

/// Annotation making a pod on a simulated node finish with this exit code (0 = Succeeded).
pub const FAKE_EXIT: &str = FAKE_EXIT_CODE;

/// One simulated node's shape.
#[derive(Clone, Debug)]
pub struct FakeNodeSpec {
    /// Node name.
    pub name: String,
    /// Value of `topology.kubernetes.io/zone`.
    pub zone: String,
    /// Allocatable CPU, e.g. "32".
    pub cpu: String,
    /// Allocatable memory, e.g. "64Gi".
    pub memory: String,
    /// Allocatable pod count.
    pub pods: u32,
}

impl FakeNodeSpec {
    /// A node named `name` in `zone` with 32 CPUs, 64Gi and room for 110 pods.
    pub fn new(name: &str, zone: &str) -> FakeNodeSpec {
        FakeNodeSpec {
            name: name.into(),
            zone: zone.into(),
            cpu: "32".into(),
            memory: "64Gi".into(),
            pods: 110,
        }
    }
}

/// Simulated nodes and the task keeping them alive; pods bound to them become Ready.
pub struct FakeNodes {
    client: Client,
    names: Arc<Mutex<HashSet<String>>>,
    paused: Arc<Mutex<HashSet<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

fn node_object(spec: &FakeNodeSpec) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(
                [
                    ("kubernetes.io/hostname".to_string(), spec.name.clone()),
                    (scheduler_zone(), spec.zone.clone()),
                    (FAKE_NODE_LABEL.to_string(), "true".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(resources(spec)),
            capacity: Some(resources(spec)),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("simulated node is ready".into()),
                last_heartbeat_time: Some(util::now()),
                last_transition_time: Some(util::now()),
            }]),
            ..Default::default()
        }),
    }
}

fn scheduler_zone() -> String {
    skiff_controllers::scheduler::ZONE_LABEL.to_string()
}

fn resources(spec: &FakeNodeSpec) -> std::collections::BTreeMap<String, Quantity> {
    [
        ("cpu".to_string(), Quantity(spec.cpu.clone())),
        ("memory".to_string(), Quantity(spec.memory.clone())),
        ("pods".to_string(), Quantity(spec.pods.to_string())),
    ]
    .into()
}

impl FakeNodes {
    /// Starts the pod task: every pod bound to a fake node is marked Running and Ready; pods
    /// being deleted on fake nodes are finished (deleted with grace period 0).
    pub async fn start(client: Client) -> FakeNodes {
        Self::start_with_renewal(client, Duration::from_secs(10)).await
    }

    /// As `start`, renewing Leases every `renew` instead of every 10 s.
    pub async fn start_with_renewal(client: Client, renew: Duration) -> FakeNodes {
        let names: Arc<Mutex<HashSet<String>>> = Default::default();
        let paused: Arc<Mutex<HashSet<String>>> = Default::default();
        let tasks = vec![
            tokio::spawn(run_pods(client.clone(), names.clone(), paused.clone())),
            tokio::spawn(renew_leases(
                client.clone(),
                names.clone(),
                paused.clone(),
                renew,
            )),
        ];
        FakeNodes {
            client,
            names,
            paused,
            tasks,
        }
    }

    /// Registers nodes (and their Leases); returns once they exist.
    pub async fn add(&self, nodes: &[FakeNodeSpec]) -> Result<(), Error> {
        // Known before the Node exists, so pods placed on it at once are run.
        self.names
            .lock()
            .await
            .extend(nodes.iter().map(|n| n.name.clone()));
        let api: Api<Node> = Api::all(self.client.clone());
        let results = futures::stream::iter(nodes.iter().cloned())
            .map(|spec| {
                let api = api.clone();
                let client = self.client.clone();
                async move {
                    match api
                        .create(&PostParams::default(), &node_object(&spec))
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => return Err(Error::from(e)),
                    }
                    // The status subresource carries allocatable and conditions.
                    let status = serde_json::json!({"status": node_object(&spec).status});
                    api.patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(status))
                        .await?;
                    renew(&client, &spec.name).await?;
                    Ok(spec.name)
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for r in results {
            r?;
        }
        Ok(())
    }

    /// Stops renewing a node's Lease and running its pods, as if its agent died.
    pub async fn kill(&self, name: &str) {
        self.paused.lock().await.insert(name.to_string());
    }

    /// Stops the simulation tasks.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn renew(client: &Client, node: &str) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some("kube-node-lease".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        }),
    };
    let pp = PatchParams::apply("skiff-fake-node").force();
    api.patch(node, &pp, &Patch::Apply(&lease)).await?;
    Ok(())
}

/// How many Lease renewals may be in flight at once, all nodes together.
const RENEWALS_IN_FLIGHT: usize = 256;

/// Renews every live node's Lease once per `every`, each node at its own offset in the
/// interval, as independent kubelets do: an even stream of renewals (500/s for 5,000 nodes at
/// 10 s), never a burst of all of them at each tick that leaves the last ones late.
async fn renew_leases(
    client: Client,
    names: Arc<Mutex<HashSet<String>>>,
    paused: Arc<Mutex<HashSet<String>>>,
    every: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(RENEWALS_IN_FLIGHT));
    // Owned by this future: aborting the task running it stops the renewals in flight.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let round = tokio::time::Instant::now();
        let live: Vec<String> = {
            let names = names.lock().await;
            let paused = paused.lock().await;
            let mut live: Vec<String> = names.difference(&paused).cloned().collect();
            live.sort();
            live
        };
        let gap = every / u32::try_from(live.len().max(1)).unwrap_or(u32::MAX);
        for (i, n) in live.into_iter().enumerate() {
            tokio::time::sleep_until(round + gap * u32::try_from(i).unwrap_or(u32::MAX)).await;
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            in_flight.spawn(async move {
                let _slot = slot;
                if let Err(e) = renew(&client, &n).await {
                    tracing::debug!(node = %n, error = %e, "renewing lease");
                }
            });
            while in_flight.try_join_next().is_some() {}
        }
        tokio::time::sleep_until(round + every).await;
    }
}

async fn run_pods(
    client: Client,
    names: Arc<Mutex<HashSet<String>>>,
    paused: Arc<Mutex<HashSet<String>>>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pod>();
    // In a set owned by this future, so the watch stops when the task running it is aborted.
    let mut watch = tokio::task::JoinSet::new();
    watch.spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default().page_size(5000)).boxed();
        loop {
            match stream.try_next().await {
                Ok(Some(WEvent::Apply(p) | WEvent::InitApply(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut set = tokio::task::JoinSet::new();
    while let Some(pod) = rx.recv().await {
        while set.try_join_next().is_some() {}
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !names.lock().await.contains(&node) || paused.lock().await.contains(&node) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let permit = sem.clone().acquire_owned().await;
            set.spawn(async move {
                let _permit = permit;
                let _ = pods
                    .delete(&name, &kube::api::DeleteParams::default().grace_period(0))
                    .await;
            });
            continue;
        }
        if util::pod_terminal(&pod) {
            continue;
        }
        let now = util::now();
        // Test hook: `skiff.dev/fake-exit-code` makes the pod finish with that code.
        if let Some(code) = pod
            .annotations()
            .get(FAKE_EXIT)
            .and_then(|c| c.parse::<i32>().ok())
        {
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            let status = serde_json::json!({"status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now,
                    "reason": "PodCompleted"}],
            }});
            let permit = sem.clone().acquire_owned().await;
            set.spawn(async move {
                let _permit = permit;
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await;
            });
            continue;
        }
        if util::pod_ready(&pod).is_some() {
            continue;
        }
        let containers: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "name": c.name, "image": c.image, "imageID": "", "ready": true,
                            "restartCount": 0, "started": true,
                            "state": {"running": {"startedAt": now}},
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }});
        let permit = sem.clone().acquire_owned().await;
        set.spawn(async move {
            let _permit = permit;
            if let Err(e) = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "marking pod ready");
            }
        });
    }
    watch.shutdown().await;
}
