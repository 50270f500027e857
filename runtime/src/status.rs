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
    /// Non-zero exit, trap (other than a stack overflow), or killed.
    Error,
    /// Exceeded its memory limit.
    OomKilled,
    /// Could not be instantiated at start.
    StartError,
    /// Recursed past the engine's wasm stack limit (a trap).
    StackOverflow,
    /// Grew a table past the node's table element limit.
    TableLimitExceeded,
}

impl TerminationReason {
    /// The Kubernetes reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Completed => "Completed",
            TerminationReason::Error => "Error",
            TerminationReason::OomKilled => "OOMKilled",
            TerminationReason::StartError => "StartError",
            TerminationReason::StackOverflow => "StackOverflow",
            TerminationReason::TableLimitExceeded => "TableLimitExceeded",
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

/// Resource usage of a pod measured by the engine (wasm) or read from its cgroups (Linux).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// CPU time spent running the pod's guests, in nanoseconds, since the pod was created.
    pub cpu_nanos: u64,
    /// Time the pod's guests spent throttled by the CPU limit, in nanoseconds.
    pub throttled_nanos: u64,
    /// Memory currently held by the pod's live instances, in bytes: their linear memories and
    /// tables plus the engine's bookkeeping of each (wasm); the working set (Linux).
    pub memory_bytes: u64,
    /// Instances (runs and requests) ended for exceeding their memory limit.
    pub oom_kills: u64,
    /// Requests the pod's containers served (answered or failed), since the pod was created.
    pub requests_total: u64,
    /// Requests the pod's containers are serving now.
    pub requests_in_flight: u64,
    /// Each current container's share, by name (sorted). The pod's cumulative figures also
    /// count containers since removed; `throttled_nanos` is the pod's alone.
    pub containers: Vec<ContainerUsage>,
}

/// Resource usage of one container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    /// The container's name.
    pub name: String,
    /// Linux containers are processes of their own; wasm containers run in the node process.
    pub kind: Option<ContainerKind>,
    /// CPU time its instances (or processes) used, in nanoseconds, since it was created.
    pub cpu_nanos: u64,
    /// Memory its live instances hold now (see [`PodUsage::memory_bytes`]), in bytes.
    pub memory_bytes: u64,
    /// Its instances ended for exceeding its memory limit.
    pub oom_kills: u64,
    /// Requests it served (answered or failed).
    pub requests_total: u64,
    /// Requests it is serving now.
    pub requests_in_flight: u64,
}

impl PodUsage {
    /// Sets the pod's CPU, memory, OOM kill and request figures to the sums of its containers'.
    pub fn sum_containers(&mut self) {
        self.cpu_nanos = self.containers.iter().map(|c| c.cpu_nanos).sum();
        self.memory_bytes = self.containers.iter().map(|c| c.memory_bytes).sum();
        self.oom_kills = self.containers.iter().map(|c| c.oom_kills).sum();
        self.requests_total = self.containers.iter().map(|c| c.requests_total).sum();
        self.requests_in_flight = self.containers.iter().map(|c| c.requests_in_flight).sum();
    }
}

/// CPU and memory of the calling process, as the kernel counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// CPU time of all its threads (`CLOCK_PROCESS_CPUTIME_ID`), in nanoseconds.
    pub cpu_nanos: u64,
    /// Resident memory (`/proc/self/statm`), in bytes; 0 if it cannot be read.
    pub rss_bytes: u64,
}

/// What this process has used: the node process's own figures (its wasm pods included).
pub fn process_usage() -> ProcessUsage {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let cpu_nanos = (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64);
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    ProcessUsage {
        cpu_nanos,
        rss_bytes: rss_pages.saturating_mul(rustix::param::page_size() as u64),
    }
}
