//! The replica controller shared by ReplicaSets and ReplicationControllers: keeps `spec.replicas`
//! pods from the template, adopting matching orphans and releasing pods that stop matching, with
//! expectations so a stale cache never makes it create or delete twice, slow-start batches of
//! creates, the `ReplicaFailure` condition and `FailedCreate` Events when pods cannot be
//! created, and replica counts in status. `ReplicaKind` is all that differs between the kinds.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_meta::selector::LabelSelector;

use crate::informer::Synced;
use crate::{Error, util};

/// Kubernetes' `burstReplicas`: at most this many creates or deletes per reconcile.
const BURST_REPLICAS: usize = 500;

/// The status counts, zero when absent.
const COUNTS: [&str; 6] = [
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
    "terminatingReplicas",
];

/// What the shared replica controller needs to know of a kind.
pub trait ReplicaKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name (logs, `--controllers`).
    const CONTROLLER: &'static str;
    /// The reporting component of its Events, as Kubernetes names it.
    const COMPONENT: &'static str;
    /// Whether its status has `terminatingReplicas` (ReplicaSets do, ReplicationControllers not).
    const TERMINATING_REPLICAS: bool;
    /// `spec.replicas` (1 when unset).
    fn replicas(&self) -> i32;
    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;
    /// The pods it selects; `None` (a missing or invalid selector) selects nothing.
    fn selector(&self) -> Option<LabelSelector>;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl ReplicaKind for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    const TERMINATING_REPLICAS: bool = true;
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Option<LabelSelector> {
        let sel = &self.spec.as_ref()?.selector;
        LabelSelector::from_k8s(sel).ok().filter(|s| !s.is_empty())
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
}

/// How long creates and deletes not yet seen in the cache hold a controller back: Kubernetes'
/// `ExpectationsTimeout`. Past it the controller trusts its cache again; a cache that lags more
/// than that behind the API (a slow or saturated server) would otherwise make it create the
/// same replicas twice.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

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
        self.satisfied_at(owner, pods, Instant::now())
    }

    /// `satisfied` as of `now`: expectations older than `EXPECTATIONS_TIMEOUT` are dropped.
    fn satisfied_at(&self, owner: &str, pods: &[Arc<Pod>], now: Instant) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = m.get_mut(owner) else {
            return true;
        };
        if now.saturating_duration_since(e.at) > EXPECTATIONS_TIMEOUT {
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

/// Shared state of one replica controller (ReplicaSets or ReplicationControllers).
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Whether `pods` holds its first list: until then no reconcile acts, as Kubernetes'
    /// controllers wait for their caches to sync.
    pub pods_synced: Synced,
    /// Creates and deletes not yet observed.
    pub expectations: Expectations,
    /// Publishes the controller's Events.
    pub recorder: Recorder,
}

impl Ctx {
    /// A context whose Events are reported as `component`.
    pub fn new(client: Client, pods: Store<Pod>, pods_synced: Synced, component: &str) -> Ctx {
        // The reporting instance is this host's name, as kube-runtime's `Reporter` gives it.
        let recorder = Recorder::new(client.clone(), component.into());
        Ctx {
            client,
            pods,
            pods_synced,
            expectations: Expectations::default(),
            recorder,
        }
    }
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

fn labels_match(sel: Option<&LabelSelector>, pod: &Pod) -> bool {
    let empty = Default::default();
    sel.is_some_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)))
}

/// Merge-patches a pod's ownerReferences, with its uid as precondition; a pod gone or changed
/// meanwhile is left alone (the next reconcile sees it again).
async fn patch_owner_refs(api: &Api<Pod>, pod: &Pod, refs: Vec<Value>) -> Result<bool, Error> {
    // The resourceVersion as precondition too: two owners adopting one orphan at once cannot
    // both succeed.
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Kubernetes' `ClaimPods`: the pods `owner` controls after adopting matching orphans (unless it
/// is being deleted, checked against the API first) and releasing pods that no longer match.
async fn claim_pods<K: ReplicaKind>(
    owner: &K,
    selector: Option<&LabelSelector>,
    ctx: &Ctx,
    api: &Api<Pod>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut claimed = Vec::new();
    let mut orphans = Vec::new();
    for p in ctx.pods.state() {
        if p.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        match util::controller_of(&p.metadata) {
            Some(c) if c.uid == uid => {
                if labels_match(selector, &p) || !util::pod_active(&p) {
                    claimed.push(p);
                } else {
                    let rest: Vec<Value> = p
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|o| o.uid != uid)
                        .filter_map(|o| serde_json::to_value(o).ok())
                        .collect();
                    tracing::debug!(pod = %util::key(p.as_ref()), "releasing a pod that no longer matches");
                    patch_owner_refs(api, &p, rest).await?;
                }
            }
            Some(_) => {}
            None => {
                if p.metadata.deletion_timestamp.is_none() && labels_match(selector, &p) {
                    orphans.push(p);
                }
            }
        }
    }
    if orphans.is_empty() {
        return Ok(claimed);
    }
    // As Kubernetes' RecheckDeletionTimestamp: adopt only if the owner, read fresh, still
    // exists with this uid and is not being deleted.
    let owners: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let fresh = owners.get_opt(&owner.name_any()).await?;
    let can_adopt = fresh.is_some_and(|o| {
        o.meta().uid.as_deref() == Some(uid.as_str()) && o.meta().deletion_timestamp.is_none()
    });
    if !can_adopt {
        return Ok(claimed);
    }
    let Ok(me) = serde_json::to_value(util::controller_ref(owner)) else {
        return Ok(claimed);
    };
    for p in orphans {
        let mut refs: Vec<Value> = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        refs.push(me.clone());
        tracing::debug!(pod = %util::key(p.as_ref()), "adopting an orphaned pod");
        if patch_owner_refs(api, &p, refs).await? {
            claimed.push(p);
        }
    }
    Ok(claimed)
}

/// Kubernetes' `slowStartBatch`: creates `n` pods in batches of 1, 2, 4, … and stops at the
/// first batch with a failure. Returns the names created and the first error.
async fn create_slow_start(
    api: &Api<Pod>,
    pod: &Pod,
    n: usize,
) -> (Vec<String>, Option<kube::Error>) {
    let mut names = Vec::new();
    let mut remaining = n;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let results = futures::stream::iter(0..size)
            .map(|_| async { api.create(&PostParams::default(), pod).await })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let mut err = None;
        for r in results {
            match r {
                Ok(p) => names.push(p.name_any()),
                Err(e) => err = Some(e),
            }
        }
        if err.is_some() {
            return (names, err);
        }
        remaining -= size;
        batch = size * 2;
    }
    (names, None)
}

/// The message Kubernetes shows for a failed request: the Status message of an API error.
fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The status conditions after this reconcile: `ReplicaFailure` added (with the reason and
/// message of a failure) if absent, or removed once pods could be managed again.
fn conditions(current: &Value, failure: Option<(&str, &str)>) -> Vec<Value> {
    let mut conds: Vec<Value> = current
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = conds.iter().any(|c| c["type"] == "ReplicaFailure");
    match failure {
        Some((reason, message)) if !has => conds.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "lastTransitionTime": util::now(),
            "reason": reason,
            "message": message,
        })),
        None if has => conds.retain(|c| c["type"] != "ReplicaFailure"),
        _ => {}
    }
    conds
}

async fn reconcile<K: ReplicaKind>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.pods_synced.wait().await;
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let Some(selector) = obj.selector() else {
        tracing::debug!(object = %util::key(obj.as_ref()), "no valid selector: nothing to manage");
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all = claim_pods(obj.as_ref(), Some(&selector), &ctx, &api).await?;
    let active: Vec<Arc<Pod>> = all
        .iter()
        .filter(|p| util::pod_active(p))
        .cloned()
        .collect();
    let want = obj.replicas().max(0) as usize;
    let mut requeue: Option<Duration> = None;
    let mut failure: Option<(&str, kube::Error)> = None;
    if ctx.expectations.satisfied(&uid, &all) {
        if active.len() < want {
            let template = obj.template().cloned().unwrap_or_default();
            let pod = util::pod_from_template(
                &template,
                &ns,
                util::controller_ref(obj.as_ref()),
                Some(format!("{name}-")),
                None,
            );
            let n = (want - active.len()).min(BURST_REPLICAS);
            let (names, err) = create_slow_start(&api, &pod, n).await;
            ctx.expectations.expect(&uid, names, vec![]);
            failure = err.map(|e| ("FailedCreate", e));
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            victims.truncate((active.len() - want).min(BURST_REPLICAS));
            let uids: Vec<String> = victims
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            ctx.expectations.expect(&uid, vec![], uids);
            for p in victims {
                match api.delete(&p.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        failure = Some(("FailedDelete", e));
                        break;
                    }
                }
            }
        }
    } else {
        requeue = Some(Duration::from_secs(1));
    }
    if let Some(("FailedCreate", e)) = &failure {
        let event = Event {
            type_: EventType::Warning,
            reason: "FailedCreate".into(),
            note: Some(format!("Error creating: {}", error_message(e))),
            action: "Create".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::debug!(error = %err, "publishing an event");
        }
    }
    // Status from what the cache shows.
    let now = jiff::Timestamp::now();
    let min_ready = obj.min_ready_seconds();
    let template_labels = obj
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let labels_ok = |p: &Pod| {
        let pl = p.metadata.labels.clone().unwrap_or_default();
        template_labels.iter().all(|(k, v)| pl.get(k) == Some(v))
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
    let generation = obj.meta().generation.unwrap_or(0);
    let terminating = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .count() as i32;
    let mut current = serde_json::to_value(obj.as_ref())
        .ok()
        .and_then(|o| o.get("status").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    // Counts a server leaves out when zero compare as zero, so that no status write repeats.
    if let Some(m) = current.as_object_mut() {
        for f in COUNTS {
            m.entry(f).or_insert(json!(0));
        }
    }
    let message = failure.as_ref().map(|(r, e)| (*r, error_message(e)));
    let conds = conditions(&current, message.as_ref().map(|(r, m)| (*r, m.as_str())));
    let mut status = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": fully,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": generation,
        "conditions": if conds.is_empty() { Value::Null } else { json!(conds) },
    });
    if K::TERMINATING_REPLICAS {
        status["terminatingReplicas"] = json!(terminating);
    }
    let owners: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    util::patch_status_if_changed(&owners, &name, current, status).await?;
    if let Some((_, e)) = failure {
        return Err(e.into());
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// The objects a pod event concerns: its controller if that is a `K`, else (an orphan) every `K`
/// of its namespace that selects it, which may adopt it.
fn pod_owners<K: ReplicaKind>(store: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    match util::controller_of(&pod.metadata) {
        Some(c) if c.kind == K::kind(&()) => vec![ObjectRef::new(&c.name).within(&ns)],
        Some(_) => vec![],
        None => store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
            .filter(|o| labels_match(o.selector().as_ref(), pod))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect(),
    }
}

/// Runs the replica controller of `K` until the streams end.
pub async fn run<K: ReplicaKind>(
    ctx: Arc<Ctx>,
    main: (
        impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send + 'static,
        Store<K>,
    ),
    pods: impl futures::Stream<Item = Result<Pod, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let store = main.1.clone();
    let controller = Controller::for_stream(main.0, main.1)
        .watches_stream(pods, move |pod: Pod| pod_owners(&store, &pod));
    crate::runner::run(K::CONTROLLER, controller, reconcile::<K>, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_failure_is_added_once_and_removed_when_pods_can_be_managed() {
        let none = json!({});
        let added = conditions(&none, Some(("FailedCreate", "pods \"x\" is forbidden")));
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["type"], "ReplicaFailure");
        assert_eq!(added[0]["status"], "True");
        assert_eq!(added[0]["reason"], "FailedCreate");
        assert_eq!(added[0]["message"], "pods \"x\" is forbidden");
        // As Kubernetes: an existing failure is kept as it was (no new transition time).
        let current = json!({"conditions": added.clone()});
        assert_eq!(conditions(&current, Some(("FailedCreate", "other"))), added);
        // Other conditions stay when the failure clears.
        let other = json!({"type": "Other", "status": "True"});
        let current = json!({"conditions": [added[0].clone(), other.clone()]});
        assert_eq!(conditions(&current, None), vec![other]);
        assert!(conditions(&none, None).is_empty());
    }

    #[test]
    fn expectations_hold_until_the_cache_sees_the_creates_or_five_minutes_pass() {
        let pod = |name: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name, "uid": name}}))
                    .expect("a pod"),
            )
        };
        let e = Expectations::default();
        let start = Instant::now();
        e.expect("rs", vec!["a".into(), "b".into()], vec![]);
        // A cache a minute behind a slow API: still waiting, so no second round of creates.
        let later = start + Duration::from_secs(60);
        assert!(!e.satisfied_at("rs", &[], later));
        assert!(!e.satisfied_at("rs", &[pod("a")], later));
        assert!(e.satisfied_at("rs", &[pod("a"), pod("b")], later));
        // Satisfied expectations are forgotten.
        assert!(e.satisfied_at("rs", &[], later));
        // Deletes are awaited until the pod is gone or marked for deletion.
        e.expect("rs", vec![], vec!["a".into()]);
        assert!(!e.satisfied_at("rs", &[pod("a")], later));
        assert!(e.satisfied_at("rs", &[pod("b")], later));
        // Past Kubernetes' ExpectationsTimeout the cache is trusted again.
        e.expect("rs", vec!["c".into()], vec![]);
        assert!(e.satisfied_at("rs", &[], Instant::now() + Duration::from_secs(301)));
    }

    #[test]
    fn pods_to_delete_first_are_unscheduled_pending_unready_and_newest() {
        let pod = |node: Option<&str>, phase: &str, ready: bool, created: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "creationTimestamp": created},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .expect("a pod")
        };
        let old = "2026-01-01T00:00:00Z";
        let new = "2026-01-02T00:00:00Z";
        let unscheduled = deletion_rank(&pod(None, "Pending", false, old));
        let pending = deletion_rank(&pod(Some("n"), "Pending", false, old));
        let unready = deletion_rank(&pod(Some("n"), "Running", false, old));
        let ready_new = deletion_rank(&pod(Some("n"), "Running", true, new));
        let ready_old = deletion_rank(&pod(Some("n"), "Running", true, old));
        let mut ranks = vec![ready_old, unready, ready_new, unscheduled, pending];
        ranks.sort();
        assert_eq!(
            ranks,
            vec![unscheduled, pending, unready, ready_new, ready_old]
        );
    }
}
