//! Skiff pod sandboxes: the [`PodRuntime`]/[`PodSandbox`] interface the node agent drives, the
//! [`ImageService`] each backend pulls its images with, the node's pod [`Network`], and the
//! wasm backend ([`Runtime`]) on wasmtime. Never sees a Kubernetes type.
//!
//! The model follows the CRI: create a pod sandbox (volumes, IP on the [`Network`]), create
//! its containers (compile and link-check the images), start and stop them, watch their states,
//! read their logs, and send HTTP requests to their ports. The node holds its backends in
//! [`Runtimes`], keyed by RuntimeClass handler. With the `fake` feature, `fake` has a
//! scriptable backend for testing the node in-process.

mod capabilities;
mod error;
mod exec;
#[cfg(feature = "fake")]
pub mod fake;
mod image;
mod logs;
mod network;
pub mod oci;
pub mod oci_image;
mod spec;
mod status;
mod wasm;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::watch;

pub use capabilities::{
    CONFIG_MOUNT_PATH, Capabilities, Capability, KEYVALUE_MOUNT_PATH, UnknownCapability,
};
pub use error::{Error, Result};
pub use exec::{ExecProcess, ExecRequest, TerminalSize};
pub use image::{ImageService, PulledImage};
pub use logs::{LogLine, LogOptions, LogStream, LogStreamKind};
pub use network::{
    BoxError, ConnectionRefused, HttpBody, Network, Route, Routed, ServiceRouter, box_body,
    empty_body, full_body, port_of, refused, refused_response, send_external,
};
pub use oci::{OciConfig, OciRuntime};
pub use spec::{
    ContainerSpec, DnsConfig, FileContent, HttpOptions, Image, LinuxContainer, Mount, PodNetwork,
    PodSpec, Resources, VolumeSource, VolumeSpec,
};
pub use status::{
    ContainerKind, ContainerState, ContainerUsage, EXIT_KILLED, EXIT_TRAP, PodUsage, ProcessUsage,
    TerminationReason, process_usage,
};
pub use wasm::{
    CacheStats, Capacity, GuestLimits, INSTANCE_LIMIT_EXCEEDED, LOG_RATE_LIMITED, LimitEvent,
    OUTGOING_REQUEST_LIMIT_EXCEEDED, OUTGOING_REQUESTS_THROTTLED, REQUEST_TIMEOUT, Runtime,
    RuntimeConfig,
};

/// The handler name of the wasm backend (`runtimeClassName` absent, or a RuntimeClass with
/// this handler).
pub const WASM_HANDLER: &str = "wasm";

/// The handler name of the Linux container backend ([`OciRuntime`]).
pub const OCI_HANDLER: &str = "oci";

/// A pod runtime backend: wasm today, OCI containers later.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync {
    /// The RuntimeClass handler name this backend serves.
    fn handler(&self) -> &str;

    /// How much this node can hold.
    fn capacity(&self) -> Capacity;

    /// The WIT interfaces (`wasi:keyvalue/store@0.2.0-draft`, …) this backend's components can
    /// import, as its linker answers; none for a backend that runs no components itself.
    fn interfaces(&self) -> Vec<String> {
        Vec::new()
    }

    /// Creates a pod sandbox: its volumes and its place on the network. No container runs yet.
    ///
    /// A backend whose containers outlive the node process (Linux containers) re-adopts them
    /// when it starts: [`pods`](Self::pods) lists them, and `create_pod` for an adopted pod's
    /// id returns that sandbox as it is (its containers keep running; see
    /// [`PodSandbox::create_container`]).
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
    ///
    /// For a container re-adopted after a node restart, returns its kind and leaves it as it is
    /// (running, or terminated with its exit code); [`container_states`](Self::container_states)
    /// shows which.
    async fn create_container(&self, spec: ContainerSpec) -> Result<ContainerKind>;

    /// Starts (or restarts, after it terminated) a created container. A container that is
    /// already running (re-adopted) is left running: `Ok`.
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

    /// The limits the pod's running containers hit since the last call (throttled or refused
    /// while they kept running; see [`GuestLimits`]): the node reports each as a Warning Event.
    fn take_limit_events(&self) -> Vec<LimitEvent> {
        Vec::new()
    }

    /// Changes whenever [`take_limit_events`](Self::take_limit_events) has something; `None`
    /// for backends that never do.
    fn watch_limit_events(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Runs a command in a running container (`kubectl exec`). Backends that cannot answer
    /// `NotSupported`.
    async fn exec(&self, container: &str, req: ExecRequest) -> Result<ExecProcess> {
        let _ = req;
        Err(Error::NotSupported(format!(
            "exec into container {container}: this runtime cannot run commands in a container"
        )))
    }

    /// Gives up the pod's network once it has finished, as kubelet stops the sandbox of a pod
    /// in a terminal phase: the IP is no longer routed to the pod and may go to another one,
    /// and what the backend made for it (a network namespace) is torn down. The containers'
    /// states and logs stay until [`remove`](Self::remove); [`ip`](Self::ip) is `None` after.
    /// Refused while a container still runs; a second call does nothing.
    async fn release_network(&self) -> Result<()>;

    /// Stops every container (each gets `grace`), leaves the network and deletes the pod's
    /// volumes. The sandbox is unusable afterwards.
    async fn remove(&self, grace: Duration) -> Result<()>;
}

/// One backend of a node: how it runs pods and how it gets their images.
#[derive(Clone)]
pub struct Backend {
    /// Runs the pods.
    pub runtime: Arc<dyn PodRuntime>,
    /// Pulls the images its containers are created from.
    pub images: Arc<dyn ImageService>,
}

impl Backend {
    /// The RuntimeClass handler name the backend serves.
    pub fn handler(&self) -> &str {
        self.runtime.handler()
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("handler", &self.handler())
            .finish_non_exhaustive()
    }
}

/// The backends of a node by RuntimeClass handler name. The first one added is the default:
/// it runs pods without a `runtimeClassName`.
#[derive(Clone, Default)]
pub struct Runtimes {
    by_handler: BTreeMap<String, Backend>,
    default: Option<String>,
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtimes")
            .field("handlers", &self.handlers())
            .field("default", &self.default)
            .finish()
    }
}

impl Runtimes {
    /// No backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend under its runtime's handler name (replacing one of the same name).
    pub fn add(
        &mut self,
        runtime: Arc<dyn PodRuntime>,
        images: Arc<dyn ImageService>,
    ) -> &mut Self {
        let handler = runtime.handler().to_string();
        if self.default.is_none() {
            self.default = Some(handler.clone());
        }
        self.by_handler.insert(handler, Backend { runtime, images });
        self
    }

    /// Makes `handler` the default backend.
    pub fn set_default(&mut self, handler: &str) -> Result<&mut Self> {
        if !self.by_handler.contains_key(handler) {
            return Err(Error::UnknownHandler(handler.to_string()));
        }
        self.default = Some(handler.to_string());
        Ok(self)
    }

    /// The handler of the default backend, if any backend was added.
    pub fn default_handler(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The backend for a RuntimeClass handler; `None` selects the default backend.
    pub fn get(&self, handler: Option<&str>) -> Result<Backend> {
        let name = handler.or(self.default.as_deref()).unwrap_or(WASM_HANDLER);
        self.by_handler
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownHandler(name.to_string()))
    }

    /// Handler names available, sorted.
    pub fn handlers(&self) -> Vec<String> {
        self.by_handler.keys().cloned().collect()
    }

    /// The backends, by handler name.
    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.by_handler.values()
    }

    /// True when no backend was added.
    pub fn is_empty(&self) -> bool {
        self.by_handler.is_empty()
    }

    /// The live sandbox with this pod id, in whichever backend holds it.
    pub fn pod(&self, id: &str) -> Option<Arc<dyn PodSandbox>> {
        self.iter().find_map(|b| b.runtime.pod(id))
    }
}
