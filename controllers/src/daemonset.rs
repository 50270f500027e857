//! DaemonSet controller: one pod per eligible node (nodeSelector, required node affinity,
//! NoSchedule/NoExecute taints), placed with `spec.nodeName`; nodes added later get theirs;
//! RollingUpdate replaces outdated pods `maxUnavailable` at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::replicaset::{Expectations, owned_pods};
use crate::{Error, util};

/// Label carrying the template hash on DaemonSet pods.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// Shared state of the DaemonSet controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every node.
    pub nodes: Store<Node>,
    /// Creates and deletes not yet observed.
    pub expectations: Expectations,
}

fn eligible(ds: &DaemonSet, node: &Node) -> bool {
    let spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let probe = Pod {
        spec: Some(spec.clone()),
        ..Default::default()
    };
    if !crate::scheduler::node_matches_affinity(&probe, node) {
        return false;
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    // The tolerations Kubernetes adds to every daemon pod.
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
    ] {
        tolerations.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
    }
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect != "PreferNoSchedule")
        .all(|t| {
            tolerations
                .iter()
                .any(|tol| crate::scheduler::tolerates(tol, t))
        })
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let hash = util::template_hash(&serde_json::to_value(&spec.template).unwrap_or_default());
    let all = owned_pods(&ctx.pods, &ns, &uid);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in all.iter().filter(|p| util::pod_active(p)) {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        by_node.entry(node).or_default().push(p.clone());
    }
    let nodes = ctx.nodes.state();
    let wanted: Vec<&Arc<Node>> = nodes.iter().filter(|n| eligible(&ds, n)).collect();
    let mut desired = 0;
    let (mut current, mut ready, mut available, mut updated, mut misscheduled) = (0, 0, 0, 0, 0);
    let is_updated = |p: &Pod| p.labels().get(HASH_LABEL) == Some(&hash);
    let mut create_on = Vec::new();
    let mut delete = Vec::new();
    let mut outdated_available = Vec::new();
    let mut unavailable = 0;
    for node in &wanted {
        desired += 1;
        let n = node.name_any();
        match by_node.get(&n) {
            None => {
                create_on.push(n);
                unavailable += 1;
            }
            Some(pods) => {
                current += 1;
                // Extra pods on one node go.
                delete.extend(pods.iter().skip(1).cloned());
                let p = &pods[0];
                if util::pod_ready(p).is_some() {
                    ready += 1;
                }
                let avail = util::pod_available(p, min_ready, now);
                if avail {
                    available += 1;
                } else {
                    unavailable += 1;
                }
                if is_updated(p) {
                    updated += 1;
                } else if avail {
                    outdated_available.push(p.clone());
                } else {
                    delete.push(p.clone());
                }
            }
        }
    }
    for (n, pods) in &by_node {
        if !wanted.iter().any(|w| &w.name_any() == n) {
            misscheduled += 1;
            delete.extend(pods.iter().cloned());
        }
    }
    if ctx.expectations.satisfied(&uid, &all) {
        // Rolling update: replace available outdated pods within maxUnavailable.
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            == Some("OnDelete");
        if !on_delete {
            let max_unavail = match spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.clone())
            {
                Some(IntOrString::Int(i)) => i,
                Some(IntOrString::String(s)) => {
                    let pct = s.trim_end_matches('%').parse::<i32>().unwrap_or(0);
                    (pct * desired / 100).max(1)
                }
                None => 1,
            };
            let room = (max_unavail - unavailable).max(0) as usize;
            delete.extend(outdated_available.into_iter().take(room));
        }
        let mut names = Vec::new();
        for node in create_on {
            let mut pod = util::pod_from_template(
                &spec.template,
                &ns,
                util::controller_ref(ds.as_ref()),
                Some(format!("{name}-")),
                None,
            );
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), hash.clone());
            if let Some(s) = pod.spec.as_mut() {
                s.node_name = Some(node);
            }
            let created = pods_api.create(&PostParams::default(), &pod).await?;
            names.push(created.name_any());
        }
        let uids: Vec<String> = delete
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        ctx.expectations.expect(&uid, names, uids);
        for p in delete {
            match pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let status = serde_json::json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "updatedNumberScheduled": updated,
        "numberMisscheduled": misscheduled,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
    });
    let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    util::patch_status_if_changed(&api, &name, old, status).await?;
    Ok(Action::requeue(Duration::from_secs(if min_ready > 0 {
        1
    } else {
        300
    })))
}

/// Runs the DaemonSet controller; node changes requeue every DaemonSet.
pub async fn run(
    ctx: Arc<Ctx>,
    daemonsets: (
        impl futures::Stream<Item = Result<DaemonSet, kube::runtime::watcher::Error>> + Send + 'static,
        Store<DaemonSet>,
    ),
    pods: impl futures::Stream<Item = Result<Pod, kube::runtime::watcher::Error>> + Send + 'static,
    nodes: impl futures::Stream<Item = Result<Node, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let store = daemonsets.1.clone();
    let controller = Controller::for_stream(daemonsets.0, daemonsets.1)
        .owns_stream(pods)
        .watches_stream(nodes, move |_node| {
            store
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        });
    crate::runner::run("daemonset", controller, reconcile, ctx).await;
}
