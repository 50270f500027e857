//! HorizontalPodAutoscaler controller (`autoscaling/v2`), as Kubernetes'
//! `pkg/controller/podautoscaler`: every `--horizontal-pod-autoscaler-sync-period` it reads each
//! HPA's target through its `/scale` subresource, the usage of the target's pods from
//! `metrics.k8s.io/v1beta1` PodMetrics (through a [`MetricsSource`]), computes the replicas
//! (`replicas`: Kubernetes' replica calculator; `behavior`: stabilization, rate policies and
//! the min/max clamp), writes the scale with the resourceVersion it read as a precondition, and
//! reports in the HPA's status (`currentReplicas`, `desiredReplicas`, `currentMetrics`,
//! `lastScaleTime`, the `AbleToScale`/`ScalingActive`/`ScalingLimited` conditions) and in Events
//! (`SuccessfulRescale`, `FailedGetScale`, `FailedGetResourceMetric`,
//! `FailedComputeMetricsReplicas`, `FailedRescale`), with Kubernetes' reasons and messages.
//!
//! Supported metrics: `Resource` and `ContainerResource` (cpu, memory — `Utilization` of the
//! requests or `AverageValue`). `Pods`, `Object` and `External` metrics need the
//! custom/external metrics APIs, which Skiff does not serve: such a metric is reported invalid
//! with a clear message, and the other metrics still scale.
//!
//! A target at zero replicas is left there (`ScalingDisabled`, as Kubernetes): a Deployment
//! that scale-to-zero parked at 0 stays at 0 until a request wakes it, and the HPA takes over
//! from 1.

pub mod behavior;
pub mod replicas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, CrossVersionObjectReference, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use skiff_meta::names::CONTROLLER_FIELD_MANAGER;
use skiff_meta::selector::LabelSelector;
use skiff_meta::stats::PodMetrics;

use crate::informer::Synced;
use crate::{Clock, Error};

use self::behavior::{Bounds, History};

/// The Events' source component, as Kubernetes'.
pub const COMPONENT: &str = "horizontal-pod-autoscaler";

/// Timings and tolerance of the controller (kube-controller-manager's
/// `--horizontal-pod-autoscaler-*` flags, with their defaults).
#[derive(Clone, Debug)]
pub struct HpaOptions {
    /// How often every HPA is looked at (`--horizontal-pod-autoscaler-sync-period`, 15s).
    pub sync_period: Duration,
    /// How far the usage ratio may be from 1 without a change (`...-tolerance`, 0.1).
    pub tolerance: f64,
    /// After a pod starts, how long its cpu samples count only once it is ready and measured
    /// over a full window since (`...-cpu-initialization-period`, 5m).
    pub cpu_initialization_period: Duration,
    /// After a pod starts, how long it may be unready and still count as having never been
    /// ready (`...-initial-readiness-delay`, 30s).
    pub initial_readiness_delay: Duration,
    /// The scale-down stabilization window of an HPA that sets none
    /// (`...-downscale-stabilization`, 5m).
    pub downscale_stabilization: Duration,
}

impl Default for HpaOptions {
    fn default() -> Self {
        HpaOptions {
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            downscale_stabilization: Duration::from_secs(300),
        }
    }
}

/// Where pod usage comes from.
pub trait MetricsSource: Send + Sync {
    /// The `metrics.k8s.io/v1beta1` PodMetrics of the pods in `namespace` matching the label
    /// selector `selector`, or why they could not be read.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>>;
}

/// PodMetrics listed from the API server's `metrics.k8s.io/v1beta1`.
pub struct ApiMetrics {
    client: Client,
}

impl ApiMetrics {
    /// Lists through `client`.
    pub fn new(client: Client) -> ApiMetrics {
        ApiMetrics { client }
    }
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

impl MetricsSource for ApiMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        Box::pin(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &pod_metrics_resource());
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| kube_message(&e))?;
            list.items
                .into_iter()
                .map(|o| {
                    serde_json::to_value(o)
                        .and_then(serde_json::from_value::<PodMetrics>)
                        .map_err(|e| format!("decoding PodMetrics: {e}"))
                })
                .collect()
        })
    }
}

/// An API error's own message (the Status message), as Kubernetes' errors print.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// The target's scale as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.selector` (a label selector string).
    pub selector: String,
}

/// An Event to record on the HPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn warning(reason: &'static str, message: String) -> Note {
    Note {
        type_: "Warning",
        reason,
        message,
    }
}

/// The outcome of one sync before the scale is written.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The status to write (conditions set; `lastScaleTime` still the old one).
    pub status: HorizontalPodAutoscalerStatus,
    /// The target's replicas now.
    pub current: i32,
    /// The replicas wanted.
    pub desired: i32,
    /// When the target must be scaled to `desired`: the reason, for the Event.
    pub rescale: Option<String>,
    /// Events found on the way.
    pub notes: Vec<Note>,
    /// Why the sync failed, if it did (it is retried at the next sync).
    pub error: Option<String>,
}

/// Sets a condition, keeping its transition time unless its status changes (Kubernetes'
/// `setCondition`).
pub fn set_condition(
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) {
    let new = HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let keep = c.status == status;
            let since = c.last_transition_time.clone();
            *c = new;
            if keep && since.is_some() {
                c.last_transition_time = since;
            }
        }
        None => conds.push(new),
    }
}

/// One metric's proposal.
struct MetricProposal {
    replicas: i32,
    name: String,
    status: MetricStatus,
}

/// Why one metric could not be computed: the error and the `ScalingActive` condition reason.
struct MetricFailure {
    error: String,
    reason: &'static str,
    message: String,
}

fn milli_quantity(milli: i64) -> Quantity {
    Quantity(skiff_meta::quantity::Quantity::from_milli(i128::from(milli)).to_string())
}

/// Computes the replicas for one Resource/ContainerResource metric.
#[allow(clippy::too_many_arguments)]
fn resource_metric(
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    current: i32,
    raw: &Result<Vec<PodMetrics>, String>,
    pods: &[&Pod],
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Result<(i32, String, MetricValueStatus), String> {
    let value_target = target.average_value.as_ref();
    let kind = if value_target.is_some() {
        "usage"
    } else {
        "utilization"
    };
    let fetched = match raw {
        Err(e) => Err(format!(
            "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}"
        )),
        Ok(list) if list.is_empty() => Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )),
        Ok(list) => Ok(replicas::pod_usage(list, resource, container)),
    };
    let wrap = |e: String| format!("failed to get {resource} {kind}: {e}");
    if let Some(v) = value_target {
        let usage = fetched.map_err(wrap)?;
        let p = replicas::raw_resource_replicas(
            current,
            replicas::milli(v),
            resource,
            usage,
            pods,
            opts,
            now,
        )
        .map_err(wrap)?;
        let status = MetricValueStatus {
            average_value: Some(milli_quantity(p.average)),
            ..Default::default()
        };
        return Ok((p.replicas, format!("{resource} resource"), status));
    }
    let Some(utilization) = target.average_utilization else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
    };
    let usage = fetched.map_err(wrap)?;
    let p = replicas::resource_replicas(
        current,
        utilization,
        resource,
        container,
        usage,
        pods,
        opts,
        now,
    )
    .map_err(wrap)?;
    let name = if container.is_some() {
        format!("{resource} container resource utilization (percentage of request)")
    } else {
        format!("{resource} resource utilization (percentage of request)")
    };
    let status = MetricValueStatus {
        average_utilization: Some(p.utilization),
        average_value: Some(milli_quantity(p.average)),
        value: None,
    };
    Ok((p.replicas, name, status))
}

fn unable(reason: &'static str, error: String) -> MetricFailure {
    MetricFailure {
        message: format!("the HPA was unable to compute the replica count: {error}"),
        error,
        reason,
    }
}

/// Kubernetes' `computeReplicasForMetric`.
fn compute_metric(
    spec: &MetricSpec,
    current: i32,
    raw: &Result<Vec<PodMetrics>, String>,
    pods: &[&Pod],
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Result<MetricProposal, MetricFailure> {
    let not_served = |what: &str, api: &str| {
        format!("{what} metrics are not supported: this cluster does not serve {api}")
    };
    match spec.type_.as_str() {
        "Resource" => {
            let Some(r) = spec.resource.as_ref() else {
                return Err(unable(
                    "InvalidMetricSourceType",
                    "a Resource metric without a resource".into(),
                ));
            };
            match resource_metric(&r.name, None, &r.target, current, raw, pods, opts, now) {
                Ok((replicas, name, current)) => Ok(MetricProposal {
                    replicas,
                    name,
                    status: MetricStatus {
                        type_: "Resource".into(),
                        resource: Some(ResourceMetricStatus {
                            name: r.name.clone(),
                            current,
                        }),
                        ..Default::default()
                    },
                }),
                Err(e) => Err(MetricFailure {
                    message: format!("the HPA was unable to compute the replica count: {e}"),
                    error: format!("failed to get {} resource metric value: {e}", r.name),
                    reason: "FailedGetResourceMetric",
                }),
            }
        }
        "ContainerResource" => {
            let Some(r) = spec.container_resource.as_ref() else {
                return Err(unable(
                    "InvalidMetricSourceType",
                    "a ContainerResource metric without a containerResource".into(),
                ));
            };
            match resource_metric(
                &r.name,
                Some(&r.container),
                &r.target,
                current,
                raw,
                pods,
                opts,
                now,
            ) {
                Ok((replicas, name, current)) => Ok(MetricProposal {
                    replicas,
                    name,
                    status: MetricStatus {
                        type_: "ContainerResource".into(),
                        container_resource: Some(ContainerResourceMetricStatus {
                            name: r.name.clone(),
                            container: r.container.clone(),
                            current,
                        }),
                        ..Default::default()
                    },
                }),
                Err(e) => Err(MetricFailure {
                    message: format!("the HPA was unable to compute the replica count: {e}"),
                    error: format!("failed to get {} container metric value: {e}", r.container),
                    reason: "FailedGetContainerResourceMetric",
                }),
            }
        }
        "Pods" => Err(unable(
            "FailedGetPodsMetric",
            not_served("Pods", "custom.metrics.k8s.io"),
        )),
        "Object" => Err(unable(
            "FailedGetObjectMetric",
            not_served("Object", "custom.metrics.k8s.io"),
        )),
        "External" => Err(unable(
            "FailedGetExternalMetric",
            not_served("External", "external.metrics.k8s.io"),
        )),
        other => Err(unable(
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

/// One sync of an HPA whose target's scale was read: the replicas it wants and the status
/// that explains them (Kubernetes' `reconcileAutoscaler` up to the scale write). `pods` are the
/// pods of the HPA's namespace; `history` is what this HPA remembers between syncs.
pub async fn plan(
    hpa: &HorizontalPodAutoscaler,
    target: &Target,
    pods: &[Arc<Pod>],
    metrics: &dyn MetricsSource,
    history: &mut History,
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Plan {
    let old = hpa.status.clone().unwrap_or_default();
    let mut conds = old.conditions.clone().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut notes = Vec::new();
    set_condition(
        &mut conds,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
        now,
    );
    let current = target.replicas;
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut statuses: Option<Vec<MetricStatus>> = None;
    let mut error = None;
    let (desired, rescale) = if current == 0 && min != 0 {
        set_condition(
            &mut conds,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
            now,
        );
        (0, None)
    } else if current > max {
        (
            max,
            Some("Current number of replicas above Spec.MaxReplicas".to_string()),
        )
    } else if current < min {
        (
            min,
            Some("Current number of replicas below Spec.MinReplicas".to_string()),
        )
    } else {
        let ns = hpa.namespace().unwrap_or_default();
        let computed = compute_all(
            &spec.metrics.clone().unwrap_or_default(),
            target,
            &ns,
            pods,
            metrics,
            opts,
            now,
            &mut conds,
            &mut notes,
        )
        .await;
        let (metric_replicas, metric_name, st, err) = computed;
        statuses = st;
        if let Some(e) = &err
            && metric_replicas < 0
        {
            notes.push(warning("FailedComputeMetricsReplicas", e.clone()));
            let mut status = old.clone();
            status.current_replicas = Some(current);
            status.current_metrics = statuses.filter(|s| !s.is_empty());
            status.conditions = Some(conds);
            status.observed_generation = hpa.metadata.generation;
            return Plan {
                status,
                current,
                desired: old.desired_replicas,
                rescale: None,
                notes,
                error: Some(e.clone()),
            };
        }
        error = err;
        let proposed = metric_replicas.max(0);
        let reason = if proposed > current {
            format!("{metric_name} above target")
        } else {
            "All metrics below target".to_string()
        };
        let bounds = Bounds {
            current,
            desired: proposed,
            min,
            max,
        };
        let n = match &spec.behavior {
            None => history.normalize(bounds, opts.downscale_stabilization, now),
            Some(b) => {
                history.normalize_with_behavior(b, bounds, opts.downscale_stabilization, now)
            }
        };
        for (t, s, r, m) in [n.able_to_scale, n.scaling_limited] {
            set_condition(&mut conds, t, s, r, m, now);
        }
        (n.replicas, (n.replicas != current).then_some(reason))
    };
    let desired = if rescale.is_some() { desired } else { current };
    let status = HorizontalPodAutoscalerStatus {
        conditions: Some(conds),
        current_metrics: statuses.filter(|s| !s.is_empty()),
        current_replicas: Some(current),
        desired_replicas: desired,
        last_scale_time: old.last_scale_time.clone(),
        observed_generation: hpa.metadata.generation,
    };
    Plan {
        status,
        current,
        desired,
        rescale,
        notes,
        error,
    }
}

/// Kubernetes' `computeReplicasForMetrics`: the largest proposal of the valid metrics, its
/// metric's name, the status of every metric (an invalid one left empty), and the error of
/// the first invalid one. Replicas are -1 when every metric is invalid, or when some are and
/// the valid ones would scale down.
#[allow(clippy::too_many_arguments)]
async fn compute_all(
    specs: &[MetricSpec],
    target: &Target,
    namespace: &str,
    pods: &[Arc<Pod>],
    metrics: &dyn MetricsSource,
    opts: &HpaOptions,
    now: jiff::Timestamp,
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
    notes: &mut Vec<Note>,
) -> (i32, String, Option<Vec<MetricStatus>>, Option<String>) {
    let selector = if target.selector.is_empty() {
        Err((
            "SelectorRequired",
            "selector is required".to_string(),
            "the HPA target's scale is missing a selector".to_string(),
        ))
    } else {
        LabelSelector::parse(&target.selector).map_err(|e| {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {}",
                e.0
            );
            ("InvalidSelector", msg.clone(), msg)
        })
    };
    let selector = match selector {
        Ok(s) => s,
        Err((event, error, message)) => {
            notes.push(warning(event, error.clone()));
            set_condition(
                conds,
                "ScalingActive",
                "False",
                "InvalidSelector",
                message,
                now,
            );
            return (-1, String::new(), None, Some(error));
        }
    };
    let matching: Vec<&Pod> = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&Default::default())))
        .collect();
    let wants_resources = specs
        .iter()
        .any(|m| matches!(m.type_.as_str(), "Resource" | "ContainerResource"));
    let raw = if wants_resources {
        metrics.pod_metrics(namespace, &target.selector).await
    } else {
        Ok(Vec::new())
    };
    let mut statuses = vec![MetricStatus::default(); specs.len()];
    let (mut replicas, mut name) = (0i32, String::new());
    let mut invalid = 0usize;
    let mut first: Option<MetricFailure> = None;
    for (i, spec) in specs.iter().enumerate() {
        match compute_metric(spec, target.replicas, &raw, &matching, opts, now) {
            Ok(p) => {
                if replicas == 0 || p.replicas > replicas {
                    replicas = p.replicas;
                    name = p.name;
                }
                statuses[i] = p.status;
            }
            Err(f) => {
                notes.push(warning(f.reason, f.error.clone()));
                invalid += 1;
                if first.is_none() {
                    first = Some(f);
                }
            }
        }
    }
    let error = first.as_ref().map(|f| {
        format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {}",
            specs.len(),
            f.error
        )
    });
    if invalid >= specs.len() || (invalid > 0 && replicas < target.replicas) {
        if let Some(f) = &first {
            set_condition(
                conds,
                "ScalingActive",
                "False",
                f.reason,
                f.message.clone(),
                now,
            );
        } else {
            set_condition(
                conds,
                "ScalingActive",
                "False",
                "InvalidMetricSourceType",
                "the HPA was unable to compute the replica count: no metrics".into(),
                now,
            );
        }
        let error = error.unwrap_or_else(|| "the HPA has no metrics".into());
        return (-1, String::new(), Some(statuses), Some(error));
    }
    set_condition(
        conds,
        "ScalingActive",
        "True",
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {name}"),
        now,
    );
    (replicas, name, Some(statuses), error)
}

/// An Event's identity for counting repeats: the HPA's uid, the reason and the message.
type EventKey = (String, String, String);

/// Shared state of the controller.
pub struct Ctx {
    client: Client,
    clock: Clock,
    opts: HpaOptions,
    hpas: Store<HorizontalPodAutoscaler>,
    pods: Store<Pod>,
    metrics: Arc<dyn MetricsSource>,
    /// What each HPA remembers, by uid.
    histories: Mutex<HashMap<String, History>>,
    /// Events already recorded, by (HPA uid, reason, message): the Event's name and count, so a
    /// repeat raises the count as Kubernetes' event recorder does.
    recorded: Mutex<HashMap<EventKey, (String, i32)>>,
    /// Scale subresources found through discovery, by (apiVersion, kind).
    discovered: Mutex<HashMap<(String, String), ApiResource>>,
}

impl Ctx {
    /// The controller's state over the shared stores.
    pub fn new(
        client: Client,
        clock: Clock,
        opts: HpaOptions,
        hpas: Store<HorizontalPodAutoscaler>,
        pods: Store<Pod>,
        metrics: Arc<dyn MetricsSource>,
    ) -> Ctx {
        Ctx {
            client,
            clock,
            opts,
            hpas,
            pods,
            metrics,
            histories: Mutex::default(),
            recorded: Mutex::default(),
            discovered: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resource of a scale target: the built-in workloads directly, anything else through
/// discovery (it must have a `scale` subresource).
async fn target_resource(
    ctx: &Ctx,
    r: &CrossVersionObjectReference,
) -> Result<ApiResource, String> {
    let api_version = r.api_version.clone().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    if version.is_empty() {
        return Err(format!(
            "unexpected GroupVersion string: {api_version:?} (scaleTargetRef.apiVersion)"
        ));
    }
    let plural = match (group.as_str(), r.kind.as_str()) {
        ("apps", "Deployment") => Some("deployments"),
        ("apps", "ReplicaSet") => Some("replicasets"),
        ("apps", "StatefulSet") => Some("statefulsets"),
        ("", "ReplicationController") => Some("replicationcontrollers"),
        _ => None,
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
    if let Some(plural) = plural {
        return Ok(ApiResource::from_gvk_with_plural(&gvk, plural));
    }
    let key = (api_version.clone(), r.kind.clone());
    if let Some(ar) = lock(&ctx.discovered).get(&key) {
        return Ok(ar.clone());
    }
    let (ar, caps) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| {
            format!(
                "no matches for kind {:?} in group {group:?}: {}",
                r.kind,
                kube_message(&e)
            )
        })?;
    if !caps.subresources.iter().any(|(s, _)| s.plural == "scale") {
        return Err(format!("{}.{group} has no scale subresource", ar.plural));
    }
    lock(&ctx.discovered).insert(key, ar.clone());
    Ok(ar)
}

/// Records `note` on the HPA, raising the count of the same Event when it repeats.
async fn record(ctx: &Ctx, hpa: &HorizontalPodAutoscaler, note: &Note) {
    let ns = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let uid = hpa.metadata.uid.clone().unwrap_or_default();
    let now = Time(ctx.clock.now());
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    let key = (uid.clone(), note.reason.to_string(), note.message.clone());
    let seen = lock(&ctx.recorded).get(&key).cloned();
    if let Some((event_name, count)) = seen {
        let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
        if events
            .patch(&event_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .is_ok()
        {
            lock(&ctx.recorded).insert(key, (event_name, count + 1));
            return;
        }
    }
    let event_name = format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond() as u64);
    let event = Event {
        metadata: ObjectMeta {
            name: Some(event_name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("autoscaling/v2".into()),
            kind: Some("HorizontalPodAutoscaler".into()),
            name: Some(name),
            namespace: Some(ns),
            uid: hpa.metadata.uid.clone(),
            resource_version: hpa.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(note.reason.into()),
        message: Some(note.message.clone()),
        type_: Some(note.type_.into()),
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
    match events.create(&PostParams::default(), &event).await {
        Ok(_) => {
            lock(&ctx.recorded).insert(key, (event_name, 1));
        }
        Err(e) => tracing::warn!(error = %e, reason = note.reason, "recording an event"),
    }
}

/// Writes `status` when it differs from what the HPA holds.
async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    status: HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    let mut obj = hpa.clone();
    obj.status = Some(status);
    match api
        .replace_status(&hpa.name_any(), &PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(()),
        // Changed or deleted meanwhile: the next sync starts from the new version.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One sync of one HPA.
pub async fn reconcile(ctx: &Ctx, hpa: &HorizontalPodAutoscaler) -> Result<(), Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let now = ctx.clock.now();
    let ns = hpa.namespace().unwrap_or_default();
    let uid = hpa.metadata.uid.clone().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let target_ref = &spec.scale_target_ref;
    let scale_api = match target_resource(ctx, target_ref).await {
        Ok(ar) => Ok(Api::<DynamicObject>::namespaced_with(
            ctx.client.clone(),
            &ns,
            &ar,
        )),
        Err(e) => Err(e),
    };
    let scale = match &scale_api {
        Ok(api) => api
            .get_scale(&target_ref.name)
            .await
            .map_err(|e| kube_message(&e)),
        Err(e) => Err(e.clone()),
    };
    let (api, scale) = match (scale_api, scale) {
        (Ok(api), Ok(scale)) => (api, scale),
        (_, Err(e)) | (Err(e), _) => {
            record(ctx, hpa, &warning("FailedGetScale", e.clone())).await;
            let mut status = hpa.status.clone().unwrap_or_default();
            let mut conds = status.conditions.take().unwrap_or_default();
            set_condition(
                &mut conds,
                "AbleToScale",
                "False",
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
                now,
            );
            status.conditions = Some(conds);
            write_status(ctx, hpa, status).await?;
            return Err(Error::NotSupported(format!(
                "failed to query scale subresource for {}/{}: {e}",
                target_ref.kind, target_ref.name
            )));
        }
    };
    let target = Target {
        replicas: scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
        selector: scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default(),
    };
    let pods = ctx.pods.state();
    let mut history = lock(&ctx.histories).remove(&uid).unwrap_or_default();
    let mut p = plan(
        hpa,
        &target,
        &pods,
        ctx.metrics.as_ref(),
        &mut history,
        &ctx.opts,
        now,
    )
    .await;
    let mut result = p.error.clone().map(Error::NotSupported);
    if let Some(reason) = p.rescale.clone() {
        let written = rescale(&api, &target_ref.name, &scale, p.desired).await;
        let conds = p.status.conditions.get_or_insert_with(Vec::new);
        match written {
            Ok(()) => {
                set_condition(
                    conds,
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    format!(
                        "the HPA controller was able to update the target scale to {}",
                        p.desired
                    ),
                    now,
                );
                p.notes.push(Note {
                    type_: "Normal",
                    reason: "SuccessfulRescale",
                    message: format!("New size: {}; reason: {reason}", p.desired),
                });
                history.store_scale_event(spec.behavior.as_ref(), p.current, p.desired, now);
                p.status.last_scale_time = Some(Time(now));
            }
            Err(e) => {
                p.notes.push(warning(
                    "FailedRescale",
                    format!("New size: {}; reason: {reason}; error: {e}", p.desired),
                ));
                set_condition(
                    conds,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                    now,
                );
                p.status.desired_replicas = hpa.status.as_ref().map_or(0, |s| s.desired_replicas);
                result = Some(Error::NotSupported(format!(
                    "failed to rescale {}/{}: {e}",
                    target_ref.kind, target_ref.name
                )));
            }
        }
    }
    lock(&ctx.histories).insert(uid, history);
    for note in &p.notes {
        record(ctx, hpa, note).await;
    }
    write_status(ctx, hpa, p.status).await?;
    match result {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes the target's replicas through `/scale`, with the resourceVersion read as a
/// precondition (a change meanwhile is a conflict, retried at the next sync).
async fn rescale(
    api: &Api<DynamicObject>,
    name: &str,
    read: &Scale,
    replicas: i32,
) -> Result<(), String> {
    let mut scale = read.clone();
    scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    scale.status = None;
    api.replace_scale(name, &PostParams::default(), &scale)
        .await
        .map(|_| ())
        .map_err(|e| kube_message(&e))
}

/// Forgets HPAs no longer in the store.
fn prune(ctx: &Ctx) {
    let uids: std::collections::HashSet<String> = ctx
        .hpas
        .state()
        .iter()
        .filter_map(|h| h.metadata.uid.clone())
        .collect();
    lock(&ctx.histories).retain(|uid, _| uids.contains(uid));
    let mut recorded = lock(&ctx.recorded);
    recorded.retain(|(uid, _, _), _| uids.contains(uid));
    // Messages that carry numbers (rescale failures) make new keys: past a bound, repeats
    // start new Events rather than the map growing.
    if recorded.len() > 64 * uids.len().max(1) {
        recorded.clear();
    }
}

/// Syncs every HPA each sync period until aborted (a new HPA is first looked at within one
/// period, as in Kubernetes).
pub async fn run(ctx: Arc<Ctx>, synced: Vec<Synced>) {
    Synced::all(&synced).await;
    let mut tick = tokio::time::interval(ctx.opts.sync_period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hpas = ctx.hpas.state();
        futures::stream::iter(hpas)
            .for_each_concurrent(4, |hpa| {
                let ctx = ctx.clone();
                async move {
                    if let Err(e) = reconcile(&ctx, &hpa).await {
                        tracing::info!(hpa = %format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any()), error = %e, "horizontal pod autoscaler sync failed");
                    }
                }
            })
            .await;
        prune(&ctx);
    }
}

#[cfg(test)]
mod tests;
