//! Container states as a sandbox reports them (the shapes kubelet reports, without its types).

use jiff::Timestamp;

/// What a container is, decided from the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// A component exporting `wasi:http/incoming-handler`: an HTTP service, one instance per
    /// request.
    Http,
    /// A component exporting `wasi:cli/run`: a command (long-running or run-to-completion).
    Command,
    /// A core module exporting `_start` (WASI preview 1).
    Preview1Command,
    /// A Linux process in an OCI container.
    Linux,
}

impl ContainerKind {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Http => "http",
            ContainerKind::Command => "command",
            ContainerKind::Preview1Command => "preview1-command",
            ContainerKind::Linux => "linux",
        }
    }
}

/// The state of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not running: created but not started, or could not be created.
    Waiting {
        /// Machine-readable reason, for example `ContainerCreating` or `CreateContainerError`.
        reason: String,
        /// Human-readable detail.
        message: String,
    },
    /// Running since `started_at`.
    Running {
        /// When the run started.
        started_at: Timestamp,
    },
    /// The last run ended.
    Terminated {
        /// Exit code: the guest's, 137 when killed or out of memory, 134 on a trap.
        exit_code: i32,
        /// Why it ended.
        reason: TerminationReason,
        /// Human-readable detail (the trap message, for example).
        message: String,
        /// When the run started.
        started_at: Timestamp,
        /// When it ended.
        finished_at: Timestamp,
    },
}

impl ContainerState {
    /// True while running.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }

    /// True once a run ended.
    pub fn is_terminated(&self) -> bool {
        matches!(self, ContainerState::Terminated { .. })
    }
}

/// Why a run ended, with the strings kubelet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminationReason {
    /// Exit code 0.
    Completed,
    /// Non-zero exit, trap, or killed.
    Error,
    /// Exceeded its memory limit.
    OomKilled,
    /// Could not be instantiated at start.
    StartError,
}

impl TerminationReason {
    /// The Kubernetes reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Completed => "Completed",
            TerminationReason::Error => "Error",
            TerminationReason::OomKilled => "OOMKilled",
            TerminationReason::StartError => "StartError",
        }
    }
}

impl std::fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exit code reported when a container is killed (128 + SIGKILL), as on Linux.
pub const EXIT_KILLED: i32 = 137;
/// Exit code reported when a guest traps (128 + SIGABRT, as `wasmtime run` exits).
pub const EXIT_TRAP: i32 = 134;

/// Resource usage of a pod measured by the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// CPU time spent running the pod's guests, in nanoseconds, since the pod was created.
    pub cpu_nanos: u64,
    /// Time the pod's guests spent throttled by the CPU limit, in nanoseconds.
    pub throttled_nanos: u64,
    /// Linear memory currently held by the pod's live instances, in bytes.
    pub memory_bytes: u64,
    /// Instances (runs and requests) ended for exceeding their memory limit.
    pub oom_kills: u64,
}
