//! Linux containers through an OCI runtime binary (runc, crun): the pieces of the backend.
//!
//! The pieces: [`spec`] builds a container's `config.json` (process, mounts, namespaces,
//! capabilities, cgroup path and limits) for cgroup v1 and v2; [`runc`] execs the runtime
//! binary; [`monitor`] keeps each container under conmon (exit code, CRI log); [`crilog`]
//! reads that log; [`cgroup`] reads usage and OOM kills and removes cgroups; [`net`] makes
//! the node bridge and each pod's network namespace. [`backend`] ties them together as the
//! node's [`PodRuntime`] for the `oci` handler ([`OciRuntime`]).
//!
//! Not in the config yet: privileged containers and host namespaces (for admission to refuse),
//! seccomp and AppArmor profiles, `oom_score_adj` by QoS class, swap limits
//! (`memory.swap.max`), sysctls, supplemental groups, and user names in an image's `User`
//! (refused with a clear error: only numeric users are supported).
//!
//! [`PodRuntime`]: crate::PodRuntime

pub mod backend;
pub mod cgroup;
pub mod crilog;
pub mod monitor;
pub mod net;
pub mod runc;
pub mod spec;

pub use backend::{OciConfig, OciRuntime};
pub use cgroup::CgroupUsage;
pub use monitor::{ContainerPaths, Created, Exit};
pub use runc::{OciBinary, OciError, RuntimeKind, RuntimeState};
pub use spec::{
    CgroupVersion, EtcFiles, SecurityOptions, SpecError, SpecInput, cgroup_dirs, cgroup_path,
    config_json, netns_path,
};
