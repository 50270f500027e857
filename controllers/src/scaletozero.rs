//! Scale-to-zero controller: returns an idle Deployment annotated `skiff.dev/scale-to-zero:
//! "true"` to zero replicas. The nodes' routers scale it back up for the first request and hold
//! that request until a pod is ready.
//!
//! Annotations on the Deployment (`skiff_meta::names`):
//! - `skiff.dev/scale-to-zero: "true"` — the Deployment may sit at zero replicas; any other
//!   value (or none) leaves it alone.
//! - `skiff.dev/scale-to-zero-idle` — the idle period, a Go duration (`60s`, `5m`, `1h30m`);
//!   default 60s. An invalid value is reported with a Warning Event and nothing is scaled.
//! - `skiff.dev/last-request-time` — RFC 3339, when a request was last served on any node,
//!   written by the routers while serving (at most every quarter of the idle period). This
//!   controller also stamps it with the current time when it first sees the Deployment running
//!   without one, and when it sees it scaled up from zero, so the idle period counts from the
//!   last scale-up too and survives a restart of the controller.
//!
//! The Deployment goes to zero once both the last request and the last scale-up are at least
//! the idle period old; until then the controller requeues itself for exactly the moment the
//! period ends (no polling). The scale goes through `deployments/scale` with the
//! resourceVersion it decided on as a precondition: a router that scaled up or recorded a
//! request meanwhile makes the write fail with a conflict, and the new version is looked at
//! afresh. A scale-down is recorded as a `ScaledToZero` Event. Time comes from the manager's
//! `Clock`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_meta::names::{
    CONTROLLER_FIELD_MANAGER, LAST_REQUEST, SCALE_TO_ZERO, SCALE_TO_ZERO_IDLE,
    SCALE_TO_ZERO_IDLE_DEFAULT,
};

use crate::{Clock, Error};

/// Reason of the Event recorded when a Deployment is scaled to zero.
pub const SCALED_TO_ZERO: &str = "ScaledToZero";
/// Reason of the Warning Event for an idle period that does not parse.
pub const INVALID_IDLE: &str = "InvalidScaleToZeroIdle";
/// The Events' source component.
pub const COMPONENT: &str = "scale-to-zero-controller";

/// The longest single requeue.
const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the controller last saw of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// At zero replicas.
    AtZero,
    /// Running since this time (first seen running, or seen scaled up from zero).
    Up(jiff::Timestamp),
}

/// Shared state of the scale-to-zero controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// The time idle periods are measured on.
    pub clock: Clock,
    /// What was last seen of each Deployment, by uid.
    pub seen: Mutex<HashMap<String, Seen>>,
    /// Invalid idle values already reported, by uid.
    pub reported: Mutex<HashMap<String, String>>,
    /// Every Deployment (to forget the deleted ones).
    pub deployments: Store<Deployment>,
}

/// Forgets Deployments no longer in the store once the records outgrow it (a deleted object is
/// never reconciled again).
fn prune(ctx: &Ctx) {
    let live = ctx.deployments.state().len();
    let big = |n: usize| n > 2 * live + 64;
    if !big(lock(&ctx.seen).len()) && !big(lock(&ctx.reported).len()) {
        return;
    }
    let uids: std::collections::HashSet<String> = ctx
        .deployments
        .state()
        .iter()
        .filter_map(|d| d.metadata.uid.clone())
        .collect();
    lock(&ctx.seen).retain(|uid, _| uids.contains(uid));
    lock(&ctx.reported).retain(|uid, _| uids.contains(uid));
}

/// Whether the Deployment opted in.
pub fn enabled(d: &Deployment) -> bool {
    d.annotations().get(SCALE_TO_ZERO).map(String::as_str) == Some("true")
}

/// The Deployment's idle period.
pub fn idle_period(d: &Deployment) -> Result<Duration, skiff_meta::duration::DurationError> {
    match d.annotations().get(SCALE_TO_ZERO_IDLE) {
        None => Ok(SCALE_TO_ZERO_IDLE_DEFAULT),
        Some(v) => skiff_meta::duration::parse_go_duration(v),
    }
}

/// The last request time the routers recorded (an unreadable value counts as none).
pub fn last_request(d: &Deployment) -> Option<jiff::Timestamp> {
    d.annotations().get(LAST_REQUEST)?.parse().ok()
}

/// What to do with a running Deployment at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Scale it to zero.
    ScaleDown,
    /// Look again after this long (the moment the idle period ends).
    Wait(Duration),
}

/// Scale down once the later of the last request and the scale-up is `idle` old.
pub fn decide(
    now: jiff::Timestamp,
    up_since: jiff::Timestamp,
    last_request: Option<jiff::Timestamp>,
    idle: Duration,
) -> Decision {
    let last = last_request.map_or(up_since, |r| r.max(up_since));
    let idle = jiff::SignedDuration::try_from(idle).unwrap_or(jiff::SignedDuration::MAX);
    let Ok(deadline) = last.checked_add(idle) else {
        return Decision::Wait(Duration::MAX);
    };
    if now >= deadline {
        Decision::ScaleDown
    } else {
        let left = now.duration_until(deadline);
        Decision::Wait(left.unsigned_abs())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn record(ctx: &Ctx, d: &Deployment, type_: &str, reason: &str, message: String) {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let now = Time(ctx.clock.now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{name}.{:x}",
                jiff::Timestamp::now().as_nanosecond() as u64
            )),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: Some(name),
            namespace: Some(ns.clone()),
            uid: d.metadata.uid.clone(),
            resource_version: d.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(CONTROLLER_FIELD_MANAGER.into()),
        reporting_instance: Some(COMPONENT.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(error = %e, reason, "recording an event");
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    prune(&ctx);
    let uid = d.metadata.uid.clone().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() || !enabled(&d) {
        lock(&ctx.seen).remove(&uid);
        return Ok(Action::await_change());
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if replicas == 0 {
        lock(&ctx.seen).insert(uid, Seen::AtZero);
        return Ok(Action::await_change());
    }
    let idle = match idle_period(&d) {
        Ok(idle) => {
            lock(&ctx.reported).remove(&uid);
            idle
        }
        Err(e) => {
            let value = d
                .annotations()
                .get(SCALE_TO_ZERO_IDLE)
                .cloned()
                .unwrap_or_default();
            let first = lock(&ctx.reported).insert(uid, value.clone()) != Some(value);
            if first {
                let msg = format!("{SCALE_TO_ZERO_IDLE}: {e}; the Deployment is not scaled");
                record(&ctx, &d, "Warning", INVALID_IDLE, msg).await;
            }
            return Ok(Action::await_change());
        }
    };
    let now = ctx.clock.now();
    let prev = lock(&ctx.seen).get(&uid).copied();
    let up_since = match prev {
        Some(Seen::Up(t)) => t,
        _ => now,
    };
    lock(&ctx.seen).insert(uid.clone(), Seen::Up(up_since));
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let last = last_request(&d);
    let stamp = prev == Some(Seen::AtZero) || last.is_none();
    if stamp && last.is_none_or(|l| l < now) {
        let patch =
            serde_json::json!({"metadata": {"annotations": {LAST_REQUEST: now.to_string()}}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        // The write's own event brings the Deployment back with the stamp.
        return Ok(Action::await_change());
    }
    match decide(now, up_since, last, idle) {
        // A period longer than a week is looked at again weekly (an Instant cannot hold any).
        Decision::Wait(left) => Ok(Action::requeue(left.min(MAX_WAIT))),
        Decision::ScaleDown => {
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": d.metadata.resource_version},
                "spec": {"replicas": 0},
            });
            match api
                .patch_scale(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                // Changed meanwhile (a router scaled it or recorded a request): the newer
                // version's event brings it back.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    return Ok(Action::await_change());
                }
                Err(e) => return Err(e.into()),
            }
            lock(&ctx.seen).insert(uid, Seen::AtZero);
            let msg = format!(
                "Scaled down from {replicas} to 0: no request for {} (idle period {})",
                jiff::SignedDuration::try_from(idle).unwrap_or_default(),
                d.annotations()
                    .get(SCALE_TO_ZERO_IDLE)
                    .map_or("60s (default)", String::as_str),
            );
            record(&ctx, &d, "Normal", SCALED_TO_ZERO, msg).await;
            Ok(Action::await_change())
        }
    }
}

/// Runs the scale-to-zero controller until the stream ends.
pub async fn run(
    ctx: Arc<Ctx>,
    deployments: (
        impl Stream<Item = Result<Deployment, watcher::Error>> + Send + 'static,
        Store<Deployment>,
    ),
) {
    let controller = Controller::for_stream(deployments.0, deployments.1);
    crate::runner::run("scaletozero", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_000_000 + s).unwrap()
    }

    #[test]
    fn scales_down_at_the_end_of_the_idle_period_not_before() {
        let idle = Duration::from_secs(60);
        assert_eq!(
            decide(at(59), at(0), None, idle),
            Decision::Wait(Duration::from_secs(1))
        );
        assert_eq!(decide(at(60), at(0), None, idle), Decision::ScaleDown);
        assert_eq!(
            decide(at(61), at(0), Some(at(-30)), idle),
            Decision::ScaleDown
        );
    }

    #[test]
    fn a_recent_request_or_scale_up_postpones_it() {
        let idle = Duration::from_secs(60);
        assert_eq!(
            decide(at(60), at(0), Some(at(45)), idle),
            Decision::Wait(Duration::from_secs(45))
        );
        assert_eq!(
            decide(at(60), at(30), Some(at(10)), idle),
            Decision::Wait(Duration::from_secs(30))
        );
        assert_eq!(
            decide(at(105), at(0), Some(at(45)), idle),
            Decision::ScaleDown
        );
        assert_eq!(
            decide(at(0), at(0), None, Duration::MAX),
            Decision::Wait(Duration::MAX)
        );
    }

    #[test]
    fn annotations() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "annotations": {
                SCALE_TO_ZERO: "true", SCALE_TO_ZERO_IDLE: "5m",
                LAST_REQUEST: "2026-12-05T10:00:00Z"}},
        }))
        .unwrap();
        assert!(enabled(&d));
        assert_eq!(idle_period(&d), Ok(Duration::from_secs(300)));
        assert_eq!(
            last_request(&d).map(|t| t.to_string()).as_deref(),
            Some("2026-12-05T10:00:00Z")
        );
        let plain = Deployment::default();
        assert!(!enabled(&plain));
        assert_eq!(idle_period(&plain), Ok(SCALE_TO_ZERO_IDLE_DEFAULT));
    }
}
