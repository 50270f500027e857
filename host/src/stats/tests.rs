//! Rates over the sampled window and kubelet's `/metrics/resource` text.

use super::*;

fn at(base: Instant, ms: u64, cpu_nanos: u64) -> Sample {
    Sample {
        at: base + Duration::from_millis(ms),
        cpu_nanos,
    }
}

#[test]
fn the_rate_is_over_the_oldest_kept_sample() {
    let t0 = Instant::now();
    let mut s = Series::default();
    assert_eq!(s.rate(at(t0, 0, 0)), None, "no history, no rate");
    s.record(at(t0, 0, 0));
    // Half a core over one second.
    assert_eq!(s.rate(at(t0, 1000, 500_000_000)), Some(500_000_000));
    // Too short a span to say.
    assert_eq!(s.rate(at(t0, 100, 50_000_000)), None);
    for i in 1..=10u64 {
        // One full core from t0 + 1 s on.
        s.record(at(t0, i * 1000, (i - 1) * 1_000_000_000));
    }
    // Only the last WINDOW is kept: the idle first second has left it.
    assert!(s.0.len() <= (WINDOW.as_secs() + 1) as usize, "{:?}", s.0);
    assert_eq!(s.rate(at(t0, 10_000, 9_000_000_000)), Some(1_000_000_000));
}

#[test]
fn a_counter_going_back_starts_the_series_over() {
    let t0 = Instant::now();
    let mut s = Series::default();
    s.record(at(t0, 0, 5_000_000_000));
    s.record(at(t0, 1000, 0));
    assert_eq!(s.0.len(), 1);
    assert_eq!(s.rate(at(t0, 2000, 250_000_000)), Some(250_000_000));
    // A reading below the first sample has no rate rather than a wrapped one.
    assert_eq!(s.rate(at(t0, 3000, 0)), Some(0));
}

fn summary() -> Summary {
    let time = Some(Time("2026-12-06T10:00:00.123Z".parse().unwrap()));
    let cpu = |n| {
        Some(CpuStats {
            time: time.clone(),
            usage_nano_cores: Some(1),
            usage_core_nano_seconds: Some(n),
        })
    };
    let memory = |b| {
        Some(MemoryStats {
            time: time.clone(),
            working_set_bytes: Some(b),
            ..Default::default()
        })
    };
    Summary {
        node: NodeStats {
            node_name: "n1".into(),
            start_time: time.clone(),
            cpu: cpu(12_500_000_000),
            memory: memory(1 << 30),
        },
        pods: vec![PodStats {
            pod_ref: PodReference {
                name: "web-1".into(),
                namespace: "team\"a".into(),
                uid: "u1".into(),
            },
            start_time: time.clone(),
            containers: vec![ContainerStats {
                name: "app".into(),
                start_time: Some(Time("2026-12-06T09:00:00Z".parse().unwrap())),
                cpu: cpu(1_500_000_000),
                memory: memory(4096),
            }],
            cpu: cpu(1_500_000_000),
            memory: memory(4096),
        }],
    }
}

#[test]
fn resource_metrics_use_kubelet_names_labels_and_timestamps() {
    let text = resource_text(&summary());
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let ms = 1_796_551_200_123i64;
    let labels = r#"container="app",namespace="team\"a",pod="web-1""#;
    assert_eq!(
        lines,
        vec![
            format!("container_cpu_usage_seconds_total{{{labels}}} 1.5 {ms}"),
            format!("container_memory_working_set_bytes{{{labels}}} 4096 {ms}"),
            format!("container_start_time_seconds{{{labels}}} 1796547600 {ms}"),
            format!("node_cpu_usage_seconds_total 12.5 {ms}"),
            format!("node_memory_working_set_bytes 1073741824 {ms}"),
            format!(r#"pod_cpu_usage_seconds_total{{namespace="team\"a",pod="web-1"}} 1.5 {ms}"#),
            format!(r#"pod_memory_working_set_bytes{{namespace="team\"a",pod="web-1"}} 4096 {ms}"#),
            "resource_scrape_error 0".to_string(),
            "scrape_error 0".to_string(),
        ]
    );
    assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
    assert!(text.contains("# TYPE node_memory_working_set_bytes gauge\n"));
    assert!(text.contains(
        "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds\n"
    ));
}

#[test]
fn a_node_without_pods_still_has_every_family() {
    let mut s = summary();
    s.pods.clear();
    let text = resource_text(&s);
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_start_time_seconds",
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
        "pod_cpu_usage_seconds_total",
        "pod_memory_working_set_bytes",
        "resource_scrape_error",
        "scrape_error",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in {text}"
        );
    }
    assert!(!text.contains("pod=\""));
}
