//! The wasm backend: one engine per node, a compile cache, linkers for WASI preview 1, preview 2
//! and `wasi:http`, and the pods running on them.

mod cache;
mod config;
mod container;
mod engine;
mod guard;
mod interfaces;
mod keyvalue;
mod limits;
mod pod;
mod state;
pub(crate) mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Engine;

pub use cache::CacheStats;
pub use engine::Capacity;
pub use guard::{
    GuestLimits, INSTANCE_LIMIT_EXCEEDED, LOG_RATE_LIMITED, LimitEvent,
    OUTGOING_REQUEST_LIMIT_EXCEEDED, OUTGOING_REQUESTS_THROTTLED, REQUEST_TIMEOUT,
};

use crate::error::{Error, Result};
use crate::logs::LogFiles;
use crate::network::Network;
use crate::spec::PodSpec;
use crate::{PodRuntime, PodSandbox, WASM_HANDLER};
use state::{Host, P1Host};

/// Configuration of the node's wasm runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Node-private state: compile cache, pod volumes. Created if missing.
    pub data_dir: PathBuf,
    /// The node's memory: caps the largest per-instance memory.
    pub node_memory_bytes: u64,
    /// The most pods this node accepts (reported as the `pods` capacity).
    pub max_pods: u32,
    /// Instances to size the pooling allocator for (live commands plus in-flight requests);
    /// halved until the address space can be reserved.
    pub max_instances: u32,
    /// Largest linear memory of one instance (and so the highest memory limit honoured).
    pub max_memory_per_instance: u64,
    /// A directory on a tmpfs for secrets and memory-backed emptyDirs; `None` looks for
    /// `/dev/shm` or `/run`.
    pub tmpfs_dir: Option<PathBuf>,
    /// Bytes of log kept in memory per container run.
    pub log_buffer_bytes: usize,
    /// Interval of the epoch ticker (guest preemption and CPU accounting granularity).
    pub epoch_tick: Duration,
    /// WIT packages or interfaces (`wasi:keyvalue`, `wasi:keyvalue/store`, either with
    /// `@VERSION`) taken out of the component linker: components importing them do not link,
    /// and [`Runtime::interfaces`] does not list them.
    pub disabled_interfaces: Vec<String>,
    /// Limits on tables, logs, instances, outgoing requests and response time of each pod's
    /// guests.
    pub limits: GuestLimits,
}

impl RuntimeConfig {
    /// Defaults for a node keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            data_dir: data_dir.into(),
            node_memory_bytes: node_memory().unwrap_or(4 << 30),
            max_pods: 10_000,
            max_instances: 1000,
            max_memory_per_instance: 4 << 30,
            tmpfs_dir: None,
            log_buffer_bytes: 1 << 20,
            epoch_tick: Duration::from_millis(5),
            disabled_interfaces: Vec::new(),
            limits: GuestLimits::default(),
        }
    }
}

/// `MemTotal` from `/proc/meminfo`.
fn node_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Adds the interfaces of the capabilities containers may declare (`wasi:config/store`,
/// `wasi:keyvalue/{store,atomics,batch}`) to the component linker, each package only if
/// `enabled(package)` (for example `enabled("wasi:keyvalue")`). A container that does not
/// declare a capability cannot instantiate an image importing it (see
/// [`Capabilities`](crate::Capabilities)), although the linker defines it.
pub(crate) fn add_capabilities_to_linker(
    linker: &mut wasmtime::component::Linker<Host>,
    enabled: &dyn Fn(&str) -> bool,
) -> Result<()> {
    use crate::capabilities::Capability;
    if enabled(Capability::Config.package()) {
        wasmtime_wasi_config::add_to_linker(linker, Host::config_view)
            .map_err(|e| Error::Engine(format!("linking wasi:config: {e:#}")))?;
    }
    if enabled(Capability::KeyValue.package()) {
        keyvalue::add_to_linker(linker, Host::keyvalue_view)
            .map_err(|e| Error::Engine(format!("linking wasi:keyvalue: {e:#}")))?;
    }
    Ok(())
}

/// The node's wasm pod runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: wasmtime::component::Linker<Host>,
    pub(crate) p1_linker: wasmtime::Linker<P1Host>,
    pub(crate) cache: cache::Cache,
    /// Link-checked images by digest.
    pub(crate) prepared: Mutex<HashMap<cache::Digest32, container::Prepared>>,
    pub(crate) capacity: Capacity,
    /// The WIT interfaces the component linker provides (probed once, at start).
    pub(crate) interfaces: Vec<String>,
    pub(crate) config: RuntimeConfig,
    /// The node's pod network (shared with the node's other backends); pods with an IP
    /// register in it.
    pub(crate) network: Network,
    pub(crate) roots: volumes::VolumeRoots,
    pub(crate) log_files: LogFiles,
    pods: Mutex<HashMap<String, Arc<pod::WasmPod>>>,
    _ticker: engine::Ticker,
    _log_thread: LogThread,
    _tmpfs: OwnedTmpfs,
}

/// The file in a node's tmpfs directory naming the data directory it belongs to.
const DATA_DIR_FILE: &str = "..data-dir";

/// Removes the tmpfs directories of other nodes (siblings of `own`, named `skiff-*`) whose data
/// directory no longer exists: their node is gone for good (killed, its data deleted), and
/// nothing else would ever remove the secrets they hold.
fn remove_orphaned_tmpfs(own: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let Some(base) = own.parent() else { return };
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_node_dir = entry.file_name().to_string_lossy().starts_with("skiff-");
        if !is_node_dir || path == own {
            continue;
        }
        let Ok(owner) = std::fs::read(path.join(DATA_DIR_FILE)) else {
            continue; // not ours to judge
        };
        let owner = PathBuf::from(std::ffi::OsStr::from_bytes(&owner));
        if !owner.exists() && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(path = %path.display(), data_dir = %owner.display(), "removed an orphaned node's tmpfs directory");
        }
    }
}

/// The node's own directory on a tmpfs (secrets, memory emptyDirs), removed with the runtime:
/// secrets never outlive the node that wrote them. `None` for a directory the node was given.
struct OwnedTmpfs(Option<PathBuf>);

impl Drop for OwnedTmpfs {
    fn drop(&mut self) {
        if let Some(dir) = &self.0
            && let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove the node's tmpfs directory");
        }
    }
}

/// Joins the log-file thread when the runtime goes away.
struct LogThread(Option<std::thread::JoinHandle<()>>);

impl Drop for LogThread {
    fn drop(&mut self) {
        // The thread ends once every `LogFiles` sender is dropped; pods may still hold one,
        // so do not wait here.
        drop(self.0.take());
    }
}

impl Runtime {
    /// Creates the engine (sizing the pool), the linkers, the cache and the epoch ticker. Pods
    /// with an IP register in `network`, which the caller creates and shares with the node's
    /// other backends. Blocking (address-space probing, disk): call it from `spawn_blocking`
    /// in async code.
    pub fn new(config: RuntimeConfig, network: Network) -> Result<Runtime> {
        let (engine, capacity) = engine::build(&engine::Sizing {
            node_memory_bytes: config.node_memory_bytes,
            max_pods: config.max_pods,
            max_instances: config.max_instances,
            max_memory_per_instance: config.max_memory_per_instance,
            max_table_elements: config.limits.max_table_elements,
        })?;

        let mut linker = wasmtime::component::Linker::<Host>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(format!("linking wasi: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(format!("linking wasi:http: {e:#}")))?;
        add_capabilities_to_linker(&mut linker, &|package| {
            !interfaces::package_disabled(&config.disabled_interfaces, package)
        })?;
        interfaces::disable(&engine, &mut linker, &config.disabled_interfaces)
            .map_err(|e| Error::Engine(format!("disabling interfaces: {e:#}")))?;
        let provided_interfaces = interfaces::provided(&engine, &linker);
        let mut p1_linker = wasmtime::Linker::<P1Host>::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |h| &mut h.wasi)
            .map_err(|e| Error::Engine(format!("linking wasi preview 1: {e:#}")))?;

        let cache = cache::Cache::open(engine.clone(), &config.data_dir.join("cache"))?;
        let tmpfs = volumes::find_tmpfs(config.tmpfs_dir.as_deref()).map(|base| {
            if config.tmpfs_dir.is_some() {
                base
            } else {
                // Several nodes may share a machine: key the directory by the data dir.
                use sha2::Digest;
                let key = sha2::Sha256::digest(config.data_dir.to_string_lossy().as_bytes());
                base.join(format!("skiff-{}", &hex::encode(key)[..12]))
            }
        });
        let owned = tmpfs.clone().filter(|_| config.tmpfs_dir.is_none());
        if let Some(dir) = &owned {
            // Left by a node on this data directory that did not stop cleanly: no pod of this
            // runtime exists yet, so nothing in it is in use (kubelet removes orphaned pod
            // directories the same way).
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {
                    tracing::info!(path = %dir.display(), "removed an earlier run's tmpfs directory")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::io_err("clearing tmpfs directory", dir)(e)),
            }
        }
        if let Some(dir) = &tmpfs {
            // Secrets live here: only the node may look.
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(crate::error::io_err("creating tmpfs directory", dir))?;
        }
        if let Some(dir) = &owned {
            // Name the data directory, so that a later node can tell this directory is orphaned
            // once the data directory is gone (see `remove_orphaned_tmpfs`).
            let data_dir =
                std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            use std::os::unix::ffi::OsStrExt;
            std::fs::write(dir.join(DATA_DIR_FILE), data_dir.as_os_str().as_bytes())
                .map_err(crate::error::io_err("writing tmpfs owner", dir))?;
            remove_orphaned_tmpfs(dir);
        }
        if tmpfs.is_none() {
            tracing::warn!("no tmpfs found: secret volumes and memory emptyDirs will be refused");
        }
        let roots = volumes::VolumeRoots {
            disk: config.data_dir.join("pods"),
            memory: tmpfs,
        };
        let (log_files, log_thread) = LogFiles::start()
            .map_err(|e| Error::Engine(format!("cannot start the log writer: {e}")))?;
        let ticker = engine::Ticker::start(engine.weak(), config.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                p1_linker,
                cache,
                prepared: Mutex::new(HashMap::new()),
                capacity,
                interfaces: provided_interfaces,
                config,
                network,
                roots,
                log_files,
                pods: Mutex::new(HashMap::new()),
                _ticker: ticker,
                _log_thread: LogThread(Some(log_thread)),
                _tmpfs: OwnedTmpfs(owned),
            }),
        })
    }

    /// The WIT interfaces (`wasi:http/types@0.2.12`, …) components on this node can import,
    /// as the component linker answers for each candidate, minus the disabled ones.
    pub fn interfaces(&self) -> Vec<String> {
        self.inner.interfaces.clone()
    }

    /// What this node can hold.
    pub fn capacity(&self) -> Capacity {
        self.inner.capacity
    }

    /// Counters of the compile cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// The directory holding this engine's compiled artifacts.
    pub fn cache_dir(&self) -> PathBuf {
        self.inner.cache.dir().to_path_buf()
    }

    /// The node's pod network.
    pub fn network(&self) -> &Network {
        &self.inner.network
    }

    /// The wasmtime engine (for tools that precompile for this node).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Where secret volumes and memory-backed emptyDirs live, if a tmpfs was found. Unless it
    /// was given in the config, the runtime owns it: cleared when the runtime starts, removed
    /// when the runtime goes away.
    pub fn tmpfs_dir(&self) -> Option<PathBuf> {
        self.inner.roots.memory.clone()
    }

    /// Creates a pod sandbox (see [`PodRuntime::create_pod`]).
    pub async fn create_pod(&self, spec: PodSpec) -> Result<Arc<dyn PodSandbox>> {
        let pod = pod::WasmPod::create(self.inner.clone(), spec).await?;
        let mut pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.insert(pod.id().to_string(), pod.clone());
        Ok(pod)
    }

    /// Creates the wasm part of a pod held by another backend (a wasm container in a Linux
    /// pod): its containers' outgoing requests are sent as `outer` (so `localhost` reaches
    /// `outer`'s ports), it has no IP of its own, and it is not listed in [`PodRuntime::pods`].
    pub(crate) async fn create_pod_within(
        &self,
        spec: PodSpec,
        outer: std::sync::Weak<dyn PodSandbox>,
    ) -> Result<Arc<dyn PodSandbox>> {
        let spec = PodSpec { ip: None, ..spec };
        let pod = pod::WasmPod::create_within(self.inner.clone(), spec, Some(outer)).await?;
        Ok(pod)
    }

    pub(crate) fn forget_pod(inner: &RuntimeInner, id: &str) {
        inner
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[async_trait::async_trait]
impl PodRuntime for Runtime {
    fn handler(&self) -> &str {
        WASM_HANDLER
    }

    fn interfaces(&self) -> Vec<String> {
        Runtime::interfaces(self)
    }

    fn capacity(&self) -> Capacity {
        self.inner.capacity
    }

    async fn create_pod(&self, spec: PodSpec) -> Result<Arc<dyn PodSandbox>> {
        Runtime::create_pod(self, spec).await
    }

    fn pod(&self, id: &str) -> Option<Arc<dyn PodSandbox>> {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(id).map(|p| p.clone() as Arc<dyn PodSandbox>)
    }

    fn pods(&self) -> Vec<String> {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<_> = pods.keys().cloned().collect();
        ids.sort();
        ids
    }
}
