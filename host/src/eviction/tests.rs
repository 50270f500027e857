//! Thresholds in kubelet's syntax, the manager's decisions over time, and the eviction order.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::rank::{self, Candidate, ContainerUse};
use super::*;

const MI: u64 = 1 << 20;

#[test]
fn thresholds_parse_as_kubelet_writes_them() {
    let t = parse_thresholds("memory.available<500Mi", true).expect("parse");
    assert_eq!(
        t,
        vec![Threshold {
            value: ThresholdValue::Quantity {
                bytes: 500 << 20,
                text: "500Mi".into()
            },
            grace_period: Duration::ZERO,
            hard: true,
        }]
    );
    let t = parse_thresholds(" memory.available<10% , memory.available<1Gi", false).expect("two");
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].value, ThresholdValue::Percentage(0.1));
    assert_eq!(t[0].value.bytes(1000), 100);
    assert_eq!(t[1].value.bytes(0), 1 << 30);
    assert!(!t[0].hard);
    // Zero thresholds are no thresholds; nothing is nothing.
    assert!(
        parse_thresholds("memory.available<0", true)
            .expect("zero")
            .is_empty()
    );
    assert!(
        parse_thresholds("memory.available<0%", true)
            .expect("zero")
            .is_empty()
    );
    assert!(parse_thresholds("", true).expect("empty").is_empty());
}

#[test]
fn bad_thresholds_say_why() {
    for (text, says) in [
        ("memory.available>500Mi", "syntax"),
        ("memory.available<lots", "invalid eviction threshold"),
        ("memory.available<150%", "<= 100%"),
        ("memory.available<-1Mi", "must be positive"),
        ("cpu.available<1", "unknown eviction signal"),
    ] {
        let e = parse_thresholds(text, true).expect_err(text);
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let e = parse_thresholds("nodefs.available<10%", true).expect_err("nodefs");
    assert!(matches!(e, EvictionError::NotSupported(_)), "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn durations_are_gos() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    for bad in ["", "30", "-1s", "1x", "s", "1m-3s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_grace_periods("memory.available=1m30s").expect("grace"),
        vec![("memory.available".to_string(), Duration::from_secs(90))]
    );
    assert!(parse_grace_periods("memory.available:30s").is_err());
}

#[test]
fn soft_thresholds_need_their_grace_period() {
    let mut o = EvictionOptions::default();
    o.set_thresholds(
        Some("memory.available<200Mi"),
        Some("memory.available<300Mi"),
        Some("memory.available=30s"),
    )
    .expect("valid");
    assert_eq!(o.hard.len(), 1);
    assert_eq!(o.soft[0].grace_period, Duration::from_secs(30));
    let e = o
        .set_thresholds(None, Some("memory.available<300Mi"), None)
        .expect_err("no grace");
    assert!(e.to_string().contains("no grace period"), "{e}");
    let e = o
        .set_thresholds(None, None, Some("memory.available=30s"))
        .expect_err("no soft");
    assert!(e.to_string().contains("without a soft threshold"), "{e}");
}

#[test]
fn reservations_parse_and_leave_allocatable() {
    assert_eq!(
        parse_reserved("cpu=100m,memory=256Mi"),
        Ok(Reserved {
            cpu_milli: 100,
            memory_bytes: 256 << 20
        })
    );
    assert_eq!(parse_reserved(""), Ok(Reserved::default()));
    assert!(matches!(
        parse_reserved("ephemeral-storage=1Gi"),
        Err(EvictionError::NotSupported(_))
    ));
    assert!(parse_reserved("gpu=1").is_err());
    assert!(parse_reserved("memory=-1Mi").is_err());
    assert!(parse_reserved("memory").is_err());

    // Kubelet: allocatable = capacity − system-reserved − kube-reserved − hard threshold.
    let mut o = EvictionOptions {
        system_reserved: parse_reserved("cpu=500m,memory=1Gi").expect("system"),
        kube_reserved: parse_reserved("cpu=250m,memory=512Mi").expect("kube"),
        ..Default::default()
    };
    assert_eq!(
        o.reserved(8 << 30),
        Reserved {
            cpu_milli: 750,
            memory_bytes: (1 << 30) + (512 << 20) + (100 << 20)
        }
    );
    o.set_thresholds(Some("memory.available<10%"), None, None)
        .expect("pct");
    assert_eq!(
        o.reserved(10 << 30).memory_bytes,
        (1 << 30) + (512 << 20) + (1 << 30)
    );
}

fn options(hard: &str, soft: Option<(&str, &str)>, transition: Duration) -> EvictionOptions {
    let mut o = EvictionOptions::default();
    o.set_thresholds(Some(hard), soft.map(|s| s.0), soft.map(|s| s.1))
        .expect("thresholds");
    o.pressure_transition_period = transition;
    o
}

#[test]
fn hard_thresholds_act_at_once_and_pressure_outlives_them_by_the_transition_period() {
    let o = options("memory.available<100Mi", None, Duration::from_secs(300));
    let mut m = Manager::new(o, 1024 * MI);
    let t0 = Instant::now();
    let fine = m.observe(500 * MI as i64, t0);
    assert_eq!(
        fine,
        Decision {
            pressure: false,
            acting: None
        }
    );
    let over = m.observe(50 * MI as i64, t0 + Duration::from_secs(10));
    assert!(over.pressure);
    assert!(over.acting.as_ref().is_some_and(|a| a.threshold.hard));
    // Recovered: no more evictions, but the condition holds for the transition period.
    let after = m.observe(500 * MI as i64, t0 + Duration::from_secs(20));
    assert!(after.pressure && after.acting.is_none());
    let later = m.observe(500 * MI as i64, t0 + Duration::from_secs(309));
    assert!(later.pressure);
    let gone = m.observe(500 * MI as i64, t0 + Duration::from_secs(311));
    assert!(!gone.pressure && gone.acting.is_none());
}

#[test]
fn soft_thresholds_act_after_their_grace_period() {
    let o = options(
        "memory.available<100Mi",
        Some(("memory.available<300Mi", "memory.available=30s")),
        Duration::from_secs(5),
    );
    let mut m = Manager::new(o, 1024 * MI);
    let t0 = Instant::now();
    let d = m.observe(200 * MI as i64, t0);
    // Met: the condition says so at once; eviction waits for the grace period.
    assert!(d.pressure && d.acting.is_none());
    let d = m.observe(200 * MI as i64, t0 + Duration::from_secs(29));
    assert!(d.acting.is_none());
    let d = m.observe(200 * MI as i64, t0 + Duration::from_secs(30));
    assert!(d.acting.as_ref().is_some_and(|a| !a.threshold.hard));
    // No longer met, the grace period starts over.
    m.observe(400 * MI as i64, t0 + Duration::from_secs(31));
    let d = m.observe(200 * MI as i64, t0 + Duration::from_secs(32));
    assert!(d.acting.is_none());
    // A hard threshold does not wait.
    let d = m.observe(10 * MI as i64, t0 + Duration::from_secs(33));
    assert!(d.acting.is_some_and(|a| a.threshold.hard));
}

#[test]
fn the_working_set_counts_in_process_memory_once() {
    // Wasm pods: their memory is in the node's RSS.
    let o = Observation {
        pods_bytes: 300 * MI,
        in_process_bytes: 300 * MI,
        process_rss: 400 * MI,
    };
    assert_eq!(o.working_set(), 400 * MI);
    assert_eq!(o.available(1024 * MI), 624 * MI as i64);
    let o = Observation {
        pods_bytes: 300 * MI,
        in_process_bytes: 300 * MI,
        process_rss: 100 * MI,
    };
    assert_eq!(o.working_set(), 300 * MI);
    assert_eq!(o.available(256 * MI), -(44 * MI as i64));
    // Linux containers are processes of their own: all of the node's RSS is its own.
    let o = Observation {
        pods_bytes: 300 * MI,
        in_process_bytes: 0,
        process_rss: 100 * MI,
    };
    assert_eq!(o.working_set(), 400 * MI);
}

#[test]
fn containers_figures_make_the_message() {
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "two", "namespace": "default", "uid": "two"},
        "spec": {"containers": [
            {"name": "web", "image": "x", "resources": {"requests": {"memory": "64Mi"}}},
            {"name": "side", "image": "x", "resources": {"requests": {"memory": "64Mi"}}},
        ]}
    }))
    .expect("pod");
    let c = Candidate::new(
        &p,
        300 * MI,
        &[("web".into(), 280 * MI), ("side".into(), 20 * MI)],
    );
    assert_eq!(c.request, 128 * MI);
    let m = rank::message("1Gi", 0, &c.containers);
    assert!(
        m.ends_with(
            "Container web was using 280Mi, request is 64Mi, has larger consumption of memory. "
        ),
        "{m}"
    );
    assert!(!m.contains("side"), "{m}");
}

fn pod(name: &str, request: Option<&str>, limit: Option<&str>, priority: Option<i32>) -> Pod {
    let mut resources = serde_json::Map::new();
    if let Some(r) = request {
        resources.insert(
            "requests".into(),
            serde_json::json!({"memory": r, "cpu": "100m"}),
        );
    }
    if let Some(l) = limit {
        resources.insert(
            "limits".into(),
            serde_json::json!({"memory": l, "cpu": "100m"}),
        );
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {
            "priority": priority,
            "containers": [{"name": "app", "image": "x", "resources": resources}]
        }
    }))
    .expect("pod")
}

fn names(ranked: &[Candidate<'_>]) -> Vec<String> {
    ranked
        .iter()
        .map(|c| c.pod.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn besteffort_goes_first_then_burstable_by_usage_above_requests_then_guaranteed() {
    let guaranteed = pod("guaranteed", Some("256Mi"), Some("256Mi"), None);
    let burstable_small = pod("burstable-small", Some("64Mi"), Some("1Gi"), None);
    let burstable_big = pod("burstable-big", Some("64Mi"), Some("1Gi"), None);
    let best_effort = pod("best-effort", None, None, None);
    let ranked = rank::rank(vec![
        Candidate::new(&guaranteed, 250 * MI, &[]),
        Candidate::new(&burstable_small, 100 * MI, &[]),
        Candidate::new(&best_effort, 50 * MI, &[]),
        Candidate::new(&burstable_big, 300 * MI, &[]),
    ]);
    // Usage over requests first, by how much; a Guaranteed pod cannot exceed its requests.
    assert_eq!(
        names(&ranked),
        [
            "burstable-big",
            "best-effort",
            "burstable-small",
            "guaranteed"
        ]
    );
    assert_eq!(ranked[1].qos, skiff_meta::qos::QosClass::BestEffort);
    assert_eq!(ranked[3].qos, skiff_meta::qos::QosClass::Guaranteed);
    // A BestEffort pod's whole usage is above its (zero) request.
    let ranked = rank::rank(vec![
        Candidate::new(&guaranteed, 200 * MI, &[]),
        Candidate::new(&burstable_small, 200 * MI, &[]),
        Candidate::new(&best_effort, 200 * MI, &[]),
    ]);
    assert_eq!(
        names(&ranked),
        ["best-effort", "burstable-small", "guaranteed"]
    );
}

#[test]
fn lower_priority_goes_before_more_usage() {
    let low = pod("low", None, None, Some(0));
    let high = pod("high", None, None, Some(1000));
    let ranked = rank::rank(vec![
        Candidate::new(&high, 900 * MI, &[]),
        Candidate::new(&low, 10 * MI, &[]),
    ]);
    assert_eq!(names(&ranked), ["low", "high"]);
}

#[test]
fn critical_pods_are_never_evicted() {
    let critical = pod("critical", None, None, Some(2_000_001_000));
    let user = pod("user", None, None, Some(1_000_000_000));
    assert!(!rank::evictable(&Candidate::new(&critical, MI, &[])));
    assert!(rank::evictable(&Candidate::new(&user, MI, &[])));
}

#[test]
fn a_limit_without_a_request_is_the_request() {
    let p = pod("g", None, Some("128Mi"), None);
    let c = Candidate::new(&p, 100 * MI, &[]);
    assert_eq!(c.request, 128 * MI);
    assert!(!c.exceeds_requests());
}

#[test]
fn the_message_is_kubelets() {
    let m = rank::message(
        "500Mi",
        400 * 1024,
        &[
            ContainerUse {
                name: "app".into(),
                usage: 300 * MI,
                request: 0,
            },
            ContainerUse {
                name: "side".into(),
                usage: MI,
                request: 64 * MI,
            },
        ],
    );
    assert_eq!(
        m,
        "The node was low on resource: memory. Threshold quantity: 500Mi, available: 400Ki. \
         Container app was using 300Mi, request is 0, has larger consumption of memory. "
    );
    assert_eq!(rank::binary_si(1536 * 1024), "1536Ki");
    assert_eq!(rank::binary_si(1000), "1000");
    assert_eq!(rank::binary_si(-(2 << 20)), "-2Mi");
    assert_eq!(rank::binary_si(1 << 30), "1Gi");
}

#[test]
fn orders_reach_their_worker_once() {
    let s = Shared::default();
    let mut rx = s.orders_posted();
    rx.borrow_and_update();
    s.post(
        "uid-1",
        Order {
            message: "m".into(),
            grace: Duration::ZERO,
            done: None,
        },
    );
    assert!(rx.has_changed().expect("open"));
    assert!(s.take("uid-2").is_none());
    assert_eq!(s.take("uid-1").map(|o| o.message), Some("m".into()));
    assert!(s.take("uid-1").is_none());
    let mut status = s.status_changes();
    status.borrow_and_update();
    assert!(s.set_memory_pressure(true));
    assert!(!s.set_memory_pressure(true));
    assert!(status.has_changed().expect("open"));
    assert!(s.memory_pressure().under_pressure);
}
