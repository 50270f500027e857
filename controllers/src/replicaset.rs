//! ReplicaSet controller: keeps `spec.replicas` pods from the template, with expectations so a
//! stale cache never makes it create or delete twice, and reports replica counts in status.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::{Error, util};

/// Pods a controller created or deleted and has not yet seen in its cache.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expect>>,
}

struct Expect {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    at: Instant,
}

impl Expectations {
    /// Records pods created (by name) and deleted (by uid) for `owner`.
    pub fn expect(&self, owner: &str, creates: Vec<String>, deletes: Vec<String>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(owner.to_string()).or_insert_with(|| Expect {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            at: Instant::now(),
        });
        e.creates.extend(creates);
        e.deletes.extend(deletes);
        e.at = Instant::now();
    }

    /// Whether the cache has caught up with everything `owner` did.
    pub fn satisfied(&self, owner: &str, pods: &[Arc<Pod>]) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = m.get_mut(owner) else {
            return true;
        };
        if e.at.elapsed() > Duration::from_secs(30) {
            m.remove(owner);
            return true;
        }
        let names: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
        e.creates.retain(|n| !names.contains(n));
        e.deletes.retain(|u| {
            pods.iter().any(|p| {
                p.metadata.uid.as_deref() == Some(u.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            })
        });
        let done = e.creates.is_empty() && e.deletes.is_empty();
        if done {
            m.remove(owner);
        }
        done
    }
}

/// Shared state of the ReplicaSet controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Creates and deletes not yet observed.
    pub expectations: Expectations,
}

/// The pods of `namespace` controlled by `uid`, including ones being deleted.
pub fn owned_pods(pods: &Store<Pod>, namespace: &str, uid: &str) -> Vec<Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && util::is_controlled_by(&p.metadata, uid)
        })
        .collect()
}

/// Orders pods so the first are the best to delete: unscheduled, pending, not ready, newest.
fn deletion_rank(p: &Pod) -> (i32, i32, i32, i64) {
    let unscheduled = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none_or(String::is_empty);
    let pending = util::pod_phase(p) == "Pending";
    let ready = util::pod_ready(p).is_some();
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (
        if unscheduled { 0 } else { 1 },
        if pending { 0 } else { 1 },
        if ready { 1 } else { 0 },
        -created,
    )
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let all = owned_pods(&ctx.pods, &ns, &uid);
    let active: Vec<Arc<Pod>> = all
        .iter()
        .filter(|p| util::pod_active(p))
        .cloned()
        .collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut requeue: Option<Duration> = None;
    if ctx.expectations.satisfied(&uid, &all) {
        if active.len() < want {
            let template = spec.template.clone().unwrap_or_default();
            let owner = util::controller_ref(rs.as_ref());
            let n = (want - active.len()).min(500);
            let creates = futures::stream::iter(0..n)
                .map(|_| {
                    let pod = util::pod_from_template(
                        &template,
                        &ns,
                        owner.clone(),
                        Some(format!("{name}-")),
                        None,
                    );
                    let api = api.clone();
                    async move { api.create(&PostParams::default(), &pod).await }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
            let mut names = Vec::new();
            let mut err = None;
            for c in creates {
                match c {
                    Ok(p) => names.push(p.name_any()),
                    Err(e) => err = Some(e),
                }
            }
            ctx.expectations.expect(&uid, names, vec![]);
            if let Some(e) = err {
                return Err(e.into());
            }
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            victims.truncate(active.len() - want);
            let uids: Vec<String> = victims
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            ctx.expectations.expect(&uid, vec![], uids);
            for p in victims {
                match api.delete(&p.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    } else {
        requeue = Some(Duration::from_secs(1));
    }
    // Status from what the cache shows.
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let labels_ok = |p: &Pod| {
        let tl = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let pl = p.metadata.labels.clone().unwrap_or_default();
        tl.iter().all(|(k, v)| pl.get(k) == Some(v))
    };
    let replicas = active.len() as i32;
    let fully = active.iter().filter(|p| labels_ok(p)).count() as i32;
    let ready = active
        .iter()
        .filter(|p| util::pod_ready(p).is_some())
        .count() as i32;
    let available = active
        .iter()
        .filter(|p| util::pod_available(p, min_ready, now))
        .count() as i32;
    if ready > available && min_ready > 0 {
        requeue = Some(Duration::from_secs(1));
    }
    let status = rs.status.clone().unwrap_or_default();
    let generation = rs.metadata.generation.unwrap_or(0);
    let terminating = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .count() as i32;
    if status.replicas != replicas
        || status.fully_labeled_replicas.unwrap_or(0) != fully
        || status.ready_replicas.unwrap_or(0) != ready
        || status.available_replicas.unwrap_or(0) != available
        || status.observed_generation.unwrap_or(0) != generation
        || status.terminating_replicas.unwrap_or(0) != terminating
    {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"status": {
            "replicas": replicas,
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": available,
            "terminatingReplicas": terminating,
            "observedGeneration": generation,
        }});
        match rs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Runs the ReplicaSet controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    replicasets: (
        impl futures::Stream<Item = Result<ReplicaSet, kube::runtime::watcher::Error>> + Send + 'static,
        Store<ReplicaSet>,
    ),
    pods: impl futures::Stream<Item = Result<Pod, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let controller = Controller::for_stream(replicasets.0, replicasets.1).owns_stream(pods);
    crate::runner::run("replicaset", controller, reconcile, ctx).await;
}
