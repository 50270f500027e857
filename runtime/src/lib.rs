//! Skiff pod sandboxes: the [`PodRuntime`]/[`PodSandbox`] interface the node agent drives, and
//! its wasm backend ([`Runtime`]) on wasmtime. Never sees a Kubernetes type.
//!
//! The model follows the CRI: create a pod sandbox (volumes, IP on the [`Network`]), create
//! its containers (compile and link-check the images), start and stop them, watch their states,
//! read their logs, and send HTTP requests to their ports.

mod error;
mod logs;
mod network;
mod spec;
mod status;
mod wasm;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::watch;

pub use error::{Error, Result};
pub use logs::{LogLine, LogOptions, LogStream, LogStreamKind};
pub use network::{BoxError, HttpBody, Network, Route, box_body, empty_body, full_body};
pub use spec::{
    ContainerSpec, FileContent, HttpOptions, Image, Mount, PodSpec, Resources, VolumeSource,
    VolumeSpec,
};
pub use status::{
    ContainerKind, ContainerState, EXIT_KILLED, EXIT_TRAP, PodUsage, TerminationReason,
};
pub use wasm::{CacheStats, Capacity, Runtime, RuntimeConfig};

/// The handler name of the wasm backend (`runtimeClassName` absent, or a RuntimeClass with
/// this handler).
pub const WASM_HANDLER: &str = "wasm";

/// A pod runtime backend: wasm today, OCI containers later.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync {
    /// The RuntimeClass handler name this backend serves.
    fn handler(&self) -> &str;

    /// How much this node can hold.
    fn capacity(&self) -> Capacity;

    /// Creates a pod sandbox: its volumes and its place on the network. No container runs yet.
    async fn create_pod(&self, spec: PodSpec) -> Result<Arc<dyn PodSandbox>>;

    /// The live sandbox with this pod id.
    fn pod(&self, id: &str) -> Option<Arc<dyn PodSandbox>>;

    /// Ids of all live sandboxes.
    fn pods(&self) -> Vec<String>;
}

/// One pod on a node.
#[async_trait::async_trait]
pub trait PodSandbox: Send + Sync {
    /// The pod id given at creation.
    fn id(&self) -> &str;

    /// The pod IP, if one was given.
    fn ip(&self) -> Option<IpAddr>;

    /// Prepares a container: reads, compiles (or loads from the cache) and link-checks its
    /// image. Fails with a clear error for a file that is not wasm or a component importing
    /// what the host does not provide. The container then waits to be started.
    async fn create_container(&self, spec: ContainerSpec) -> Result<ContainerKind>;

    /// Starts (or restarts, after it terminated) a created container.
    async fn start_container(&self, name: &str) -> Result<()>;

    /// Stops a running container: it gets `grace` to finish (HTTP services finish in-flight
    /// requests and take no new ones; wasm guests receive no signal), then it is killed.
    /// Returns once it is terminated.
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()>;

    /// Forgets a container that is not running.
    async fn remove_container(&self, name: &str) -> Result<()>;

    /// Watches a container's state.
    fn watch_container(&self, name: &str) -> Result<watch::Receiver<ContainerState>>;

    /// Current state of every container, by name.
    fn container_states(&self) -> BTreeMap<String, ContainerState>;

    /// Reads a container's log.
    fn logs(&self, name: &str, opts: LogOptions) -> Result<LogStream>;

    /// Serves an HTTP request on a container port of this pod.
    async fn handle_http(&self, port: u16, req: Request<HttpBody>) -> Result<Response<HttpBody>>;

    /// True when a running container of this pod serves `port` (a tcpSocket probe's answer).
    fn serves_port(&self, port: u16) -> bool;

    /// Replaces the files of a file-set volume (configMap, secret) atomically.
    async fn update_files(&self, volume: &str, files: BTreeMap<String, FileContent>) -> Result<()>;

    /// Resource usage measured by the engine.
    fn usage(&self) -> PodUsage;

    /// Stops every container (each gets `grace`), leaves the network and deletes the pod's
    /// volumes. The sandbox is unusable afterwards.
    async fn remove(&self, grace: Duration) -> Result<()>;
}

/// The backends of a node by handler name.
#[derive(Clone, Default)]
pub struct Runtimes {
    by_handler: HashMap<String, Arc<dyn PodRuntime>>,
}

impl Runtimes {
    /// No backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend under its handler name.
    pub fn add(&mut self, runtime: Arc<dyn PodRuntime>) -> &mut Self {
        self.by_handler
            .insert(runtime.handler().to_string(), runtime);
        self
    }

    /// The backend for a RuntimeClass handler; `None` selects the wasm backend.
    pub fn get(&self, handler: Option<&str>) -> Result<Arc<dyn PodRuntime>> {
        let name = handler.unwrap_or(WASM_HANDLER);
        self.by_handler
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownHandler(name.to_string()))
    }

    /// Handler names available.
    pub fn handlers(&self) -> Vec<String> {
        let mut v: Vec<_> = self.by_handler.keys().cloned().collect();
        v.sort();
        v
    }
}
