//! Builds a container's OCI runtime `config.json` (an `oci_spec::runtime::Spec`) from the
//! runtime's container spec and the image config, the way containerd's CRI plugin does for
//! kubelet: command and args over the image's Entrypoint and Cmd, env, user, capabilities,
//! namespaces, mounts, masked paths and cgroup limits; and tells cgroup v1 from v2.
//!
//! Resources follow kubelet (`pkg/kubelet/cm/helpers_linux.go`):
//! - memory limit in bytes as `memory.limit`;
//! - a cpu limit as quota over a 100 ms period (`millicores × 100000 / 1000`, at least 1 ms);
//! - cpu shares from the request (or, with no request, the limit) as `MilliCPUToShares`:
//!   `millicores × 1024 / 1000`, clamped to 2..=262144, so a container without cpu gets 2;
//! - on cgroup v1 the shares go to `cpu.shares`; on cgroup v2 there are no shares but a
//!   `cpu.weight` (1..=10000), written through `linux.resources.unified` as runc (up to 1.3.1)
//!   and crun (up to 1.22) convert shares: `weight = 1 + (shares - 2) × 9999 / 262142`
//!   (2 → 1, 1024 → 39, 262144 → 10000). Writing it ourselves keeps the weight the same
//!   whichever runtime version runs it (runc 1.3.2 and crun 1.23 switched to a quadratic
//!   mapping where 1024 → 100).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use crate::oci_image::ImageConfig;
use crate::spec::ContainerSpec;

/// The OCI runtime-spec version written into `config.json` (runc 1.1 and crun 1.8 accept it).
const OCI_VERSION: &str = "1.0.2-dev";

/// `PATH` given to a container whose image and spec set none (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cpu period in microseconds kubelet uses for quotas (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota kubelet sets (1 ms), as the kernel refuses less.
const MIN_QUOTA_US: i64 = 1_000;
/// `MilliCPUToShares` bounds.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const SHARES_PER_CPU: u64 = 1_024;

/// Docker's and containerd's default capability set (`oci/caps/defaults.go`,
/// `pkg/oci/spec.go`): what a container keeps when its security context adds or drops nothing.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// containerd's default masked paths: hidden from the container (`/dev/null` or an empty
/// read-only tmpfs over them).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a container's `config.json` could not be built. Each is the container's fault (its
/// spec or image), reported as `CreateContainerError` with this message.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the container nor the image says what to run.
    #[error(
        "no command specified: the container has no command or args and the image no Entrypoint or Cmd"
    )]
    NoCommand,
    /// The image's `User` is a name; resolving names from the image's `/etc/passwd` is not
    /// supported.
    #[error(
        "image user {0:?} is not numeric: resolving user names is not supported, set securityContext.runAsUser or use a numeric USER"
    )]
    NonNumericUser(String),
    /// A capability name the runtime spec does not know.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A path that must be absolute is not (`what` says which).
    #[error("{what} {path:?} must be an absolute path")]
    NotAbsolute {
        /// Which path (`workingDir`, `mountPath`, the root filesystem, …).
        what: &'static str,
        /// The path given.
        path: String,
    },
    /// A volume mount names a volume the pod does not have (or has no directory for).
    #[error("volume mount {mount_path:?} names volume {volume:?}, which the pod does not have")]
    UnknownVolume {
        /// The mount's volume name.
        volume: String,
        /// The mount's path in the container.
        mount_path: String,
    },
    /// A `subPath` that is absolute or climbs out of its volume.
    #[error("subPath {0:?} must be a relative path inside the volume (no '..')")]
    BadSubPath(String),
    /// A cgroup path component that would leave the pod's cgroup (`/`, `..`, empty).
    #[error("{0:?} cannot name a cgroup directory")]
    BadCgroupName(String),
    /// A number too large for the runtime spec's field.
    #[error("{0} is too large")]
    TooLarge(&'static str),
    /// The runtime-spec builder refused a value.
    #[error("building the OCI runtime spec: {0}")]
    Build(#[from] OciSpecError),
}

/// The cgroup hierarchy the node runs, which decides how cpu shares are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Per-controller hierarchies (`/sys/fs/cgroup/memory`, …), including the hybrid layout
    /// where a cgroup2 mount at `/sys/fs/cgroup/unified` holds no controllers we use.
    V1,
    /// The unified hierarchy mounted at `/sys/fs/cgroup` itself.
    V2,
}

impl CgroupVersion {
    /// The version of the hierarchy mounted at `/sys/fs/cgroup`.
    pub fn detect() -> CgroupVersion {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// The version of the hierarchy mounted at `root`: v2 when `cgroup.controllers` is at the
    /// root (a pure unified mount); otherwise v1 (pure v1, or hybrid, whose cgroup2 mount sits
    /// below the root at `unified`).
    pub fn detect_at(root: &Path) -> CgroupVersion {
        if root.join("cgroup.controllers").is_file() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }
}

/// Files the node writes for a pod and binds into each of its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcFiles {
    /// Bound at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Bound at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Bound at `/etc/hostname`.
    pub hostname: Option<PathBuf>,
}

/// The security context of a container, as far as the OCI backend supports it (privileged
/// containers and host namespaces are refused at admission and have no field here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    /// `readOnlyRootFilesystem`: the root and the `/etc` bind files are mounted read-only.
    pub read_only_root: bool,
    /// `capabilities.add`, as Kubernetes spells them (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub add_capabilities: Vec<String>,
    /// `capabilities.drop` (`ALL` drops the whole default set before the adds).
    pub drop_capabilities: Vec<String>,
    /// `runAsUser`: replaces the image's `User` entirely.
    pub run_as_user: Option<u32>,
    /// `runAsGroup`: replaces the group from the image's `User` (or 0).
    pub run_as_group: Option<u32>,
}

/// Everything [`config_json`] needs for one container.
#[derive(Debug, Clone)]
pub struct SpecInput {
    /// The container: name, env, workingDir, mounts and resources are read from it. Its
    /// `args` are not: a wasm container's args merge `command` and `args`, which an OCI
    /// container keeps apart in [`SpecInput::command`] and [`SpecInput::args`].
    pub container: ContainerSpec,
    /// Kubernetes `command` (replaces the image's Entrypoint when not empty), variables already
    /// expanded.
    pub command: Vec<String>,
    /// Kubernetes `args` (replace the image's Cmd when not empty), variables already expanded.
    pub args: Vec<String>,
    /// The image's run config.
    pub image: ImageConfig,
    /// The container's root filesystem on the node (absolute).
    pub rootfs: PathBuf,
    /// The container's hostname (the pod's).
    pub hostname: String,
    /// The pod's network namespace to join ([`netns_path`]); `None` gives the container a new,
    /// empty one.
    pub netns: Option<PathBuf>,
    /// Absolute cgroup path ([`cgroup_path`]).
    pub cgroups_path: PathBuf,
    /// Which cgroup hierarchy the limits are written for.
    pub cgroup_version: CgroupVersion,
    /// The node directory of each pod volume the container may mount, by volume name.
    pub volume_dirs: BTreeMap<String, PathBuf>,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` to bind in.
    pub etc_files: EtcFiles,
    /// The security context.
    pub security: SecurityOptions,
    /// Most processes (threads) in the container's cgroup; `None` for no limit.
    pub pids_limit: Option<i64>,
}

/// The cgroup every pod's cgroup is made under, shared by the nodes of one machine.
pub const CGROUP_PARENT: &str = "/skiff";

/// The absolute cgroup path of a container: `/skiff/<pod-uid>/<container>`.
pub fn cgroup_path(pod_uid: &str, container: &str) -> Result<PathBuf, SpecError> {
    for name in [pod_uid, container] {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(SpecError::BadCgroupName(name.to_string()));
        }
    }
    Ok(Path::new(CGROUP_PARENT).join(pod_uid).join(container))
}

/// The path of a named network namespace as `ip netns add NAME` creates it.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/var/run/netns").join(name)
}

/// The directories that hold the cgroup `cgroups_path` under the hierarchy mounted at `root`
/// and exist: one per controller mount on v1 (symlinked aliases such as `cpu` ->
/// `cpu,cpuacct` are skipped), the one directory on v2. Teardown removes these, deepest first.
pub fn cgroup_dirs(
    version: CgroupVersion,
    root: &Path,
    cgroups_path: &Path,
) -> io::Result<Vec<PathBuf>> {
    let relative = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let candidates = match version {
        CgroupVersion::V2 => vec![root.join(relative)],
        CgroupVersion::V1 => {
            let mut dirs = Vec::new();
            for entry in std::fs::read_dir(root)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    dirs.push(entry.path().join(relative));
                }
            }
            dirs.sort();
            dirs
        }
    };
    Ok(candidates.into_iter().filter(|d| d.is_dir()).collect())
}

/// Builds the OCI runtime config of one container.
pub fn config_json(input: &SpecInput) -> Result<Spec, SpecError> {
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user(input)?)
        .args(process_args(
            &input.command,
            &input.args,
            &input.image.entrypoint,
            &input.image.cmd,
        )?)
        .env(environment(input))
        .cwd(working_dir(input)?)
        .capabilities(capabilities(&input.security)?)
        .no_new_privileges(true)
        .build()?;
    let root = RootBuilder::default()
        .path(absolute("the root filesystem", &input.rootfs)?)
        .readonly(input.security.read_only_root)
        .build()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces(input.netns.as_deref())?)
        .cgroups_path(absolute("the cgroup path", &input.cgroups_path)?)
        .resources(resources(input)?)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .build()?;
    Ok(SpecBuilder::default()
        .version(OCI_VERSION)
        .root(root)
        .process(process)
        .hostname(input.hostname.clone())
        .mounts(mounts(input)?)
        .linux(linux)
        .build()?)
}

/// The process's argv, combining Kubernetes `command`/`args` with the image's Entrypoint/Cmd
/// as kubelet and containerd do: `command` replaces Entrypoint and, when given, drops Cmd;
/// `args` replaces Cmd.
pub fn process_args(
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
        (true, false) => entrypoint.iter().chain(args).cloned().collect(),
        (false, _) => command.iter().chain(args).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// `HOSTNAME`, then the image's `Env`, then the container's env, a later variable of the same
/// name replacing an earlier one in place; a default `PATH` when none sets it.
fn environment(input: &SpecInput) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |name: &str, value: &str| {
        if values.insert(name.to_string(), value.to_string()).is_none() {
            order.push(name.to_string());
        }
    };
    set("HOSTNAME", &input.hostname);
    for entry in &input.image.env {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(name, value);
    }
    for (name, value) in &input.container.env {
        set(name, value);
    }
    let mut env: Vec<String> = order
        .iter()
        .map(|name| format!("{name}={}", values[name]))
        .collect();
    if !values.contains_key("PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    env
}

fn working_dir(input: &SpecInput) -> Result<PathBuf, SpecError> {
    let dir = input
        .container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(input.image.working_dir.as_deref())
        .unwrap_or("/");
    absolute("workingDir", Path::new(dir))
}

/// The uid and gid from the image's `User` (`uid` or `uid:gid`); an empty or missing user is
/// root. A name is refused: it would need the image's `/etc/passwd`.
pub fn parse_user(user: Option<&str>) -> Result<(u32, Option<u32>), SpecError> {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok((0, None));
    };
    let bad = || SpecError::NonNumericUser(user.to_string());
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid = uid.parse::<u32>().map_err(|_| bad())?;
    let gid = gid
        .map(|g| g.parse::<u32>().map_err(|_| bad()))
        .transpose()?;
    Ok((uid, gid))
}

fn user(input: &SpecInput) -> Result<oci_spec::runtime::User, SpecError> {
    let (uid, gid) = match input.security.run_as_user {
        Some(uid) => (uid, None),
        None => parse_user(input.image.user.as_deref())?,
    };
    let gid = input.security.run_as_group.or(gid).unwrap_or(0);
    Ok(UserBuilder::default().uid(uid).gid(gid).build()?)
}

fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// Every capability the runtime spec knows (what `add: [ALL]` grants).
fn all_capabilities() -> Capabilities {
    // The runtime spec's list, in its serialised names; `Capability` parses each.
    const ALL: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    ALL.iter().filter_map(|c| c.parse().ok()).collect()
}

/// The container's capability set: the default set, minus drops, plus adds (as containerd
/// applies a security context; `ALL` in either list means every capability).
pub fn capability_set(security: &SecurityOptions) -> Result<Capabilities, SpecError> {
    let is_all = |c: &String| c.trim().eq_ignore_ascii_case("ALL");
    let mut caps: Capabilities = if security.drop_capabilities.iter().any(is_all) {
        Capabilities::new()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    for name in security.drop_capabilities.iter().filter(|c| !is_all(c)) {
        caps.remove(&parse_capability(name)?);
    }
    if security.add_capabilities.iter().any(is_all) {
        caps.extend(all_capabilities());
    }
    for name in security.add_capabilities.iter().filter(|c| !is_all(c)) {
        caps.insert(parse_capability(name)?);
    }
    Ok(caps)
}

fn capabilities(
    security: &SecurityOptions,
) -> Result<oci_spec::runtime::LinuxCapabilities, SpecError> {
    let caps = capability_set(security)?;
    // As containerd: bounding, effective and permitted; nothing inheritable or ambient.
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?)
}

fn namespaces(netns: Option<&Path>) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, SpecError> {
    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    let network = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    namespaces.push(match netns {
        Some(path) => network
            .path(absolute("the network namespace", path)?)
            .build()?,
        None => network.build()?,
    });
    Ok(namespaces)
}

fn kernel_mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some(typ.to_string()));
    mount.set_source(Some(PathBuf::from(source)));
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

fn bind_mount(source: PathBuf, destination: PathBuf, read_only: bool) -> Result<Mount, SpecError> {
    let access = if read_only { "ro" } else { "rw" };
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_string(),
            "rprivate".to_string(),
            access.to_string(),
        ])
        .build()?)
}

fn mounts(input: &SpecInput) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = vec![
        kernel_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        kernel_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        kernel_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        kernel_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        kernel_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        kernel_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    for m in &input.container.mounts {
        let destination = absolute("mountPath", Path::new(&m.mount_path))?;
        let Some(dir) = input.volume_dirs.get(&m.volume) else {
            return Err(SpecError::UnknownVolume {
                volume: m.volume.clone(),
                mount_path: m.mount_path.clone(),
            });
        };
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(relative_inside(sub)?),
            None => dir.clone(),
        };
        mounts.push(bind_mount(source, destination, m.read_only)?);
    }
    let etc = &input.etc_files;
    for (file, destination) in [
        (&etc.hosts, "/etc/hosts"),
        (&etc.resolv_conf, "/etc/resolv.conf"),
        (&etc.hostname, "/etc/hostname"),
    ] {
        if let Some(file) = file {
            mounts.push(bind_mount(
                absolute("an /etc file", file)?,
                PathBuf::from(destination),
                input.security.read_only_root,
            )?);
        }
    }
    Ok(mounts)
}

/// `MilliCPUToShares`: cpu shares for a request in millicores.
pub fn milli_cpu_to_shares(millis: u64) -> u64 {
    (millis.saturating_mul(SHARES_PER_CPU) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// `MilliCPUToQuota` over [`CPU_PERIOD_US`]: `None` for no limit.
pub fn milli_cpu_to_quota(millis: u64) -> Option<i64> {
    if millis == 0 {
        return None;
    }
    let quota = millis.saturating_mul(CPU_PERIOD_US) / 1000;
    Some(i64::try_from(quota).unwrap_or(i64::MAX).max(MIN_QUOTA_US))
}

/// cgroup v2 `cpu.weight` for cgroup v1 shares, as runc and crun convert them (see the module
/// doc); 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + (shares - 2) * 9999 / 262_142
}

fn resources(input: &SpecInput) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    let r = &input.container.resources;
    // Deny every device but the runtime's defaults (null, zero, tty, …), as containerd does.
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut resources = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(limit) = r.memory_limit.filter(|l| *l > 0) {
        let limit = i64::try_from(limit).map_err(|_| SpecError::TooLarge("the memory limit"))?;
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    // With no request but a limit, the request defaults to the limit (as kubelet repeats).
    let request = r.cpu_request_millis.or(r.cpu_limit_millis).unwrap_or(0);
    let shares = milli_cpu_to_shares(request);
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(quota) = r.cpu_limit_millis.and_then(milli_cpu_to_quota) {
        cpu = cpu.quota(quota).period(CPU_PERIOD_US);
    }
    match input.cgroup_version {
        CgroupVersion::V1 => cpu = cpu.shares(shares),
        CgroupVersion::V2 => {
            let unified = HashMap::from([(
                "cpu.weight".to_string(),
                shares_to_weight(shares).to_string(),
            )]);
            resources = resources.unified(unified);
        }
    }
    resources = resources.cpu(cpu.build()?);
    if let Some(limit) = input.pids_limit.filter(|l| *l > 0) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    Ok(resources.build()?)
}

fn absolute(what: &'static str, path: &Path) -> Result<PathBuf, SpecError> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(SpecError::NotAbsolute {
            what,
            path: path.display().to_string(),
        })
    }
}

fn relative_inside(sub: &str) -> Result<PathBuf, SpecError> {
    let path = Path::new(sub);
    let ok = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(SpecError::BadSubPath(sub.to_string()))
    }
}

#[cfg(test)]
mod tests;
