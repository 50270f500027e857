//! One pod on this node: creates its sandbox, pulls and creates its containers, runs init
//! containers in order and then the containers, restarts them by restartPolicy with kubelet's
//! back-off, runs probes, keeps configMap/secret files current, reports status, and honours
//! graceful deletion.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, LifecycleHandler, Pod, PodCondition, PodIP,
    PodStatus, Probe,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use skiff_runtime::{ContainerState, Image, PodSandbox, PodSpec};
use tokio::sync::watch;

use crate::convert::{self, Addrs, Refs};
use crate::ctx::NodeCtx;
use crate::events::{Kind, Recorder};
use crate::probe::{self, ProbeKind, ProbeState};

/// Kubelet's back-off: 10 s doubling to 5 min, reset after 10 min of running.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often referenced ConfigMaps and Secrets are re-read for file volumes.
const REFRESH_FILES: Duration = Duration::from_secs(10);
/// Retry interval for a failed sandbox creation or status write.
const RETRY: Duration = Duration::from_secs(2);
/// Kubelet's least grace period left for stopping containers after their preStop hooks.
const MIN_GRACE_AFTER_HOOKS: Duration = Duration::from_secs(2);

fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        BACKOFF_INITIAL
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

/// Why a container is not (yet) created or started.
#[derive(Debug, Clone)]
struct Waiting {
    reason: String,
    message: String,
}

fn waiting(reason: &str, message: impl Into<String>) -> Option<Waiting> {
    Some(Waiting {
        reason: reason.to_string(),
        message: message.into(),
    })
}

/// One container of the pod as the worker tracks it.
struct Ctr {
    spec: Container,
    init: bool,
    image_id: String,
    created: bool,
    rx: Option<watch::Receiver<ContainerState>>,
    /// Shown while not created, or while in back-off.
    waiting: Option<Waiting>,
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
            waiting: waiting("ContainerCreating", ""),
            retry_at: None,
            backoff: Duration::ZERO,
            restart_count,
            last: None,
            handled_finish: None,
            run_started: None,
            killed_by_probe: false,
            done: false,
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
    sandbox: Option<Arc<dyn PodSandbox>>,
    ip: Option<IpAddr>,
    refs: Refs,
    refs_at: Instant,
    ctrs: Vec<Ctr>,
    init_done: bool,
    /// An init container failed and will not be retried (restartPolicy Never).
    failed: bool,
    start_time: Option<jiff::Timestamp>,
    transitions: BTreeMap<String, (String, jiff::Timestamp)>,
    last_status: Option<serde_json::Value>,
    sandbox_retry: Option<Instant>,
    sandbox_error: Option<Waiting>,
    /// The pod is being deleted: it reports Ready=False while it still serves.
    terminating: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn ts(t: jiff::Timestamp) -> Time {
    Time(t)
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
        let mut ctrs = Vec::new();
        if let Some(spec) = &pod.spec {
            for c in spec.init_containers.iter().flatten() {
                let rc = previous(&status.init_container_statuses, &c.name);
                ctrs.push(Ctr::new(c.clone(), true, rc));
            }
            for c in &spec.containers {
                let rc = previous(&status.container_statuses, &c.name);
                ctrs.push(Ctr::new(c.clone(), false, rc));
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
            start_time: status.start_time.map(|t| t.0),
            ctx,
            ns,
            name,
            uid,
            sandbox: None,
            ip: None,
            refs: Refs::default(),
            refs_at: Instant::now(),
            init_done: false,
            failed: false,
            transitions,
            last_status: None,
            sandbox_retry: None,
            sandbox_error: None,
            terminating: false,
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

    /// Runs the pod until it is deleted (or the node stops: the channel closes).
    pub(crate) async fn run(mut self, mut rx: watch::Receiver<Pod>) {
        let finished_before = self.terminal_phase();
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), uid = %self.uid, "pod assigned");
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate_and_delete(&mut rx).await;
                return;
            }
            if !finished_before {
                self.step().await;
                self.report().await;
            }
            let deadline = self.next_deadline();
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
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + Duration::from_secs(30);
        if self.sandbox.is_some() && self.has_file_refs() {
            d = d.min(self.refs_at + REFRESH_FILES);
        }
        if let Some(t) = self.sandbox_retry {
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
        !self.refs.config_maps.is_empty() || !self.refs.secrets.is_empty()
    }

    fn addrs(&self) -> Addrs {
        Addrs {
            pod_ip: self.ip,
            host_ip: self.ctx.host_ip,
        }
    }

    async fn event(&mut self, idx: Option<usize>, kind: Kind, reason: &str, message: &str) {
        let (container, init) = match idx {
            Some(i) => (Some(self.ctrs[i].spec.name.clone()), self.ctrs[i].init),
            None => (None, false),
        };
        self.events
            .record(&self.pod, container.as_deref(), init, kind, reason, message)
            .await;
    }

    /// Creates the sandbox: reads referenced objects, builds volumes, takes an IP.
    async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        if self.sandbox_retry.is_some_and(|t| t > Instant::now()) {
            return false;
        }
        if self.start_time.is_none() {
            self.start_time = Some(jiff::Timestamp::now());
        }
        if let Err(msg) = self.check_runtime_class().await {
            if self.sandbox_error.as_ref().map(|w| &w.message) != Some(&msg) {
                self.event(None, Kind::Warning, "FailedCreatePodSandBox", &msg)
                    .await;
            }
            self.sandbox_error = waiting("ContainerCreating", msg);
            self.sandbox_retry = Some(Instant::now() + Duration::from_secs(10));
            return false;
        }
        let refs = match convert::fetch(&self.ctx.client, &self.pod).await {
            Ok(r) => r,
            Err(e) => {
                self.sandbox_error = waiting(
                    "ContainerCreating",
                    format!("reading referenced objects: {e}"),
                );
                self.sandbox_retry = Some(Instant::now() + RETRY);
                return false;
            }
        };
        self.refs = refs;
        self.refs_at = Instant::now();
        if self.ip.is_none() {
            let wanted = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            self.ip = self.ctx.allocate_ip(wanted);
            if self.ip.is_none() {
                // Kubelet's CNI fails the sandbox the same way when the range is used up.
                let msg = format!(
                    "Failed to create pod sandbox: no free IP in this node's pod CIDR {}",
                    self.ctx.pod_cidr()
                );
                if self.sandbox_error.as_ref().map(|w| &w.message) != Some(&msg) {
                    self.event(None, Kind::Warning, "FailedCreatePodSandBox", &msg)
                        .await;
                }
                self.sandbox_error = waiting("ContainerCreating", msg);
                self.sandbox_retry = Some(Instant::now() + Duration::from_secs(5));
                return false;
            }
        }
        let volumes = match convert::volumes(&self.pod, &self.refs, self.addrs()) {
            Ok(v) => v,
            Err(e) => {
                if self.sandbox_error.as_ref().map(|w| &w.message) != Some(&e) {
                    self.event(None, Kind::Warning, "FailedMount", &e).await;
                }
                self.sandbox_error = waiting("CreateContainerConfigError", e);
                self.sandbox_retry = Some(Instant::now() + Duration::from_secs(10));
                return false;
            }
        };
        let spec = PodSpec {
            id: self.uid.clone(),
            name: format!("{}/{}", self.ns, self.name),
            ip: self.ip,
            volumes,
            http: skiff_runtime::HttpOptions {
                reuse_instances: self
                    .pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("skiff.dev/reuse-instances"))
                    .is_some_and(|v| v == "true"),
                max_idle_instances: 0,
            },
        };
        match self.ctx.runtime.create_pod(spec).await {
            Ok(sb) => {
                tracing::info!(pod = %format!("{}/{}", self.ns, self.name), ip = ?self.ip, "sandbox created");
                self.ctx.publish(&self.ns, &self.name, sb.clone());
                self.sandbox = Some(sb);
                self.sandbox_error = None;
                self.sandbox_retry = None;
                true
            }
            Err(e) => {
                let msg = format!("Failed to create pod sandbox: {e}");
                if self.sandbox_error.as_ref().map(|w| &w.message) != Some(&msg) {
                    self.event(None, Kind::Warning, "FailedCreatePodSandBox", &msg)
                        .await;
                }
                self.sandbox_error = waiting("ContainerCreating", msg);
                self.sandbox_retry = Some(Instant::now() + Duration::from_secs(5));
                false
            }
        }
    }

    /// This node runs wasm pods: no `runtimeClassName`, or a RuntimeClass whose handler is
    /// the runtime's.
    async fn check_runtime_class(&self) -> Result<(), String> {
        let Some(class) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone())
        else {
            return Ok(());
        };
        let api: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
        let rc = api
            .get_opt(&class)
            .await
            .map_err(|e| format!("reading RuntimeClass {class}: {e}"))?
            .ok_or_else(|| format!("RuntimeClass \"{class}\" not found"))?;
        let handler = self.ctx.runtime.handler();
        if rc.handler == handler {
            Ok(())
        } else {
            Err(format!(
                "Failed to create pod sandbox: no runtime for \"{}\" is configured on this node (it runs {handler:?})",
                rc.handler
            ))
        }
    }

    /// Pulls and creates a container if needed. True once it exists in the sandbox.
    async fn ensure_created(&mut self, i: usize) -> bool {
        if self.ctrs[i].created {
            return true;
        }
        let now = Instant::now();
        if !self.ctrs[i].due(now) {
            return false;
        }
        let Some(sb) = self.sandbox.clone() else {
            return false;
        };
        let image = self.ctrs[i].spec.image.clone().unwrap_or_default();
        let policy = self.ctrs[i]
            .spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| {
                if image.ends_with(":latest")
                    || !image.rsplit('/').next().unwrap_or("").contains(':')
                {
                    "Always".into()
                } else {
                    "IfNotPresent".into()
                }
            });
        let present = if policy == "Always" {
            None
        } else {
            self.ctx.puller.present(&image)
        };
        let pulled = match present {
            Some(p) => {
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
                p
            }
            None if policy == "Never" => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(Some(i), Kind::Warning, "ErrImageNeverPull", &msg)
                    .await;
                let c = &mut self.ctrs[i];
                c.waiting = waiting("ErrImageNeverPull", msg);
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(now + c.backoff);
                return false;
            }
            None => {
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                )
                .await;
                let started = Instant::now();
                match self.ctx.puller.pull(&image).await {
                    Ok(p) => {
                        let took = started.elapsed();
                        let size = tokio::fs::metadata(&p.path)
                            .await
                            .map(|m| m.len())
                            .unwrap_or(0);
                        self.event(
                            Some(i),
                            Kind::Normal,
                            "Pulled",
                            &format!(
                                "Successfully pulled image \"{image}\" in {took:.3?}. Image size: {size} bytes."
                            ),
                        )
                        .await;
                        p
                    }
                    Err(e) => {
                        self.event(Some(i), Kind::Warning, "Failed", &e).await;
                        self.event(Some(i), Kind::Warning, "Failed", "Error: ErrImagePull")
                            .await;
                        let c = &mut self.ctrs[i];
                        let again = c.waiting.as_ref().is_some_and(|w| {
                            w.reason == "ErrImagePull" || w.reason == "ImagePullBackOff"
                        });
                        c.waiting = waiting("ErrImagePull", e);
                        c.backoff = next_backoff(c.backoff);
                        c.retry_at = Some(now + c.backoff);
                        if again {
                            // Second and later failures: kubelet shows the back-off.
                            let msg = format!("Back-off pulling image \"{image}\"");
                            c.waiting = waiting("ImagePullBackOff", msg.clone());
                            self.event(Some(i), Kind::Normal, "BackOff", &msg).await;
                        }
                        return false;
                    }
                }
            }
        };
        let mut spec = match convert::container_spec(
            &self.pod,
            &self.ctrs[i].spec,
            &self.refs,
            self.addrs(),
        ) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("Error: {e}");
                self.event(Some(i), Kind::Warning, "Failed", &msg).await;
                let c = &mut self.ctrs[i];
                c.waiting = waiting("CreateContainerConfigError", e);
                c.retry_at = Some(now + Duration::from_secs(10));
                // Re-read the references before the next attempt.
                self.refs_at = Instant::now()
                    .checked_sub(REFRESH_FILES)
                    .unwrap_or(self.refs_at);
                return false;
            }
        };
        spec.image = Image::Path(pulled.path.clone());
        let name = spec.name.clone();
        match sb.create_container(spec).await {
            Ok(_kind) => {
                let rx = match sb.watch_container(&name) {
                    Ok(rx) => rx,
                    Err(e) => {
                        tracing::warn!(pod = %self.name, container = %name, error = %e, "watching a created container");
                        return false;
                    }
                };
                let c = &mut self.ctrs[i];
                c.created = true;
                c.image_id = pulled.image_id;
                c.rx = Some(rx);
                c.waiting = None;
                c.backoff = Duration::ZERO;
                c.retry_at = None;
                let msg = format!("Created container: {name}");
                self.event(Some(i), Kind::Normal, "Created", &msg).await;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(Some(i), Kind::Warning, "Failed", &format!("Error: {msg}"))
                    .await;
                let c = &mut self.ctrs[i];
                c.waiting = waiting("CreateContainerError", msg);
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(now + c.backoff);
                false
            }
        }
    }

    async fn start(&mut self, i: usize) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let name = self.ctrs[i].spec.name.clone();
        match sb.start_container(&name).await {
            Ok(()) => {
                let c = &mut self.ctrs[i];
                c.run_started = Some(Instant::now());
                c.killed_by_probe = false;
                c.waiting = None;
                let now = Instant::now();
                c.liveness.reset(now);
                c.readiness.reset(now);
                c.startup.reset(now);
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(Some(i), Kind::Warning, "Failed", &format!("Error: {msg}"))
                    .await;
                let c = &mut self.ctrs[i];
                c.waiting = waiting("RunContainerError", msg);
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(Instant::now() + c.backoff);
            }
        }
    }

    /// Handles a terminated run: decides whether and when to restart.
    async fn on_terminated(&mut self, i: usize, state: &ContainerState) {
        let ContainerState::Terminated {
            exit_code,
            finished_at,
            ..
        } = state
        else {
            return;
        };
        if self.ctrs[i].handled_finish == Some(*finished_at) {
            return;
        }
        let policy = restart_policy(&self.pod).to_string();
        let c = &mut self.ctrs[i];
        c.handled_finish = Some(*finished_at);
        let failed = *exit_code != 0 || c.killed_by_probe;
        let restart = if c.init {
            failed && policy != "Never"
        } else {
            match policy.as_str() {
                "Never" => false,
                "OnFailure" => failed,
                _ => true,
            }
        };
        if !restart {
            c.done = true;
            if c.init && failed {
                self.failed = true;
            }
            return;
        }
        // Kubelet's back-off: a run longer than 10 min resets it; the first restart is
        // immediate, then 10 s doubling to 5 min.
        if c.run_started.is_some_and(|t| t.elapsed() >= BACKOFF_RESET) {
            c.backoff = Duration::ZERO;
        }
        let delay = c.backoff;
        c.backoff = next_backoff(c.backoff);
        c.retry_at = Some(Instant::now() + delay);
        if !delay.is_zero() {
            let name = c.spec.name.clone();
            let msg = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                humanize(delay),
                self.name,
                self.ns,
                self.uid
            );
            c.waiting = waiting("CrashLoopBackOff", msg);
            let ev = format!(
                "Back-off restarting failed container {name} in pod {}_{}({})",
                self.name, self.ns, self.uid
            );
            self.event(Some(i), Kind::Warning, "BackOff", &ev).await;
        }
    }

    /// Restarts a terminated container whose back-off has elapsed.
    async fn maybe_restart(&mut self, i: usize, state: &ContainerState) {
        if !state.is_terminated() || self.ctrs[i].done || !self.ctrs[i].due(Instant::now()) {
            return;
        }
        if self.ctrs[i].handled_finish.is_none() {
            return;
        }
        self.ctrs[i].last = Some(state.clone());
        self.ctrs[i].restart_count += 1;
        self.ctrs[i].retry_at = None;
        self.start(i).await;
    }

    async fn step(&mut self) {
        if !self.ensure_sandbox().await {
            return;
        }
        self.refresh_files().await;
        // Init containers, in order.
        if !self.init_done && !self.failed {
            let inits: Vec<usize> = (0..self.ctrs.len())
                .filter(|&i| self.ctrs[i].init)
                .collect();
            let mut all_done = true;
            for i in inits {
                if self.ctrs[i].done {
                    continue;
                }
                all_done = false;
                if !self.ensure_created(i).await {
                    break;
                }
                let Some(state) = self.ctrs[i].state() else {
                    break;
                };
                match &state {
                    ContainerState::Waiting { .. } => {
                        if self.ctrs[i].due(Instant::now()) {
                            self.start(i).await;
                        }
                    }
                    ContainerState::Running { .. } => {}
                    ContainerState::Terminated { exit_code, .. } => {
                        if *exit_code == 0 {
                            self.ctrs[i].done = true;
                            self.ctrs[i].handled_finish = None;
                            all_done = true;
                            continue;
                        }
                        self.on_terminated(i, &state).await;
                        self.maybe_restart(i, &state).await;
                    }
                }
                break;
            }
            if all_done && self.ctrs.iter().filter(|c| c.init).all(|c| c.done) {
                self.init_done = true;
            }
            if !self.init_done {
                return;
            }
        }
        if self.failed {
            return;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].init {
                continue;
            }
            if !self.ensure_created(i).await {
                continue;
            }
            let Some(state) = self.ctrs[i].state() else {
                continue;
            };
            match &state {
                ContainerState::Waiting { .. } => {
                    if self.ctrs[i].due(Instant::now()) && self.ctrs[i].handled_finish.is_none() {
                        self.start(i).await;
                    }
                }
                ContainerState::Running { .. } => self.probe(i).await,
                ContainerState::Terminated { .. } => {
                    self.on_terminated(i, &state).await;
                    self.maybe_restart(i, &state).await;
                }
            }
        }
    }

    async fn probe(&mut self, i: usize) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let now = Instant::now();
        let pod_ports = probe::pod_ports(&self.pod);
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            let c = &self.ctrs[i];
            if kind != ProbeKind::Startup && c.spec.startup_probe.is_some() && !c.startup.passed {
                continue;
            }
            let st = match kind {
                ProbeKind::Startup => &c.startup,
                ProbeKind::Liveness => &c.liveness,
                ProbeKind::Readiness => &c.readiness,
            };
            if kind == ProbeKind::Startup && st.passed {
                continue;
            }
            let Some(p) = st.probe.clone() else { continue };
            if st.next_due().is_none_or(|t| t > now) {
                continue;
            }
            let result = probe::run(&*sb, &c.spec, &pod_ports, &p, true).await;
            let c = &mut self.ctrs[i];
            let st = match kind {
                ProbeKind::Startup => &mut c.startup,
                ProbeKind::Liveness => &mut c.liveness,
                ProbeKind::Readiness => &mut c.readiness,
            };
            let verdict = st.record(result.is_ok(), Instant::now());
            if let Err(msg) = result {
                let text = format!("{} probe failed: {msg}", kind.title());
                self.event(Some(i), Kind::Warning, "Unhealthy", &text).await;
            }
            if verdict == probe::Verdict::Failed && kind != ProbeKind::Readiness {
                let name = self.ctrs[i].spec.name.clone();
                let why = match kind {
                    ProbeKind::Startup => "failed startup probe",
                    _ => "failed liveness probe",
                };
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Killing",
                    &format!("Container {name} {why}, will be restarted"),
                )
                .await;
                self.ctrs[i].killed_by_probe = true;
                let grace = self.grace(None);
                if let Err(e) = sb.stop_container(&name, grace).await {
                    tracing::warn!(pod = %self.name, container = %name, error = %e, "stopping after a failed probe");
                }
                return;
            }
        }
    }

    /// A container's image changed (the only mutable part of a pod's containers): kubelet
    /// kills it and starts it again from the new image.
    async fn on_spec_change(&mut self) {
        if self.pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(spec) = self.pod.spec.clone() else {
            return;
        };
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)));
        let mut changed = Vec::new();
        for (new, init) in all {
            let Some(i) = self
                .ctrs
                .iter()
                .position(|c| c.init == init && c.spec.name == new.name)
            else {
                continue;
            };
            if self.ctrs[i].spec.image == new.image {
                continue;
            }
            if !self.ctrs[i].created || init {
                let c = &mut self.ctrs[i];
                c.spec.image = new.image.clone();
                c.retry_at = None;
                c.backoff = Duration::ZERO;
                continue;
            }
            changed.push((i, new.clone()));
        }
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        for (i, new) in changed {
            let name = new.name.clone();
            self.event(
                Some(i),
                Kind::Normal,
                "Killing",
                &format!("Container {name} definition changed, will be restarted"),
            )
            .await;
            if let Err(e) = sb.stop_container(&name, self.grace(None)).await {
                tracing::warn!(pod = %self.name, container = %name, error = %e, "stopping a changed container");
            }
            let last = self.ctrs[i].state().filter(|s| s.is_terminated());
            if let Err(e) = sb.remove_container(&name).await {
                tracing::warn!(pod = %self.name, container = %name, error = %e, "removing a changed container");
            }
            let restarts = self.ctrs[i].restart_count + i32::from(last.is_some());
            let mut fresh = Ctr::new(new, false, restarts);
            fresh.last = last;
            self.ctrs[i] = fresh;
        }
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

    /// Re-reads referenced ConfigMaps and Secrets and rewrites changed file volumes.
    async fn refresh_files(&mut self) {
        if !self.has_file_refs() || self.refs_at.elapsed() < REFRESH_FILES {
            return;
        }
        self.refs_at = Instant::now();
        let Ok(refs) = convert::fetch(&self.ctx.client, &self.pod).await else {
            return;
        };
        if refs == self.refs {
            return;
        }
        let old = std::mem::replace(&mut self.refs, refs);
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            let Some(Ok((new_files, _))) =
                convert::volume_files(&self.pod, v, &self.refs, self.addrs())
            else {
                continue;
            };
            let old_files = convert::volume_files(&self.pod, v, &old, self.addrs())
                .and_then(Result::ok)
                .map(|(f, _)| f);
            if old_files.as_ref() == Some(&new_files) {
                continue;
            }
            if let Err(e) = sb.update_files(&v.name, new_files).await {
                tracing::warn!(pod = %self.name, volume = %v.name, error = %e, "updating volume files");
            }
        }
    }

    /// Stops every container and removes the sandbox.
    async fn stop(&mut self, grace: Duration) {
        if let Some(sb) = self.sandbox.take() {
            if let Err(e) = sb.remove(grace).await {
                tracing::warn!(pod = %self.name, error = %e, "removing the sandbox");
            }
            self.ctx.withdraw(&self.ns, &self.name, sb.id());
        }
        if let Some(ip) = self.ip.take() {
            self.ctx.release_ip(ip);
        }
    }

    /// Runs the `preStop` hooks of the running containers concurrently, for at most `grace`
    /// or until the pod object is gone; the containers keep serving meanwhile. Failures are
    /// `FailedPreStopHook` Events. True when any hook ran.
    async fn run_pre_stop_hooks(
        &mut self,
        sb: &dyn PodSandbox,
        grace: Duration,
        rx: &mut watch::Receiver<Pod>,
    ) -> bool {
        let hooks: Vec<(usize, LifecycleHandler)> = self
            .ctrs
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.init && c.running())
            .filter_map(|(i, c)| Some((i, c.spec.lifecycle.as_ref()?.pre_stop.clone()?)))
            .collect();
        if hooks.is_empty() {
            return false;
        }
        let named = probe::pod_ports(&self.pod);
        let ctrs = &self.ctrs;
        let all =
            futures::future::join_all(hooks.iter().map(|(i, h)| async {
                (*i, pre_stop(sb, &ctrs[*i].spec, &named, h, grace).await)
            }));
        let gone = async { while rx.changed().await.is_ok() {} };
        let results = tokio::select! {
            r = tokio::time::timeout(grace, all) => r.ok(),
            _ = gone => Some(Vec::new()),
        };
        match results {
            Some(results) => {
                for (i, r) in results {
                    if let Err(e) = r {
                        let msg = format!("PreStopHook failed: {e}");
                        self.event(Some(i), Kind::Warning, "FailedPreStopHook", &msg)
                            .await;
                    }
                }
            }
            None => {
                let msg = format!(
                    "PreStopHook did not complete within the grace period of {}",
                    humanize(grace)
                );
                for (i, _) in &hooks {
                    self.event(Some(*i), Kind::Warning, "FailedPreStopHook", &msg)
                        .await;
                }
            }
        }
        true
    }

    /// Graceful deletion, as kubelet does it: the pod reports Ready=False at once (clients
    /// move away while it still serves), each running container's `preStop` hook runs
    /// within the grace period, then the containers stop with what is left of it (at least
    /// 2 s after hooks, like kubelet), the status is reported and the pod deleted for good.
    async fn terminate_and_delete(&mut self, rx: &mut watch::Receiver<Pod>) {
        let started = Instant::now();
        let grace = self.grace(None);
        self.terminating = true;
        if self.sandbox.is_some() && !self.terminal_phase() {
            self.report().await;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].running() {
                let name = self.ctrs[i].spec.name.clone();
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Killing",
                    &format!("Stopping container {name}"),
                )
                .await;
            }
        }
        let mut stop_grace = grace;
        if let Some(sb) = self.sandbox.clone()
            && self.run_pre_stop_hooks(&*sb, grace, rx).await
        {
            stop_grace = grace
                .saturating_sub(started.elapsed())
                .max(MIN_GRACE_AFTER_HOOKS);
        }
        if let Some(sb) = self.sandbox.clone() {
            let names: Vec<String> = self
                .ctrs
                .iter()
                .filter(|c| c.created)
                .map(|c| c.spec.name.clone())
                .collect();
            futures::future::join_all(names.iter().map(|n| sb.stop_container(n, stop_grace))).await;
            for c in &mut self.ctrs {
                c.done = true;
                let _ = c.state();
            }
            if !self.terminal_phase() {
                self.report().await;
            }
        }
        self.stop(Duration::ZERO).await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.name, &dp).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "pod stopped and deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "deleting the pod"),
        }
    }

    fn condition(
        &mut self,
        kind: &str,
        ok: bool,
        reason: Option<&str>,
        message: Option<String>,
    ) -> PodCondition {
        let status = if ok { "True" } else { "False" };
        let now = jiff::Timestamp::now();
        let entry = self
            .transitions
            .entry(kind.to_string())
            .or_insert_with(|| (status.to_string(), now));
        if entry.0 != status {
            *entry = (status.to_string(), now);
        }
        PodCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            last_transition_time: Some(ts(entry.1)),
            reason: if ok { None } else { reason.map(str::to_string) },
            message: if ok { None } else { message },
            ..Default::default()
        }
    }

    fn container_status(&self, c: &Ctr) -> ContainerStatus {
        let state = c.peek();
        let kstate = |s: &ContainerState| -> KState {
            match s {
                ContainerState::Waiting { reason, message } => KState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: (!message.is_empty()).then(|| message.clone()),
                    }),
                    ..Default::default()
                },
                ContainerState::Running { started_at } => KState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(ts(*started_at)),
                    }),
                    ..Default::default()
                },
                ContainerState::Terminated {
                    exit_code,
                    reason,
                    message,
                    started_at,
                    finished_at,
                } => KState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: *exit_code,
                        reason: Some(reason.as_str().to_string()),
                        message: (!message.is_empty()).then(|| message.clone()),
                        started_at: Some(ts(*started_at)),
                        finished_at: Some(ts(*finished_at)),
                        container_id: Some(self.container_id(c)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }
        };
        let init_waiting_for_init =
            !c.init && !self.init_done && !self.failed && self.ctrs.iter().any(|c| c.init);
        let current = match (&c.waiting, &state) {
            // Back-off after a terminated run: kubelet shows the waiting reason and keeps the
            // run as lastState.
            (Some(w), Some(s)) if s.is_terminated() && !c.done && c.retry_at.is_some() => (
                KState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(w.reason.clone()),
                        message: Some(w.message.clone()),
                    }),
                    ..Default::default()
                },
                Some(kstate(s)),
            ),
            (_, Some(ContainerState::Waiting { .. })) | (_, None) => {
                let w = if init_waiting_for_init
                    && c.waiting
                        .as_ref()
                        .is_none_or(|w| w.reason == "ContainerCreating")
                {
                    Waiting {
                        reason: "PodInitializing".into(),
                        message: String::new(),
                    }
                } else if let Some(w) = self
                    .sandbox
                    .is_none()
                    .then(|| self.sandbox_error.clone())
                    .flatten()
                    .or_else(|| c.waiting.clone())
                {
                    w
                } else {
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    }
                };
                (
                    KState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(w.reason),
                            message: (!w.message.is_empty()).then_some(w.message),
                        }),
                        ..Default::default()
                    },
                    c.last.as_ref().map(kstate),
                )
            }
            (_, Some(s)) => (kstate(s), c.last.as_ref().map(kstate)),
        };
        let image = c.spec.image.clone().unwrap_or_default();
        ContainerStatus {
            name: c.spec.name.clone(),
            image: self.ctx.puller.reference(&image),
            image_id: c.image_id.clone(),
            container_id: c.created.then(|| self.container_id(c)),
            ready: c.ready() && !self.terminating,
            started: Some(c.started()),
            restart_count: c.restart_count,
            state: Some(current.0),
            last_state: Some(current.1.unwrap_or_default()),
            ..Default::default()
        }
    }

    fn container_id(&self, c: &Ctr) -> String {
        format!("wasm://{}/{}", self.uid, c.spec.name)
    }

    fn status(&mut self) -> PodStatus {
        let policy = restart_policy(&self.pod).to_string();
        let main: Vec<&Ctr> = self.ctrs.iter().filter(|c| !c.init).collect();
        let states: Vec<Option<ContainerState>> = main.iter().map(|c| c.peek()).collect();
        let all_terminated_for_good = !main.is_empty()
            && main
                .iter()
                .zip(&states)
                .all(|(c, s)| c.done && s.as_ref().is_some_and(|s| s.is_terminated()));
        let exit_ok = |s: &Option<ContainerState>| {
            matches!(s, Some(ContainerState::Terminated { exit_code: 0, .. }))
        };
        let phase = if self.failed {
            "Failed"
        } else if !self.init_done {
            "Pending"
        } else if all_terminated_for_good {
            if states.iter().all(exit_ok) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if main.iter().zip(&states).any(|(c, s)| {
            s.as_ref()
                .is_some_and(|s| s.is_running() || (s.is_terminated() && !c.done))
        }) {
            "Running"
        } else {
            "Pending"
        };
        let _ = policy;
        let unready: Vec<String> = main
            .iter()
            .filter(|c| !c.ready())
            .map(|c| c.spec.name.clone())
            .collect();
        let incomplete: Vec<String> = self
            .ctrs
            .iter()
            .filter(|c| c.init && !c.done)
            .map(|c| c.spec.name.clone())
            .collect();
        let ready = unready.is_empty() && self.init_done && !self.failed && !self.terminating;
        let completed = matches!(phase, "Succeeded" | "Failed");
        let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
        let (nr_reason, nr_msg) = if completed {
            ("PodCompleted", None)
        } else if self.terminating {
            (
                "PodTerminating",
                Some("the pod is being deleted".to_string()),
            )
        } else {
            ("ContainersNotReady", Some(unready_msg))
        };
        let mut conditions = vec![
            self.condition(
                "PodReadyToStartContainers",
                self.sandbox.is_some(),
                None,
                None,
            ),
            self.condition(
                "Initialized",
                self.init_done || incomplete.is_empty(),
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            ),
            self.condition(
                "Ready",
                ready && !completed,
                Some(nr_reason),
                nr_msg.clone(),
            ),
            self.condition(
                "ContainersReady",
                ready && !completed,
                Some(nr_reason),
                nr_msg,
            ),
        ];
        let scheduled_at = self
            .transitions
            .get("PodScheduled")
            .map(|t| t.1)
            .or(self.pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .unwrap_or_else(jiff::Timestamp::now);
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(ts(scheduled_at)),
            ..Default::default()
        });
        let init_statuses: Vec<ContainerStatus> = self
            .ctrs
            .iter()
            .filter(|c| c.init)
            .map(|c| self.container_status(c))
            .collect();
        let statuses: Vec<ContainerStatus> = self
            .ctrs
            .iter()
            .filter(|c| !c.init)
            .map(|c| self.container_status(c))
            .collect();
        let host_ip = self.ctx.host_ip.to_string();
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ip: self.ip.map(|ip| ip.to_string()),
            pod_ips: self.ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
            start_time: self.start_time.map(ts),
            qos_class: Some(convert::qos_class(&self.pod).to_string()),
            container_statuses: Some(statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            observed_generation: self.pod.metadata.generation,
            ..Default::default()
        }
    }

    /// Writes the status if it changed since the last write.
    async fn report(&mut self) {
        let status = self.status();
        let value = match serde_json::to_value(&status) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "serializing pod status");
                return;
            }
        };
        if self.last_status.as_ref() == Some(&value) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({ "status": value });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_status = Some(value),
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "writing pod status");
                self.last_status = None;
            }
        }
    }
}

/// Runs one `preStop` handler: `sleep` waits (the container keeps serving), `httpGet` asks the
/// container through the sandbox like a probe; `exec` is not supported by wasm containers and
/// `tcpSocket` is ignored, as kubelet ignores it.
async fn pre_stop(
    sb: &dyn PodSandbox,
    c: &Container,
    named: &std::collections::HashMap<String, u16>,
    h: &LifecycleHandler,
    budget: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(budget)).await;
        return Ok(());
    }
    if let Some(get) = &h.http_get {
        let probe = Probe {
            http_get: Some(get.clone()),
            timeout_seconds: Some(i32::try_from(budget.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        return probe::run(sb, c, named, &probe, true).await;
    }
    if h.exec.is_some() {
        return Err("exec hooks are not supported by the wasm runtime".into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
        assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
        assert_eq!(humanize(Duration::from_secs(20)), "20s");
    }
}
