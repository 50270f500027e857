//! A scriptable test double of a backend (in the spirit of youki's `test_manager.rs`): pods and
//! containers that only exist as states, each container run ending the way the test scripted it
//! (keeps running, exits with a code, OOM-killed, fails to start), and an image service whose
//! pulls succeed or fail on request. Every call is recorded. For testing the node in-process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::image::{ImageService, PulledImage};
use crate::logs::{LogOptions, LogStream};
use crate::network::{HttpBody, Network, full_body};
use crate::spec::{ContainerSpec, FileContent, Image, PodSpec, VolumeSpec};
use crate::status::{ContainerKind, ContainerState, EXIT_KILLED, PodUsage, TerminationReason};
use crate::wasm::Capacity;
use crate::{PodRuntime, PodSandbox, WASM_HANDLER};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one run of a fake container goes once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Runs until stopped or ended by [`FakePod::exit`].
    Run,
    /// Exits at once with this code (`Completed` for 0, `Error` otherwise).
    Exit(i32),
    /// Ends at once for exceeding its memory limit (137, `OOMKilled`).
    OomKilled,
    /// Could not be instantiated: ends at once with `StartError` (exit 128), as the wasm
    /// backend reports a guest that fails to instantiate.
    StartError(String),
    /// `start_container` itself fails with this message.
    FailStart(String),
}

#[derive(Default)]
struct Script {
    /// Outcomes of successive runs by container name; the last one repeats.
    runs: HashMap<String, Vec<Outcome>>,
    /// `create_container` fails with this message, by container name.
    create_errors: HashMap<String, String>,
    /// `create_pod` fails with this message.
    sandbox_error: Option<String>,
}

struct RuntimeShared {
    handler: String,
    capacity: Capacity,
    network: Network,
    script: Mutex<Script>,
    calls: Mutex<Vec<String>>,
    pods: Mutex<BTreeMap<String, Arc<FakePod>>>,
}

impl RuntimeShared {
    fn call(&self, what: String) {
        lock(&self.calls).push(what);
    }
}

/// A fake backend. Cheap to clone; clones share pods, script and call log.
#[derive(Clone)]
pub struct FakeRuntime {
    shared: Arc<RuntimeShared>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("handler", &self.shared.handler)
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A fake serving the `wasm` handler; pods with an IP register in `network`.
    pub fn new(network: Network) -> FakeRuntime {
        FakeRuntime::with_handler(WASM_HANDLER, network)
    }

    /// A fake serving `handler`.
    pub fn with_handler(handler: &str, network: Network) -> FakeRuntime {
        FakeRuntime {
            shared: Arc::new(RuntimeShared {
                handler: handler.to_string(),
                capacity: Capacity {
                    pods: 110,
                    instances: 1000,
                    max_memory_per_instance: 1 << 30,
                },
                network,
                script: Mutex::new(Script::default()),
                calls: Mutex::new(Vec::new()),
                pods: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Seeds a pod as if the backend re-adopted it after a node restart: `create_pod` with
    /// its id returns it, and `create_container` of one of `containers` (name and state) leaves
    /// that container as it is; `start_container` of one still running is `Ok`.
    pub fn adopted_pod(
        &self,
        id: &str,
        ip: Option<IpAddr>,
        containers: &[(&str, ContainerState)],
    ) -> Result<Arc<FakePod>> {
        let mut cs = BTreeMap::new();
        for (name, state) in containers {
            let (tx, _) = watch::channel(state.clone());
            let spec = ContainerSpec {
                name: name.to_string(),
                ..Default::default()
            };
            let c = FakeContainer {
                spec,
                kind: ContainerKind::Linux,
                state: tx,
                runs: usize::from(!matches!(state, ContainerState::Waiting { .. })),
                healthy: true,
            };
            cs.insert(name.to_string(), c);
        }
        let pod = Arc::new_cyclic(|this: &Weak<FakePod>| FakePod {
            id: id.to_string(),
            ip: Mutex::new(ip),
            this: this.clone(),
            rt: Arc::downgrade(&self.shared),
            containers: Mutex::new(cs),
            files: Mutex::new(BTreeMap::new()),
            removed: Mutex::new(false),
            volumes: Vec::new(),
            adopted: true,
            adopted_containers: Mutex::new(containers.iter().map(|(n, _)| n.to_string()).collect()),
        });
        if let Some(ip) = ip {
            let weak: Weak<dyn PodSandbox> = pod.this.clone();
            self.shared.network.register(ip, weak)?;
        }
        lock(&self.shared.pods).insert(id.to_string(), pod.clone());
        Ok(pod)
    }

    /// Scripts the runs of every container named `container`: run N goes as `outcomes[N]`,
    /// the last outcome repeating. Unscripted containers keep running ([`Outcome::Run`]).
    pub fn script(&self, container: &str, outcomes: impl IntoIterator<Item = Outcome>) {
        lock(&self.shared.script)
            .runs
            .insert(container.to_string(), outcomes.into_iter().collect());
    }

    /// Makes `create_container` fail for containers named `container`.
    pub fn fail_create(&self, container: &str, message: &str) {
        lock(&self.shared.script)
            .create_errors
            .insert(container.to_string(), message.to_string());
    }

    /// Makes `create_pod` fail (`Some`) or succeed again (`None`).
    pub fn fail_sandbox(&self, message: Option<&str>) {
        lock(&self.shared.script).sandbox_error = message.map(str::to_string);
    }

    /// The calls made so far, for example `start_container pod-uid/c`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.shared.calls).clone()
    }

    /// The live fake pod with this id.
    pub fn fake_pod(&self, id: &str) -> Option<Arc<FakePod>> {
        lock(&self.shared.pods).get(id).cloned()
    }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    fn handler(&self) -> &str {
        &self.shared.handler
    }

    fn capacity(&self) -> Capacity {
        self.shared.capacity
    }

    async fn create_pod(&self, spec: PodSpec) -> Result<Arc<dyn PodSandbox>> {
        self.shared.call(format!("create_pod {}", spec.id));
        if let Some(msg) = lock(&self.shared.script).sandbox_error.clone() {
            return Err(Error::Internal(msg));
        }
        let mut pods = lock(&self.shared.pods);
        if let Some(p) = pods.get(&spec.id) {
            // A re-adopted pod comes back as it is (the sandbox contract).
            if p.adopted {
                return Ok(p.clone());
            }
            return Err(Error::AlreadyExists(format!("pod {}", spec.id)));
        }
        let pod = Arc::new_cyclic(|this: &Weak<FakePod>| FakePod {
            id: spec.id.clone(),
            ip: Mutex::new(spec.ip),
            this: this.clone(),
            rt: Arc::downgrade(&self.shared),
            containers: Mutex::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            removed: Mutex::new(false),
            volumes: spec.volumes.clone(),
            adopted: false,
            adopted_containers: Mutex::new(HashSet::new()),
        });
        if let Some(ip) = spec.ip {
            let weak: Weak<dyn PodSandbox> = pod.this.clone();
            self.shared.network.register(ip, weak)?;
        }
        pods.insert(spec.id, pod.clone());
        Ok(pod)
    }

    fn pod(&self, id: &str) -> Option<Arc<dyn PodSandbox>> {
        self.fake_pod(id).map(|p| p as Arc<dyn PodSandbox>)
    }

    fn pods(&self) -> Vec<String> {
        lock(&self.shared.pods).keys().cloned().collect()
    }
}

struct FakeContainer {
    spec: ContainerSpec,
    kind: ContainerKind,
    state: watch::Sender<ContainerState>,
    runs: usize,
    healthy: bool,
}

/// A fake pod sandbox. Tests end runs and flip health through it.
pub struct FakePod {
    id: String,
    /// `None` once the network is released.
    ip: Mutex<Option<IpAddr>>,
    this: Weak<FakePod>,
    rt: Weak<RuntimeShared>,
    containers: Mutex<BTreeMap<String, FakeContainer>>,
    files: Mutex<BTreeMap<String, BTreeMap<String, FileContent>>>,
    removed: Mutex<bool>,
    /// The volumes the pod was created with.
    volumes: Vec<VolumeSpec>,
    /// Seeded by [`FakeRuntime::adopted_pod`], as a backend re-adopts a pod after a restart.
    adopted: bool,
    /// Containers seeded with the pod: `create_container` leaves them as they are.
    adopted_containers: Mutex<HashSet<String>>,
}

impl FakePod {
    fn call(&self, what: &str, container: Option<&str>) {
        if let Some(rt) = self.rt.upgrade() {
            match container {
                Some(c) => rt.call(format!("{what} {}/{c}", self.id)),
                None => rt.call(format!("{what} {}", self.id)),
            }
        }
    }

    fn unknown(&self, name: &str) -> Error {
        Error::UnknownContainer {
            pod: self.id.clone(),
            container: name.to_string(),
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut FakeContainer) -> T) -> Result<T> {
        let mut cs = lock(&self.containers);
        let c = cs.get_mut(name).ok_or_else(|| self.unknown(name))?;
        Ok(f(c))
    }

    /// Ends the running container `name` now with `exit_code`.
    pub fn exit(&self, name: &str, exit_code: i32) -> Result<()> {
        self.with(name, |c| {
            // Read the state before writing it: a read guard held across the write deadlocks.
            let running = match *c.state.borrow() {
                ContainerState::Running { started_at } => Some(started_at),
                _ => None,
            };
            if let Some(started_at) = running {
                let reason = if exit_code == 0 {
                    TerminationReason::Completed
                } else {
                    TerminationReason::Error
                };
                c.state
                    .send_replace(terminated(exit_code, reason, "", started_at));
            }
        })
    }

    /// Sets a container's state as if the backend reported it.
    pub fn set_state(&self, name: &str, state: ContainerState) -> Result<()> {
        self.with(name, |c| {
            c.state.send_replace(state);
        })
    }

    /// Makes HTTP requests to the container's ports answer 200 (`true`) or 500 (`false`).
    pub fn set_healthy(&self, name: &str, healthy: bool) -> Result<()> {
        self.with(name, |c| c.healthy = healthy)
    }

    /// The volumes the pod was created with.
    pub fn volumes(&self) -> &[VolumeSpec] {
        &self.volumes
    }

    /// The files last written to a file-set volume.
    pub fn files(&self, volume: &str) -> Option<BTreeMap<String, FileContent>> {
        lock(&self.files).get(volume).cloned()
    }

    /// How many times the container was started.
    pub fn runs(&self, name: &str) -> usize {
        self.with(name, |c| c.runs).unwrap_or(0)
    }

    fn check_live(&self) -> Result<()> {
        if *lock(&self.removed) {
            Err(Error::PodRemoved(self.id.clone()))
        } else {
            Ok(())
        }
    }

    fn stop_now(c: &mut FakeContainer) {
        let started_at = match *c.state.borrow() {
            ContainerState::Running { started_at } => started_at,
            _ => return,
        };
        // As the wasm backend: an HTTP service drains and completes; a command is killed.
        let state = match c.kind {
            ContainerKind::Http => terminated(0, TerminationReason::Completed, "", started_at),
            _ => terminated(
                EXIT_KILLED,
                TerminationReason::Error,
                "killed after its grace period",
                started_at,
            ),
        };
        c.state.send_replace(state);
    }
}

fn terminated(
    exit_code: i32,
    reason: TerminationReason,
    message: &str,
    started_at: Timestamp,
) -> ContainerState {
    ContainerState::Terminated {
        exit_code,
        reason,
        message: message.to_string(),
        started_at,
        finished_at: Timestamp::now(),
    }
}

#[async_trait::async_trait]
impl PodSandbox for FakePod {
    fn id(&self) -> &str {
        &self.id
    }

    fn ip(&self) -> Option<IpAddr> {
        *lock(&self.ip)
    }

    async fn create_container(&self, spec: ContainerSpec) -> Result<ContainerKind> {
        self.call("create_container", Some(&spec.name));
        self.check_live()?;
        if matches!(spec.image, Image::None) {
            return Err(Error::NoImage(spec.name.clone()));
        }
        if let Some(rt) = self.rt.upgrade()
            && let Some(msg) = lock(&rt.script).create_errors.get(&spec.name).cloned()
        {
            return Err(Error::UnsupportedKind {
                container: spec.name.clone(),
                detail: msg,
            });
        }
        let mut cs = lock(&self.containers);
        if let Some(c) = cs.get_mut(&spec.name) {
            if lock(&self.adopted_containers).remove(&spec.name) {
                c.spec = spec;
                return Ok(c.kind);
            }
            return Err(Error::AlreadyExists(format!("container {}", spec.name)));
        }
        let kind = if spec.ports.is_empty() {
            ContainerKind::Command
        } else {
            ContainerKind::Http
        };
        let (state, _) = watch::channel(ContainerState::Waiting {
            reason: "Created".to_string(),
            message: String::new(),
        });
        cs.insert(
            spec.name.clone(),
            FakeContainer {
                spec,
                kind,
                state,
                runs: 0,
                healthy: true,
            },
        );
        Ok(kind)
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.call("start_container", Some(name));
        self.check_live()?;
        let rt = self.rt.upgrade();
        let mut cs = lock(&self.containers);
        let c = cs.get_mut(name).ok_or_else(|| self.unknown(name))?;
        if c.state.borrow().is_running() {
            if c.kind == ContainerKind::Linux {
                // A running re-adopted container is left running.
                return Ok(());
            }
            return Err(Error::ContainerState {
                pod: self.id.clone(),
                container: name.to_string(),
                detail: "is already running".to_string(),
            });
        }
        let outcome = rt
            .and_then(|rt| {
                let script = lock(&rt.script);
                let runs = script.runs.get(name)?;
                runs.get(c.runs).or(runs.last()).cloned()
            })
            .unwrap_or(Outcome::Run);
        if let Outcome::FailStart(msg) = outcome {
            return Err(Error::ContainerState {
                pod: self.id.clone(),
                container: name.to_string(),
                detail: msg,
            });
        }
        c.runs += 1;
        let now = Timestamp::now();
        let state = match outcome {
            Outcome::Run | Outcome::FailStart(_) => ContainerState::Running { started_at: now },
            Outcome::Exit(0) => terminated(0, TerminationReason::Completed, "", now),
            Outcome::Exit(code) => terminated(code, TerminationReason::Error, "", now),
            Outcome::OomKilled => terminated(
                EXIT_KILLED,
                TerminationReason::OomKilled,
                "memory limit exceeded",
                now,
            ),
            Outcome::StartError(msg) => terminated(128, TerminationReason::StartError, &msg, now),
        };
        c.state.send_replace(state);
        Ok(())
    }

    async fn stop_container(&self, name: &str, _grace: Duration) -> Result<()> {
        self.call("stop_container", Some(name));
        self.with(name, FakePod::stop_now)
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        self.call("remove_container", Some(name));
        let mut cs = lock(&self.containers);
        match cs.get(name) {
            None => Err(self.unknown(name)),
            Some(c) if c.state.borrow().is_running() => Err(Error::ContainerState {
                pod: self.id.clone(),
                container: name.to_string(),
                detail: "is running".to_string(),
            }),
            Some(_) => {
                cs.remove(name);
                Ok(())
            }
        }
    }

    fn watch_container(&self, name: &str) -> Result<watch::Receiver<ContainerState>> {
        self.with(name, |c| c.state.subscribe())
    }

    fn container_states(&self) -> BTreeMap<String, ContainerState> {
        lock(&self.containers)
            .iter()
            .map(|(n, c)| (n.clone(), c.state.borrow().clone()))
            .collect()
    }

    fn logs(&self, name: &str, _opts: LogOptions) -> Result<LogStream> {
        self.with(name, |_| ())?;
        Err(Error::NotSupported(
            "the fake runtime keeps no logs".to_string(),
        ))
    }

    async fn handle_http(&self, port: u16, _req: Request<HttpBody>) -> Result<Response<HttpBody>> {
        self.call("handle_http", Some(&port.to_string()));
        let healthy = lock(&self.containers)
            .values()
            .find(|c| c.state.borrow().is_running() && c.spec.ports.contains(&port))
            .map(|c| c.healthy)
            .ok_or(Error::UnknownPort {
                pod: self.id.clone(),
                port,
            })?;
        let (status, body) = if healthy {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy")
        };
        Response::builder()
            .status(status)
            .body(full_body(body))
            .map_err(|e| Error::Http(e.to_string()))
    }

    fn serves_port(&self, port: u16) -> bool {
        lock(&self.containers)
            .values()
            .any(|c| c.state.borrow().is_running() && c.spec.ports.contains(&port))
    }

    async fn update_files(&self, volume: &str, files: BTreeMap<String, FileContent>) -> Result<()> {
        self.call("update_files", Some(volume));
        self.check_live()?;
        lock(&self.files).insert(volume.to_string(), files);
        Ok(())
    }

    fn usage(&self) -> PodUsage {
        PodUsage::default()
    }

    async fn exec(&self, container: &str, req: crate::ExecRequest) -> Result<crate::ExecProcess> {
        self.call("exec", Some(container));
        self.check_live()?;
        let running = lock(&self.containers)
            .get(container)
            .map(|c| c.state.borrow().is_running());
        match running {
            None => return Err(self.unknown(container)),
            Some(false) => {
                return Err(Error::ContainerState {
                    pod: self.id.clone(),
                    container: container.to_string(),
                    detail: "is not running".into(),
                });
            }
            Some(true) => {}
        }
        let (stdout, stderr, code) = scripted_exec(&req.command);
        type Reader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;
        type Writer = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
        Ok(crate::ExecProcess {
            stdin: req.stdin.then(|| Box::pin(Vec::<u8>::new()) as Writer),
            stdout: Some(Box::pin(std::io::Cursor::new(stdout)) as Reader),
            stderr: (!req.tty).then(|| Box::pin(std::io::Cursor::new(stderr)) as Reader),
            resize: None,
            exit: Box::pin(async move { Ok(code) }),
        })
    }

    async fn release_network(&self) -> Result<()> {
        self.call("release_network", None);
        self.check_live()?;
        if let Some((name, _)) = lock(&self.containers)
            .iter()
            .find(|(_, c)| c.state.borrow().is_running())
        {
            return Err(crate::error::still_running(&self.id, name));
        }
        let ip = lock(&self.ip).take();
        if let (Some(ip), Some(rt)) = (ip, self.rt.upgrade()) {
            let weak: Weak<dyn PodSandbox> = self.this.clone();
            rt.network.unregister(ip, &weak);
        }
        Ok(())
    }

    async fn remove(&self, _grace: Duration) -> Result<()> {
        self.call("remove", None);
        {
            let mut removed = lock(&self.removed);
            if *removed {
                return Ok(());
            }
            *removed = true;
        }
        for c in lock(&self.containers).values_mut() {
            FakePod::stop_now(c);
        }
        if let Some(rt) = self.rt.upgrade() {
            let ip = *lock(&self.ip);
            if let Some(ip) = ip {
                let weak: Weak<dyn PodSandbox> = self.this.clone();
                rt.network.unregister(ip, &weak);
            }
            lock(&rt.pods).remove(&self.id);
        }
        Ok(())
    }
}

/// A fake image service: pulls succeed (at once, to a made-up path) unless scripted to fail;
/// an image is present once pulled or when marked present.
#[derive(Clone, Default)]
pub struct FakeImages {
    inner: Arc<Mutex<FakeImagesInner>>,
}

#[derive(Default)]
struct FakeImagesInner {
    present: HashMap<String, PulledImage>,
    failures: HashMap<String, String>,
    pulls: Vec<String>,
}

impl FakeImages {
    /// Nothing present, every pull succeeds.
    pub fn new() -> FakeImages {
        FakeImages::default()
    }

    fn pulled(image: &str) -> PulledImage {
        PulledImage {
            image: Image::Path(PathBuf::from(format!("/fake/images/{image}"))),
            image_id: format!("fake://{image}"),
            size: 0,
        }
    }

    /// Marks an image as pulled before.
    pub fn make_present(&self, image: &str) {
        lock(&self.inner)
            .present
            .insert(image.to_string(), FakeImages::pulled(image));
    }

    /// Makes pulls of `image` fail with `message` (`None`: succeed again).
    pub fn fail_pull(&self, image: &str, message: Option<&str>) {
        let mut inner = lock(&self.inner);
        match message {
            Some(m) => inner.failures.insert(image.to_string(), m.to_string()),
            None => inner.failures.remove(image),
        };
    }

    /// Images pulled (or attempted) so far, in order.
    pub fn pulls(&self) -> Vec<String> {
        lock(&self.inner).pulls.clone()
    }
}

#[async_trait::async_trait]
impl ImageService for FakeImages {
    fn reference(&self, image: &str) -> String {
        image.to_string()
    }

    fn present(&self, image: &str) -> Option<PulledImage> {
        lock(&self.inner).present.get(image).cloned()
    }

    async fn pull(&self, image: &str) -> Result<PulledImage> {
        let mut inner = lock(&self.inner);
        inner.pulls.push(image.to_string());
        if let Some(msg) = inner.failures.get(image) {
            return Err(Error::ImagePull(msg.clone()));
        }
        let p = FakeImages::pulled(image);
        inner.present.insert(image.to_string(), p.clone());
        Ok(p)
    }
}

/// The fake's exec: `sh -c SCRIPT` of `;`-separated `echo WORDS [>&2]`, `true`, `false` and
/// `exit N`, or one such command as argv. Anything else is "not found" (127). Returns stdout,
/// stderr and the exit code.
pub fn scripted_exec(command: &[String]) -> (Vec<u8>, Vec<u8>, i32) {
    let script = match command {
        [sh, c, script, ..] if (sh == "sh" || sh.ends_with("/sh")) && c == "-c" => script.clone(),
        _ => command.join(" "),
    };
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), 0);
    for stmt in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let words: Vec<&str> = stmt
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
            .collect();
        code = match words.as_slice() {
            ["echo", rest @ ..] => {
                let (rest, to) = match rest {
                    [rest @ .., ">&2"] => (rest, &mut err),
                    rest => (rest, &mut out),
                };
                to.extend_from_slice(format!("{}\n", rest.join(" ")).as_bytes());
                0
            }
            ["true"] => 0,
            ["false"] => 1,
            ["exit"] => return (out, err, code),
            ["exit", n] => return (out, err, n.parse().unwrap_or(2)),
            [cmd, ..] => {
                err.extend_from_slice(format!("sh: {cmd}: not found\n").as_bytes());
                127
            }
            [] => code,
        };
    }
    (out, err, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ports: Vec<u16>) -> ContainerSpec {
        ContainerSpec {
            name: name.to_string(),
            image: Image::Path(PathBuf::from("/x.wasm")),
            ports,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn scripted_runs_end_as_told_and_calls_are_recorded() {
        let net = Network::new();
        let rt = FakeRuntime::new(net.clone());
        rt.script(
            "job",
            [Outcome::Exit(3), Outcome::OomKilled, Outcome::Exit(0)],
        );
        rt.script("bad", [Outcome::FailStart("no".into())]);
        let pod = rt
            .create_pod(PodSpec {
                id: "p1".into(),
                ip: Some("10.88.0.2".parse().unwrap()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(net.lookup("10.88.0.2".parse().unwrap()).is_some());
        pod.create_container(spec("job", vec![])).await.unwrap();
        let rx = pod.watch_container("job").unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            pod.start_container("job").await.unwrap();
            match &*rx.borrow() {
                ContainerState::Terminated {
                    exit_code, reason, ..
                } => seen.push((*exit_code, *reason)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (3, TerminationReason::Error),
                (137, TerminationReason::OomKilled),
                (0, TerminationReason::Completed),
                (0, TerminationReason::Completed)
            ]
        );
        pod.create_container(spec("bad", vec![])).await.unwrap();
        assert!(pod.start_container("bad").await.is_err());
        pod.create_container(spec("web", vec![8080])).await.unwrap();
        pod.start_container("web").await.unwrap();
        assert!(pod.serves_port(8080));
        let fake = rt.fake_pod("p1").unwrap();
        pod.create_container(spec("svc", vec![])).await.unwrap();
        pod.start_container("svc").await.unwrap();
        fake.exit("svc", 2).unwrap();
        assert!(matches!(
            pod.container_states()["svc"],
            ContainerState::Terminated {
                exit_code: 2,
                reason: TerminationReason::Error,
                ..
            }
        ));
        fake.set_healthy("web", false).unwrap();
        let resp = pod
            .handle_http(8080, Request::new(crate::empty_body()))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        pod.remove(Duration::ZERO).await.unwrap();
        assert!(net.lookup("10.88.0.2".parse().unwrap()).is_none());
        assert!(rt.pod("p1").is_none());
        let calls = rt.calls();
        assert_eq!(calls.first().map(String::as_str), Some("create_pod p1"));
        assert_eq!(calls.last().map(String::as_str), Some("remove p1"));
    }

    #[tokio::test]
    async fn image_pulls_fail_when_scripted() {
        let images = FakeImages::new();
        assert!(images.present("a:1").is_none());
        assert_eq!(images.pull("a:1").await.unwrap().image_id, "fake://a:1");
        assert!(images.present("a:1").is_some());
        images.fail_pull("b:1", Some("not found"));
        assert_eq!(
            images.pull("b:1").await.unwrap_err().to_string(),
            "not found"
        );
        assert_eq!(images.pulls(), ["a:1", "b:1"]);
    }
}
