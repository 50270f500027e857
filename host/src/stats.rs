//! The node's resource usage, as kubelet serves it: `GET /stats/summary` (`stats/v1alpha1`
//! `Summary`: the node, every pod and its running containers) and `GET /metrics/resource`
//! (Prometheus text with kubelet's series names, labels and millisecond timestamps).
//!
//! Figures come from the backends ([`skiff_runtime::PodSandbox::usage`]: the engine's own
//! accounting for wasm, cgroups for Linux containers) and, for the node, from the node process
//! itself (its CPU time and resident memory, the wasm pods included) plus its Linux containers,
//! which run outside it. Cumulative CPU is read live; `usageNanoCores` is the rate over a sliding
//! window: a sampler records `(time, cumulative CPU)` of the node, each pod and each container
//! every [`SAMPLE_INTERVAL`] and keeps [`WINDOW`] of them, and a reading's rate is taken
//! against its oldest kept sample (so a pod that starts to burn shows within one interval and
//! at its full rate after one window).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use skiff_meta::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};
use skiff_runtime::{ContainerKind, ContainerState, PodUsage};
use tokio::sync::watch;

use crate::ctx::NodeCtx;
use crate::listener::ListenerState;

/// How often the sampler records cumulative CPU.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The span `usageNanoCores` is a rate over (once that much history exists).
pub(crate) const WINDOW: Duration = Duration::from_secs(5);

/// The `Content-Type` of Prometheus' text format, as kubelet answers.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cumulative CPU reading.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_nanos: u64,
}

/// The samples of one series (the node, a pod, a container), oldest first.
#[derive(Debug, Default)]
struct Series(VecDeque<Sample>);

impl Series {
    fn record(&mut self, s: Sample) {
        // A counter that went back (a container re-created under the same name) starts over.
        if self
            .0
            .back()
            .is_some_and(|last| last.cpu_nanos > s.cpu_nanos)
        {
            self.0.clear();
        }
        self.0.push_back(s);
        while self
            .0
            .front()
            .is_some_and(|f| s.at.saturating_duration_since(f.at) > WINDOW)
        {
            self.0.pop_front();
        }
    }

    /// The CPU rate in nanocores from the oldest kept sample to `now`; `None` without history.
    fn rate(&self, now: Sample) -> Option<u64> {
        let first = self.0.front()?;
        let elapsed = now.at.saturating_duration_since(first.at).as_nanos();
        if elapsed < SAMPLE_INTERVAL.as_nanos() / 2 || now.cpu_nanos < first.cpu_nanos {
            return None;
        }
        let used = u128::from(now.cpu_nanos - first.cpu_nanos);
        u64::try_from(used * 1_000_000_000 / elapsed).ok()
    }
}

#[derive(Debug, Default)]
struct PodSeries {
    pod: Series,
    containers: HashMap<String, Series>,
}

#[derive(Debug, Default)]
struct Samples {
    node: Series,
    /// By pod uid (the sandbox id).
    pods: HashMap<String, PodSeries>,
}

/// One pod as read now.
struct PodReading {
    namespace: String,
    name: String,
    uid: String,
    usage: PodUsage,
    states: std::collections::BTreeMap<String, ContainerState>,
}

/// The node's usage: what its pods and the node process use, and the sampled history their
/// rates are computed from.
pub(crate) struct NodeStatsSource {
    ctx: Arc<NodeCtx>,
    /// When the node started (the Summary's node `startTime`).
    started: Timestamp,
    /// The node's memory capacity (for `availableBytes`).
    memory_capacity: u64,
    samples: Mutex<Samples>,
}

impl NodeStatsSource {
    pub(crate) fn new(ctx: Arc<NodeCtx>, memory_capacity: u64) -> Arc<Self> {
        Arc::new(NodeStatsSource {
            ctx,
            started: Timestamp::now(),
            memory_capacity,
            samples: Mutex::new(Samples::default()),
        })
    }

    fn read_pods(&self) -> Vec<PodReading> {
        self.ctx
            .sandboxes()
            .into_iter()
            .map(|((namespace, name), sb)| PodReading {
                namespace,
                name,
                uid: sb.id().to_string(),
                usage: sb.usage(),
                states: sb.container_states(),
            })
            .collect()
    }

    /// The node's cumulative CPU and working set: the node process (its wasm pods included)
    /// plus the Linux containers, which run outside it.
    fn node_totals(pods: &[PodReading]) -> (u64, u64) {
        let own = skiff_runtime::process_usage();
        let (mut cpu, mut memory) = (own.cpu_nanos, own.rss_bytes);
        for c in pods.iter().flat_map(|p| &p.usage.containers) {
            if c.kind == Some(ContainerKind::Linux) {
                cpu = cpu.saturating_add(c.cpu_nanos);
                memory = memory.saturating_add(c.memory_bytes);
            }
        }
        (cpu, memory)
    }

    /// Records one sample of the node, every pod and every container, and forgets pods gone.
    pub(crate) fn sample(&self) {
        let pods = self.read_pods();
        let (node_cpu, _) = Self::node_totals(&pods);
        let at = Instant::now();
        let mut samples = lock(&self.samples);
        samples.node.record(Sample {
            at,
            cpu_nanos: node_cpu,
        });
        samples
            .pods
            .retain(|uid, _| pods.iter().any(|p| &p.uid == uid));
        for p in &pods {
            let series = samples.pods.entry(p.uid.clone()).or_default();
            series.pod.record(Sample {
                at,
                cpu_nanos: p.usage.cpu_nanos,
            });
            series
                .containers
                .retain(|name, _| p.usage.containers.iter().any(|c| &c.name == name));
            for c in &p.usage.containers {
                series
                    .containers
                    .entry(c.name.clone())
                    .or_default()
                    .record(Sample {
                        at,
                        cpu_nanos: c.cpu_nanos,
                    });
            }
        }
    }

    /// Samples every [`SAMPLE_INTERVAL`] until the node shuts down.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample(),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// kubelet's `/stats/summary`: the node, then every pod with its running containers.
    pub(crate) fn summary(&self) -> Summary {
        let pods = self.read_pods();
        let (node_cpu, node_memory) = Self::node_totals(&pods);
        let at = Instant::now();
        let now = Timestamp::now();
        let time = || Some(Time(now));
        let samples = lock(&self.samples);
        let cpu = |series: Option<&Series>, cpu_nanos: u64| CpuStats {
            time: time(),
            usage_nano_cores: series.and_then(|s| s.rate(Sample { at, cpu_nanos })),
            usage_core_nano_seconds: Some(cpu_nanos),
        };
        let memory = |bytes: u64, available: Option<u64>| MemoryStats {
            time: time(),
            available_bytes: available,
            usage_bytes: Some(bytes),
            working_set_bytes: Some(bytes),
            rss_bytes: Some(bytes),
        };
        let node = NodeStats {
            node_name: self.ctx.node_name.clone(),
            start_time: Some(Time(self.started)),
            cpu: Some(cpu(Some(&samples.node), node_cpu)),
            memory: Some(memory(
                node_memory,
                Some(self.memory_capacity.saturating_sub(node_memory)),
            )),
        };
        let mut out = Vec::with_capacity(pods.len());
        for p in pods {
            let series = samples.pods.get(&p.uid);
            let containers: Vec<ContainerStats> = p
                .usage
                .containers
                .iter()
                .filter_map(|c| {
                    let started_at = match p.states.get(&c.name)? {
                        ContainerState::Running { started_at } => *started_at,
                        _ => return None,
                    };
                    Some(ContainerStats {
                        name: c.name.clone(),
                        start_time: Some(Time(started_at)),
                        cpu: Some(cpu(
                            series.and_then(|s| s.containers.get(&c.name)),
                            c.cpu_nanos,
                        )),
                        memory: Some(memory(c.memory_bytes, None)),
                    })
                })
                .collect();
            let start_time = containers
                .iter()
                .filter_map(|c| c.start_time.as_ref().map(|t| t.0))
                .min();
            out.push(PodStats {
                pod_ref: PodReference {
                    name: p.name,
                    namespace: p.namespace,
                    uid: p.uid,
                },
                start_time: start_time.map(Time),
                containers,
                cpu: Some(cpu(series.map(|s| &s.pod), p.usage.cpu_nanos)),
                memory: Some(memory(p.usage.memory_bytes, None)),
            });
        }
        out.sort_by(|a, b| {
            (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name))
        });
        Summary { node, pods: out }
    }
}

/// `GET /stats/summary`.
pub(crate) async fn summary(State(state): State<ListenerState>) -> Response {
    let summary = state.stats.summary();
    match serde_json::to_vec(&summary) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => crate::listener::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the summary: {e}"),
        ),
    }
}

/// `GET /metrics/resource`.
pub(crate) async fn resource_metrics(State(state): State<ListenerState>) -> Response {
    let body = resource_text(&state.stats.summary());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        body,
    )
        .into_response()
}

/// A label value escaped as the text format wants (backslash, quote, newline).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn millis(t: &Option<Time>) -> i64 {
    t.as_ref().map_or(0, |t| t.0.as_millisecond())
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// kubelet's `/metrics/resource` from a summary: its series, in its (alphabetical) order, each
/// sample with the millisecond timestamp of its reading.
pub(crate) fn resource_text(s: &Summary) -> String {
    let mut out = String::new();
    let containers = || {
        s.pods.iter().flat_map(|p| {
            p.containers.iter().map(move |c| {
                let labels = format!(
                    "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
                    label(&c.name),
                    label(&p.pod_ref.namespace),
                    label(&p.pod_ref.name)
                );
                (labels, c)
            })
        })
    };
    family(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    );
    for (labels, c) in containers() {
        if let Some(cpu) = &c.cpu
            && let Some(n) = cpu.usage_core_nano_seconds
        {
            let _ = writeln!(
                out,
                "container_cpu_usage_seconds_total{{{labels}}} {} {}",
                seconds(n),
                millis(&cpu.time)
            );
        }
    }
    family(
        &mut out,
        "container_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the container in bytes",
    );
    for (labels, c) in containers() {
        if let Some(m) = &c.memory
            && let Some(b) = m.working_set_bytes
        {
            let _ = writeln!(
                out,
                "container_memory_working_set_bytes{{{labels}}} {b} {}",
                millis(&m.time)
            );
        }
    }
    family(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "[STABLE] Start time of the container since unix epoch in seconds",
    );
    for (labels, c) in containers() {
        if let Some(t) = &c.start_time {
            let at = c.cpu.as_ref().map_or(0, |cpu| millis(&cpu.time));
            let _ = writeln!(
                out,
                "container_start_time_seconds{{{labels}}} {} {at}",
                t.0.as_millisecond() as f64 / 1e3
            );
        }
    }
    family(
        &mut out,
        "node_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    );
    if let Some(cpu) = &s.node.cpu
        && let Some(n) = cpu.usage_core_nano_seconds
    {
        let _ = writeln!(
            out,
            "node_cpu_usage_seconds_total {} {}",
            seconds(n),
            millis(&cpu.time)
        );
    }
    family(
        &mut out,
        "node_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the node in bytes",
    );
    if let Some(m) = &s.node.memory
        && let Some(b) = m.working_set_bytes
    {
        let _ = writeln!(out, "node_memory_working_set_bytes {b} {}", millis(&m.time));
    }
    let pods = || {
        s.pods.iter().map(|p| {
            let labels = format!(
                "namespace=\"{}\",pod=\"{}\"",
                label(&p.pod_ref.namespace),
                label(&p.pod_ref.name)
            );
            (labels, p)
        })
    };
    family(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    );
    for (labels, p) in pods() {
        if let Some(cpu) = &p.cpu
            && let Some(n) = cpu.usage_core_nano_seconds
        {
            let _ = writeln!(
                out,
                "pod_cpu_usage_seconds_total{{{labels}}} {} {}",
                seconds(n),
                millis(&cpu.time)
            );
        }
    }
    family(
        &mut out,
        "pod_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the pod in bytes",
    );
    for (labels, p) in pods() {
        if let Some(m) = &p.memory
            && let Some(b) = m.working_set_bytes
        {
            let _ = writeln!(
                out,
                "pod_memory_working_set_bytes{{{labels}}} {b} {}",
                millis(&m.time)
            );
        }
    }
    family(
        &mut out,
        "resource_scrape_error",
        "gauge",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    );
    out.push_str("resource_scrape_error 0\n");
    family(
        &mut out,
        "scrape_error",
        "gauge",
        "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
    );
    out.push_str("scrape_error 0\n");
    out
}

#[cfg(test)]
mod tests;
