//! One container of a wasm pod: preparing its image, running it as a command (component or
//! preview-1 module) on an async task, and serving HTTP with an instance per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::cache::Compiled;
use super::config::ConfigFiles;
use super::engine::MAX_WASM_STACK;
use super::guard::{LogLimiter, REQUEST_TIMEOUT};
use super::keyvalue::KvDb;
use super::limits::{
    ContainerMeter, Killed, MemLimiter, Metered, OutOfMemory, RunMeter, TableLimit,
};
use super::pod::PodShared;
use super::state::{Host, Limits, LogOutput, P1Host, PodHooks, configure_store};
use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::logs::{LogStreamKind, RunLog};
use crate::network::{BoxError, HttpBody, full_body};
use crate::spec::ContainerSpec;
use crate::status::{ContainerKind, ContainerState, EXIT_KILLED, EXIT_TRAP, TerminationReason};

/// A compiled, link-checked container image.
#[derive(Clone)]
pub(crate) enum Prepared {
    Http(ProxyPre<Host>),
    Command(CommandPre<Host>),
    Preview1(wasmtime::InstancePre<P1Host>),
}

impl Prepared {
    pub(crate) fn kind(&self) -> ContainerKind {
        match self {
            Prepared::Http(_) => ContainerKind::Http,
            Prepared::Command(_) => ContainerKind::Command,
            Prepared::Preview1(_) => ContainerKind::Preview1Command,
        }
    }
}

const HTTP_HANDLER: &str = "wasi:http/incoming-handler@";
const CLI_RUN: &str = "wasi:cli/run@";

/// Decides the container kind and links the image against the host. Blocking.
pub(crate) fn prepare(
    container: &str,
    compiled: Compiled,
    engine: &wasmtime::Engine,
    linker: &wasmtime::component::Linker<Host>,
    p1_linker: &wasmtime::Linker<P1Host>,
) -> Result<Prepared> {
    let link_err = |e: wasmtime::Error| {
        let detail = format!("{e:#}");
        if detail.contains("import") {
            Error::MissingImport {
                container: container.to_string(),
                detail,
            }
        } else {
            Error::Compile {
                container: container.to_string(),
                detail,
            }
        }
    };
    match compiled {
        Compiled::Component(component) => {
            let exports: Vec<String> = component
                .component_type()
                .exports(engine)
                .map(|(name, _)| name.to_string())
                .collect();
            let pre = linker.instantiate_pre(&component).map_err(link_err)?;
            if exports.iter().any(|e| e.starts_with(HTTP_HANDLER)) {
                let pre = ProxyPre::new(pre).map_err(|e| Error::UnsupportedKind {
                    container: container.to_string(),
                    detail: format!("cannot serve its wasi:http/incoming-handler export: {e:#}"),
                })?;
                Ok(Prepared::Http(pre))
            } else if exports.iter().any(|e| e.starts_with(CLI_RUN)) {
                let pre = CommandPre::new(pre).map_err(|e| Error::UnsupportedKind {
                    container: container.to_string(),
                    detail: format!("cannot run its wasi:cli/run export: {e:#}"),
                })?;
                Ok(Prepared::Command(pre))
            } else {
                Err(Error::UnsupportedKind {
                    container: container.to_string(),
                    detail: format!(
                        "component exports neither wasi:http/incoming-handler nor wasi:cli/run \
                         (it exports: {})",
                        if exports.is_empty() {
                            "nothing".to_string()
                        } else {
                            exports.join(", ")
                        }
                    ),
                })
            }
        }
        Compiled::Module(module) => {
            let has_start = module
                .exports()
                .any(|e| e.name() == "_start" && e.ty().func().is_some());
            if !has_start {
                return Err(Error::UnsupportedKind {
                    container: container.to_string(),
                    detail: "core module has no `_start` function: only WASI preview-1 commands \
                             run as modules (build libraries as components)"
                        .to_string(),
                });
            }
            let pre = p1_linker.instantiate_pre(&module).map_err(link_err)?;
            Ok(Prepared::Preview1(pre))
        }
    }
}

/// Refuses an image importing an interface of a capability its container did not declare,
/// naming the interface and how to declare it.
pub(crate) fn check_capabilities(
    container: &str,
    prepared: &Prepared,
    declared: Capabilities,
    engine: &wasmtime::Engine,
) -> Result<()> {
    let component = match prepared {
        Prepared::Http(pre) => pre.instance_pre().component(),
        Prepared::Command(pre) => pre.instance_pre().component(),
        Prepared::Preview1(_) => return Ok(()),
    };
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    match declared.first_undeclared(imports.iter().map(String::as_str)) {
        None => Ok(()),
        Some((import, capability)) => Err(Error::UndeclaredCapability {
            container: container.to_string(),
            import: import.to_string(),
            capability,
        }),
    }
}

/// The capabilities a container was given, resolved on the node.
#[derive(Clone, Default)]
pub(crate) struct Granted {
    /// The host directory behind the container's config mount (`wasi:config` declared).
    pub(crate) config_dir: Option<std::path::PathBuf>,
    /// The open keyvalue database (`wasi:keyvalue` declared).
    pub(crate) keyvalue: Option<Arc<KvDb>>,
}

/// A preopened directory: host path, guest path, permissions.
pub(crate) type Preopen = (std::path::PathBuf, String, FsPerms);

/// How a run ended.
struct Outcome {
    exit_code: i32,
    reason: TerminationReason,
    message: String,
}

impl Outcome {
    fn completed() -> Self {
        Outcome {
            exit_code: 0,
            reason: TerminationReason::Completed,
            message: String::new(),
        }
    }

    fn killed(message: &str) -> Self {
        Outcome {
            exit_code: EXIT_KILLED,
            reason: TerminationReason::Error,
            message: message.to_string(),
        }
    }
}

/// Turns the result of a guest call into an outcome; `limiter` tells whether a memory or table
/// limit ended it.
fn classify(
    result: wasmtime::Result<std::result::Result<(), ()>>,
    limiter: &MemLimiter,
) -> Outcome {
    if limiter.table_exceeded {
        let message = match &result {
            Err(e) => e
                .chain()
                .find_map(|c| c.downcast_ref::<TableLimit>())
                .map(|t| t.to_string())
                .unwrap_or_else(|| "table limit exceeded".to_string()),
            Ok(_) => "table limit exceeded".to_string(),
        };
        return Outcome {
            exit_code: EXIT_KILLED,
            reason: TerminationReason::TableLimitExceeded,
            message,
        };
    }
    if limiter.oom {
        let message = match &result {
            Err(e) => e
                .chain()
                .find_map(|c| c.downcast_ref::<OutOfMemory>())
                .map(|o| o.to_string())
                .unwrap_or_else(|| "memory limit exceeded".to_string()),
            Ok(_) => "memory limit exceeded".to_string(),
        };
        return Outcome {
            exit_code: EXIT_KILLED,
            reason: TerminationReason::OomKilled,
            message,
        };
    }
    match result {
        Ok(Ok(())) => Outcome::completed(),
        Ok(Err(())) => Outcome {
            exit_code: 1,
            reason: TerminationReason::Error,
            message: "wasi:cli/run returned an error".to_string(),
        },
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                if exit.0 == 0 {
                    return Outcome::completed();
                }
                return Outcome {
                    exit_code: exit.0,
                    reason: TerminationReason::Error,
                    message: format!("exited with code {}", exit.0),
                };
            }
            if e.downcast_ref::<Killed>().is_some()
                || e.chain().any(|c| c.downcast_ref::<Killed>().is_some())
            {
                return Outcome::killed("killed after its grace period");
            }
            let trap = e.downcast_ref::<wasmtime::Trap>().copied();
            if trap == Some(wasmtime::Trap::StackOverflow) {
                return Outcome {
                    exit_code: EXIT_TRAP,
                    reason: TerminationReason::StackOverflow,
                    message: format!(
                        "wasm trap: call stack exhausted (recursion deeper than the {} KiB wasm \
                         stack limit)",
                        MAX_WASM_STACK >> 10
                    ),
                };
            }
            let mut message = match trap {
                Some(trap) => format!("wasm trap: {trap}"),
                None => format!("{e}"),
            };
            let full = format!("{e:?}");
            if full != message {
                message = format!("{message}\n{full}");
            }
            message.truncate(4096);
            Outcome {
                exit_code: EXIT_TRAP,
                reason: TerminationReason::Error,
                message,
            }
        }
    }
}

struct Logs {
    current: Option<Arc<RunLog>>,
    previous: Option<Arc<RunLog>>,
    /// The current run's log rate limit.
    limiter: Option<Arc<LogLimiter>>,
}

/// What a running command has.
struct CommandRun {
    task: JoinHandle<()>,
    kill: Option<oneshot::Sender<()>>,
    meter: Arc<RunMeter>,
}

pub(crate) struct Container {
    pub(crate) spec: ContainerSpec,
    pub(crate) kind: ContainerKind,
    prepared: Prepared,
    preopens: Vec<Preopen>,
    granted: Granted,
    pub(crate) state: watch::Sender<ContainerState>,
    logs: Mutex<Logs>,
    /// Serialises start and stop.
    run: tokio::sync::Mutex<Option<CommandRun>>,
    http: HttpServing,
    /// CPU, memory and requests of this container's instances.
    pub(crate) meter: Arc<ContainerMeter>,
}

#[derive(Default)]
struct HttpServing {
    accepting: AtomicBool,
    inflight: AtomicUsize,
    drained: Notify,
    tasks: Mutex<JoinSet<()>>,
    idle: Mutex<Vec<(Store<Host>, Proxy)>>,
}

/// Counts an in-flight request until dropped.
struct Inflight {
    container: Arc<Container>,
    /// Whether the request counts in the container's served total (one turned away does not).
    served: bool,
}

impl Inflight {
    fn new(c: Arc<Container>) -> Self {
        c.http.inflight.fetch_add(1, Ordering::SeqCst);
        Inflight {
            container: c,
            served: true,
        }
    }

    /// Leaves the request out of the served total.
    fn turned_away(mut self) {
        self.served = false;
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if self.served {
            self.container.meter.request_done();
        }
        if self.container.http.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.container.http.drained.notify_waiters();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Container {
    pub(crate) fn new(
        spec: ContainerSpec,
        prepared: Prepared,
        preopens: Vec<Preopen>,
        granted: Granted,
    ) -> Self {
        let (state, _) = watch::channel(ContainerState::Waiting {
            reason: "Created".to_string(),
            message: String::new(),
        });
        Container {
            kind: prepared.kind(),
            spec,
            prepared,
            preopens,
            granted,
            state,
            logs: Mutex::new(Logs {
                current: None,
                previous: None,
                limiter: None,
            }),
            run: tokio::sync::Mutex::new(None),
            http: HttpServing::default(),
            meter: ContainerMeter::new(),
        }
    }

    pub(crate) fn log(&self, previous: bool) -> Option<Arc<RunLog>> {
        let logs = lock(&self.logs);
        if previous {
            logs.previous.clone()
        } else {
            logs.current.clone()
        }
    }

    fn new_run_log(&self, pod: &PodShared) -> Arc<RunLog> {
        let file = self
            .spec
            .log_file
            .clone()
            .map(|p| (p, pod.rt.log_files.clone()));
        let log = RunLog::new(pod.rt.config.log_buffer_bytes, file);
        let mut logs = lock(&self.logs);
        if let Some(old) = logs.current.take() {
            old.close();
            logs.previous = Some(old);
        }
        logs.current = Some(log.clone());
        logs.limiter = pod.guard.log_limiter(&self.spec.name, &log);
        log
    }

    /// Builds the WASI context (blocking when there are preopens to open).
    async fn wasi(&self, log: &Arc<RunLog>) -> Result<WasiCtxBuilder> {
        let limit = lock(&self.logs).limiter.clone();
        let mut b = WasiCtxBuilder::new();
        b.arg(&self.spec.name)
            .args(&self.spec.args)
            .envs(&self.spec.env)
            .stdout(LogOutput {
                log: log.clone(),
                stream: LogStreamKind::Stdout,
                limit: limit.clone(),
            })
            .stderr(LogOutput {
                log: log.clone(),
                stream: LogStreamKind::Stderr,
                limit,
            });
        if let Some(wd) = &self.spec.working_dir {
            b.initial_cwd(wd);
        }
        if self.preopens.is_empty() {
            return Ok(b);
        }
        let preopens = self.preopens.clone();
        let name = self.spec.name.clone();
        tokio::task::spawn_blocking(move || {
            for (host, guest, perms) in &preopens {
                b.preopened_dir(host, guest, *perms)
                    .map_err(|e| Error::Volume {
                        volume: guest.clone(),
                        detail: format!("container {name}: cannot open {}: {e:#}", host.display()),
                    })?;
            }
            Ok(b)
        })
        .await
        .map_err(|e| Error::Internal(format!("preopen task failed: {e}")))?
    }

    fn host(&self, pod: &PodShared, mut wasi: WasiCtxBuilder, meter: Arc<RunMeter>) -> Host {
        Host {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: PodHooks {
                network: pod.rt.network.clone(),
                pod: pod.this.clone(),
                guard: pod.guard.clone(),
                container: self.spec.name.clone(),
            },
            limits: Limits {
                limiter: MemLimiter::new(
                    self.spec.resources.memory_limit,
                    pod.rt.config.limits.max_table_elements,
                    pod.meter.clone(),
                    self.meter.clone(),
                ),
                meter,
            },
            config: ConfigFiles::new(self.granted.config_dir.clone()),
            keyvalue: self.granted.keyvalue.clone(),
        }
    }

    /// What this container's instances use now.
    pub(crate) fn usage(&self) -> crate::status::ContainerUsage {
        crate::status::ContainerUsage {
            name: self.spec.name.clone(),
            kind: Some(self.kind),
            cpu_nanos: self.meter.cpu_nanos(),
            memory_bytes: self.meter.memory_bytes(),
            oom_kills: self.meter.oom_kills(),
            requests_total: self.meter.requests_total(),
            requests_in_flight: self.http.inflight.load(Ordering::Relaxed) as u64,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.borrow().is_running()
    }

    /// Starts a run. Commands run on a task; HTTP services start accepting requests.
    pub(crate) async fn start(self: &Arc<Self>, pod: &Arc<PodShared>) -> Result<()> {
        let mut run = self.run.lock().await;
        if self.is_running() {
            return Err(Error::ContainerState {
                pod: pod.name.clone(),
                container: self.spec.name.clone(),
                detail: "is already running".to_string(),
            });
        }
        let log = self.new_run_log(pod);
        let started_at = Timestamp::now();
        if self.kind == ContainerKind::Http {
            self.http.accepting.store(true, Ordering::SeqCst);
            self.state
                .send_replace(ContainerState::Running { started_at });
            return Ok(());
        }
        let meter = RunMeter::new(pod.meter.clone(), self.meter.clone());
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        self.state
            .send_replace(ContainerState::Running { started_at });
        let this = self.clone();
        let pod2 = pod.clone();
        let meter2 = meter.clone();
        let task = tokio::spawn(async move {
            let run = Metered::new(meter2.clone(), this.run_command(&pod2, &log, meter2));
            let outcome = tokio::select! {
                outcome = run => outcome,
                _ = kill_rx => Outcome::killed("killed after its grace period"),
            };
            // Like `wasmtime run`, a trap (or an OOM kill) is worth a line in the log; a plain
            // exit code or a kill is not.
            let noteworthy = outcome.exit_code == EXIT_TRAP
                || matches!(
                    outcome.reason,
                    TerminationReason::OomKilled | TerminationReason::StartError
                );
            if noteworthy && !outcome.message.is_empty() {
                log.write(
                    LogStreamKind::Stderr,
                    format!("[skiff] container exited: {}\n", outcome.message).as_bytes(),
                );
            }
            log.close();
            this.state.send_replace(ContainerState::Terminated {
                exit_code: outcome.exit_code,
                reason: outcome.reason,
                message: outcome.message,
                started_at,
                finished_at: Timestamp::now(),
            });
        });
        *run = Some(CommandRun {
            task,
            kill: Some(kill_tx),
            meter,
        });
        Ok(())
    }

    async fn run_command(
        &self,
        pod: &PodShared,
        log: &Arc<RunLog>,
        meter: Arc<RunMeter>,
    ) -> Outcome {
        let wasi = match self.wasi(log).await {
            Ok(w) => w,
            Err(e) => {
                return Outcome {
                    exit_code: 128,
                    reason: TerminationReason::StartError,
                    message: e.to_string(),
                };
            }
        };
        let engine = &pod.rt.engine;
        match &self.prepared {
            Prepared::Command(pre) => {
                let mut store = Store::new(engine, self.host(pod, wasi, meter));
                configure_store(&mut store);
                let result = async {
                    let cmd = pre.instantiate_async(&mut store).await?;
                    cmd.wasi_cli_run().call_run(&mut store).await
                }
                .await;
                classify(result, &store.data().limits.limiter)
            }
            Prepared::Preview1(pre) => {
                let mut wasi = wasi;
                let host = P1Host {
                    wasi: wasi.build_p1(),
                    limits: Limits {
                        limiter: MemLimiter::new(
                            self.spec.resources.memory_limit,
                            pod.rt.config.limits.max_table_elements,
                            pod.meter.clone(),
                            self.meter.clone(),
                        ),
                        meter,
                    },
                };
                let mut store = Store::new(engine, host);
                configure_store(&mut store);
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await?;
                    Ok(Ok(()))
                }
                .await;
                classify(result, &store.data().limits.limiter)
            }
            Prepared::Http(_) => Outcome::completed(),
        }
    }

    /// Stops the current run: `grace` to finish, then killed. Returns when terminated.
    pub(crate) async fn stop(&self, grace: Duration) {
        let mut run = self.run.lock().await;
        if self.kind == ContainerKind::Http {
            if !self.http.accepting.swap(false, Ordering::SeqCst) {
                return;
            }
            lock(&self.http.idle).clear();
            let drained = tokio::time::timeout(grace, async {
                loop {
                    let notified = self.http.drained.notified();
                    if self.http.inflight.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    notified.await;
                }
            })
            .await
            .is_ok();
            let mut tasks = std::mem::take(&mut *lock(&self.http.tasks));
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let started_at = match &*self.state.borrow() {
                ContainerState::Running { started_at } => *started_at,
                _ => Timestamp::now(),
            };
            let outcome = if drained {
                Outcome::completed()
            } else {
                Outcome::killed("in-flight requests killed after the grace period")
            };
            if let Some(log) = self.log(false) {
                log.close();
            }
            self.state.send_replace(ContainerState::Terminated {
                exit_code: outcome.exit_code,
                reason: outcome.reason,
                message: outcome.message,
                started_at,
                finished_at: Timestamp::now(),
            });
            return;
        }
        let Some(mut cmd) = run.take() else {
            return;
        };
        if tokio::time::timeout(grace, &mut cmd.task).await.is_err() {
            cmd.meter.kill();
            if let Some(kill) = cmd.kill.take() {
                let _ = kill.send(());
            }
            let _ = cmd.task.await;
        }
    }

    /// Serves one request with a fresh (or, if configured, reused) instance.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        pod: &Arc<PodShared>,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>> {
        let Prepared::Http(pre) = &self.prepared else {
            return Err(Error::NotSupported(format!(
                "container {} is a command; serving its ports needs wasi:sockets listeners, \
                 which this runtime does not provide yet",
                self.spec.name
            )));
        };
        // Counted in flight before `accepting` is read, as `stop` clears `accepting` before it
        // reads the count: either `stop` waits for this request or the request sees the stop,
        // never neither.
        let inflight = Inflight::new(self.clone());
        if !self.http.accepting.load(Ordering::SeqCst) {
            inflight.turned_away();
            return Err(Error::ContainerState {
                pod: pod.name.clone(),
                container: self.spec.name.clone(),
                detail: "is not running".to_string(),
            });
        }
        // The pod's cap on concurrent instances: a flood of requests (or a guest calling
        // itself, a fork bomb) takes this pod's share of the engine, never its neighbours'.
        let Some(slot) = pod.guard.instance_slot(&self.spec.name) else {
            inflight.turned_away();
            let mut resp = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the pod is serving {} requests at once, its instance limit\n",
                    pod.guard.limits.max_instances_per_pod
                ),
            );
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            return Ok(resp);
        };
        let Some(log) = self.log(false) else {
            return Err(Error::Internal("running container without a log".into()));
        };
        let meter = RunMeter::new(pod.meter.clone(), self.meter.clone());
        let reused = if pod.http.reuse_instances {
            lock(&self.http.idle).pop()
        } else {
            None
        };
        let (mut store, proxy) = match reused {
            Some((mut store, proxy)) => {
                store.data_mut().limits.meter = meter.clone();
                store.set_epoch_deadline(1);
                (store, Some(proxy))
            }
            None => {
                let wasi = self.wasi(&log).await?;
                let mut store = Store::new(&pod.rt.engine, self.host(pod, wasi, meter.clone()));
                configure_store(&mut store);
                (store, None)
            }
        };
        let mut req = req;
        // Traced when the caller is (the node's route or endpoint span; a probe is not): a child
        // of the caller's span, whose context the guest sees in `traceparent`.
        let traced = skiff_telemetry::trace::in_trace();
        let span = traced.then(|| {
            let (namespace, name) = pod.name.split_once('/').unwrap_or(("", &pod.name));
            let span = tracing::info_span!(
                "pod request",
                otel.name = %format!("pod {}", pod.name),
                otel.kind = "server",
                pod = name,
                namespace,
                container = %self.spec.name,
                trace_id = tracing::field::Empty,
            );
            skiff_telemetry::trace::inject(&span, req.headers_mut());
            skiff_telemetry::trace::record_trace_id(&span);
            span
        });
        let req = req.map(|b| {
            b.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
                .boxed_unsync()
        });
        let (tx, rx) = oneshot::channel();
        let http_err = |e: wasmtime::Error| Error::Http(format!("{e:#}"));
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(http_err)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(http_err)?;
        let (err_tx, err_rx) = oneshot::channel::<String>();
        let pre = pre.clone();
        let reuse = pod.http.reuse_instances;
        let max_idle = match pod.http.max_idle_instances {
            0 => 16,
            n => n,
        };
        let this = self.clone();
        let run_log = log.clone();
        let task = async move {
            let _inflight = inflight;
            let _slot = slot;
            let result = Metered::new(meter, async {
                let proxy = match proxy {
                    Some(p) => p,
                    None => {
                        // In the request's trace (a probe's request has none).
                        let span = if traced {
                            tracing::info_span!("instantiate")
                        } else {
                            tracing::Span::none()
                        };
                        tracing::Instrument::instrument(pre.instantiate_async(&mut store), span)
                            .await?
                    }
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await?;
                wasmtime::Result::Ok(proxy)
            })
            .await;
            let oom = store.data().limits.limiter.oom;
            match result {
                Ok(proxy) if reuse && !oom => {
                    let mut idle = lock(&this.http.idle);
                    if idle.len() < max_idle && this.http.accepting.load(Ordering::SeqCst) {
                        idle.push((store, proxy));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let outcome = classify(Err(e), &store.data().limits.limiter);
                    let what = match outcome.reason {
                        TerminationReason::Error => "failed",
                        reason => reason.as_str(),
                    };
                    log.write(
                        LogStreamKind::Stderr,
                        format!("[skiff] request {what}: {}\n", outcome.message).as_bytes(),
                    );
                    let _ = err_tx.send(outcome.message);
                }
            }
        };
        let abort = {
            let mut tasks = lock(&self.http.tasks);
            while tasks.try_join_next().is_some() {}
            // The guest runs in its request's span, which its outgoing requests continue.
            if let Some(span) = span {
                tasks.spawn(tracing::Instrument::instrument(task, span))
            } else {
                tasks.spawn(task)
            }
        };
        // A caller that goes away before the response (client disconnect, probe timeout)
        // takes the guest with it, so a stuck handler cannot hold an instance forever.
        let mut guard = AbortUnlessDisarmed(Some(abort));
        let answer = match pod.guard.limits.request_timeout {
            Some(limit) => match tokio::time::timeout(limit, rx).await {
                Ok(answer) => answer,
                Err(_) => {
                    // Dropping the armed guard kills the instance (and drops the request body
                    // it never read).
                    drop(guard);
                    let message = format!(
                        "a request got no response within {} s: its instance was killed and \
                         the caller answered 504",
                        limit.as_secs_f64()
                    );
                    run_log.write(
                        LogStreamKind::Stderr,
                        format!("[skiff] {message}\n").as_bytes(),
                    );
                    pod.guard.report(&self.spec.name, REQUEST_TIMEOUT, message);
                    return Ok(error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the pod did not answer in time\n".to_string(),
                    ));
                }
            },
            None => rx.await,
        };
        guard.0 = None;
        match answer {
            Ok(Ok(resp)) => {
                Ok(resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
            }
            Ok(Err(code)) => Ok(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the guest failed the request: {code:?}\n"),
            )),
            Err(_) => {
                let why = err_rx
                    .await
                    .unwrap_or_else(|_| "the guest returned without a response".to_string());
                tracing::debug!(container = %self.spec.name, error = %why, "request failed");
                Ok(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the guest failed before responding; see the container log\n".to_string(),
                ))
            }
        }
    }
}

/// Aborts a request's guest task if dropped while armed.
struct AbortUnlessDisarmed(Option<tokio::task::AbortHandle>);

impl Drop for AbortUnlessDisarmed {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

fn error_response(status: StatusCode, body: String) -> Response<HttpBody> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
