//! Tests of the HorizontalPodAutoscaler controller: the replica calculator and behavior with
//! Kubernetes' own numbers (`replica_calculator_test.go`, `horizontal_test.go`), and whole
//! syncs over a fake metrics source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use skiff_meta::stats::PodMetrics;

use super::behavior::{Bounds, History};
use super::replicas::{self, PodMetric, PodMetricsInfo, Proposal};
use super::*;

fn at(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

const NOW: i64 = 10_000;

/// A pod `name` with one container requesting `request_m` millicores (and 1000Mi memory),
/// Running and Ready since long ago unless `ready` says otherwise.
fn pod(name: &str, request_m: i64, ready: &str, started: i64, ready_since: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {
            "cpu": format!("{request_m}m"), "memory": "1000Mi"}}}]},
        "status": {"phase": "Running", "startTime": at(started).to_string(),
            "conditions": [{"type": "Ready", "status": ready,
                "lastTransitionTime": at(ready_since).to_string()}]},
    }))
    .unwrap()
}

fn ready_pod(name: &str, request_m: i64) -> Pod {
    pod(name, request_m, "True", 0, 60)
}

fn usage(values: &[(&str, i64)]) -> PodMetricsInfo {
    values
        .iter()
        .map(|(name, v)| {
            (
                name.to_string(),
                PodMetric {
                    value: *v,
                    timestamp: at(NOW - 5),
                    window: Duration::from_secs(30),
                },
            )
        })
        .collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

/// Kubernetes' `replicaCalcTestCase` for cpu `Utilization`: pods with `requests` (millicores),
/// `levels` of usage (None: no metric), readiness, start times.
struct Case {
    current: i32,
    target: i32,
    requests: Vec<i64>,
    levels: Vec<Option<i64>>,
    pods: Option<Vec<Pod>>,
    expect: Result<Proposal, &'static str>,
}

fn run_case(c: Case) {
    let n = c.requests.len();
    let pods: Vec<Pod> = c.pods.unwrap_or_else(|| {
        names(n)
            .iter()
            .zip(&c.requests)
            .map(|(name, r)| ready_pod(name, *r))
            .collect()
    });
    let values: Vec<(String, i64)> = names(n)
        .into_iter()
        .zip(&c.levels)
        .filter_map(|(name, l)| l.map(|l| (name, l)))
        .collect();
    let metrics = usage(
        &values
            .iter()
            .map(|(n, v)| (n.as_str(), *v))
            .collect::<Vec<_>>(),
    );
    let refs: Vec<&Pod> = pods.iter().collect();
    let got = replicas::resource_replicas(
        c.current,
        c.target,
        "cpu",
        None,
        metrics,
        &refs,
        &HpaOptions::default(),
        at(NOW),
    );
    assert_eq!(got, c.expect.map_err(str::to_string));
}

fn proposal(replicas: i32, utilization: i32, average: i64) -> Result<Proposal, &'static str> {
    Ok(Proposal {
        replicas,
        utilization,
        average,
    })
}

#[test]
fn scale_up_by_the_usage_ratio() {
    // TestReplicaCalcScaleUp: 3 pods of 1 core at 300m, 500m, 700m, target 30% -> 5.
    run_case(Case {
        current: 3,
        target: 30,
        requests: vec![1000; 3],
        levels: vec![Some(300), Some(500), Some(700)],
        pods: None,
        expect: proposal(5, 50, 500),
    });
}

#[test]
fn scale_down_by_the_usage_ratio() {
    // TestReplicaCalcScaleDown: 5 pods, 28% of requests against 50% -> 3.
    run_case(Case {
        current: 5,
        target: 50,
        requests: vec![1000; 5],
        levels: [100, 300, 500, 250, 250].map(Some).to_vec(),
        pods: None,
        expect: proposal(3, 28, 280),
    });
}

#[test]
fn within_the_tolerance_nothing_changes() {
    // TestReplicaCalcTolerance: 102% of requests against 100%.
    let pods = vec![
        ready_pod("p0", 900),
        ready_pod("p1", 1000),
        ready_pod("p2", 1100),
    ];
    run_case(Case {
        current: 3,
        target: 100,
        requests: vec![900, 1000, 1100],
        levels: vec![Some(1010), Some(1030), Some(1020)],
        pods: Some(pods),
        expect: proposal(3, 102, 1020),
    });
}

#[test]
fn unready_pods_count_as_idle_on_a_scale_up() {
    // TestReplicaCalcScaleUpUnreadyLessScale: the unready pod's 300m is ignored and it counts
    // as 0% -> 4, not 5.
    let pods = vec![
        pod("p0", 1000, "False", 0, 0),
        ready_pod("p1", 1000),
        ready_pod("p2", 1000),
    ];
    run_case(Case {
        current: 3,
        target: 30,
        requests: vec![1000; 3],
        levels: vec![Some(300), Some(500), Some(700)],
        pods: Some(pods),
        expect: proposal(4, 60, 600),
    });
}

#[test]
fn a_hot_cpu_pod_counts_as_idle_on_a_scale_up() {
    // TestReplicaCalcScaleUpHotCpuLessScale: p0 started 10 s ago (within the cpu
    // initialization period) and became ready after its metric's window began.
    let pods = vec![
        pod("p0", 1000, "True", NOW - 10, NOW - 8),
        ready_pod("p1", 1000),
        ready_pod("p2", 1000),
    ];
    run_case(Case {
        current: 3,
        target: 30,
        requests: vec![1000; 3],
        levels: vec![Some(300), Some(500), Some(700)],
        pods: Some(pods),
        expect: proposal(4, 60, 600),
    });
}

#[test]
fn unready_pods_do_not_turn_a_scale_up_into_a_scale_down() {
    // TestReplicaCalcScaleUpUnreadyNoScale: ready usage says up, counting the unready at 0%
    // says down: no change.
    let pods = vec![
        ready_pod("p0", 1000),
        pod("p1", 1000, "False", 0, 0),
        pod("p2", 1000, "False", 0, 0),
    ];
    run_case(Case {
        current: 3,
        target: 30,
        requests: vec![1000; 3],
        levels: vec![Some(400), Some(500), Some(700)],
        pods: Some(pods),
        expect: proposal(3, 40, 400),
    });
}

#[test]
fn unready_pods_are_left_out_of_a_scale_down() {
    // TestReplicaCalcScaleDownIncludeUnreadyPods.
    let mut pods: Vec<Pod> = (0..3).map(|i| ready_pod(&format!("p{i}"), 1000)).collect();
    pods.push(pod("p3", 1000, "False", 0, 0));
    pods.push(pod("p4", 1000, "False", 0, 0));
    run_case(Case {
        current: 5,
        target: 50,
        requests: vec![1000; 5],
        levels: [100, 300, 500, 250, 250].map(Some).to_vec(),
        pods: Some(pods),
        expect: proposal(2, 30, 300),
    });
}

#[test]
fn missing_pods_count_as_fully_used_on_a_scale_down() {
    // 10% of requests against 50%: the ready pods alone say 1; the pod without metrics at
    // 100% makes it ceil(0.64 * 4) = 3.
    run_case(Case {
        current: 4,
        target: 50,
        requests: vec![1000; 4],
        levels: vec![Some(100), Some(100), Some(100), None],
        pods: None,
        expect: proposal(3, 10, 100),
    });
}

#[test]
fn a_missing_pod_at_zero_can_cancel_a_scale_up() {
    // 60% against 50% says up (4 of 3 measured); the missing pod at 0% makes 45%: a change of
    // direction, so no change.
    run_case(Case {
        current: 4,
        target: 50,
        requests: vec![1000; 4],
        levels: vec![Some(600), Some(600), Some(600), None],
        pods: None,
        expect: proposal(4, 60, 600),
    });
}

#[test]
fn failed_and_deleted_pods_are_ignored() {
    let mut failed = ready_pod("p1", 1000);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut deleting = ready_pod("p2", 1000);
    deleting.metadata.deletion_timestamp = Some(Time(at(0)));
    run_case(Case {
        current: 3,
        target: 50,
        requests: vec![1000; 3],
        levels: vec![Some(1000), Some(0), Some(0)],
        pods: Some(vec![ready_pod("p0", 1000), failed, deleting]),
        expect: proposal(2, 100, 1000),
    });
}

#[test]
fn calculator_errors_are_kubernetes_messages() {
    run_case(Case {
        current: 1,
        target: 50,
        requests: vec![],
        levels: vec![],
        pods: None,
        expect: Err("no pods returned by selector while calculating replica count"),
    });
    run_case(Case {
        current: 1,
        target: 50,
        requests: vec![1000],
        levels: vec![Some(100)],
        pods: Some(vec![pod("p0", 1000, "False", 0, 0)]),
        expect: Err("did not receive metrics for targeted pods (pods might be unready)"),
    });
    let mut no_request = ready_pod("p0", 1000);
    no_request.spec.as_mut().unwrap().containers[0].resources = None;
    run_case(Case {
        current: 1,
        target: 50,
        requests: vec![1000],
        levels: vec![Some(100)],
        pods: Some(vec![no_request]),
        expect: Err("missing request for cpu in container c of Pod p0"),
    });
}

#[test]
fn an_average_value_target_divides_the_mean_usage() {
    let pods: Vec<Pod> = (0..3).map(|i| ready_pod(&format!("p{i}"), 100)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let opts = HpaOptions::default();
    let m = usage(&[("p0", 200), ("p1", 200), ("p2", 200)]);
    assert_eq!(
        replicas::raw_resource_replicas(3, 100, "cpu", m, &refs, &opts, at(NOW)),
        Ok(Proposal {
            replicas: 6,
            utilization: 0,
            average: 200
        })
    );
    // Memory in milli-bytes: 3 pods at 150Mi against 100Mi -> 5 (1.5 * 3 = 4.5).
    let mi = 1024 * 1024 * 1000;
    let m = usage(&[("p0", 150 * mi), ("p1", 150 * mi), ("p2", 150 * mi)]);
    let got = replicas::raw_resource_replicas(3, 100 * mi, "memory", m, &refs, &opts, at(NOW));
    assert_eq!(got.map(|p| p.replicas), Ok(5));
}

#[test]
fn pod_usage_sums_containers_and_skips_incomplete_pods() {
    let list: Vec<PodMetrics> = serde_json::from_value(json!([
        {"metadata": {"name": "a"}, "timestamp": at(0).to_string(), "window": "10.5s",
         "containers": [{"name": "x", "usage": {"cpu": "150m", "memory": "1Ki"}},
                        {"name": "y", "usage": {"cpu": "2500000n", "memory": "1Ki"}}]},
        {"metadata": {"name": "b"}, "timestamp": at(0).to_string(), "window": "10s",
         "containers": [{"name": "x", "usage": {"memory": "1Ki"}}]},
        {"metadata": {"name": "c"}, "timestamp": at(0).to_string(), "window": "10s", "containers": []},
    ]))
    .unwrap();
    let cpu = replicas::pod_usage(&list, "cpu", None);
    assert_eq!(cpu.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(cpu["a"].value, 153);
    assert_eq!(cpu["a"].window, Duration::from_millis(10_500));
    assert_eq!(
        replicas::pod_usage(&list, "memory", None)["b"].value,
        1_024_000
    );
    assert_eq!(replicas::pod_usage(&list, "cpu", Some("y"))["a"].value, 3);
}

fn bounds(current: i32, desired: i32, min: i32, max: i32) -> Bounds {
    Bounds {
        current,
        desired,
        min,
        max,
    }
}

const WINDOW: Duration = Duration::from_secs(300);

#[test]
fn without_behavior_scale_up_is_at_most_double_and_at_least_four() {
    let mut h = History::default();
    let n = h.normalize(bounds(1, 10, 1, 10), WINDOW, at(0));
    assert_eq!(n.replicas, 4);
    assert_eq!(n.scaling_limited.1, "True");
    assert_eq!(n.scaling_limited.2, "ScaleUpLimit");
    let mut h = History::default();
    let n = h.normalize(bounds(3, 10, 1, 5), WINDOW, at(0));
    assert_eq!((n.replicas, n.scaling_limited.2), (5, "TooManyReplicas"));
    let mut h = History::default();
    let n = h.normalize(bounds(3, 0, 2, 5), WINDOW, at(0));
    assert_eq!((n.replicas, n.scaling_limited.2), (2, "TooFewReplicas"));
    let mut h = History::default();
    let n = h.normalize(bounds(3, 4, 1, 5), WINDOW, at(0));
    assert_eq!(
        (n.replicas, n.scaling_limited.1, n.scaling_limited.2),
        (4, "False", "DesiredWithinRange")
    );
    assert_eq!(n.able_to_scale.2, "ReadyForNewScale");
}

#[test]
fn without_behavior_scale_down_waits_for_the_stabilization_window() {
    let mut h = History::default();
    assert_eq!(h.normalize(bounds(5, 5, 1, 10), WINDOW, at(0)).replicas, 5);
    let n = h.normalize(bounds(5, 2, 1, 10), WINDOW, at(60));
    assert_eq!(n.replicas, 5);
    assert_eq!(n.able_to_scale.2, "ScaleDownStabilized");
    assert_eq!(
        h.normalize(bounds(5, 2, 1, 10), WINDOW, at(299)).replicas,
        5
    );
    // The recommendation of 5 is now older than the window; 2 has been seen since.
    let n = h.normalize(bounds(5, 2, 1, 10), WINDOW, at(301));
    assert_eq!(n.replicas, 2);
    assert_eq!(n.able_to_scale.2, "ReadyForNewScale");
}

fn behavior(v: serde_json::Value) -> HorizontalPodAutoscalerBehavior {
    serde_json::from_value(v).unwrap()
}

#[test]
fn scale_up_policies_select_the_largest_or_smallest_change() {
    let rules = |select: &str| {
        behavior(
            json!({"scaleUp": {"selectPolicy": select, "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60},
                         {"type": "Percent", "value": 100, "periodSeconds": 60}]}}),
        )
    };
    let mut h = History::default();
    let n = h.normalize_with_behavior(&rules("Max"), bounds(2, 20, 1, 100), WINDOW, at(0));
    assert_eq!((n.replicas, n.scaling_limited.2), (6, "ScaleUpLimit"));
    let mut h = History::default();
    let n = h.normalize_with_behavior(&rules("Min"), bounds(2, 20, 1, 100), WINDOW, at(0));
    assert_eq!(n.replicas, 4);
    let mut h = History::default();
    let n = h.normalize_with_behavior(&rules("Disabled"), bounds(2, 20, 1, 100), WINDOW, at(0));
    assert_eq!(n.replicas, 2);
    // With 10 replicas, 100% is the larger change.
    let mut h = History::default();
    let n = h.normalize_with_behavior(&rules("Max"), bounds(10, 50, 1, 100), WINDOW, at(0));
    assert_eq!(n.replicas, 20);
}

#[test]
fn scale_down_percent_counts_changes_within_its_period() {
    let b = behavior(json!({"scaleDown": {"stabilizationWindowSeconds": 0,
        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}}));
    let mut h = History::default();
    let n = h.normalize_with_behavior(&b, bounds(100, 10, 1, 200), WINDOW, at(0));
    assert_eq!((n.replicas, n.scaling_limited.2), (90, "ScaleDownLimit"));
    h.store_scale_event(Some(&b), 100, 90, at(0));
    // 30 s later the period still began at 100: no further step.
    let n = h.normalize_with_behavior(&b, bounds(90, 10, 1, 200), WINDOW, at(30));
    assert_eq!(n.replicas, 90);
    // Past the period, 10% of 90 (truncated: 81).
    let n = h.normalize_with_behavior(&b, bounds(90, 10, 1, 200), WINDOW, at(61));
    assert_eq!(n.replicas, 81);
    // The minimum wins over the policy.
    let mut h = History::default();
    let n = h.normalize_with_behavior(&b, bounds(100, 10, 95, 200), WINDOW, at(0));
    assert_eq!((n.replicas, n.scaling_limited.2), (95, "TooFewReplicas"));
}

#[test]
fn behavior_stabilizes_each_direction_over_its_own_window() {
    let b = behavior(json!({
        "scaleUp": {"stabilizationWindowSeconds": 30},
        "scaleDown": {"stabilizationWindowSeconds": 60}}));
    let mut h = History::default();
    assert_eq!(
        h.normalize_with_behavior(&b, bounds(2, 2, 1, 10), WINDOW, at(0))
            .replicas,
        2
    );
    // Scale-up must be wanted for the whole up window: 2 was recommended 10 s ago.
    let n = h.normalize_with_behavior(&b, bounds(2, 6, 1, 10), WINDOW, at(10));
    assert_eq!((n.replicas, n.able_to_scale.2), (2, "ScaleUpStabilized"));
    let n = h.normalize_with_behavior(&b, bounds(2, 6, 1, 10), WINDOW, at(41));
    assert_eq!(n.replicas, 6);
    // Scale-down takes the highest recommendation of the last 60 s.
    let n = h.normalize_with_behavior(&b, bounds(6, 1, 1, 10), WINDOW, at(50));
    assert_eq!((n.replicas, n.able_to_scale.2), (6, "ScaleDownStabilized"));
    let n = h.normalize_with_behavior(&b, bounds(6, 1, 1, 10), WINDOW, at(102));
    assert_eq!(n.replicas, 1);
}

#[test]
fn an_unset_scale_down_window_is_the_flag() {
    let b = behavior(json!({"scaleUp": {"stabilizationWindowSeconds": 0}}));
    let mut h = History::default();
    h.normalize_with_behavior(&b, bounds(4, 4, 1, 10), Duration::from_secs(20), at(0));
    let n = h.normalize_with_behavior(&b, bounds(4, 1, 1, 10), Duration::from_secs(20), at(10));
    assert_eq!(n.replicas, 4);
    let n = h.normalize_with_behavior(&b, bounds(4, 1, 1, 10), Duration::from_secs(20), at(21));
    assert_eq!(n.replicas, 1);
}

/// A metrics source answering from a fixed list (or an error).
struct FakeMetrics(Result<Vec<PodMetrics>, String>);

impl MetricsSource for FakeMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        assert_eq!((namespace, selector), ("d", "app=web"));
        Box::pin(futures::future::ready(self.0.clone()))
    }
}

fn cpu_metrics(values: &[(&str, &str)]) -> FakeMetrics {
    let list = values
        .iter()
        .map(|(name, cpu)| {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d"},
                "timestamp": at(NOW - 5).to_string(), "window": "10s",
                "containers": [{"name": "c", "usage": {"cpu": cpu, "memory": "10Mi"}}],
            }))
            .unwrap()
        })
        .collect();
    FakeMetrics(Ok(list))
}

fn hpa(metrics: serde_json::Value, min: i32, max: i32) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "d", "uid": "u1", "generation": 2},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max, "metrics": metrics},
    }))
    .unwrap()
}

fn cpu_50() -> serde_json::Value {
    json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 50}}}])
}

fn target(replicas: i32) -> Target {
    Target {
        replicas,
        status_replicas: replicas,
        selector: "app=web".into(),
    }
}

fn web_pods(n: usize) -> Vec<Arc<Pod>> {
    (0..n)
        .map(|i| Arc::new(ready_pod(&format!("p{i}"), 100)))
        .collect()
}

fn condition(p: &Plan, type_: &str) -> (String, String, String) {
    let c = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

async fn plan_of(
    h: &HorizontalPodAutoscaler,
    t: &Target,
    pods: &[Arc<Pod>],
    m: &FakeMetrics,
) -> Plan {
    let mut history = History::default();
    plan(h, t, pods, m, &mut history, &HpaOptions::default(), at(NOW)).await
}

#[tokio::test]
async fn a_busy_deployment_scales_up_with_kubernetes_status() {
    let h = hpa(cpu_50(), 1, 5);
    let p = plan_of(
        &h,
        &target(1),
        &web_pods(1),
        &cpu_metrics(&[("p0", "300m")]),
    )
    .await;
    assert_eq!(p.desired, 4);
    assert_eq!(
        p.rescale.as_deref(),
        Some("cpu resource utilization (percentage of request) above target")
    );
    assert_eq!(
        serde_json::to_value(&p.status.current_metrics).unwrap(),
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 300, "averageValue": "300m"}}}])
    );
    assert_eq!(p.status.current_replicas, Some(1));
    assert_eq!(p.status.desired_replicas, 4);
    assert_eq!(p.status.observed_generation, Some(2));
    assert_eq!(
        condition(&p, "ScalingActive"),
        (
            "True".into(),
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into()
        )
    );
    assert_eq!(condition(&p, "ScalingLimited").1, "ScaleUpLimit");
    assert_eq!(condition(&p, "AbleToScale").1, "ReadyForNewScale");
    assert!(p.notes.is_empty() && p.error.is_none());
}

#[tokio::test]
async fn an_idle_deployment_goes_down_after_the_window() {
    let h = hpa(cpu_50(), 1, 5);
    let pods = web_pods(3);
    let m = cpu_metrics(&[("p0", "1m"), ("p1", "2m"), ("p2", "0")]);
    let mut history = History::default();
    let opts = HpaOptions {
        downscale_stabilization: Duration::from_secs(30),
        ..Default::default()
    };
    let p = plan(&h, &target(3), &pods, &m, &mut history, &opts, at(NOW)).await;
    assert_eq!(p.desired, 1);
    assert_eq!(p.rescale.as_deref(), Some("All metrics below target"));
}

#[tokio::test]
async fn a_target_at_zero_is_left_at_zero() {
    let h = hpa(cpu_50(), 1, 5);
    let p = plan_of(&h, &target(0), &[], &FakeMetrics(Ok(vec![]))).await;
    assert_eq!((p.desired, p.rescale.clone()), (0, None));
    assert_eq!(
        condition(&p, "ScalingActive"),
        (
            "False".into(),
            "ScalingDisabled".into(),
            "scaling is disabled since the replica count of the target is zero".into()
        )
    );
}

#[tokio::test]
async fn replicas_outside_min_and_max_are_brought_inside_without_metrics() {
    let h = hpa(cpu_50(), 2, 5);
    let none = FakeMetrics(Err("must not be asked".into()));
    let p = plan_of(&h, &target(1), &web_pods(1), &none).await;
    assert_eq!(p.desired, 2);
    assert_eq!(
        p.rescale.as_deref(),
        Some("Current number of replicas below Spec.MinReplicas")
    );
    let p = plan_of(&h, &target(7), &web_pods(7), &none).await;
    assert_eq!(p.desired, 5);
    assert_eq!(
        p.rescale.as_deref(),
        Some("Current number of replicas above Spec.MaxReplicas")
    );
    assert!(p.status.current_metrics.is_none());
}

#[tokio::test]
async fn unavailable_metrics_are_reported_as_kubernetes_does() {
    let h = hpa(cpu_50(), 1, 5);
    let m = FakeMetrics(Err(
        "the server is currently unable to handle the request".into()
    ));
    let p = plan_of(&h, &target(2), &web_pods(2), &m).await;
    assert_eq!(p.rescale, None);
    let first = "failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server is currently unable to handle the request";
    assert_eq!(
        p.notes,
        vec![
            warning("FailedGetResourceMetric", first.into()),
            warning(
                "FailedComputeMetricsReplicas",
                format!("invalid metrics (1 invalid out of 1), first error is: {first}")
            ),
        ]
    );
    let (status, reason, message) = condition(&p, "ScalingActive");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedGetResourceMetric")
    );
    assert!(message.starts_with("the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu"), "{message}");
    let empty = plan_of(&h, &target(2), &web_pods(2), &FakeMetrics(Ok(vec![]))).await;
    assert!(
        empty.notes[0]
            .message
            .ends_with("no metrics returned from resource metrics API")
    );
}

#[tokio::test]
async fn custom_metrics_are_not_supported_but_resource_metrics_still_scale() {
    let metrics = json!([
        {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
    ]);
    let h = hpa(metrics, 1, 10);
    let p = plan_of(
        &h,
        &target(2),
        &web_pods(2),
        &cpu_metrics(&[("p0", "100m"), ("p1", "100m")]),
    )
    .await;
    assert_eq!(p.desired, 4);
    assert_eq!(p.notes[0].reason, "FailedGetPodsMetric");
    assert!(p.notes[0].message.contains("not supported"));
    assert!(
        p.error
            .as_deref()
            .unwrap()
            .starts_with("invalid metrics (1 invalid out of 2)")
    );
    // The invalid metric's status stays empty, in its place.
    let current = p.status.current_metrics.unwrap();
    assert_eq!(current[0].type_, "");
    assert_eq!(current[1].type_, "Resource");
}

#[tokio::test]
async fn a_target_without_selector_is_invalid() {
    let h = hpa(cpu_50(), 1, 5);
    let t = Target {
        selector: String::new(),
        ..target(2)
    };
    let p = plan_of(&h, &t, &web_pods(2), &FakeMetrics(Ok(vec![]))).await;
    assert_eq!(p.rescale, None);
    assert_eq!(condition(&p, "ScalingActive").1, "InvalidSelector");
    assert_eq!(p.notes[0].reason, "SelectorRequired");
}

#[test]
fn a_condition_keeps_its_transition_time_until_its_status_changes() {
    let mut conds = Vec::new();
    set_condition(&mut conds, "AbleToScale", "True", "A", "a".into(), at(0));
    set_condition(&mut conds, "AbleToScale", "True", "B", "b".into(), at(10));
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0].reason.as_deref(), Some("B"));
    assert_eq!(conds[0].last_transition_time, Some(Time(at(0))));
    set_condition(&mut conds, "AbleToScale", "False", "C", "c".into(), at(20));
    assert_eq!(conds[0].last_transition_time, Some(Time(at(20))));
}

#[test]
fn defaults_are_kubernetes_flags() {
    let o = HpaOptions::default();
    assert_eq!(o.sync_period, Duration::from_secs(15));
    assert_eq!(o.downscale_stabilization, Duration::from_secs(300));
    assert_eq!(o.tolerance, 0.1);
    let _ = BTreeMap::<String, i64>::new();
}

#[test]
fn a_pod_that_was_ready_before_still_counts_after_the_initialization_period() {
    // Unready since t=60 after starting at t=0: it has been ready, so its usage counts (only a
    // pod unready since its start is ignored).
    let pods = vec![
        pod("p0", 1000, "False", 0, 60),
        ready_pod("p1", 1000),
        ready_pod("p2", 1000),
    ];
    run_case(Case {
        current: 3,
        target: 30,
        requests: vec![1000; 3],
        levels: vec![Some(300), Some(500), Some(700)],
        pods: Some(pods),
        expect: proposal(5, 50, 500),
    });
}
