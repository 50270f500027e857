//! Deployment controller: one ReplicaSet per pod template, rolled with RollingUpdate
//! (maxSurge/maxUnavailable) or Recreate, revision annotations, pause, progress deadline,
//! history limit, and status/conditions as `kubectl rollout status` reads them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::{Error, util};

/// Annotation carrying the revision on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Label distinguishing the ReplicaSets (and pods) of one template.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Shared state of the Deployment controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every ReplicaSet.
    pub replicasets: Store<ReplicaSet>,
    /// Every pod.
    pub pods: Store<Pod>,
}

fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default_pct: i32) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct = s
                .trim_end_matches('%')
                .parse::<i32>()
                .unwrap_or(default_pct);
            pct_of(pct, total, round_up)
        }
        None => pct_of(default_pct, total, round_up),
    }
}

fn pct_of(pct: i32, total: i32, round_up: bool) -> i32 {
    let x = i64::from(pct) * i64::from(total);
    (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn strip_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut()
        && let Some(l) = m.labels.as_mut()
    {
        l.remove(HASH_LABEL);
    }
    t
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn cond(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = util::now();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
        last_update_time: Some(now),
    }
}

/// Sets a condition, keeping lastTransitionTime when the status is unchanged and
/// lastUpdateTime when nothing about it changed.
fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(old) = conds.iter_mut().find(|x| x.type_ == c.type_) {
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
            if old.reason == c.reason && old.message == c.message {
                c.last_update_time = old.last_update_time.clone();
            }
        }
        *old = c;
    } else {
        conds.push(c);
    }
}

async fn scale_rs(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
    annotations: serde_json::Value,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": annotations},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut rss: Vec<Arc<ReplicaSet>> = ctx
        .replicasets
        .state()
        .into_iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns.as_str())
                && util::is_controlled_by(&r.metadata, &uid)
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    rss.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    let template = spec.template.clone();
    let hash = util::template_hash(&serde_json::to_value(&template).unwrap_or_default());
    let max_rev = rss.iter().map(|r| revision(r)).max().unwrap_or(0);
    let mut new_rs: Option<Arc<ReplicaSet>> = rss
        .iter()
        .find(|r| {
            r.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| strip_hash(t) == template)
        })
        .cloned();
    let mut conditions = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let paused = spec.paused == Some(true);
    let mut dep_annotations = serde_json::Map::new();
    // Annotations copied from the Deployment to its ReplicaSets (change-cause for history).
    let copied: serde_json::Map<String, serde_json::Value> = d
        .annotations()
        .iter()
        .filter(|(k, _)| {
            k.as_str() != REVISION
                && k.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
                && !k.starts_with("deployment.kubernetes.io/")
        })
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();

    if !paused {
        // The ReplicaSet of the current template: create it, or re-adopt an old one (undo).
        match &new_rs {
            None => {
                let mut t = template.clone();
                let m = t.metadata.get_or_insert_with(ObjectMeta::default);
                m.labels
                    .get_or_insert_with(Default::default)
                    .insert(HASH_LABEL.into(), hash.clone());
                let mut selector = spec.selector.clone();
                selector
                    .match_labels
                    .get_or_insert_with(Default::default)
                    .insert(HASH_LABEL.into(), hash.clone());
                let mut annotations: std::collections::BTreeMap<String, String> = copied
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                annotations.insert(REVISION.into(), (max_rev + 1).to_string());
                let mut labels = t
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(HASH_LABEL.into(), hash.clone());
                let initial = if rss.iter().all(|r| rs_replicas(r) == 0)
                    && spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate")
                {
                    desired
                } else {
                    0
                };
                let rs = ReplicaSet {
                    metadata: ObjectMeta {
                        name: Some(format!("{name}-{hash}")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels),
                        annotations: Some(annotations),
                        owner_references: Some(vec![util::controller_ref(d.as_ref())]),
                        ..Default::default()
                    },
                    spec: Some(ReplicaSetSpec {
                        replicas: Some(initial),
                        min_ready_seconds: spec.min_ready_seconds,
                        selector,
                        template: Some(t),
                    }),
                    status: None,
                };
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(created) => {
                        let rs_name = created.name_any();
                        set_condition(
                            &mut conditions,
                            cond(
                                "Progressing",
                                "True",
                                "NewReplicaSetCreated",
                                format!("Created new replica set \"{rs_name}\""),
                            ),
                        );
                        new_rs = Some(Arc::new(created));
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Our cache is behind (or a hash collision); try again shortly.
                        return Ok(Action::requeue(Duration::from_millis(500)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(rs) if revision(rs) < max_rev => {
                // Rolled back to an older template: it becomes the newest revision.
                let mut ann = copied.clone();
                ann.insert(REVISION.into(), (max_rev + 1).to_string().into());
                let patch = serde_json::json!({"metadata": {"annotations": ann}});
                let updated = rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await?;
                new_rs = Some(Arc::new(updated));
            }
            Some(_) => {}
        }
    }
    let new_name = new_rs.as_ref().map(|r| r.name_any()).unwrap_or_default();
    let old: Vec<Arc<ReplicaSet>> = rss
        .iter()
        .filter(|r| r.name_any() != new_name)
        .cloned()
        .collect();

    if !paused && let Some(new) = &new_rs {
        let new_rev = revision(new).max(max_rev);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let ann = serde_json::json!({
            "deployment.kubernetes.io/desired-replicas": desired.to_string(),
        });
        if recreate {
            let mut old_running = false;
            for r in &old {
                if rs_replicas(r) > 0 {
                    scale_rs(&rs_api, r, 0, ann.clone()).await?;
                }
                let ruid = r.metadata.uid.clone().unwrap_or_default();
                if crate::replicaset::owned_pods(&ctx.pods, &ns, &ruid)
                    .iter()
                    .any(|p| !util::pod_terminal(p))
                {
                    old_running = true;
                }
            }
            if !old_running && rs_replicas(new) != desired {
                scale_rs(&rs_api, new, desired, ann.clone()).await?;
            }
        } else {
            let ru = spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.clone())
                .unwrap_or_default();
            let surge = resolve(ru.max_surge.as_ref(), desired, true, 25).max(0);
            let mut unavail = resolve(ru.max_unavailable.as_ref(), desired, false, 25).max(0);
            if surge == 0 && unavail == 0 {
                unavail = 1;
            }
            let unavail = unavail.min(desired);
            let new_replicas = rs_replicas(new);
            let all: i32 = rss.iter().map(|r| rs_replicas(r)).sum();
            // Scale the new ReplicaSet: up within the surge, or down if it has too many.
            let mut target_new = new_replicas;
            if new_replicas > desired {
                target_new = desired;
            } else if new_replicas < desired {
                let room = desired + surge - all;
                if room > 0 {
                    target_new = new_replicas + room.min(desired - new_replicas);
                }
            }
            if target_new != new_replicas {
                scale_rs(&rs_api, new, target_new, ann.clone()).await?;
            }
            // Scale old ReplicaSets down while keeping minimum availability.
            let all_after = all - new_replicas + target_new;
            let min_available = desired - unavail;
            let new_unavailable = (target_new - rs_available(new)).max(0);
            let mut budget = all_after - min_available - new_unavailable;
            let mut plan: Vec<(Arc<ReplicaSet>, i32)> =
                old.iter().map(|r| (r.clone(), rs_replicas(r))).collect();
            // First the unhealthy replicas of old sets.
            for (r, reps) in plan.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let unhealthy = (*reps - rs_available(r)).max(0);
                let take = unhealthy.min(budget);
                *reps -= take;
                budget -= take;
            }
            // Then available ones, without dropping below minimum availability.
            let total_available: i32 = rss.iter().map(|r| rs_available(r)).sum();
            let mut can_remove = (total_available - min_available).max(0).min(budget.max(0));
            for (r, reps) in plan.iter_mut() {
                if can_remove <= 0 {
                    break;
                }
                let avail_here = rs_available(r).min(*reps);
                let take = avail_here.min(can_remove);
                *reps -= take;
                can_remove -= take;
            }
            for (r, reps) in plan {
                if reps != rs_replicas(&r) {
                    scale_rs(&rs_api, &r, reps.max(0), ann.clone()).await?;
                }
            }
        }
        dep_annotations.insert(REVISION.into(), new_rev.to_string().into());
        // History limit: delete the oldest empty old ReplicaSets beyond the limit.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut empty: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|r| {
                rs_replicas(r) == 0 && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
            })
            .collect();
        empty.sort_by_key(|r| revision(r));
        if empty.len() > limit {
            for r in &empty[..empty.len() - limit] {
                let _ = rs_api
                    .delete(&r.name_any(), &DeleteParams::background())
                    .await;
            }
        }
    }

    // Status from the ReplicaSets' status.
    let new_status = new_rs
        .as_ref()
        .and_then(|r| r.status.clone())
        .unwrap_or_default();
    let replicas: i32 = rss
        .iter()
        .filter_map(|r| r.status.as_ref())
        .map(|s| s.replicas)
        .sum();
    let ready: i32 = rss
        .iter()
        .filter_map(|r| r.status.as_ref())
        .map(|s| s.ready_replicas.unwrap_or(0))
        .sum();
    let available: i32 = rss.iter().map(|r| rs_available(r)).sum();
    let updated = if new_rs.as_ref().is_some_and(|r| {
        r.metadata.generation == r.status.as_ref().and_then(|s| s.observed_generation)
    }) {
        new_status.replicas
    } else {
        0
    };
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let max_unavail = if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
    {
        0
    } else {
        resolve(ru.max_unavailable.as_ref(), desired, false, 25).min(desired)
    };
    if available >= desired - max_unavail {
        set_condition(
            &mut conditions,
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    let old_status = d.status.clone().unwrap_or_default();
    let complete = updated == desired
        && replicas == desired
        && available == desired
        && old
            .iter()
            .all(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0);
    let progressed = updated != old_status.updated_replicas.unwrap_or(0)
        || available != old_status.available_replicas.unwrap_or(0)
        || ready != old_status.ready_replicas.unwrap_or(0)
        || replicas != old_status.replicas.unwrap_or(0);
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let mut requeue = Duration::from_secs(300);
    if paused {
        set_condition(
            &mut conditions,
            cond(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
        );
    } else if complete {
        set_condition(
            &mut conditions,
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            ),
        );
    } else {
        let current = conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned();
        let was_paused =
            current.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
        let timed_out = current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        let last = current
            .as_ref()
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        let now = jiff::Timestamp::now().as_second();
        if was_paused {
            set_condition(
                &mut conditions,
                cond(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                ),
            );
        } else if progressed
            || current.is_none()
            || current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable")
        {
            let mut c = cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
            );
            // Force an update time even when the message is unchanged.
            if let Some(old) = conditions.iter_mut().find(|x| x.type_ == "Progressing") {
                c.last_transition_time = if old.status == "True" {
                    old.last_transition_time.clone()
                } else {
                    c.last_transition_time.clone()
                };
                *old = c;
            } else {
                conditions.push(c);
            }
            requeue = Duration::from_secs(deadline.max(1) as u64);
        } else if !timed_out && now - last > i64::from(deadline) {
            set_condition(
                &mut conditions,
                cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                ),
            );
        } else if !timed_out {
            requeue = Duration::from_secs((i64::from(deadline) - (now - last)).max(1) as u64);
        }
    }
    if !dep_annotations.is_empty()
        && d.annotations().get(REVISION).map(String::as_str)
            != dep_annotations.get(REVISION).and_then(|v| v.as_str())
    {
        let dep_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"metadata": {"annotations": dep_annotations}});
        dep_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    let status = serde_json::json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": conditions,
    });
    let current = serde_json::to_value(d.status.clone().unwrap_or_default()).unwrap_or_default();
    let dep_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    util::patch_status_if_changed(&dep_api, &name, current, status).await?;
    Ok(Action::requeue(requeue))
}

/// Runs the Deployment controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    deployments: (
        impl futures::Stream<Item = Result<Deployment, kube::runtime::watcher::Error>> + Send + 'static,
        Store<Deployment>,
    ),
    replicasets: impl futures::Stream<Item = Result<ReplicaSet, kube::runtime::watcher::Error>>
    + Send
    + 'static,
) {
    let controller = Controller::for_stream(deployments.0, deployments.1).owns_stream(replicasets);
    crate::runner::run("deployment", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailable_round_like_kubernetes() {
        assert_eq!(resolve(None, 6, true, 25), 2);
        assert_eq!(resolve(None, 6, false, 25), 1);
        assert_eq!(resolve(Some(&IntOrString::Int(3)), 6, true, 25), 3);
        assert_eq!(
            resolve(Some(&IntOrString::String("50%".into())), 5, false, 25),
            2
        );
    }
}
