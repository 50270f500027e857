//! A wasm pod sandbox: its volumes, its place on the pod network, its CPU budget and its
//! containers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::watch;
use wasmtime_wasi::FsPerms;

use super::container::{Container, Granted, Preopen, check_capabilities, prepare};
use super::guard::{LimitEvent, PodGuard};
use super::keyvalue::KvDb;
use super::limits::PodMeter;
use super::volumes::{PodVolumes, check_name, sub_path_dir};
use super::{Runtime, RuntimeInner};
use crate::PodSandbox;
use crate::capabilities::{CONFIG_MOUNT_PATH, KEYVALUE_MOUNT_PATH};
use crate::error::{Error, Result};
use crate::logs::{LogOptions, LogStream};
use crate::network::HttpBody;
use crate::spec::{ContainerSpec, FileContent, HttpOptions, Image, PodSpec};
use crate::status::{ContainerKind, ContainerState, PodUsage};

/// What containers need from their pod.
pub(crate) struct PodShared {
    pub(crate) rt: Arc<RuntimeInner>,
    pub(crate) meter: Arc<PodMeter>,
    pub(crate) this: Weak<dyn PodSandbox>,
    pub(crate) name: String,
    pub(crate) http: HttpOptions,
    /// Instance, outgoing-request and log guards, and the limit events they record.
    pub(crate) guard: Arc<PodGuard>,
}

pub(crate) struct WasmPod {
    id: String,
    /// `None` once the network is released.
    ip: Mutex<Option<IpAddr>>,
    shared: Arc<PodShared>,
    volumes: Arc<PodVolumes>,
    containers: Mutex<BTreeMap<String, Arc<Container>>>,
    removed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

impl WasmPod {
    pub(crate) async fn create(rt: Arc<RuntimeInner>, spec: PodSpec) -> Result<Arc<WasmPod>> {
        Self::create_within(rt, spec, None).await
    }

    /// Creates a pod whose containers send their outgoing requests as `outer` (its
    /// `localhost`, its IP): the wasm part of a pod another backend holds.
    pub(crate) async fn create_within(
        rt: Arc<RuntimeInner>,
        spec: PodSpec,
        outer: Option<Weak<dyn PodSandbox>>,
    ) -> Result<Arc<WasmPod>> {
        check_name("pod id", &spec.id)?;
        let roots = rt.roots.clone();
        let (id, specs) = (spec.id.clone(), spec.volumes.clone());
        let volumes = Arc::new(blocking(move || PodVolumes::create(&roots, &id, &specs)).await?);
        let name = if spec.name.is_empty() {
            spec.id.clone()
        } else {
            spec.name.clone()
        };
        let pod = Arc::new_cyclic(|this: &Weak<WasmPod>| {
            let this: Weak<dyn PodSandbox> = outer.unwrap_or_else(|| this.clone());
            WasmPod {
                id: spec.id.clone(),
                ip: Mutex::new(spec.ip),
                shared: Arc::new(PodShared {
                    rt: rt.clone(),
                    meter: PodMeter::new(),
                    this,
                    name,
                    http: spec.http.clone(),
                    guard: PodGuard::new(rt.config.limits.clone(), rt.capacity.instances),
                }),
                volumes,
                containers: Mutex::new(BTreeMap::new()),
                removed: AtomicBool::new(false),
            }
        });
        if let Some(ip) = spec.ip
            && let Err(e) = rt.network.register(ip, pod.shared.this.clone())
        {
            let volumes = pod.volumes.clone();
            let _ = blocking(move || {
                volumes.remove();
                Ok(())
            })
            .await;
            return Err(e);
        }
        Ok(pod)
    }

    fn check_live(&self) -> Result<()> {
        if self.removed.load(Ordering::SeqCst) {
            Err(Error::PodRemoved(self.shared.name.clone()))
        } else {
            Ok(())
        }
    }

    fn container(&self, name: &str) -> Result<Arc<Container>> {
        lock(&self.containers)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownContainer {
                pod: self.shared.name.clone(),
                container: name.to_string(),
            })
    }

    fn update_cpu_limit(&self) {
        let containers = lock(&self.containers);
        // Like a pod cgroup: limited only if every container has a limit.
        let limit = containers
            .values()
            .map(|c| c.spec.resources.cpu_limit_millis)
            .try_fold(0u64, |acc, l| l.map(|l| acc + l));
        let limit = if containers.is_empty() { None } else { limit };
        self.shared.meter.set_cpu_limit(limit);
    }

    /// Resolves the capabilities a container declared: the host directory of its config mount,
    /// and its keyvalue database (in its keyvalue mount, else the pod's scratch directory).
    async fn granted(&self, spec: &ContainerSpec, preopens: &[Preopen]) -> Result<Granted> {
        let mounted = |guest: &str| {
            let guest = guest.trim_end_matches('/');
            preopens
                .iter()
                .find(|(_, g, _)| g.trim_end_matches('/') == guest)
                .map(|(host, _, _)| host.clone())
        };
        let mut granted = Granted::default();
        if spec.capabilities.config {
            granted.config_dir = mounted(CONFIG_MOUNT_PATH);
        }
        if spec.capabilities.keyvalue {
            let dir = mounted(KEYVALUE_MOUNT_PATH)
                .unwrap_or_else(|| self.volumes.scratch_dir().join("keyvalue"));
            granted.keyvalue = Some(blocking(move || KvDb::open(&dir)).await?);
        }
        Ok(granted)
    }

    fn preopens(&self, spec: &ContainerSpec) -> Result<Vec<Preopen>> {
        let mut out = Vec::new();
        for m in &spec.mounts {
            let vol = self.volumes.by_name.get(&m.volume).ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "container {}: mount of unknown volume {:?}",
                    spec.name, m.volume
                ))
            })?;
            if !m.mount_path.starts_with('/') {
                return Err(Error::InvalidSpec(format!(
                    "container {}: mountPath {:?} must be absolute",
                    spec.name, m.mount_path
                )));
            }
            let mut host = vol.host_path.clone();
            if let Some(sub) = &m.sub_path {
                host = sub_path_dir(&m.volume, &host, sub)?;
            }
            let perms = if m.read_only || vol.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            out.push((host, m.mount_path.clone(), perms));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl PodSandbox for WasmPod {
    fn id(&self) -> &str {
        &self.id
    }

    fn ip(&self) -> Option<IpAddr> {
        *lock(&self.ip)
    }

    async fn create_container(&self, spec: ContainerSpec) -> Result<ContainerKind> {
        self.check_live()?;
        if spec.name.is_empty() {
            return Err(Error::InvalidSpec("container name is empty".into()));
        }
        {
            let containers = lock(&self.containers);
            if containers.contains_key(&spec.name) {
                return Err(Error::AlreadyExists(format!(
                    "container {} in pod {}",
                    spec.name, self.shared.name
                )));
            }
            for port in &spec.ports {
                if let Some(other) = containers.values().find(|c| c.spec.ports.contains(port)) {
                    return Err(Error::InvalidSpec(format!(
                        "container {}: port {port} is already used by container {}",
                        spec.name, other.spec.name
                    )));
                }
            }
        }
        let max = self.shared.rt.capacity.max_memory_per_instance;
        if let Some(limit) = spec.resources.memory_limit
            && limit > max
        {
            return Err(Error::InvalidSpec(format!(
                "container {}: memory limit {limit} exceeds this node's per-instance maximum {max}",
                spec.name
            )));
        }
        let preopens = self.preopens(&spec)?;
        let bytes: Arc<[u8]> = match &spec.image {
            Image::Bytes(b) => b.clone(),
            Image::Path(p) => {
                let p = p.clone();
                blocking(move || {
                    std::fs::read(&p)
                        .map(Arc::from)
                        .map_err(|source| Error::ImageRead { path: p, source })
                })
                .await?
            }
            Image::None => return Err(Error::NoImage(spec.name.clone())),
        };
        let rt = self.shared.rt.clone();
        let name = spec.name.clone();
        let prepared = blocking(move || {
            let (compiled, digest) = rt.cache.load(&name, &bytes)?;
            if let Some(p) = lock(&rt.prepared).get(&digest) {
                return Ok(p.clone());
            }
            // Type-checking the imports against the linker is worth doing once per image.
            let prepared = prepare(&name, compiled, &rt.engine, &rt.linker, &rt.p1_linker)?;
            let mut cache = lock(&rt.prepared);
            if cache.len() >= 1024 {
                cache.clear();
            }
            cache.insert(digest, prepared.clone());
            Ok(prepared)
        })
        .await?;
        check_capabilities(
            &spec.name,
            &prepared,
            spec.capabilities,
            &self.shared.rt.engine,
        )?;
        let granted = self.granted(&spec, &preopens).await?;
        let kind = prepared.kind();
        if kind != ContainerKind::Http && !spec.ports.is_empty() {
            tracing::debug!(
                container = %spec.name,
                "command container declares ports; they are not served without wasi:sockets"
            );
        }
        {
            let mut containers = lock(&self.containers);
            if containers.contains_key(&spec.name) {
                return Err(Error::AlreadyExists(format!(
                    "container {} in pod {}",
                    spec.name, self.shared.name
                )));
            }
            containers.insert(
                spec.name.clone(),
                Arc::new(Container::new(spec, prepared, preopens, granted)),
            );
        }
        self.update_cpu_limit();
        Ok(kind)
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.check_live()?;
        let c = self.container(name)?;
        c.start(&self.shared).await
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()> {
        let c = self.container(name)?;
        c.stop(grace).await;
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        let c = self.container(name)?;
        if c.is_running() {
            return Err(Error::ContainerState {
                pod: self.shared.name.clone(),
                container: name.to_string(),
                detail: "is running; stop it first".to_string(),
            });
        }
        lock(&self.containers).remove(name);
        self.update_cpu_limit();
        Ok(())
    }

    fn watch_container(&self, name: &str) -> Result<watch::Receiver<ContainerState>> {
        Ok(self.container(name)?.state.subscribe())
    }

    fn container_states(&self) -> BTreeMap<String, ContainerState> {
        lock(&self.containers)
            .iter()
            .map(|(n, c)| (n.clone(), c.state.borrow().clone()))
            .collect()
    }

    fn logs(&self, name: &str, opts: LogOptions) -> Result<LogStream> {
        let c = self.container(name)?;
        let log = c.log(opts.previous).ok_or_else(|| Error::ContainerState {
            pod: self.shared.name.clone(),
            container: name.to_string(),
            detail: if opts.previous {
                "has no previous terminated run".to_string()
            } else {
                "has not started yet".to_string()
            },
        })?;
        Ok(log.reader(&opts))
    }

    async fn handle_http(
        &self,
        port: u16,
        mut req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>> {
        self.check_live()?;
        let container = lock(&self.containers)
            .values()
            .find(|c| c.spec.ports.contains(&port))
            .cloned()
            .ok_or_else(|| Error::UnknownPort {
                pod: self.shared.name.clone(),
                port,
            })?;
        if req.uri().authority().is_none() && !req.headers().contains_key(http::header::HOST) {
            let host = match self.ip() {
                Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
                None => format!("localhost:{port}"),
            };
            if let Ok(v) = http::HeaderValue::from_str(&host) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        container.serve(&self.shared, req).await
    }

    fn serves_port(&self, port: u16) -> bool {
        !self.removed.load(Ordering::SeqCst)
            && lock(&self.containers).values().any(|c| {
                c.kind == ContainerKind::Http && c.spec.ports.contains(&port) && c.is_running()
            })
    }

    async fn update_files(&self, volume: &str, files: BTreeMap<String, FileContent>) -> Result<()> {
        self.check_live()?;
        let volumes = self.volumes.clone();
        let volume = volume.to_string();
        blocking(move || volumes.update_files(&volume, &files)).await
    }

    fn usage(&self) -> PodUsage {
        let mut usage = self.shared.meter.usage();
        usage.containers = lock(&self.containers).values().map(|c| c.usage()).collect();
        usage.requests_total = usage.containers.iter().map(|c| c.requests_total).sum();
        usage.requests_in_flight = usage.containers.iter().map(|c| c.requests_in_flight).sum();
        usage
    }

    fn take_limit_events(&self) -> Vec<LimitEvent> {
        self.shared.guard.take_events()
    }

    fn watch_limit_events(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.guard.watch_events())
    }

    async fn release_network(&self) -> Result<()> {
        self.check_live()?;
        if let Some(c) = lock(&self.containers).values().find(|c| c.is_running()) {
            return Err(crate::error::still_running(&self.shared.name, &c.spec.name));
        }
        // The address is virtual: leaving the node's table is all there is to give up.
        if let Some(ip) = lock(&self.ip).take() {
            self.shared.rt.network.unregister(ip, &self.shared.this);
        }
        Ok(())
    }

    async fn remove(&self, grace: Duration) -> Result<()> {
        if self.removed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let containers: Vec<_> = lock(&self.containers).values().cloned().collect();
        futures::future::join_all(containers.iter().map(|c| c.stop(grace))).await;
        // Read, not taken: callers may still ask which address the removed pod had.
        let ip = *lock(&self.ip);
        if let Some(ip) = ip {
            self.shared.rt.network.unregister(ip, &self.shared.this);
        }
        Runtime::forget_pod(&self.shared.rt, &self.id);
        let volumes = self.volumes.clone();
        blocking(move || {
            volumes.remove();
            Ok(())
        })
        .await?;
        Ok(())
    }
}
