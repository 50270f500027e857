//! CronJob controller: creates a Job for the latest missed scheduled time (in the CronJob's
//! `timeZone`, UTC by default),
//! honouring startingDeadlineSeconds, concurrencyPolicy (Allow/Forbid/Replace), suspend and the
//! successful/failed history limits; status carries `active` and `lastScheduleTime`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::cron::Schedule;
use crate::{Error, util};

/// Shared state of the CronJob controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every Job.
    pub jobs: Store<Job>,
    /// The time schedules are evaluated at.
    pub clock: crate::Clock,
}

fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let schedule = Schedule::parse_in(&spec.schedule, spec.time_zone.as_deref())
        .map_err(|e| Error::NotSupported(format!("cronjob {ns}/{name}: {e}")))?;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.metadata.namespace.as_deref() == Some(ns.as_str())
                && util::is_controlled_by(&j.metadata, &uid)
                && j.metadata.deletion_timestamp.is_none()
        })
        .collect();
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let active: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j).is_none()).collect();
    let now = ctx.clock.now();
    let status = cj.status.clone().unwrap_or_default();
    let since = status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    let floor = jiff::Timestamp::from_second(now.as_second() - 86_400).unwrap_or(now);
    let since = since.max(floor);
    let mut last_schedule = status.last_schedule_time.clone();
    let mut created: Option<Job> = None;
    if spec.suspend != Some(true)
        && let Some(t) = schedule.last_between(since, now)
    {
        let late = now.as_second() - t.as_second();
        let too_late = spec.starting_deadline_seconds.is_some_and(|d| late > d);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if !too_late && (policy != "Forbid" || active.is_empty()) {
            if policy == "Replace" {
                for j in &active {
                    let _ = jobs_api
                        .delete(&j.name_any(), &DeleteParams::background())
                        .await;
                }
            }
            let tmpl = spec.job_template.clone();
            let tmeta = tmpl.metadata.clone().unwrap_or_default();
            let mut annotations = tmeta.annotations.unwrap_or_default();
            annotations.insert(
                "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                t.to_string(),
            );
            let job = Job {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{}", t.as_second() / 60)),
                    namespace: Some(ns.clone()),
                    labels: tmeta.labels,
                    annotations: Some(annotations),
                    owner_references: Some(vec![util::controller_ref(cj.as_ref())]),
                    ..Default::default()
                },
                spec: tmpl.spec,
                status: None,
            };
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(j) => created = Some(j),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        last_schedule = Some(Time(t));
    }
    // History limits.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.iter().take(extra) {
            let _ = jobs_api
                .delete(&j.name_any(), &DeleteParams::background())
                .await;
        }
    }
    let mut active_refs: Vec<serde_json::Value> = active
        .iter()
        .map(|j| {
            serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "name": j.name_any(),
                "namespace": ns, "uid": j.metadata.uid})
        })
        .collect();
    if let Some(j) = &created {
        active_refs.push(serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "name": j.name_any(), "namespace": ns, "uid": j.metadata.uid}));
    }
    let new_status = serde_json::json!({
        "active": if active_refs.is_empty() { serde_json::Value::Null } else { active_refs.into() },
        "lastScheduleTime": last_schedule,
        "lastSuccessfulTime": jobs.iter().filter(|j| finished(j) == Some("Complete"))
            .filter_map(|j| j.status.as_ref().and_then(|s| s.completion_time.clone())).max_by_key(|t| t.0),
    });
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let old = serde_json::to_value(&status).unwrap_or_default();
    util::patch_status_if_changed(&api, &name, old, new_status).await?;
    let next = schedule
        .next_after(now)
        .map(|n| (n.as_second() - now.as_second()).max(1) as u64)
        .unwrap_or(300);
    Ok(Action::requeue(Duration::from_secs(next.min(300))))
}

/// Runs the CronJob controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    cronjobs: (
        impl futures::Stream<Item = Result<CronJob, kube::runtime::watcher::Error>> + Send + 'static,
        Store<CronJob>,
    ),
    jobs: impl futures::Stream<Item = Result<Job, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let controller = Controller::for_stream(cronjobs.0, cronjobs.1).owns_stream(jobs);
    crate::runner::run("cronjob", controller, reconcile, ctx).await;
}
