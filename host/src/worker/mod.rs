//! One pod on this node: its state machine ([`Phase`]), the containers it tracks, and the loop
//! that drives them. Each operation lives in its own file, one `impl Worker` block each:
//! `sandbox.rs` (backend choice, sandbox, file refresh), `containers.rs` (pull, create, start,
//! image changes), `restart.rs` (init ordering, restarts with kubelet's back-off), `probes.rs`,
//! `terminate.rs` (graceful deletion, preStop hooks) and `status.rs` (the pure kubelet status
//! function and the status write).

mod containers;
mod evict;
mod probes;
mod restart;
mod sandbox;
mod status;
mod terminate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use skiff_runtime::{Backend, ContainerState, ImageService, PodSandbox};
use tokio::sync::watch;

use crate::convert::{Addrs, Refs};
use crate::ctx::NodeCtx;
use crate::events::{EventType, Recorder};
use crate::probe::ProbeState;

/// Kubelet's back-off: 10 s doubling to 5 min, reset after 10 min of running.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often referenced ConfigMaps and Secrets are re-read for file volumes.
const REFRESH_FILES: Duration = Duration::from_secs(10);
/// Retry interval for a failed sandbox creation or status write.
const RETRY: Duration = Duration::from_secs(2);
/// Back-off of a volume whose ServiceAccount token cannot be had: 1 s doubling to 2 min.
const MOUNT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const MOUNT_BACKOFF_MAX: Duration = Duration::from_secs(120);
/// Kubelet's least grace period left for stopping containers after their preStop hooks.
const MIN_GRACE_AFTER_HOOKS: Duration = Duration::from_secs(2);

fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        BACKOFF_INITIAL
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

/// Why a container (or the whole pod) cannot go on yet, with kubelet's waiting reason. Shown
/// as the container's `state.waiting`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WorkerError {
    /// The sandbox cannot be set up yet: RuntimeClass, referenced objects, pod IP, backend.
    #[error("{0}")]
    ContainerCreating(String),
    /// The pod's volumes or the container's environment cannot be built.
    #[error("{0}")]
    CreateContainerConfigError(String),
    /// The last pull failed.
    #[error("{0}")]
    ErrImagePull(String),
    /// Pulls failed more than once: waiting for the next attempt.
    #[error("{0}")]
    ImagePullBackOff(String),
    /// The image is absent and `imagePullPolicy` is `Never`.
    #[error("{0}")]
    ErrImageNeverPull(String),
    /// The backend refused to create the container.
    #[error("{0}")]
    CreateContainerError(String),
    /// The backend refused to start the container.
    #[error("{0}")]
    RunContainerError(String),
    /// The container keeps ending: waiting out the back-off before the next restart.
    #[error("{0}")]
    CrashLoopBackOff(String),
}

impl WorkerError {
    /// The kubelet waiting reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            WorkerError::ContainerCreating(_) => "ContainerCreating",
            WorkerError::CreateContainerConfigError(_) => "CreateContainerConfigError",
            WorkerError::ErrImagePull(_) => "ErrImagePull",
            WorkerError::ImagePullBackOff(_) => "ImagePullBackOff",
            WorkerError::ErrImageNeverPull(_) => "ErrImageNeverPull",
            WorkerError::CreateContainerError(_) => "CreateContainerError",
            WorkerError::RunContainerError(_) => "RunContainerError",
            WorkerError::CrashLoopBackOff(_) => "CrashLoopBackOff",
        }
    }

    /// The human-readable message.
    pub(crate) fn message(&self) -> &str {
        match self {
            WorkerError::ContainerCreating(m)
            | WorkerError::CreateContainerConfigError(m)
            | WorkerError::ErrImagePull(m)
            | WorkerError::ImagePullBackOff(m)
            | WorkerError::ErrImageNeverPull(m)
            | WorkerError::CreateContainerError(m)
            | WorkerError::RunContainerError(m)
            | WorkerError::CrashLoopBackOff(m) => m,
        }
    }
}

/// Where the pod is in its life on this node. Moves forward only:
/// `Sandbox` -> `Initializing` -> `Running`, or `Initializing` -> `InitFailed`; any of them ->
/// `Terminating` once the pod is being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No sandbox yet: being created, or waiting until `retry_at` after `error`.
    Sandbox {
        retry_at: Option<Instant>,
        error: Option<WorkerError>,
    },
    /// The sandbox is up; init containers run one at a time, in order.
    Initializing,
    /// Init containers are done; the containers run and restart by policy.
    Running,
    /// An init container failed and will not be retried (restartPolicy `Never`).
    InitFailed,
    /// Being deleted: preStop hooks, stop, last status, then the Pod object is deleted.
    /// Remembers how far the pod had come, for its status.
    Terminating {
        initialized: bool,
        init_failed: bool,
    },
}

impl Phase {
    /// Init containers are all done.
    pub(crate) fn initialized(&self) -> bool {
        matches!(
            self,
            Phase::Running
                | Phase::Terminating {
                    initialized: true,
                    ..
                }
        )
    }

    /// An init container failed for good.
    pub(crate) fn init_failed(&self) -> bool {
        matches!(
            self,
            Phase::InitFailed
                | Phase::Terminating {
                    init_failed: true,
                    ..
                }
        )
    }

    pub(crate) fn terminating(&self) -> bool {
        matches!(self, Phase::Terminating { .. })
    }
}

/// One container of the pod as the worker tracks it.
struct Ctr {
    spec: Container,
    init: bool,
    image_id: String,
    created: bool,
    rx: Option<watch::Receiver<ContainerState>>,
    /// Why it is not created or started, or the back-off it waits out.
    error: Option<WorkerError>,
    /// Earliest next attempt (pull, create, or restart).
    retry_at: Option<Instant>,
    /// Current back-off delay of the retried step.
    backoff: Duration,
    restart_count: i32,
    /// The previous terminated run.
    last: Option<ContainerState>,
    /// `finishedAt` of the last termination already handled.
    handled_finish: Option<jiff::Timestamp>,
    /// When the current run started (for the back-off reset).
    run_started: Option<Instant>,
    /// Set when the liveness probe killed the run: restart even on exit code 0.
    killed_by_probe: bool,
    /// Init container finished successfully, or container will not run again.
    done: bool,
    liveness: ProbeState,
    readiness: ProbeState,
    startup: ProbeState,
    /// The span of the container's start (pull, compile, instantiate as children) while it is
    /// under way, when traces are exported.
    start_span: Option<tracing::Span>,
}

impl Ctr {
    fn new(spec: Container, init: bool, restart_count: i32) -> Ctr {
        Ctr {
            liveness: ProbeState::new(spec.liveness_probe.clone()),
            readiness: ProbeState::new(spec.readiness_probe.clone()),
            startup: ProbeState::new(spec.startup_probe.clone()),
            spec,
            init,
            image_id: String::new(),
            created: false,
            rx: None,
            error: None,
            retry_at: None,
            backoff: Duration::ZERO,
            restart_count,
            last: None,
            handled_finish: None,
            run_started: None,
            killed_by_probe: false,
            done: false,
            start_span: None,
        }
    }

    fn state(&mut self) -> Option<ContainerState> {
        self.rx.as_mut().map(|rx| rx.borrow_and_update().clone())
    }

    fn peek(&self) -> Option<ContainerState> {
        self.rx.as_ref().map(|rx| rx.borrow().clone())
    }

    fn running(&self) -> bool {
        self.peek().is_some_and(|s| s.is_running())
    }

    fn started(&self) -> bool {
        self.running() && (self.spec.startup_probe.is_none() || self.startup.passed)
    }

    fn ready(&self) -> bool {
        self.started() && (self.spec.readiness_probe.is_none() || self.readiness.passed)
    }

    fn due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| t <= now)
    }
}

/// The pod's worker.
pub(crate) struct Worker {
    ctx: Arc<NodeCtx>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    events: Recorder,
    phase: Phase,
    /// The backend chosen by the pod's RuntimeClass, once its sandbox exists.
    backend: Option<Backend>,
    sandbox: Option<Arc<dyn PodSandbox>>,
    /// The pod's IP; still shown in its status once released.
    ip: Option<IpAddr>,
    /// The pod finished and gave its network up (`release_network`): the IP may be another
    /// pod's now, so it is no longer reported to the Service table (the IP pool, which
    /// records owners, never frees it for this pod again).
    network_released: bool,
    refs: Refs,
    refs_at: Instant,
    /// The current back-off of a volume that failed to set up (zero: none failed).
    mount_backoff: Duration,
    ctrs: Vec<Ctr>,
    start_time: Option<jiff::Timestamp>,
    /// Condition type -> (status, lastTransitionTime).
    transitions: BTreeMap<String, (String, jiff::Timestamp)>,
    last_status: Option<serde_json::Value>,
    /// When a status write that failed is tried again (`RETRY` after it): a refused write must
    /// not wait for the next change or the 30 s tick to reach the API server.
    status_retry_at: Option<Instant>,
    /// The eviction message once the node evicted (or refused) the pod: it is `Failed` with
    /// reason `Evicted` and runs no more.
    evicted: Option<String>,
    /// Wakes when the eviction manager posts an order (for any pod).
    evict_rx: watch::Receiver<u64>,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

impl Worker {
    pub(crate) fn new(ctx: Arc<NodeCtx>, pod: Pod) -> Worker {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{ns}-{name}"));
        let status = pod.status.clone().unwrap_or_default();
        let previous = |list: &Option<Vec<ContainerStatus>>, n: &str| {
            list.iter()
                .flatten()
                .find(|s| s.name == n)
                .map(|s| s.restart_count)
                .unwrap_or(0)
        };
        // The run before the last one, as reported: a node restart keeps showing it.
        let last_state = |list: &Option<Vec<ContainerStatus>>, n: &str| {
            list.iter()
                .flatten()
                .find(|s| s.name == n)
                .and_then(|s| s.last_state.as_ref()?.terminated.as_ref())
                .map(terminated_state)
        };
        let mut ctrs = Vec::new();
        if let Some(spec) = &pod.spec {
            for c in spec.init_containers.iter().flatten() {
                let rc = previous(&status.init_container_statuses, &c.name);
                let mut ctr = Ctr::new(c.clone(), true, rc);
                ctr.last = last_state(&status.init_container_statuses, &c.name);
                ctrs.push(ctr);
            }
            for c in &spec.containers {
                let rc = previous(&status.container_statuses, &c.name);
                let mut ctr = Ctr::new(c.clone(), false, rc);
                ctr.last = last_state(&status.container_statuses, &c.name);
                ctrs.push(ctr);
            }
        }
        let mut transitions = BTreeMap::new();
        for c in status.conditions.iter().flatten() {
            if let Some(t) = &c.last_transition_time {
                transitions.insert(c.type_.clone(), (c.status.clone(), t.0));
            }
        }
        Worker {
            events: Recorder::new(ctx.client.clone(), ctx.node_name.clone()),
            evict_rx: ctx.eviction.orders_posted(),
            evicted: None,
            start_time: status.start_time.map(|t| t.0),
            ctx,
            ns,
            name,
            uid,
            phase: Phase::Sandbox {
                retry_at: None,
                error: None,
            },
            backend: None,
            sandbox: None,
            ip: None,
            network_released: false,
            refs: Refs::default(),
            refs_at: Instant::now(),
            mount_backoff: Duration::ZERO,
            transitions,
            last_status: None,
            status_retry_at: None,
            ctrs,
            pod,
        }
    }

    fn terminal_phase(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
    }

    /// The span the worker runs in: the pod's name and namespace on every line it logs. Not
    /// exported as a trace (it lasts as long as the pod); its start is (`Ctr::start_span`).
    pub(crate) fn span(&self) -> tracing::Span {
        tracing::info_span!(target: "skiff::pod", "pod", pod = %self.name, namespace = %self.ns)
    }

    /// The span of container `i`'s start, a new trace (not the child of the pod's span), when
    /// traces are exported.
    fn start_span(&mut self, i: usize) -> Option<tracing::Span> {
        if !skiff_telemetry::trace::enabled() {
            return None;
        }
        let (ns, name) = (self.ns.clone(), self.name.clone());
        let c = &mut self.ctrs[i];
        let span = c.start_span.get_or_insert_with(|| {
            let span = tracing::info_span!(
                parent: None,
                "pod start",
                otel.name = %format!("start {ns}/{name} {}", c.spec.name),
                pod = %name,
                namespace = %ns,
                container = %c.spec.name,
                trace_id = tracing::field::Empty,
            );
            skiff_telemetry::trace::record_trace_id(&span);
            span
        });
        Some(span.clone())
    }

    /// Runs the pod until it is deleted (or the node stops: the channel closes).
    pub(crate) async fn run(mut self, mut rx: watch::Receiver<Pod>) {
        let finished_before = self.terminal_phase();
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), uid = %self.uid, "pod assigned");
        if finished_before {
            self.adopt_finished().await;
        } else {
            self.admit().await;
        }
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate_and_delete(&mut rx).await;
                return;
            }
            self.take_eviction().await;
            if !finished_before {
                if self.evicted.is_none() {
                    self.step().await;
                }
                // An evicted pod runs no more, but its Failed status must still land.
                self.report().await;
                self.release_network_when_finished().await;
            } else {
                // A pod finished before this worker started writes no status: nothing to retry.
                self.status_retry_at = None;
                if !self.network_released {
                    self.release_network().await;
                }
            }
            // Limits the running containers hit (log rate, instances, outgoing requests,
            // response deadline) become Warning Events; subscribed before draining, so that
            // none recorded in between is missed.
            let mut limits_rx = self.sandbox.as_ref().and_then(|sb| sb.watch_limit_events());
            self.report_limit_events().await;
            let limits_changed = async move {
                let open = match limits_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => false,
                };
                if !open {
                    futures::future::pending::<()>().await;
                }
            };
            let deadline = self.next_deadline();
            let token_due = self.token_wake();
            // Seen up to here by `take_eviction`: a later order wakes this copy.
            let mut evict_rx = self.evict_rx.clone();
            let mut rxs: Vec<watch::Receiver<ContainerState>> =
                self.ctrs.iter().filter_map(|c| c.rx.clone()).collect();
            let any_change = async {
                if rxs.is_empty() {
                    futures::future::pending::<()>().await;
                }
                let mut fu: FuturesUnordered<_> = rxs.iter_mut().map(|r| r.changed()).collect();
                if let Some(Err(_)) = fu.next().await {
                    tokio::time::sleep(RETRY).await;
                }
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        self.stop(Duration::from_secs(2)).await;
                        return;
                    }
                    let pod = rx.borrow_and_update().clone();
                    self.pod = pod;
                    self.on_spec_change().await;
                }
                _ = any_change => {}
                _ = limits_changed => {}
                _ = token_due => {}
                _ = evict_rx.changed(), if self.evicted.is_none() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// Records a Warning Event for each limit the pod's containers hit since the last call.
    async fn report_limit_events(&mut self) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        for e in sb.take_limit_events() {
            let idx = self.ctrs.iter().position(|c| c.spec.name == e.container);
            self.event(idx, EventType::Warning, &e.reason, &e.message)
                .await;
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + Duration::from_secs(30);
        if self.sandbox.is_some() && self.has_file_refs() {
            d = d.min(self.refs_at + REFRESH_FILES);
        }
        if let Phase::Sandbox {
            retry_at: Some(t), ..
        } = self.phase
        {
            d = d.min(t);
        }
        if let Some(t) = self.status_retry_at {
            d = d.min(t);
        }
        for c in &self.ctrs {
            if let Some(t) = c.retry_at {
                d = d.min(t);
            }
            if c.running() {
                for p in [&c.liveness, &c.readiness, &c.startup] {
                    if let Some(t) = p.next_due() {
                        d = d.min(t);
                    }
                }
            }
        }
        d.max(now + Duration::from_millis(10))
    }

    fn has_file_refs(&self) -> bool {
        !self.refs.is_empty()
    }

    /// Completes when one of the pod's ServiceAccount tokens is due for rotation (on the token
    /// manager's clock); never while the pod has no sandbox or no token.
    fn token_wake(&self) -> futures::future::BoxFuture<'static, ()> {
        match self.ctx.tokens.next_refresh(&self.uid) {
            Some(at) if self.sandbox.is_some() => self.ctx.tokens.clock().sleep_until(at),
            _ => Box::pin(futures::future::pending()),
        }
    }

    fn addrs(&self) -> Addrs {
        Addrs {
            pod_ip: self.ip,
            host_ip: self.ctx.host_ip,
        }
    }

    /// The image service of the pod's backend (the default backend's until one is chosen).
    fn images(&self) -> Option<Arc<dyn ImageService>> {
        match &self.backend {
            Some(b) => Some(b.images.clone()),
            None => self.ctx.runtimes.get(None).ok().map(|b| b.images),
        }
    }

    /// The handler of the pod's backend (the default backend's until one is chosen).
    fn handler(&self) -> String {
        match &self.backend {
            Some(b) => b.handler().to_string(),
            None => self
                .ctx
                .runtimes
                .default_handler()
                .unwrap_or(skiff_runtime::WASM_HANDLER)
                .to_string(),
        }
    }

    async fn event(&mut self, idx: Option<usize>, type_: EventType, reason: &str, message: &str) {
        let (container, init) = match idx {
            Some(i) => (Some(self.ctrs[i].spec.name.clone()), self.ctrs[i].init),
            None => (None, false),
        };
        self.events
            .record(
                &self.pod,
                container.as_deref(),
                init,
                type_,
                reason,
                message,
            )
            .await;
    }

    fn grace(&self, requested: Option<i64>) -> Duration {
        let secs = requested
            .or(self.pod.metadata.deletion_grace_period_seconds)
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }
}

/// A terminated state as the Pod's status reported it.
fn terminated_state(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> ContainerState {
    use skiff_runtime::TerminationReason as R;
    let reason = match t.reason.as_deref() {
        Some("Completed") => R::Completed,
        Some("OOMKilled") => R::OomKilled,
        Some("StartError") => R::StartError,
        Some("StackOverflow") => R::StackOverflow,
        Some("TableLimitExceeded") => R::TableLimitExceeded,
        _ if t.exit_code == 0 => R::Completed,
        _ => R::Error,
    };
    let at = |ts: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        ts.as_ref().map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)
    };
    ContainerState::Terminated {
        exit_code: t.exit_code,
        reason,
        message: t.message.clone().unwrap_or_default(),
        started_at: at(&t.started_at),
        finished_at: at(&t.finished_at),
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
