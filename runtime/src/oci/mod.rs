//! Linux containers through an OCI runtime binary (runc, crun): the pieces of the backend.
//!
//! There so far: [`spec`], which builds a container's `config.json` (process, mounts,
//! namespaces, capabilities, cgroup path and limits) from the runtime's own spec types and an
//! image config, for cgroup v1 and v2, and finds which cgroup version the node runs.
//!
//! Not in the config yet: privileged containers and host namespaces (for admission to refuse),
//! seccomp and AppArmor profiles, `oom_score_adj` by QoS class, swap limits
//! (`memory.swap.max`), sysctls, supplemental groups, and user names in an image's `User`
//! (refused with a clear error: only numeric users are supported).
//!
//! Not there yet: executing the runtime binary, the per-container monitor (exit codes, logs),
//! pod network namespaces, teardown of cgroups and mounts, and the [`PodRuntime`] backend that
//! ties them together; until then no pod runs as a Linux container.
//!
//! [`PodRuntime`]: crate::PodRuntime

pub mod cgroup;
pub mod crilog;
pub mod monitor;
pub mod net;
pub mod runc;
pub mod spec;

pub use spec::{
    CgroupVersion, EtcFiles, SecurityOptions, SpecError, SpecInput, cgroup_dirs, cgroup_path,
    config_json, netns_path,
};
pub use cgroup::CgroupUsage;
pub use monitor::{ContainerPaths, Created, Exit};
pub use runc::{OciBinary, OciError, RuntimeKind, RuntimeState};
