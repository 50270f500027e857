//! Sandbox spec types: what the host asks the runtime to run (deliberately not Kubernetes types).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A pod: a group of containers sharing volumes, one IP and one CPU budget.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Unique id of the pod on this node (the host uses the pod's uid); names its directories.
    pub id: String,
    /// Human-readable name used in log messages (for example `namespace/name`).
    pub name: String,
    /// The pod's IP, given by the host from the node's pod CIDR. Registered in the [`Network`]
    /// so that other pods on this node reach this one in-process.
    ///
    /// [`Network`]: crate::Network
    pub ip: Option<IpAddr>,
    /// Volumes the containers may mount.
    pub volumes: Vec<VolumeSpec>,
    /// Per-pod HTTP serving options.
    pub http: HttpOptions,
    /// The pod's hostname (`spec.hostname`, else the pod name), written to `/etc/hostname` and
    /// `/etc/hosts` of Linux containers.
    pub hostname: String,
    /// The pod's namespace, for log messages and the DNS search path.
    pub namespace: String,
    /// The node's pod network the IP lies in: Linux backends put the pod on a bridge with this
    /// gateway. `None` for a pod without an IP.
    pub network: Option<PodNetwork>,
    /// The pod's `/etc/resolv.conf` as kubelet writes it (`None`: the backend writes none).
    pub dns: Option<DnsConfig>,
}

/// The node's pod network as a Linux backend needs it: the pod CIDR's prefix and its gateway
/// (the node's end of the bridge, the first address of the node's pod CIDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNetwork {
    /// The gateway, the bridge's address.
    pub gateway: std::net::Ipv4Addr,
    /// Prefix length of the node's pod CIDR.
    pub prefix_len: u8,
}

/// A pod's resolver configuration (`/etc/resolv.conf`), decided by the node from the pod's
/// `dnsPolicy` and `dnsConfig` as kubelet does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines, in order (at most 3 are used by resolvers).
    pub nameservers: Vec<IpAddr>,
    /// The `search` line (for example `NS.svc.cluster.local svc.cluster.local cluster.local`).
    pub searches: Vec<String>,
    /// The `options` line (for example `ndots:5`).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The file's text.
    pub fn resolv_conf(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// How HTTP containers of a pod are instantiated.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Reuse instances across requests instead of a fresh instance per request (off by default:
    /// a fresh instance isolates requests from each other).
    pub reuse_instances: bool,
    /// When reusing, the most idle instances kept per container (0 means 16).
    pub max_idle_instances: usize,
}

/// A named volume of a pod.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    /// Volume name, referenced by [`Mount::volume`].
    pub name: String,
    /// Where the data comes from.
    pub source: VolumeSource,
}

/// The kinds of volume the wasm backend supports.
#[derive(Debug, Clone)]
pub enum VolumeSource {
    /// A directory shared by the pod's containers, deleted with the pod.
    EmptyDir {
        /// Keep it on a tmpfs instead of the node's disk (`medium: Memory`).
        memory: bool,
    },
    /// A directory of files given by the host (configMap, secret, downward API, projected),
    /// replaced atomically by [`PodSandbox::update_files`](crate::PodSandbox::update_files).
    Files {
        /// Relative path -> contents.
        files: BTreeMap<String, FileContent>,
        /// Secret data: kept on a tmpfs only, never on the node's disk.
        sensitive: bool,
    },
    /// A directory of the node (admission decides who may use it).
    HostPath {
        /// Absolute host path.
        path: PathBuf,
    },
}

/// One file of a [`VolumeSource::Files`] volume.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FileContent {
    /// The bytes.
    pub data: Arc<[u8]>,
    /// Unix permission bits (for example `0o644`); `None` means `0o644`.
    pub mode: Option<u32>,
}

impl std::fmt::Debug for FileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the contents: they may be secret.
        f.debug_struct("FileContent")
            .field("len", &self.data.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl FileContent {
    /// File contents with the default mode.
    pub fn new(data: impl Into<Arc<[u8]>>) -> Self {
        Self {
            data: data.into(),
            mode: None,
        }
    }
}

/// A container of a pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name, unique in the pod.
    pub name: String,
    /// The image as the backend's [`ImageService`](crate::ImageService) pulled it; for the wasm
    /// backend, a component or a preview-1 command module.
    pub image: Image,
    /// Arguments after argv\[0\] (argv\[0\] is the container name).
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Initial working directory reported to the guest.
    pub working_dir: Option<String>,
    /// Volume mounts (preopened directories).
    pub mounts: Vec<Mount>,
    /// Ports the container serves (`containerPort`); HTTP components are routed by these.
    pub ports: Vec<u16>,
    /// Resource requests and limits.
    pub resources: Resources,
    /// Also append the container's log lines to this file (created if missing).
    pub log_file: Option<PathBuf>,
    /// Guest capabilities declared for this container beyond the default interfaces: an
    /// image importing an undeclared one is refused with
    /// [`Error::UndeclaredCapability`](crate::Error::UndeclaredCapability).
    pub capabilities: crate::Capabilities,
    /// What only a Linux container uses (wasm backends ignore it).
    pub linux: LinuxContainer,
}

/// The parts of a container spec only a Linux container (OCI backend) reads: a wasm container
/// merges command and args into [`ContainerSpec::args`]; a Linux one keeps them apart to
/// combine them with the image's Entrypoint and Cmd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxContainer {
    /// Kubernetes `command`, variables expanded (replaces the image's Entrypoint).
    pub command: Vec<String>,
    /// Kubernetes `args`, variables expanded (replaces the image's Cmd).
    pub args: Vec<String>,
    /// The container's security context.
    pub security: crate::oci::SecurityOptions,
    /// `stdin`: keep the container's standard input open (not supported yet by the backend).
    pub stdin: bool,
    /// `tty`: give the container a terminal.
    pub tty: bool,
}

/// Where a container's image is on the node (for the wasm backend: its wasm bytes).
#[derive(Clone, Default)]
pub enum Image {
    /// Bytes in memory (for example a pulled layer).
    Bytes(Arc<[u8]>),
    /// A file on the node.
    Path(PathBuf),
    /// No image: creating the container fails.
    #[default]
    None,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Image::Bytes(b) => write!(f, "Image::Bytes({} bytes)", b.len()),
            Image::Path(p) => write!(f, "Image::Path({})", p.display()),
            Image::None => f.write_str("Image::None"),
        }
    }
}

/// A volume mounted into a container.
#[derive(Debug, Clone, Default)]
pub struct Mount {
    /// Name of a [`VolumeSpec`] of the pod.
    pub volume: String,
    /// Absolute guest path, for example `/data`.
    pub mount_path: String,
    /// Read-only access.
    pub read_only: bool,
    /// Mount only this relative directory of the volume.
    pub sub_path: Option<String>,
}

/// Resource requests and limits of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes: exceeding it ends the container with `OOMKilled`.
    pub memory_limit: Option<u64>,
    /// Memory request in bytes (recorded for scheduling).
    pub memory_request: Option<u64>,
    /// CPU limit in millicores: part of the pod's CPU budget per 100 ms period.
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores (recorded for scheduling).
    pub cpu_request_millis: Option<u64>,
}
