//! Job controller: runs pods until `completions` succeed (NonIndexed or Indexed), at most
//! `parallelism` at once; fails at `backoffLimit` or `activeDeadlineSeconds`; deletes finished
//! Jobs after `ttlSecondsAfterFinished`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::replicaset::{Expectations, owned_pods};
use crate::{Error, util};

/// Annotation and label carrying an Indexed Job pod's index.
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Shared state of the Job controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Creates and deletes not yet observed.
    pub expectations: Expectations,
    /// The time deadlines and TTLs are measured against.
    pub clock: crate::Clock,
}

fn condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn pod_index(p: &Pod) -> Option<i32> {
    p.annotations().get(INDEX).and_then(|v| v.parse().ok())
}

/// Renders indexes like Kubernetes' completedIndexes: "1,3-5,7".
pub fn render_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let v: Vec<i32> = set.iter().copied().collect();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if j > i {
            out.push(format!("{}-{}", v[i], v[j]));
        } else {
            out.push(v[i].to_string());
        }
        i = j + 1;
    }
    out.join(",")
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let finished = condition(&job, "Complete") || condition(&job, "Failed");
    if finished {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let at = job
                .status
                .as_ref()
                .and_then(|s| {
                    s.completion_time.clone().or_else(|| {
                        s.conditions.as_ref().and_then(|cs| {
                            cs.iter()
                                .find(|c| c.type_ == "Failed")
                                .and_then(|c| c.last_transition_time.clone())
                        })
                    })
                })
                .map(|t| t.0.as_second())
                .unwrap_or(now.as_second())
                + i64::from(ttl);
            if at <= now.as_second() {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs(
                (at - now.as_second()).max(1) as u64,
            )));
        }
        return Ok(Action::await_change());
    }
    let all = owned_pods(&ctx.pods, &ns, &uid);
    if !ctx.expectations.satisfied(&uid, &all) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let active: Vec<&Arc<Pod>> = all.iter().filter(|p| util::pod_active(p)).collect();
    let succeeded_pods: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| util::pod_phase(p) == "Succeeded")
        .collect();
    let failed_now = all
        .iter()
        .filter(|p| util::pod_phase(p) == "Failed")
        .count() as i32;
    let status = job.status.clone().unwrap_or_default();
    let failed = failed_now.max(status.failed.unwrap_or(0));
    let mut done_indexes: BTreeSet<i32> = BTreeSet::new();
    if indexed {
        for p in &succeeded_pods {
            if let Some(i) = pod_index(p) {
                done_indexes.insert(i);
            }
        }
    }
    let succeeded = if indexed {
        done_indexes.len() as i32
    } else {
        succeeded_pods.len() as i32
    };
    let ready = active
        .iter()
        .filter(|p| util::pod_ready(p).is_some())
        .count() as i32;
    let start_time = status.start_time.clone().unwrap_or_else(util::now);
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut fail: Option<(&str, &str)> = None;
    if failed > backoff_limit {
        fail = Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    } else if let Some(ads) = spec.active_deadline_seconds
        && now.as_second() - start_time.0.as_second() >= ads
    {
        fail = Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ));
    }
    let complete = fail.is_none()
        && match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
    let mut completion_time = status.completion_time.clone();
    let mut requeue = Duration::from_secs(300);
    if let Some((reason, message)) = fail {
        for p in &active {
            let _ = pods_api
                .delete(&p.name_any(), &DeleteParams::background())
                .await;
        }
        for t in ["FailureTarget", "Failed"] {
            conditions.push(k8s_openapi::api::batch::v1::JobCondition {
                type_: t.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: Some(util::now()),
                last_transition_time: Some(util::now()),
            });
        }
    } else if complete {
        completion_time = Some(util::now());
        for t in ["SuccessCriteriaMet", "Complete"] {
            conditions.push(k8s_openapi::api::batch::v1::JobCondition {
                type_: t.into(),
                status: "True".into(),
                reason: Some("CompletionsReached".into()),
                message: Some("Reached expected number of succeeded pods".into()),
                last_probe_time: Some(util::now()),
                last_transition_time: Some(util::now()),
            });
        }
    } else if spec.suspend != Some(true) {
        let remaining = completions.map_or(parallelism, |c| (c - succeeded).max(0));
        let want = parallelism.min(remaining);
        let missing = want - active.len() as i32;
        if missing > 0 && (completions.is_some() || succeeded == 0) {
            let mut names = Vec::new();
            let mut to_make: Vec<Option<i32>> = Vec::new();
            if indexed {
                let busy: BTreeSet<i32> = active.iter().filter_map(|p| pod_index(p)).collect();
                for i in 0..completions.unwrap_or(1) {
                    if to_make.len() as i32 >= missing {
                        break;
                    }
                    if !done_indexes.contains(&i) && !busy.contains(&i) {
                        to_make.push(Some(i));
                    }
                }
            } else {
                to_make = vec![None; missing as usize];
            }
            let template = spec.template.clone();
            for idx in to_make {
                let mut pod = util::pod_from_template(
                    &template,
                    &ns,
                    util::controller_ref(job.as_ref()),
                    Some(match idx {
                        Some(i) => format!("{name}-{i}-"),
                        None => format!("{name}-"),
                    }),
                    None,
                );
                let labels = pod.metadata.labels.get_or_insert_with(Default::default);
                labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
                labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
                labels.insert("controller-uid".into(), uid.clone());
                labels.insert("job-name".into(), name.clone());
                if let Some(i) = idx {
                    labels.insert(INDEX.into(), i.to_string());
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(INDEX.into(), i.to_string());
                    if let Some(spec) = pod.spec.as_mut() {
                        for c in &mut spec.containers {
                            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                                name: "JOB_COMPLETION_INDEX".into(),
                                value: Some(i.to_string()),
                                value_from: None,
                            });
                        }
                    }
                }
                let created = pods_api.create(&PostParams::default(), &pod).await?;
                names.push(created.name_any());
            }
            ctx.expectations.expect(&uid, names, vec![]);
        }
        if let Some(ads) = spec.active_deadline_seconds {
            let left = ads - (now.as_second() - start_time.0.as_second());
            requeue = Duration::from_secs(left.max(1) as u64);
        }
    }
    let mut st = serde_json::json!({
        "active": active.len(),
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        "startTime": start_time,
        "conditions": conditions,
    });
    if let Some(ct) = completion_time {
        st["completionTime"] = serde_json::to_value(ct).unwrap_or_default();
    }
    if indexed {
        st["completedIndexes"] = render_indexes(&done_indexes).into();
    }
    let current = serde_json::to_value(&status).unwrap_or_default();
    util::patch_status_if_changed(&api, &name, current, st).await?;
    if (fail.is_some() || complete)
        && let Some(ttl) = spec.ttl_seconds_after_finished
    {
        requeue = Duration::from_secs(u64::try_from(ttl).unwrap_or(0).max(1));
    }
    Ok(Action::requeue(requeue))
}

/// Runs the Job controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    jobs: (
        impl futures::Stream<Item = Result<Job, kube::runtime::watcher::Error>> + Send + 'static,
        Store<Job>,
    ),
    pods: impl futures::Stream<Item = Result<Pod, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let controller = Controller::for_stream(jobs.0, jobs.1).owns_stream(pods);
    crate::runner::run("job", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_render_as_ranges() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(render_indexes(&s), "0-2,4,6-7");
        assert_eq!(render_indexes(&BTreeSet::new()), "");
    }
}
