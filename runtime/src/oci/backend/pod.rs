//! An OCI pod sandbox: its network namespace and IP, `/etc` files, volumes, Linux containers
//! and (in a mixed pod) the wasm part that runs its wasm containers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use tokio::sync::watch;

use super::container::{self, LinuxContainer, lock};
use super::mixed::WasmPart;
use super::state::{self, ContainerRecord, PodRecord, RootfsRecord, VolumeRecord};
use super::{Inner, net_err, volumes};
use crate::PodSandbox;
use crate::error::{Error, Result, io_err};
use crate::exec::{ExecProcess, ExecRequest};
use crate::logs::{LogOptions, LogStream};
use crate::network::{HttpBody, send_external};
use crate::oci::spec::{EtcFiles, SpecInput, cgroup_path, config_json, netns_path};
use crate::oci::{cgroup, crilog, net};
use crate::oci_image::{RootfsMode, UnpackedImage, prepare_container_rootfs};
use crate::spec::{ContainerSpec, FileContent, HttpOptions, Image, PodSpec};
use crate::status::{ContainerKind, ContainerState, ContainerUsage, PodUsage};
use crate::wasm::volumes::sub_path_dir;

/// Most processes (threads) in one Linux container.
const PIDS_LIMIT: i64 = 4096;

pub(crate) struct OciPod {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) rt: Arc<Inner>,
    pub(crate) this: Weak<dyn PodSandbox>,
    /// The saved record (its `containers` are refreshed from [`OciPod::linux`] when saved).
    record: Mutex<PodRecord>,
    pub(crate) linux: Mutex<BTreeMap<String, Arc<LinuxContainer>>>,
    pub(crate) wasm: WasmPart,
    pub(crate) http: HttpOptions,
    removed: AtomicBool,
    /// Serialises container creation (names are unique in the pod).
    creating: tokio::sync::Mutex<()>,
}

fn blocking_err(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("blocking task failed: {e}"))
}

/// `/etc/hosts` of a pod, as kubelet writes it.
pub(crate) fn hosts_file(ip: Option<IpAddr>, hostname: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip
        && !hostname.is_empty()
    {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

fn etc_files(dir: &Path) -> EtcFiles {
    let etc = dir.join("etc");
    let some = |name: &str| {
        let p = etc.join(name);
        p.exists().then_some(p)
    };
    EtcFiles {
        hosts: some("hosts"),
        resolv_conf: some("resolv.conf"),
        hostname: some("hostname"),
    }
}

fn write_etc(dir: &Path, spec: &PodSpec, hostname: &str) -> Result<()> {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(io_err("creating", &etc))?;
    let write = |name: &str, text: String| {
        let p = etc.join(name);
        std::fs::write(&p, text).map_err(io_err("writing", &p))
    };
    write("hosts", hosts_file(spec.ip, hostname))?;
    write("hostname", format!("{hostname}\n"))?;
    if let Some(dns) = &spec.dns {
        write("resolv.conf", dns.resolv_conf())?;
    }
    Ok(())
}

/// Ports with a listening TCP socket in the network namespace of process `pid`.
fn listening_ports(pid: i32) -> Vec<u16> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .flat_map(|text| parse_listening(&text))
        .collect()
}

/// The local ports of the `LISTEN` (`0A`) sockets of a `/proc/net/tcp{,6}` table.
fn parse_listening(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (local, st) = (f.nth(1)?, f.nth(1)?);
            if st != "0A" {
                return None;
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

impl OciPod {
    /// Creates a new pod: network namespace, `/etc` files, volumes; saves its record.
    pub(crate) async fn create(rt: Arc<Inner>, spec: PodSpec) -> Result<Arc<OciPod>> {
        crate::wasm::volumes::check_name("pod id", &spec.id)?;
        let Some(network) = spec.network else {
            return Err(Error::InvalidSpec(format!(
                "pod {}: a Linux pod needs the node's pod network (no network given)",
                spec.id
            )));
        };
        let ip = match spec.ip {
            Some(IpAddr::V4(ip)) => ip,
            Some(IpAddr::V6(ip)) => {
                return Err(Error::InvalidSpec(format!(
                    "pod {}: IPv6 pod address {ip} is not supported for Linux pods",
                    spec.id
                )));
            }
            None => {
                return Err(Error::InvalidSpec(format!(
                    "pod {}: a Linux pod needs an IP",
                    spec.id
                )));
            }
        };
        let name = if spec.name.is_empty() {
            spec.id.clone()
        } else {
            spec.name.clone()
        };
        let hostname = if spec.hostname.is_empty() {
            name.rsplit('/').next().unwrap_or(&name).to_string()
        } else {
            spec.hostname.clone()
        };
        let bridge = rt.bridge(network.gateway, network.prefix_len).await?;
        let dir = rt.pods_dir().join(&spec.id);
        std::fs::create_dir_all(&dir).map_err(io_err("creating pod directory", &dir))?;
        let mut record = PodRecord {
            id: spec.id.clone(),
            name: name.clone(),
            hostname: hostname.clone(),
            ip: Some(ip),
            gateway: Some((network.gateway, network.prefix_len)),
            netns: None,
            tmpfs: None,
            volumes: BTreeMap::new(),
            containers: BTreeMap::new(),
        };
        // Saved before anything is made on the host, so that a crash in between leaves a record
        // the next start cleans up from.
        state::save(&dir, &record)?;
        let setup = async {
            let ns = net::create_pod_netns(&bridge, &spec.id, ip)
                .await
                .map_err(net_err)?;
            record.netns = Some(ns.name.clone());
            state::save(&dir, &record)?;
            let (d, s, h) = (dir.clone(), spec.clone(), hostname.clone());
            let (vols, tmpfs) = tokio::task::spawn_blocking(move || {
                write_etc(&d, &s, &h)?;
                volumes::create(&d, &s.volumes, true)
            })
            .await
            .map_err(blocking_err)??;
            record.volumes = vols;
            record.tmpfs = tmpfs;
            state::save(&dir, &record)?;
            Ok::<(), Error>(())
        };
        if let Err(e) = setup.await {
            if let Err(e2) = super::teardown_pod_record(&rt, &dir, &record).await {
                tracing::warn!(pod = %name, error = %e2, "cleaning up a pod that failed to start");
            }
            return Err(e);
        }
        let pod = Self::build(rt.clone(), dir, record, spec.http.clone(), BTreeMap::new());
        if let Err(e) = rt.network.register(IpAddr::V4(ip), pod.this.clone()) {
            let _ = pod.remove(Duration::ZERO).await;
            return Err(e);
        }
        Ok(pod)
    }

    pub(crate) fn build(
        rt: Arc<Inner>,
        dir: PathBuf,
        record: PodRecord,
        http: HttpOptions,
        linux: BTreeMap<String, Arc<LinuxContainer>>,
    ) -> Arc<OciPod> {
        Arc::new_cyclic(|this: &Weak<OciPod>| {
            let this: Weak<dyn PodSandbox> = this.clone();
            OciPod {
                id: record.id.clone(),
                name: record.name.clone(),
                dir,
                rt,
                this,
                record: Mutex::new(record),
                linux: Mutex::new(linux),
                wasm: WasmPart::default(),
                http,
                removed: AtomicBool::new(false),
                creating: tokio::sync::Mutex::new(()),
            }
        })
    }

    /// Saves the pod's record with its containers' current records.
    pub(crate) fn save(&self) -> Result<()> {
        let mut record = lock(&self.record).clone();
        record.containers = lock(&self.linux)
            .iter()
            .map(|(n, c)| (n.clone(), c.record()))
            .collect();
        state::save(&self.dir, &record)
    }

    pub(crate) fn record(&self) -> PodRecord {
        lock(&self.record).clone()
    }

    fn check_live(&self) -> Result<()> {
        if self.removed.load(Ordering::SeqCst) {
            Err(Error::PodRemoved(self.name.clone()))
        } else {
            Ok(())
        }
    }

    fn unknown(&self, name: &str) -> Error {
        Error::UnknownContainer {
            pod: self.name.clone(),
            container: name.to_string(),
        }
    }

    fn linux_container(&self, name: &str) -> Option<Arc<LinuxContainer>> {
        lock(&self.linux).get(name).cloned()
    }

    fn netns_path(&self) -> Option<PathBuf> {
        lock(&self.record).netns.as_deref().map(netns_path)
    }

    async fn create_linux(&self, spec: ContainerSpec, image_dir: PathBuf) -> Result<ContainerKind> {
        let record = self.record();
        let bundle = self.dir.join("containers").join(&spec.name);
        let container_name = spec.name.clone();
        let image_dir_saved = image_dir.clone();
        let ports = spec.ports.clone();
        let runtime_id = format!("{}-{}", self.id, spec.name);
        let cgroups_path = cgroup_path(&self.id, &spec.name).map_err(Error::from)?;
        let mut spec = spec;
        let mut volume_dirs = BTreeMap::new();
        for m in &mut spec.mounts {
            let vol: &VolumeRecord = record.volumes.get(&m.volume).ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "container {}: mount of unknown volume {:?}",
                    spec.name, m.volume
                ))
            })?;
            if vol.read_only {
                m.read_only = true;
            }
            volume_dirs.insert(m.volume.clone(), vol.host_path.clone());
        }
        let netns = self.netns_path();
        let hostname = record.hostname.clone();
        let etc = etc_files(&self.dir);
        let cgroups = self.rt.cgroups;
        // The spec holds the environment, secrets included: it lives on the pod's tmpfs and
        // the bundle links to it, so it never reaches the node's disk.
        let config_dir = record
            .tmpfs
            .as_ref()
            .map(|t| t.join("bundles").join(&spec.name));
        let (b, cg) = (bundle.clone(), cgroups_path.clone());
        let rootfs = tokio::task::spawn_blocking(move || {
            for m in &spec.mounts {
                if let (Some(sub), Some(dir)) = (
                    m.sub_path.as_deref().filter(|s| !s.is_empty()),
                    volume_dirs.get(&m.volume),
                ) {
                    sub_path_dir(&m.volume, dir, sub)?;
                }
            }
            let image = UnpackedImage::open(&image_dir).map_err(|e| Error::ImageRead {
                path: image_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            std::fs::create_dir_all(&b).map_err(io_err("creating bundle", &b))?;
            let root_dir = b.join("root");
            let rootfs =
                prepare_container_rootfs(&image, &root_dir, RootfsMode::Auto).map_err(|e| {
                    Error::Volume {
                        volume: spec.name.clone(),
                        detail: format!("preparing the root filesystem: {e}"),
                    }
                })?;
            let input = SpecInput {
                command: spec.linux.command.clone(),
                args: spec.linux.args.clone(),
                image: image.config.clone(),
                rootfs: rootfs.path().to_path_buf(),
                hostname,
                netns,
                cgroups_path: cg,
                cgroup_version: cgroups,
                volume_dirs,
                etc_files: etc,
                security: spec.linux.security.clone(),
                pids_limit: Some(PIDS_LIMIT),
                container: spec,
            };
            let built = config_json(&input).map_err(Error::from).and_then(|config| {
                let path = b.join("config.json");
                let bytes = serde_json::to_vec_pretty(&config)
                    .map_err(|e| Error::Internal(format!("encoding config.json: {e}")))?;
                match &config_dir {
                    Some(dir) => {
                        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
                        let target = dir.join("config.json");
                        std::fs::write(&target, bytes).map_err(io_err("writing", &target))?;
                        let _ = std::fs::remove_file(&path);
                        std::os::unix::fs::symlink(&target, &path).map_err(io_err("linking", &path))
                    }
                    None => std::fs::write(&path, bytes).map_err(io_err("writing", &path)),
                }
            });
            if let Err(e) = built {
                let _ = crate::oci_image::release_container_rootfs(&rootfs, &root_dir);
                let _ = std::fs::remove_dir_all(&b);
                return Err(e);
            }
            Ok(RootfsRecord::from(&rootfs))
        })
        .await
        .map_err(blocking_err)??;
        let rec = ContainerRecord {
            runtime_id,
            bundle,
            rootfs,
            cgroups_path,
            ports,
            image: Some(image_dir_saved),
            monitor_pid: None,
            pid: None,
            started_at: None,
        };
        let c = LinuxContainer::new(
            container_name.clone(),
            rec,
            ContainerState::Waiting {
                reason: "Created".into(),
                message: String::new(),
            },
        );
        lock(&self.linux).insert(container_name, c);
        Ok(ContainerKind::Linux)
    }
}

#[async_trait::async_trait]
impl PodSandbox for OciPod {
    fn id(&self) -> &str {
        &self.id
    }

    fn ip(&self) -> Option<IpAddr> {
        lock(&self.record).ip.map(IpAddr::V4)
    }

    async fn create_container(&self, spec: ContainerSpec) -> Result<ContainerKind> {
        self.check_live()?;
        crate::wasm::volumes::check_name("container name", &spec.name)?;
        let _creating = self.creating.lock().await;
        if lock(&self.linux).contains_key(&spec.name) {
            // Created before (a re-adopted container): left as it is.
            return Ok(ContainerKind::Linux);
        }
        if self.wasm.has(&spec.name) {
            return Err(Error::AlreadyExists(format!(
                "container {} in pod {}",
                spec.name, self.name
            )));
        }
        match &spec.image {
            Image::Path(p) if p.is_dir() => {
                if spec.linux.stdin || spec.linux.tty {
                    return Err(Error::NotSupported(format!(
                        "container {}: stdin and tty are not supported for Linux containers yet",
                        spec.name
                    )));
                }
                let p = p.clone();
                let kind = self.create_linux(spec, p).await?;
                self.save()?;
                Ok(kind)
            }
            Image::None => Err(Error::NoImage(spec.name.clone())),
            _ => self.create_wasm(spec).await,
        }
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.check_live()?;
        if let Some(c) = self.linux_container(name) {
            let started = c.start(&self.rt, &self.name).await;
            self.save()?;
            return started;
        }
        match self.wasm.sandbox() {
            Some(w) if self.wasm.has(name) => w.start_container(name).await,
            _ => Err(self.unknown(name)),
        }
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()> {
        if let Some(c) = self.linux_container(name) {
            return c.stop(&self.rt, grace).await;
        }
        match self.wasm.sandbox() {
            Some(w) if self.wasm.has(name) => w.stop_container(name, grace).await,
            _ => Err(self.unknown(name)),
        }
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        if let Some(c) = self.linux_container(name) {
            if c.is_running() {
                return Err(Error::ContainerState {
                    pod: self.name.clone(),
                    container: name.to_string(),
                    detail: "is running; stop it first".to_string(),
                });
            }
            let result = c.teardown(&self.rt).await;
            lock(&self.linux).remove(name);
            self.save()?;
            return result;
        }
        match self.wasm.sandbox() {
            Some(w) if self.wasm.has(name) => {
                w.remove_container(name).await?;
                self.wasm.forget(name);
                Ok(())
            }
            _ => Err(self.unknown(name)),
        }
    }

    fn watch_container(&self, name: &str) -> Result<watch::Receiver<ContainerState>> {
        if let Some(c) = self.linux_container(name) {
            return Ok(c.state.subscribe());
        }
        match self.wasm.sandbox() {
            Some(w) if self.wasm.has(name) => w.watch_container(name),
            _ => Err(self.unknown(name)),
        }
    }

    fn container_states(&self) -> BTreeMap<String, ContainerState> {
        let mut states: BTreeMap<String, ContainerState> = lock(&self.linux)
            .iter()
            .map(|(n, c)| (n.clone(), c.state.borrow().clone()))
            .collect();
        if let Some(w) = self.wasm.sandbox() {
            states.extend(w.container_states());
        }
        states
    }

    fn logs(&self, name: &str, opts: LogOptions) -> Result<LogStream> {
        let Some(c) = self.linux_container(name) else {
            return match self.wasm.sandbox() {
                Some(w) if self.wasm.has(name) => w.logs(name, opts),
                _ => Err(self.unknown(name)),
            };
        };
        let bundle = c.record().bundle;
        let state_err = |detail: &str| Error::ContainerState {
            pod: self.name.clone(),
            container: name.to_string(),
            detail: detail.to_string(),
        };
        if opts.previous {
            let path = container::previous_log_path(&bundle);
            if !path.exists() {
                return Err(state_err("has no previous terminated run"));
            }
            return Ok(crilog::stream(&path, opts, std::future::ready(())));
        }
        let path = container::log_path(&bundle);
        if !path.exists() {
            return Err(state_err("has not started yet"));
        }
        let mut rx = c.state.subscribe();
        let done = async move {
            let _ = rx.wait_for(|s| !s.is_running()).await.map(|_| ());
        };
        Ok(crilog::stream(&path, opts, done))
    }

    async fn handle_http(&self, port: u16, req: Request<HttpBody>) -> Result<Response<HttpBody>> {
        self.check_live()?;
        if let Some(w) = self.wasm.serving(port) {
            return w.handle_http(port, req).await;
        }
        let Some(ip) = self.ip() else {
            return Err(Error::UnknownPort {
                pod: self.name.clone(),
                port,
            });
        };
        // A Linux container's port: its real socket, over TCP.
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let authority = SocketAddr::new(ip, port).to_string();
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| Error::Http(format!("request to {authority}: {e}")))?;
        if !parts.headers.contains_key(http::header::HOST)
            && let Ok(v) = http::HeaderValue::from_str(&authority)
        {
            parts.headers.insert(http::header::HOST, v);
        }
        send_external(Request::from_parts(parts, body)).await
    }

    fn serves_port(&self, port: u16) -> bool {
        if self.removed.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(w) = self.wasm.serving(port)
            && w.serves_port(port)
        {
            return true;
        }
        let pids: Vec<i32> = lock(&self.linux)
            .values()
            .filter(|c| c.is_running())
            .filter_map(|c| lock(&c.record).pid)
            .collect();
        // The containers share one network namespace: one process's view is enough.
        pids.first()
            .is_some_and(|&pid| listening_ports(pid).contains(&port))
    }

    async fn update_files(&self, volume: &str, files: BTreeMap<String, FileContent>) -> Result<()> {
        self.check_live()?;
        let vols = self.record().volumes;
        let volume = volume.to_string();
        tokio::task::spawn_blocking(move || volumes::update_files(&vols, &volume, &files))
            .await
            .map_err(blocking_err)?
    }

    fn usage(&self) -> PodUsage {
        let mut usage = self.wasm.sandbox().map(|w| w.usage()).unwrap_or_default();
        let paths: Vec<(String, PathBuf)> = lock(&self.linux)
            .iter()
            .map(|(name, c)| (name.clone(), c.record().cgroups_path))
            .collect();
        for (name, p) in paths {
            let u = cgroup::usage(self.rt.cgroups, &p);
            usage.cpu_nanos += u.cpu_nanos;
            usage.throttled_nanos += u.throttled_nanos;
            usage.memory_bytes += u.memory_bytes;
            usage.containers.push(ContainerUsage {
                name,
                kind: Some(ContainerKind::Linux),
                cpu_nanos: u.cpu_nanos,
                memory_bytes: u.memory_bytes,
                ..ContainerUsage::default()
            });
        }
        usage.containers.sort_by(|a, b| a.name.cmp(&b.name));
        usage
    }

    async fn exec(&self, container: &str, req: ExecRequest) -> Result<ExecProcess> {
        self.check_live()?;
        let Some(c) = self.linux_container(container) else {
            return match self.wasm.sandbox() {
                Some(w) if self.wasm.has(container) => w.exec(container, req).await,
                _ => Err(self.unknown(container)),
            };
        };
        if !c.is_running() {
            return Err(Error::ContainerState {
                pod: self.name.clone(),
                container: container.to_string(),
                detail: "is not running".to_string(),
            });
        }
        let id = c.record().runtime_id;
        Ok(self.rt.bin.exec(&id, &req).await?)
    }

    async fn release_network(&self) -> Result<()> {
        self.check_live()?;
        // No container is made meanwhile.
        let _creating = self.creating.lock().await;
        let running = lock(&self.linux)
            .values()
            .find(|c| c.is_running())
            .map(|c| c.name.clone());
        if let Some(container) = running {
            return Err(crate::error::still_running(&self.name, &container));
        }
        // The wasm part holds no address of its own: its release refuses while one of its
        // containers runs, and does nothing else.
        if let Some(w) = self.wasm.sandbox() {
            w.release_network().await?;
        }
        let record = self.record();
        if record.ip.is_none() && record.netns.is_none() {
            return Ok(());
        }
        self.wasm.stop_serving();
        if let Some(ip) = record.ip {
            self.rt.network.unregister(IpAddr::V4(ip), &self.this);
        }
        // Saved without the IP first: a node killed before the namespace is gone finishes
        // the release when it re-adopts the pod.
        lock(&self.record).ip = None;
        self.save()?;
        if let Some(ns) = &record.netns {
            net::remove_pod_netns(&record.id).await.map_err(net_err)?;
            tracing::debug!(pod = %self.name, netns = %ns, "released the pod's network");
        }
        lock(&self.record).netns = None;
        self.save()
    }

    async fn remove(&self, grace: Duration) -> Result<()> {
        if self.removed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let containers: Vec<_> = lock(&self.linux).values().cloned().collect();
        let mut first: Option<Error> = None;
        let stops = futures::future::join_all(containers.iter().map(|c| c.stop(&self.rt, grace)));
        let (stopped, wasm) = tokio::join!(stops, self.wasm.remove(grace));
        for r in stopped.into_iter().chain([wasm]) {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        if let Some(ip) = self.ip() {
            self.rt.network.unregister(ip, &self.this);
        }
        let record = {
            let mut r = self.record();
            r.containers = containers
                .iter()
                .map(|c| (c.name.clone(), c.record()))
                .collect();
            r
        };
        if let Err(e) = super::teardown_pod_record(&self.rt, &self.dir, &record).await {
            first.get_or_insert(e);
        }
        self.rt.forget_pod(&self.id);
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn listening_sockets_are_read_from_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        assert_eq!(parse_listening(table), vec![8080, 443]);
        assert!(parse_listening("header only\n").is_empty());
    }

    #[test]
    fn the_hosts_file_names_the_pod() {
        let s = hosts_file(Some(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 7))), "web-0");
        assert!(s.contains("127.0.0.1\tlocalhost\n"), "{s}");
        assert!(s.ends_with("10.244.0.7\tweb-0\n"), "{s}");
        assert!(!hosts_file(None, "web-0").contains("web-0"));
    }
}
