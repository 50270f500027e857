//! Node-pressure eviction, as kubelet's `pkg/kubelet/eviction` does it for memory: every
//! monitoring period the node measures its working set (its pods' memory as the engine counts
//! it, plus the node process's own), compares `memory.available` (capacity − working set) with
//! the hard and soft thresholds (`--eviction-hard memory.available<500Mi`, `<10%`; soft ones
//! after their grace period), reports `MemoryPressure` on the Node (held for the pressure
//! transition period after the last time a threshold was met) and, while a threshold acts,
//! evicts one pod per round in kubelet's order (`rank`): the pod's worker stops it and
//! reports it `Failed` with reason `Evicted` and kubelet's message, with an `Evicted` Event.
//!
//! The `node.kubernetes.io/memory-pressure:NoSchedule` taint follows the condition: the node
//! lifecycle controller puts it on (a node may not change its own taints), as Kubernetes'
//! taint-by-condition does. While under pressure the node refuses new BestEffort pods as
//! kubelet's admission does.

pub(crate) mod rank;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::{oneshot, watch};

use crate::ctx::NodeCtx;

pub use rank::binary_si;

/// The only eviction signal a node measures.
pub const MEMORY_AVAILABLE: &str = "memory.available";
/// The reason of an evicted pod's status and of its Event.
pub const REASON: &str = "Evicted";
/// The taint the node lifecycle controller puts on a node reporting `MemoryPressure=True`.
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// Kubelet's default hard threshold (`memory.available<100Mi`).
pub const DEFAULT_HARD: &str = "memory.available<100Mi";
/// Kubelet's `--eviction-pressure-transition-period` default.
pub const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// Kubelet's housekeeping interval, which the eviction manager runs at.
pub const DEFAULT_MONITORING_PERIOD: Duration = Duration::from_secs(10);
/// Kubelet's grace period for a pod evicted by a hard threshold.
const HARD_EVICTION_GRACE: Duration = Duration::from_secs(1);
/// How long a round waits for the evicted pod's worker to stop it (kubelet's pod cleanup
/// timeout).
const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What is wrong with an eviction flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvictionError {
    /// The flag does not parse.
    #[error("{0}")]
    Invalid(String),
    /// A signal or resource the node does not measure.
    #[error("{0} is not supported: this node evicts on memory.available only")]
    NotSupported(String),
}

/// A threshold's value: a quantity of bytes or a share of the node's capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdValue {
    /// Bytes, with the text it was given as (kubelet's messages quote it).
    Quantity { bytes: i64, text: String },
    /// A fraction of capacity in (0, 1].
    Percentage(f64),
}

impl ThresholdValue {
    /// The bytes the threshold stands for on a node of `capacity` bytes.
    pub fn bytes(&self, capacity: u64) -> i64 {
        match self {
            ThresholdValue::Quantity { bytes, .. } => *bytes,
            ThresholdValue::Percentage(p) => (capacity as f64 * p) as i64,
        }
    }

    /// The threshold as kubelet's message shows it.
    pub fn display(&self, capacity: u64) -> String {
        match self {
            ThresholdValue::Quantity { text, .. } => text.clone(),
            ThresholdValue::Percentage(_) => binary_si(self.bytes(capacity)),
        }
    }
}

/// One `memory.available<X` threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// Below this, the threshold is met.
    pub value: ThresholdValue,
    /// Soft thresholds act once met for this long; zero for hard ones.
    pub grace_period: Duration,
    /// A hard threshold (acts at once, pods get kubelet's 1 s grace).
    pub hard: bool,
}

/// Parses kubelet's threshold list: `memory.available<500Mi,memory.available<10%`. An empty
/// string is no threshold. Zero thresholds (`<0`, `<0%`) are dropped, as kubelet drops them.
pub fn parse_thresholds(text: &str, hard: bool) -> Result<Vec<Threshold>, EvictionError> {
    let mut out = Vec::new();
    for stmt in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((signal, value)) = stmt.split_once('<') else {
            return Err(EvictionError::Invalid(format!(
                "invalid eviction threshold {stmt:?}: the syntax is SIGNAL<QUANTITY or \
                 SIGNAL<PERCENT%, e.g. memory.available<500Mi"
            )));
        };
        let signal = signal.trim();
        check_signal(signal)?;
        let value = value.trim();
        let value = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| {
                EvictionError::Invalid(format!("invalid eviction threshold percentage {value:?}"))
            })?;
            if !(0.0..=100.0).contains(&p) {
                return Err(EvictionError::Invalid(format!(
                    "eviction percentage threshold {signal} must be >= 0% and <= 100%: {value}"
                )));
            }
            if p == 0.0 {
                continue;
            }
            ThresholdValue::Percentage(p / 100.0)
        } else {
            let q = skiff_meta::quantity::Quantity::parse(value).map_err(|e| {
                EvictionError::Invalid(format!("invalid eviction threshold {value:?}: {e}"))
            })?;
            let bytes = q.value_i64();
            if bytes < 0 {
                return Err(EvictionError::Invalid(format!(
                    "eviction threshold {signal} must be positive: {value}"
                )));
            }
            if bytes == 0 {
                continue;
            }
            ThresholdValue::Quantity {
                bytes,
                text: value.to_string(),
            }
        };
        out.push(Threshold {
            value,
            grace_period: Duration::ZERO,
            hard,
        });
    }
    Ok(out)
}

fn check_signal(signal: &str) -> Result<(), EvictionError> {
    match signal {
        MEMORY_AVAILABLE => Ok(()),
        "nodefs.available"
        | "nodefs.inodesFree"
        | "imagefs.available"
        | "imagefs.inodesFree"
        | "containerfs.available"
        | "containerfs.inodesFree"
        | "pid.available"
        | "allocatableMemory.available" => Err(EvictionError::NotSupported(format!(
            "eviction signal {signal}"
        ))),
        other => Err(EvictionError::Invalid(format!(
            "unknown eviction signal {other:?}"
        ))),
    }
}

/// Parses `--eviction-soft-grace-period`: `memory.available=1m30s`.
pub fn parse_grace_periods(text: &str) -> Result<Vec<(String, Duration)>, EvictionError> {
    let mut out = Vec::new();
    for stmt in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((signal, d)) = stmt.split_once('=') else {
            return Err(EvictionError::Invalid(format!(
                "invalid eviction grace period {stmt:?}: the syntax is SIGNAL=DURATION, e.g. \
                 memory.available=1m30s"
            )));
        };
        let signal = signal.trim();
        check_signal(signal)?;
        let d = parse_duration(d.trim())?;
        out.push((signal.to_string(), d));
    }
    Ok(out)
}

/// A Go duration (`90s`, `1m30s`, `1.5h`, `500ms`); a negative one is refused.
pub fn parse_duration(text: &str) -> Result<Duration, EvictionError> {
    let bad = || EvictionError::Invalid(format!("invalid duration {text:?} (e.g. 30s, 1m30s)"));
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// `--system-reserved` / `--kube-reserved`: `cpu=100m,memory=256Mi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    /// Millicores.
    pub cpu_milli: i64,
    /// Bytes.
    pub memory_bytes: i64,
}

impl Reserved {
    /// Both together.
    pub fn plus(self, other: Reserved) -> Reserved {
        Reserved {
            cpu_milli: self.cpu_milli.saturating_add(other.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// Parses a reservation: `cpu=100m,memory=256Mi` (kubelet's syntax; `ephemeral-storage` and
/// `pid` are not supported).
pub fn parse_reserved(text: &str) -> Result<Reserved, EvictionError> {
    let mut r = Reserved::default();
    for stmt in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, value)) = stmt.split_once('=') else {
            return Err(EvictionError::Invalid(format!(
                "invalid reservation {stmt:?}: the syntax is cpu=QUANTITY,memory=QUANTITY"
            )));
        };
        let q = skiff_meta::quantity::Quantity::parse(value.trim())
            .map_err(|e| EvictionError::Invalid(format!("invalid quantity {value:?}: {e}")))?;
        if q.milli_i64() < 0 {
            return Err(EvictionError::Invalid(format!(
                "reservation {stmt:?} must not be negative"
            )));
        }
        match name.trim() {
            "cpu" => r.cpu_milli = q.milli_i64(),
            "memory" => r.memory_bytes = q.value_i64(),
            "ephemeral-storage" | "pid" => {
                return Err(EvictionError::NotSupported(format!(
                    "reserving {}",
                    name.trim()
                )));
            }
            other => {
                return Err(EvictionError::Invalid(format!(
                    "unknown reserved resource {other:?} (cpu, memory)"
                )));
            }
        }
    }
    Ok(r)
}

/// How a node evicts pods under memory pressure, and what it keeps out of allocatable.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionOptions {
    /// `--eviction-hard` (default `memory.available<100Mi`, as kubelet).
    pub hard: Vec<Threshold>,
    /// `--eviction-soft`, each with its `--eviction-soft-grace-period`.
    pub soft: Vec<Threshold>,
    /// `--eviction-max-pod-grace-period`: the most a soft eviction waits for a pod (kubelet's
    /// default 0).
    pub max_pod_grace_period: Duration,
    /// `--eviction-pressure-transition-period`: how long MemoryPressure stays True after the
    /// last time a threshold was met.
    pub pressure_transition_period: Duration,
    /// `--eviction-monitoring-period`: how often memory is measured (kubelet's housekeeping).
    pub monitoring_period: Duration,
    /// `--system-reserved`.
    pub system_reserved: Reserved,
    /// `--kube-reserved`.
    pub kube_reserved: Reserved,
}

impl Default for EvictionOptions {
    fn default() -> Self {
        EvictionOptions {
            hard: parse_thresholds(DEFAULT_HARD, true).unwrap_or_default(),
            soft: Vec::new(),
            max_pod_grace_period: Duration::ZERO,
            pressure_transition_period: DEFAULT_PRESSURE_TRANSITION_PERIOD,
            monitoring_period: DEFAULT_MONITORING_PERIOD,
            system_reserved: Reserved::default(),
            kube_reserved: Reserved::default(),
        }
    }
}

impl EvictionOptions {
    /// Sets the thresholds from kubelet's flags: every soft threshold needs a grace period
    /// and every grace period a soft threshold.
    pub fn set_thresholds(
        &mut self,
        hard: Option<&str>,
        soft: Option<&str>,
        soft_grace: Option<&str>,
    ) -> Result<(), EvictionError> {
        if let Some(h) = hard {
            self.hard = parse_thresholds(h, true)?;
        }
        let mut soft = parse_thresholds(soft.unwrap_or(""), false)?;
        let graces = parse_grace_periods(soft_grace.unwrap_or(""))?;
        for t in &mut soft {
            match graces.iter().find(|(s, _)| s == MEMORY_AVAILABLE) {
                Some((_, d)) => t.grace_period = *d,
                None => {
                    return Err(EvictionError::Invalid(format!(
                        "soft eviction threshold {MEMORY_AVAILABLE} has no grace period \
                         (--eviction-soft-grace-period {MEMORY_AVAILABLE}=DURATION)"
                    )));
                }
            }
        }
        if soft.is_empty() && !graces.is_empty() {
            return Err(EvictionError::Invalid(format!(
                "an eviction grace period was given for {} without a soft threshold",
                graces[0].0
            )));
        }
        self.soft = soft;
        Ok(())
    }

    /// What allocatable leaves out of capacity, as kubelet: system and kube reservations,
    /// and (memory) the largest hard eviction threshold.
    pub fn reserved(&self, memory_capacity: u64) -> Reserved {
        let hard = self
            .hard
            .iter()
            .map(|t| t.value.bytes(memory_capacity))
            .max()
            .unwrap_or(0);
        self.system_reserved
            .plus(self.kube_reserved)
            .plus(Reserved {
                cpu_milli: 0,
                memory_bytes: hard,
            })
    }
}

/// The MemoryPressure condition as the node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PressureCondition {
    pub(crate) under_pressure: bool,
    /// When it last changed (the node's start until it first does).
    pub(crate) since: jiff::Timestamp,
}

/// An order to a pod's worker to evict its pod.
pub(crate) struct Order {
    /// The status message and the Event's.
    pub(crate) message: String,
    /// How long the containers get to stop.
    pub(crate) grace: Duration,
    /// Told once the pod is stopped.
    pub(crate) done: Option<oneshot::Sender<()>>,
}

/// What the eviction manager shares with the pod workers and the Node's status.
pub(crate) struct Shared {
    pressure: Mutex<PressureCondition>,
    /// Bumped when the condition changes: the node writes its status at once.
    status: watch::Sender<u64>,
    orders: Mutex<HashMap<String, Order>>,
    /// Bumped when an order is posted: every worker looks for its own.
    posted: watch::Sender<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pressure", &self.memory_pressure())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            pressure: Mutex::new(PressureCondition {
                under_pressure: false,
                since: jiff::Timestamp::now(),
            }),
            status: watch::channel(0).0,
            orders: Mutex::new(HashMap::new()),
            posted: watch::channel(0).0,
        }
    }
}

impl Shared {
    /// The MemoryPressure condition now.
    pub(crate) fn memory_pressure(&self) -> PressureCondition {
        *lock(&self.pressure)
    }

    /// Sets the condition; true if it changed (and the node was told to write its status).
    pub(crate) fn set_memory_pressure(&self, on: bool) -> bool {
        {
            let mut p = lock(&self.pressure);
            if p.under_pressure == on {
                return false;
            }
            *p = PressureCondition {
                under_pressure: on,
                since: jiff::Timestamp::now(),
            };
        }
        self.status.send_modify(|n| *n += 1);
        true
    }

    /// Wakes when the condition changes.
    pub(crate) fn status_changes(&self) -> watch::Receiver<u64> {
        self.status.subscribe()
    }

    /// Wakes when an eviction order is posted.
    pub(crate) fn orders_posted(&self) -> watch::Receiver<u64> {
        self.posted.subscribe()
    }

    /// Posts an order for the pod `uid`.
    pub(crate) fn post(&self, uid: &str, order: Order) {
        lock(&self.orders).insert(uid.to_string(), order);
        self.posted.send_modify(|n| *n += 1);
    }

    /// The order for the pod `uid`, if one was posted.
    pub(crate) fn take(&self, uid: &str) -> Option<Order> {
        lock(&self.orders).remove(uid)
    }
}

/// A threshold acting this round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Acting {
    pub(crate) threshold: Threshold,
}

/// What one observation decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// MemoryPressure, after the transition period.
    pub(crate) pressure: bool,
    /// The threshold to reclaim for now, if any (hard first).
    pub(crate) acting: Option<Acting>,
}

/// The eviction manager's memory between rounds, as kubelet keeps it: when each soft
/// threshold was first seen met, and when any threshold was last seen met.
#[derive(Debug)]
pub(crate) struct Manager {
    options: EvictionOptions,
    capacity: u64,
    soft_first_met: Vec<Option<Instant>>,
    last_met: Option<Instant>,
}

impl Manager {
    pub(crate) fn new(options: EvictionOptions, capacity: u64) -> Manager {
        Manager {
            soft_first_met: vec![None; options.soft.len()],
            options,
            capacity,
            last_met: None,
        }
    }

    /// One observation of `available` bytes at `now`.
    pub(crate) fn observe(&mut self, available: i64, now: Instant) -> Decision {
        let met = |t: &Threshold| available < t.value.bytes(self.capacity);
        let hard = self.options.hard.iter().find(|t| met(t)).cloned();
        let mut soft_acting = None;
        let mut soft_met = false;
        for (t, first) in self.options.soft.iter().zip(self.soft_first_met.iter_mut()) {
            if met(t) {
                soft_met = true;
                let since = *first.get_or_insert(now);
                if soft_acting.is_none() && now.duration_since(since) >= t.grace_period {
                    soft_acting = Some(t.clone());
                }
            } else {
                *first = None;
            }
        }
        if hard.is_some() || soft_met {
            self.last_met = Some(now);
        }
        let pressure = self
            .last_met
            .is_some_and(|at| now.duration_since(at) < self.options.pressure_transition_period)
            || hard.is_some()
            || soft_met;
        Decision {
            pressure,
            acting: hard.or(soft_acting).map(|threshold| Acting { threshold }),
        }
    }
}

/// The node's memory as the eviction manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// Bytes the node's pods hold, as their backends measure them.
    pub(crate) pods_bytes: u64,
    /// The part of it held inside the node process (wasm containers' instances).
    pub(crate) in_process_bytes: u64,
    /// The node process's resident set.
    pub(crate) process_rss: u64,
}

impl Observation {
    /// The working set: the pods' memory plus what the node process holds besides them. A
    /// wasm container's linear memory lives in the node process, so its resident part is in
    /// the process's RSS too: it is counted once. Linux containers are processes of their own.
    pub(crate) fn working_set(&self) -> u64 {
        self.pods_bytes + self.process_rss.saturating_sub(self.in_process_bytes)
    }

    /// `memory.available`: capacity − working set (negative when over).
    pub(crate) fn available(&self, capacity: u64) -> i64 {
        i64::try_from(capacity)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(self.working_set()).unwrap_or(i64::MAX))
    }
}

/// The node process's resident set, from `/proc/self/status` (`VmRSS`); 0 if unreadable.
pub(crate) fn process_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn observe(ctx: &NodeCtx) -> Observation {
    let (mut pods_bytes, mut in_process_bytes) = (0u64, 0u64);
    for b in ctx.runtimes.iter() {
        for id in b.runtime.pods() {
            let Some(sb) = b.runtime.pod(&id) else {
                continue;
            };
            let usage = sb.usage();
            pods_bytes = pods_bytes.saturating_add(usage.memory_bytes);
            let linux: u64 = usage
                .containers
                .iter()
                .filter(|c| c.kind == Some(skiff_runtime::ContainerKind::Linux))
                .map(|c| c.memory_bytes)
                .sum();
            in_process_bytes =
                in_process_bytes.saturating_add(usage.memory_bytes.saturating_sub(linux));
        }
    }
    Observation {
        pods_bytes,
        in_process_bytes,
        process_rss: process_rss(),
    }
}

/// Runs the eviction manager until the node stops.
pub(crate) async fn run(
    ctx: Arc<NodeCtx>,
    options: EvictionOptions,
    capacity: u64,
    mut stop: watch::Receiver<bool>,
) {
    let period = options.monitoring_period.max(Duration::from_millis(100));
    let max_pod_grace = options.max_pod_grace_period;
    tracing::info!(
        capacity = %binary_si(i64::try_from(capacity).unwrap_or(i64::MAX)),
        hard = ?options.hard.iter().map(|t| t.value.display(capacity)).collect::<Vec<_>>(),
        soft = ?options.soft.iter().map(|t| t.value.display(capacity)).collect::<Vec<_>>(),
        period = ?period,
        "eviction manager started (memory.available)"
    );
    let mut manager = Manager::new(options, capacity);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let obs = observe(&ctx);
        let available = obs.available(capacity);
        let decision = manager.observe(available, Instant::now());
        tracing::debug!(
            available,
            pods = obs.pods_bytes,
            rss = obs.process_rss,
            pressure = decision.pressure,
            "eviction manager: memory observed"
        );
        if ctx.eviction.set_memory_pressure(decision.pressure) {
            if decision.pressure {
                tracing::warn!(available = %binary_si(available), "node has memory pressure");
            } else {
                tracing::info!(available = %binary_si(available), "node has no memory pressure");
            }
        }
        let Some(acting) = decision.acting else {
            continue;
        };
        let grace = |pod: &Pod| {
            if acting.threshold.hard {
                HARD_EVICTION_GRACE
            } else {
                let own = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .map(|s| Duration::from_secs(s.max(0) as u64));
                own.map_or(max_pod_grace, |o| o.min(max_pod_grace))
            }
        };
        match evict_one(&ctx, &acting.threshold, capacity, available, grace).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("eviction manager: unable to evict any pods from the node")
            }
            Err(e) => tracing::warn!(error = %e, "eviction manager: listing the node's pods"),
        }
    }
}

/// Ranks the node's running pods and evicts the first; false when there is none.
async fn evict_one(
    ctx: &NodeCtx,
    threshold: &Threshold,
    capacity: u64,
    available: i64,
    grace: impl Fn(&Pod) -> Duration,
) -> Result<bool, kube::Error> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let pods = api.list(&lp).await?.items;
    let mut candidates = Vec::new();
    for pod in &pods {
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if terminal || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        // By uid: a pod deleted and made again under its name (a StatefulSet's) may still
        // have its old sandbox published under that name, terminating.
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let Some(sb) = ctx.sandbox(ns, name).filter(|sb| sb.id() == uid) else {
            continue;
        };
        let usage = sb.usage();
        let per_container: Vec<(String, u64)> = usage
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.memory_bytes))
            .collect();
        candidates.push(rank::Candidate::new(
            pod,
            usage.memory_bytes,
            &per_container,
        ));
    }
    candidates.retain(rank::evictable);
    let ranked = rank::rank(candidates);
    let Some(victim) = ranked.first() else {
        return Ok(false);
    };
    let message = rank::message(
        &threshold.value.display(capacity),
        available,
        &victim.containers,
    );
    let pod = victim.pod;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    tracing::info!(
        pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or_default()),
        qos = %victim.qos.as_str(),
        usage = %binary_si(i64::try_from(victim.usage).unwrap_or(i64::MAX)),
        "eviction manager: evicting pod"
    );
    let (tx, rx) = oneshot::channel();
    ctx.eviction.post(
        &uid,
        Order {
            message,
            grace: grace(pod),
            done: Some(tx),
        },
    );
    if tokio::time::timeout(POD_CLEANUP_TIMEOUT, rx).await.is_err() {
        tracing::warn!(uid = %uid, "eviction manager: timed out waiting for the pod to be cleaned up");
        ctx.eviction.take(&uid);
    }
    Ok(true)
}
