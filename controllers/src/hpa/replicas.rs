//! The HorizontalPodAutoscaler's replica calculator, as Kubernetes' `replica_calculator.go`:
//! from the pods' measured usage and their requests, the replica count that brings the average
//! to the target — within a tolerance, with missing pods counted at 0% on a scale-up and 100%
//! on a scale-down, and unready pods (or pods still in their CPU initialization period)
//! ignored on a scale-up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_meta::stats::PodMetrics;

use super::HpaOptions;

/// One pod's measured usage of a resource, in milli-units (millicores, or thousandths of a
/// byte), with when and over which window it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
}

/// Usage by pod name.
pub type PodMetricsInfo = BTreeMap<String, PodMetric>;

/// The usage of `resource` per pod from a metrics.k8s.io list: the sum over the pod's
/// containers (or the one `container`). A pod missing the resource in any container (or with
/// no containers) has no entry, as Kubernetes' metrics client.
pub fn pod_usage(raw: &[PodMetrics], resource: &str, container: Option<&str>) -> PodMetricsInfo {
    let mut out = PodMetricsInfo::new();
    for m in raw {
        let Some(name) = m.metadata.name.clone() else {
            continue;
        };
        let window = skiff_meta::duration::parse_go_duration(&m.window).unwrap_or_default();
        let timestamp = m.timestamp.0;
        let value = match container {
            Some(c) => m
                .containers
                .iter()
                .find(|x| x.name == c)
                .and_then(|x| x.usage.get(resource))
                .map(milli),
            None if m.containers.is_empty() => None,
            None => m
                .containers
                .iter()
                .map(|x| x.usage.get(resource).map(milli))
                .sum::<Option<i64>>(),
        };
        if let Some(value) = value {
            out.insert(
                name,
                PodMetric {
                    value,
                    timestamp,
                    window,
                },
            );
        }
    }
    out
}

/// A quantity in milli-units, rounded up as Go's `MilliValue` (an unreadable one is 0).
pub fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> i64 {
    skiff_meta::quantity::Quantity::parse(&q.0)
        .map(|q| q.milli_i64())
        .unwrap_or(0)
}

/// Whether `ratio` is close enough to 1 to leave the replica count alone.
fn within(tolerance: f64, ratio: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

/// Kubernetes' `groupPods`: the number of ready pods with metrics, and the names of the unready
/// (pending, or for cpu not ready / still initializing), missing (no metrics) and ignored
/// (deleted or failed) pods.
#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[&Pod],
    metrics: &PodMetricsInfo,
    resource: &str,
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Groups {
    let mut g = Groups::default();
    let after = |t: jiff::Timestamp, d: Duration| t.checked_add(d).unwrap_or(t);
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            g.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            g.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == "cpu" {
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let unready = match (ready, start) {
                (Some(cond), Some(start)) => {
                    let changed = cond.last_transition_time.as_ref().map_or(start, |t| t.0);
                    if after(start, opts.cpu_initialization_period) > now {
                        // Still initializing: ignore the sample if the pod is unready, or if no
                        // full window was measured since it last changed readiness.
                        cond.status == "False" || metric.timestamp < after(changed, metric.window)
                    } else {
                        // Ignore it if it is unready and never was ready.
                        cond.status == "False"
                            && after(start, opts.initial_readiness_delay) > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(name);
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Each pod's request of `resource` (summed over its containers, or the one `container`), in
/// milli-units; a container without a request is an error, as in Kubernetes.
fn pod_requests(
    pods: &[&Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else {
            out.insert(name, 0);
            continue;
        };
        // Regular containers and restartable (sidecar) init containers.
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            match c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
            {
                Some(q) => sum = sum.saturating_add(milli(q)),
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ));
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// Kubernetes' `GetResourceUtilizationRatio`: usage over requests of the pods with both, as a
/// ratio to the target, the utilization in percent and the average usage.
fn utilization_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, value) in metrics {
        let Some(request) = requests.get(name) else {
            continue;
        };
        used = used.saturating_add(*value);
        requested = requested.saturating_add(*request);
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(used.saturating_mul(100) / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target.max(1)),
        utilization,
        used / n.max(1),
    ))
}

/// What [`resource_replicas`] proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// The replica count.
    pub replicas: i32,
    /// The measured utilization of the ready pods, percent of their requests (0 for a value
    /// target).
    pub utilization: i32,
    /// The ready pods' average usage, milli-units.
    pub average: i64,
}

fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// Kubernetes' `GetResourceReplicas`: the replicas for a `Utilization` target (percent of
/// requests). `pods` are the pods the target's selector matches.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    mut metrics: PodMetricsInfo,
    pods: &[&Pod],
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, &metrics, resource, opts, now);
    metrics.retain(|name, _| !g.ignored.contains(name) && !g.unready.contains(name));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = pod_requests(pods, resource, container)?;
    let mut values: BTreeMap<String, i64> =
        metrics.iter().map(|(k, m)| (k.clone(), m.value)).collect();
    let (ratio, utilization, average) = utilization_ratio(&values, &requests, target_utilization)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if within(opts.tolerance, ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_i32(ratio * g.ready as f64)));
    }
    if !g.missing.is_empty() {
        if ratio < 1.0 {
            // On a scale-down a missing pod counts as using its whole request (or the target,
            // when that is above 100%).
            let fallback = i64::from(target_utilization.max(100));
            for name in &g.missing {
                let request = requests.get(name).copied().unwrap_or(0);
                values.insert(name.clone(), request.saturating_mul(fallback) / 100);
            }
        } else if ratio > 1.0 {
            for name in &g.missing {
                values.insert(name.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        for name in &g.unready {
            values.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&values, &requests, target_utilization)?;
    if within(opts.tolerance, new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil_i32(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// Kubernetes' `GetRawResourceReplicas`: the replicas for an `AverageValue` target
/// (`target_usage` in milli-units per pod).
pub fn raw_resource_replicas(
    current: i32,
    target_usage: i64,
    resource: &str,
    mut metrics: PodMetricsInfo,
    pods: &[&Pod],
    opts: &HpaOptions,
    now: jiff::Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, &metrics, resource, opts, now);
    metrics.retain(|name, _| !g.ignored.contains(name) && !g.unready.contains(name));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let target = target_usage.max(1);
    let usage_ratio = |values: &BTreeMap<String, i64>| {
        let total: i64 = values.values().fold(0i64, |a, v| a.saturating_add(*v));
        let average = total / (values.len().max(1) as i64);
        (average as f64 / target as f64, average)
    };
    let mut values: BTreeMap<String, i64> =
        metrics.iter().map(|(k, m)| (k.clone(), m.value)).collect();
    let (ratio, average) = usage_ratio(&values);
    let proposal = |replicas| Proposal {
        replicas,
        utilization: 0,
        average,
    };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if within(opts.tolerance, ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_i32(ratio * g.ready as f64)));
    }
    if !g.missing.is_empty() {
        // On a scale-down a missing pod uses exactly the target; on a scale-up nothing.
        let fill = if ratio < 1.0 { target_usage } else { 0 };
        for name in &g.missing {
            values.insert(name.clone(), fill);
        }
    }
    if scale_up_with_unready {
        for name in &g.unready {
            values.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _) = usage_ratio(&values);
    if within(opts.tolerance, new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil_i32(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}
