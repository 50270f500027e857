//! The Linux container backend ([`OciRuntime`]): pods as network namespaces on the node's
//! bridge, containers run by an OCI runtime binary under a monitor, state saved per pod so a
//! restarted node re-adopts its running containers. See [`crate::PodRuntime`].
//!
//! Layout of [`OciConfig::dir`]: `runtime/` (the runtime's `--root`), `pods/<id>/state.json`
//! (the pod's record), `pods/<id>/etc/` (hosts, hostname, resolv.conf),
//! `pods/<id>/{volumes,files,tmpfs}/` (volumes), `pods/<id>/containers/<name>/` (the bundle:
//! `config.json`, `root/` with the container's root filesystem, the log and exit files).

mod container;
mod mixed;
mod pod;
mod state;
mod volumes;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use self::container::{LinuxContainer, lock, teardown_record, terminated};
use self::pod::OciPod;
use self::state::PodRecord;
use crate::error::{Error, Result, io_err};
use crate::network::Network;
use crate::oci::net::{self, Bridge, NetError};
use crate::oci::runc::{OciBinary, RuntimeKind};
use crate::oci::spec::{CgroupVersion, netns_path};
use crate::oci::{cgroup, monitor};
use crate::spec::{HttpOptions, PodSpec};
use crate::status::{ContainerState, EXIT_KILLED, TerminationReason};
use crate::wasm::Capacity;
use crate::{OCI_HANDLER, PodRuntime, PodSandbox};

/// Configuration of the node's Linux container backend.
#[derive(Debug, Clone)]
pub struct OciConfig {
    /// `DATA_DIR/oci`: bundles, logs, exit files, pod state, the runtime's state root.
    pub dir: PathBuf,
    /// The OCI runtime: runc (the default) or crun.
    pub runtime: RuntimeKind,
    /// The runtime binary; `None` looks it up in `PATH`.
    pub runtime_path: Option<PathBuf>,
    /// The node's name (names its bridge).
    pub node_name: String,
    /// The most pods this backend accepts.
    pub max_pods: u32,
}

/// The node's Linux container runtime. Cheap to clone.
#[derive(Clone)]
pub struct OciRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OciRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRuntime")
            .field("dir", &self.inner.config.dir)
            .field("cgroups", &self.inner.cgroups)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: OciConfig,
    pub(crate) bin: OciBinary,
    pub(crate) cgroups: CgroupVersion,
    pub(crate) network: Network,
    pub(crate) wasm: Option<Arc<crate::Runtime>>,
    bridge: tokio::sync::Mutex<Option<Bridge>>,
    pods: Mutex<BTreeMap<String, Arc<OciPod>>>,
    /// Serialises pod creation (one sandbox per pod id).
    creating: tokio::sync::Mutex<()>,
}

pub(crate) fn net_err(e: NetError) -> Error {
    Error::Engine(format!("pod network: {e}"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Why cgroups cannot hold containers here, if they cannot.
fn cgroups_unusable(version: CgroupVersion) -> Option<String> {
    let root = Path::new("/sys/fs/cgroup");
    match version {
        CgroupVersion::V1 => {
            let missing: Vec<&str> = ["memory", "cpu", "pids"]
                .into_iter()
                .filter(|c| !root.join(c).is_dir())
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "cgroup v1 controllers {} are not mounted under /sys/fs/cgroup",
                    missing.join(", ")
                )
            })
        }
        CgroupVersion::V2 => {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let missing: Vec<&str> = ["memory", "cpu", "pids"]
                .into_iter()
                .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "cgroup v2 controllers {} are not available at /sys/fs/cgroup",
                    missing.join(", ")
                )
            })
        }
    }
}

fn node_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

impl Inner {
    pub(crate) fn pods_dir(&self) -> PathBuf {
        self.config.dir.join("pods")
    }

    /// The node's bridge, created on first use with this gateway and prefix.
    pub(crate) async fn bridge(&self, gateway: Ipv4Addr, prefix_len: u8) -> Result<Bridge> {
        let mut bridge = self.bridge.lock().await;
        if let Some(b) = bridge.as_ref() {
            if b.gateway() != gateway || b.prefix_len() != prefix_len {
                return Err(Error::InvalidSpec(format!(
                    "pod network {gateway}/{prefix_len} differs from the node's bridge {} ({}/{})",
                    b.name(),
                    b.gateway(),
                    b.prefix_len()
                )));
            }
            return Ok(b.clone());
        }
        let name = Bridge::name_for(&self.config.node_name);
        let b = Bridge::ensure(&name, gateway, prefix_len)
            .await
            .map_err(net_err)?;
        *bridge = Some(b.clone());
        Ok(b)
    }

    pub(crate) fn forget_pod(&self, id: &str) {
        lock(&self.pods).remove(id);
    }
}

/// Removes everything a pod record names: its containers (runtime containers, cgroups, root
/// filesystems), its network namespace, its tmpfs, the pod cgroup and the pod directory. Every
/// step runs; the first failure is returned. The directory is kept if something is still
/// mounted below it.
pub(crate) async fn teardown_pod_record(rt: &Inner, dir: &Path, record: &PodRecord) -> Result<()> {
    let mut first: Option<Error> = None;
    for c in record.containers.values() {
        if let Err(e) = teardown_record(rt, c).await {
            first.get_or_insert(e);
        }
    }
    if record.netns.is_some()
        && let Err(e) = net::remove_pod_netns(&record.id).await
    {
        tracing::warn!(pod = %record.name, error = %e, "removing the pod's network namespace");
        first.get_or_insert(net_err(e));
    }
    if let Some(t) = &record.tmpfs {
        volumes::unmount(t);
    }
    if let Ok(pod_cgroup) = crate::oci::spec::cgroup_path(&record.id, "pod")
        && let Some(parent) = pod_cgroup.parent()
        && let Err(e) = cgroup::remove(rt.cgroups, parent)
    {
        first.get_or_insert(io_err("removing the pod cgroup", parent)(e));
    }
    let left = volumes::mounts_under(dir);
    if left.is_empty() {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            first.get_or_insert(io_err("removing pod directory", dir)(e));
        }
    } else {
        first.get_or_insert(Error::Internal(format!(
            "pod {}: directory {} kept: still mounted below it: {left:?}",
            record.name,
            dir.display()
        )));
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl OciRuntime {
    /// Checks the node can run Linux containers (root, the runtime binary, usable cgroups) and
    /// re-adopts the pods saved in [`OciConfig::dir`]: running containers keep running and
    /// are watched again, exited ones report their exit code, pods whose network namespace is
    /// gone are cleaned up. Fails with a clear message otherwise: the node then runs without
    /// `oci` and says why.
    pub async fn new(
        config: OciConfig,
        network: Network,
        wasm: Option<Arc<crate::Runtime>>,
    ) -> Result<OciRuntime> {
        if !is_root() {
            return Err(Error::NotSupported(
                "Linux containers need root: this node does not run as root".into(),
            ));
        }
        let cgroups = CgroupVersion::detect();
        if let Some(why) = cgroups_unusable(cgroups) {
            return Err(Error::NotSupported(format!(
                "Linux containers need cgroups: {why}"
            )));
        }
        let pods_dir = config.dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(io_err("creating", &pods_dir))?;
        let root = config.dir.join("runtime");
        let root = std::path::absolute(&root).map_err(io_err("resolving", &root))?;
        let bin = OciBinary::find(config.runtime, config.runtime_path.clone(), root)?;
        let rt = OciRuntime {
            inner: Arc::new(Inner {
                config,
                bin,
                cgroups,
                network,
                wasm,
                bridge: tokio::sync::Mutex::new(None),
                pods: Mutex::new(BTreeMap::new()),
                creating: tokio::sync::Mutex::new(()),
            }),
        };
        rt.adopt().await;
        Ok(rt)
    }

    /// The cgroup hierarchy the containers run under.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.inner.cgroups
    }

    /// Node shutdown: stops and removes every pod (TERM, `grace`, KILL), its cgroups, mounts
    /// and network namespace, then the bridge and the shared `/skiff` cgroup when unused. (A
    /// killed node skips this: its containers live on and the next start re-adopts them.)
    pub async fn shutdown(&self, grace: Duration) {
        let pods: Vec<Arc<OciPod>> = lock(&self.inner.pods).values().cloned().collect();
        let removed = futures::future::join_all(pods.iter().map(|p| p.remove(grace))).await;
        for (p, r) in pods.iter().zip(removed) {
            if let Err(e) = r {
                tracing::warn!(pod = %p.name, error = %e, "removing a pod at shutdown");
            }
        }
        if let Some(b) = self.inner.bridge.lock().await.take()
            && let Err(e) = b.remove().await
        {
            tracing::warn!(error = %e, "removing the node's bridge");
        }
        // The shared parent cgroup, unless another node here still has pods under it.
        let cgroups = self.inner.cgroups;
        let _ = tokio::task::spawn_blocking(move || {
            cgroup::remove_unused(cgroups, Path::new(crate::oci::spec::CGROUP_PARENT))
        })
        .await;
    }

    async fn adopt(&self) {
        let rt = &self.inner;
        let Ok(entries) = std::fs::read_dir(rt.pods_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let record = match state::load(&dir) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "a pod directory without a readable record; removing it");
                    let empty = PodRecord {
                        id: entry.file_name().to_string_lossy().into_owned(),
                        name: dir.display().to_string(),
                        hostname: String::new(),
                        ip: None,
                        gateway: None,
                        netns: None,
                        tmpfs: None,
                        volumes: BTreeMap::new(),
                        containers: BTreeMap::new(),
                    };
                    if let Err(e) = teardown_pod_record(rt, &dir, &empty).await {
                        tracing::warn!(path = %dir.display(), error = %e, "cleaning up");
                    }
                    continue;
                }
            };
            match self.adopt_pod(&dir, &record).await {
                Ok(pod) => {
                    tracing::info!(pod = %record.name, containers = record.containers.len(), "re-adopted a Linux pod");
                    lock(&rt.pods).insert(record.id.clone(), pod);
                }
                Err(why) => {
                    tracing::info!(pod = %record.name, why = %why, "cleaning up a Linux pod that cannot be re-adopted");
                    if let Err(e) = teardown_pod_record(rt, &dir, &record).await {
                        tracing::warn!(pod = %record.name, error = %e, "cleaning up");
                    }
                }
            }
        }
    }

    async fn adopt_pod(&self, dir: &Path, record: &PodRecord) -> Result<Arc<OciPod>> {
        let rt = &self.inner;
        let mut record = record.clone();
        let Some((gateway, prefix)) = record.gateway else {
            return Err(Error::Internal("the pod's network was never set up".into()));
        };
        match (record.ip, &record.netns) {
            (Some(ip), Some(ns)) => {
                if !netns_path(ns).exists() {
                    return Err(Error::Internal(format!(
                        "its network namespace {ns} is gone"
                    )));
                }
                let bridge = rt.bridge(gateway, prefix).await?;
                // Puts the veth back on the bridge if it came off; the namespace is kept as
                // it is.
                net::create_pod_netns(&bridge, &record.id, ip)
                    .await
                    .map_err(net_err)?;
            }
            (Some(_), None) => {
                return Err(Error::Internal("the pod's network was never set up".into()));
            }
            (None, ns) => {
                // The pod finished and gave up its network (`release_network`); a node killed
                // before the namespace was gone finishes that here. Its containers' states and
                // logs are kept, also when that fails (the record keeps the namespace, so the
                // next release tries again).
                if ns.is_some() {
                    match net::remove_pod_netns(&record.id).await {
                        Ok(()) => {
                            record.netns = None;
                            state::save(dir, &record)?;
                        }
                        Err(e) => {
                            tracing::warn!(pod = %record.name, error = %e, "removing the network namespace of a finished pod");
                        }
                    }
                }
            }
        }
        let mut linux = BTreeMap::new();
        let mut watch = Vec::new();
        for (name, rec) in &record.containers {
            let started_at = rec
                .started_at
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok());
            let runtime_state = rt.bin.state(&rec.runtime_id).await?;
            let status = runtime_state.as_ref().map(|s| s.status.as_str());
            let state = match (status, started_at, rec.monitor_pid) {
                (Some("running") | Some("paused"), Some(at), Some(mpid)) => {
                    watch.push((name.clone(), mpid, at));
                    ContainerState::Running { started_at: at }
                }
                (Some("created"), _, _) | (_, None, _) => {
                    rt.bin.delete(&rec.runtime_id, true).await?;
                    ContainerState::Waiting {
                        reason: "Created".into(),
                        message: String::new(),
                    }
                }
                (_, Some(at), _) => {
                    let paths = container::paths(&rec.bundle);
                    match monitor::exit_status(&paths, &rec.runtime_id) {
                        Some(exit) => {
                            terminated(rt, &rec.cgroups_path, exit.code, at, exit.finished_at)
                        }
                        None => ContainerState::Terminated {
                            exit_code: EXIT_KILLED,
                            reason: TerminationReason::Error,
                            message: "the container ended while the node was down and its exit code was lost".into(),
                            started_at: at,
                            finished_at: Timestamp::now(),
                        },
                    }
                }
            };
            linux.insert(
                name.clone(),
                LinuxContainer::new(name.clone(), rec.clone(), state),
            );
        }
        let ip = record.ip;
        let pod = OciPod::build(
            rt.clone(),
            dir.to_path_buf(),
            record,
            HttpOptions::default(),
            linux,
        );
        for (name, mpid, at) in watch {
            if let Some(c) = lock(&pod.linux).get(&name).cloned() {
                c.watch_exit(rt, mpid, at);
            }
        }
        if let Some(ip) = ip {
            rt.network.register(IpAddr::V4(ip), pod.this.clone())?;
        }
        Ok(pod)
    }
}

#[async_trait::async_trait]
impl PodRuntime for OciRuntime {
    fn handler(&self) -> &str {
        OCI_HANDLER
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            pods: self.inner.config.max_pods,
            instances: self.inner.config.max_pods,
            max_memory_per_instance: node_memory(),
        }
    }

    async fn create_pod(&self, spec: PodSpec) -> Result<Arc<dyn PodSandbox>> {
        if let Some(p) = lock(&self.inner.pods).get(&spec.id) {
            return Ok(p.clone());
        }
        // Finished pods (their network released) are kept for their logs but, as under
        // kubelet's max-pods, do not count.
        let active = lock(&self.inner.pods)
            .values()
            .filter(|p| p.ip().is_some())
            .count();
        if active >= self.inner.config.max_pods as usize {
            return Err(Error::InvalidSpec(format!(
                "pod {}: this node holds its maximum of {} Linux pods",
                spec.id, self.inner.config.max_pods
            )));
        }
        let _creating = self.inner.creating.lock().await;
        if let Some(p) = lock(&self.inner.pods).get(&spec.id) {
            return Ok(p.clone());
        }
        let id = spec.id.clone();
        let pod = OciPod::create(self.inner.clone(), spec).await?;
        lock(&self.inner.pods).insert(id, pod.clone());
        Ok(pod)
    }

    fn pod(&self, id: &str) -> Option<Arc<dyn PodSandbox>> {
        lock(&self.inner.pods)
            .get(id)
            .map(|p| p.clone() as Arc<dyn PodSandbox>)
    }

    fn pods(&self) -> Vec<String> {
        lock(&self.inner.pods).keys().cloned().collect()
    }
}
