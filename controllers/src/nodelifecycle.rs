//! Node lifecycle: a node whose Lease (and status heartbeat) is older than the grace period is
//! marked Ready=Unknown and tainted `node.kubernetes.io/unreachable`; pods on NoExecute-tainted
//! nodes are evicted once their toleration runs out, so their owners recreate them elsewhere
//! (they stay Terminating until their node comes back, as on Kubernetes); pods of deleted or
//! out-of-service nodes are garbage collected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::informer::Synced;
use crate::{Error, util};

/// Taint of a node that stopped heartbeating.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node reporting Ready=False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Shared state of the node lifecycle controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every node.
    pub nodes: Store<Node>,
    /// Every lease (node leases live in kube-node-lease).
    pub leases: Store<Lease>,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Heartbeat age after which a node is Unknown.
    pub grace: Duration,
    /// Default toleration of unreachable/not-ready taints.
    pub eviction_timeout: Duration,
}

fn last_heartbeat(node: &Node, leases: &HashMap<String, Arc<Lease>>) -> i64 {
    let lease = leases
        .get(&node.name_any())
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let status = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let created = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    lease.max(status).max(created)
}

/// Node conditions and the NoSchedule taint each puts on the node while True.
const CONDITION_TAINTS: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];

fn condition_status<'a>(node: &'a Node, kind: &str) -> &'a str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

async fn set_taints(api: &Api<Node>, node: &Node, taints: Vec<Taint>) -> Result<(), Error> {
    let patch = serde_json::json!({"spec": {"taints": taints}});
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

/// One pass over every node and the pods on tainted nodes.
pub async fn sweep(ctx: &Ctx) -> Result<(), Error> {
    let now = jiff::Timestamp::now();
    let leases: HashMap<String, Arc<Lease>> = ctx
        .leases
        .state()
        .into_iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some("kube-node-lease"))
        .map(|l| (l.name_any(), l))
        .collect();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut noexecute: HashMap<String, Vec<Taint>> = HashMap::new();
    for node in ctx.nodes.state() {
        let name = node.name_any();
        let age = now.as_second() - last_heartbeat(&node, &leases);
        let stale = age > ctx.grace.as_secs() as i64;
        let mut taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let before = taints.clone();
        if stale && ready_status(&node) != "Unknown" {
            let conds: Vec<serde_json::Value> = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(util::now());
                    serde_json::to_value(c).unwrap_or_default()
                })
                .collect();
            let conds = if conds.is_empty() {
                vec![serde_json::json!({"type": "Ready", "status": "Unknown",
                    "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": util::now()})]
            } else {
                conds
            };
            tracing::info!(node = %name, age, "node stopped heartbeating; marking Unknown");
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"conditions": conds}})),
            )
            .await?;
        }
        let want_unreachable = stale;
        let want_not_ready = !stale && ready_status(&node) == "False";
        for (key, want) in [(UNREACHABLE, want_unreachable), (NOT_READY, want_not_ready)] {
            for effect in ["NoSchedule", "NoExecute"] {
                let has = taints.iter().any(|t| t.key == key && t.effect == effect);
                if want && !has {
                    taints.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added: Some(util::now()),
                        value: None,
                    });
                } else if !want && has {
                    taints.retain(|t| !(t.key == key && t.effect == effect));
                }
            }
        }
        // Taints by condition, as Kubernetes' TaintNodesByCondition: a node reporting
        // pressure gets that pressure's NoSchedule taint while it does.
        for (condition, key) in CONDITION_TAINTS {
            let want = !stale && condition_status(&node, condition) == "True";
            let has = taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule");
            if want && !has {
                taints.push(Taint {
                    key: key.into(),
                    effect: "NoSchedule".into(),
                    time_added: None,
                    value: None,
                });
            } else if !want && has {
                taints.retain(|t| !(t.key == key && t.effect == "NoSchedule"));
            }
        }
        if taints != before {
            set_taints(&api, &node, taints.clone()).await?;
        }
        let ne: Vec<Taint> = taints
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if !ne.is_empty() {
            noexecute.insert(name, ne);
        }
    }
    if noexecute.is_empty() {
        return Ok(());
    }
    for pod in ctx.pods.state() {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
            continue;
        };
        let Some(taints) = noexecute.get(node) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() || util::pod_terminal(&pod) {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let mut evict_at: Option<i64> = None;
        for taint in taints {
            let added = taint
                .time_added
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(now.as_second());
            let tol = tolerations.iter().find(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoExecute")
                    && match t.operator.as_deref().unwrap_or("Equal") {
                        "Exists" => t
                            .key
                            .as_deref()
                            .is_none_or(|k| k.is_empty() || k == taint.key),
                        _ => t.key.as_deref() == Some(taint.key.as_str()),
                    }
            });
            let default = ctx.eviction_timeout.as_secs() as i64;
            let seconds = match tol {
                // The 300 s tolerations admission adds stand for the configured eviction timeout.
                Some(t)
                    if (taint.key == UNREACHABLE || taint.key == NOT_READY)
                        && t.toleration_seconds == Some(300) =>
                {
                    Some(default)
                }
                Some(t) => t.toleration_seconds,
                None if taint.key == UNREACHABLE || taint.key == NOT_READY => Some(default),
                None => Some(0),
            };
            if let Some(s) = seconds {
                let at = added + s.max(0);
                evict_at = Some(evict_at.map_or(at, |e: i64| e.min(at)));
            }
        }
        if evict_at.is_some_and(|at| at <= now.as_second()) {
            let ns = pod.namespace().unwrap_or_default();
            tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), %node, "evicting pod from tainted node");
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Taint an administrator puts on a node known to be shut down, so its pods are removed at once.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Pod garbage collection, as kube-controller-manager's podgc does it: pods bound to a node that
/// no longer exists (confirmed with a live read), terminating pods that were never scheduled, and
/// terminating pods on a node tainted `node.kubernetes.io/out-of-service` that is not Ready are
/// deleted at once (grace period 0): no kubelet is left to finish them.
pub async fn collect_pods(ctx: &Ctx) -> Result<(), Error> {
    let nodes: HashMap<String, Arc<Node>> = ctx
        .nodes
        .state()
        .into_iter()
        .map(|n| (n.name_any(), n))
        .collect();
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    let mut confirmed_gone: HashMap<String, bool> = HashMap::new();
    for pod in ctx.pods.state() {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let why = match node {
            None if terminating => Some("terminating pod was never scheduled"),
            None => None,
            Some(n) => match nodes.get(&n) {
                Some(node) => {
                    let out_of_service = node
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| {
                            ts.iter()
                                .any(|t| t.key == OUT_OF_SERVICE && t.effect == "NoExecute")
                        });
                    (terminating && out_of_service && ready_status(node) != "True")
                        .then_some("node is out of service")
                }
                None => {
                    let gone = match confirmed_gone.get(&n) {
                        Some(g) => *g,
                        None => {
                            let g = matches!(node_api.get_opt(&n).await, Ok(None));
                            confirmed_gone.insert(n.clone(), g);
                            g
                        }
                    };
                    gone.then_some("node no longer exists")
                }
            },
        };
        let Some(why) = why else { continue };
        let ns = pod.namespace().unwrap_or_default();
        tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), reason = why, "force-deleting pod");
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs the node lifecycle controller: a sweep every second.
pub async fn run(ctx: Arc<Ctx>, synced: Vec<Synced>) {
    Synced::all(&synced).await;
    tracing::info!("nodelifecycle controller synced");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&ctx).await {
            tracing::debug!(error = %e, "node lifecycle sweep");
        }
        if let Err(e) = collect_pods(&ctx).await {
            tracing::debug!(error = %e, "pod garbage collection");
        }
    }
}
