//! Skiff node agent: registers the Node and renews its Lease, watches the pods bound to it,
//! pulls their images, runs them through the pod runtime and reports their status the way
//! kubelet does, and serves the node endpoint (logs, pod proxy) on its own listener. Its
//! local-path provisioner (`storage/`) makes the directories and PVs of claims placed on it.
//!
//! Talks to the cluster only through the Kubernetes API (kube-rs) and to its backends only
//! through [`skiff_runtime::PodRuntime`] and [`skiff_runtime::ImageService`].
//!
//! A node is built from parts ([`NodeConfig`]): a `kube::Client`, the backends
//! ([`Runtimes`], chosen per pod by RuntimeClass handler) and the pod [`Network`] they share.
//! [`NodeOptions`] builds those parts the way `skiff node` does: a kubeconfig, a data directory,
//! the wasm backend (the default) and the Linux container backend (`oci`) where the node can run
//! it (root, runc/crun, cgroups); the Node's `OCIRuntimeReady` condition says which.

pub mod bootstrap;
mod convert;
mod ctx;
mod endpointauth;
mod error;
mod events;
pub mod eviction;
mod exec;
mod images;
mod interfaces;
mod listener;
mod metrics;
pub mod net;
mod node;
mod probe;
mod refcache;
mod rotation;
mod stats;
mod storage;
pub mod tokens;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use skiff_runtime::oci::{OciConfig, OciRuntime};
use skiff_runtime::{Network, PodSandbox, Runtime, RuntimeConfig, Runtimes};

pub use skiff_runtime::oci::RuntimeKind;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use endpointauth::EndpointAuth;
pub use error::{Error, Result};
pub use eviction::EvictionOptions;
pub use images::{OciImages, WasmImages};
pub use metrics::NodeMetrics;
pub use node::DEFAULT_LEASE_DURATION_SECONDS;
pub use storage::StorageOptions;

use crate::ctx::{IpPool, NodeCtx};
use crate::node::NodeFacts;

/// The default node endpoint (kubelet's port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10250";

/// A node built from parts: the client it talks to the API server with, its backends and the
/// pod network they share.
#[derive(Clone)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// The API server's client.
    pub client: kube::Client,
    /// The backends, by RuntimeClass handler; the Node advertises their handlers.
    pub runtimes: Runtimes,
    /// The pod network every backend registers its pods in.
    pub network: Network,
    /// Who the node endpoint lets in, and what this node presents to other nodes:
    /// [`NodeConfig::new`] takes one shared token (`EndpointAuth::Static`); a node of its own
    /// process ([`NodeOptions::build`]) reviews callers' tokens with the API server
    /// (`EndpointAuth::Review`).
    pub endpoint_auth: EndpointAuth,
    /// `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
    /// The node endpoint's address (logs, proxy, pod ports).
    pub listen: SocketAddr,
    /// IPv4 range the pods' virtual IPs come from; `None` takes the one the API server gives
    /// the Node (from its cluster CIDR). An explicit one must lie in the cluster CIDR and
    /// overlap no other Node's, or the API server refuses it and the node starts no pods.
    pub pod_cidr: Option<String>,
    /// Seconds the node's Lease is valid; renewed every quarter of it.
    pub lease_duration_seconds: u32,
    /// Service hops a request may take before the router answers 508 Loop Detected.
    pub hop_limit: u32,
    /// The ingress's HTTP address (off when `None`); NodePorts listen on its host.
    pub ingress_listen: Option<SocketAddr>,
    /// The ingress's HTTPS address (off when `None`).
    pub ingress_tls_listen: Option<SocketAddr>,
    /// Where the ingress and NodePorts send requests for Services (default: the node's
    /// service router).
    pub service_backend: Option<Arc<dyn net::ServiceBackend>>,
    /// The local-path provisioner's directory and limit (off when `None`: claims of the
    /// `skiff.dev/local-path` class placed on this node stay Pending).
    pub storage: Option<StorageOptions>,
    /// Conditions the backends put on the Node besides kubelet's four (for example
    /// `OCIRuntimeReady`).
    pub conditions: Vec<RuntimeCondition>,
    /// Run once the node stopped its pods at a clean shutdown (for example the Linux
    /// container backend's teardown of its bridge).
    pub shutdown_hooks: Vec<ShutdownHook>,
    /// Where projected ServiceAccount tokens' rotation reads the time (the system's clock
    /// when `None`; tests move a [`tokens::ManualClock`]).
    pub token_clock: Option<Arc<dyn tokens::Clock>>,
    /// The node's Prometheus metrics (served at the node endpoint's `/metrics`).
    pub metrics: Arc<NodeMetrics>,
    /// Node-pressure eviction: thresholds, periods and the reservations allocatable leaves
    /// out.
    pub eviction: EvictionOptions,
    /// The memory capacity the Node reports and eviction measures against (default: the
    /// machine's `MemTotal`).
    pub memory_capacity: Option<u64>,
}

/// Work done at a clean node shutdown, after every pod's worker stopped.
pub type ShutdownHook = Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A condition a backend reports on the Node, such as whether Linux containers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCondition {
    /// The condition type (`OCIRuntimeReady`).
    pub type_: String,
    /// `True` when the backend runs.
    pub ready: bool,
    /// A CamelCase reason (`NotRoot`, `RuntimeNotFound`, `RuntimeReady`).
    pub reason: String,
    /// What an operator reads.
    pub message: String,
}

/// The Node condition saying whether the Linux container backend runs.
pub const OCI_CONDITION: &str = "OCIRuntimeReady";

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("runtimes", &self.runtimes)
            .field("network", &self.network)
            .field("zone", &self.zone)
            .field("listen", &self.listen)
            .field("pod_cidr", &self.pod_cidr)
            .field("lease_duration_seconds", &self.lease_duration_seconds)
            .field("ingress_listen", &self.ingress_listen)
            .field("ingress_tls_listen", &self.ingress_tls_listen)
            .field("storage", &self.storage)
            .field("conditions", &self.conditions)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// Defaults for a node named `name` with these parts.
    pub fn new(
        name: impl Into<String>,
        client: kube::Client,
        runtimes: Runtimes,
        network: Network,
        endpoint_token: impl Into<String>,
    ) -> Self {
        NodeConfig {
            name: name.into(),
            client,
            runtimes,
            network,
            endpoint_auth: EndpointAuth::Static(Arc::from(endpoint_token.into().as_str())),
            zone: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 10250)),
            pod_cidr: None,
            lease_duration_seconds: node::DEFAULT_LEASE_DURATION_SECONDS,
            hop_limit: skiff_meta::names::HOP_LIMIT_DEFAULT,
            ingress_listen: None,
            ingress_tls_listen: None,
            service_backend: None,
            storage: None,
            conditions: Vec::new(),
            shutdown_hooks: Vec::new(),
            token_clock: None,
            metrics: Arc::default(),
            eviction: EvictionOptions::default(),
            memory_capacity: None,
        }
    }
}

/// How `skiff node` describes a node: its own kubeconfig (or a bootstrap kubeconfig to get
/// one), a data directory and the wasm backend's settings. [`NodeOptions::build`] turns it
/// into a [`NodeConfig`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Kubeconfig for the API server: the node's own credential (`system:node:NAME`).
    pub kubeconfig: PathBuf,
    /// Kubelet's `--bootstrap-kubeconfig`: when `kubeconfig` does not exist or its certificate
    /// expired, the node asks for a client certificate with this credential (a bootstrap
    /// token) and writes `kubeconfig` ([`bootstrap::ensure_kubeconfig`]).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The Node's name.
    pub name: String,
    /// Node-private state (compile cache, pod volumes, image cache). Created if missing.
    pub data_dir: PathBuf,
    /// `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
    /// The node endpoint's address (logs, proxy, pod ports).
    pub listen: SocketAddr,
    /// IPv4 range the pods' virtual IPs come from; `None` takes the one the API server gives
    /// the Node (from its cluster CIDR). An explicit one must lie in the cluster CIDR and
    /// overlap no other Node's, or the API server refuses it and the node starts no pods.
    pub pod_cidr: Option<String>,
    /// Registry for image names without a registry host (`HOST:PORT`).
    pub registry: Option<String>,
    /// Token for the registry (pulls are usually anonymous).
    pub registry_token: Option<String>,
    /// Accept `file:///abs/path.wasm` images.
    pub allow_file_images: bool,
    /// The most pods this node accepts (default: the runtime's default).
    pub max_pods: Option<u32>,
    /// WIT packages or interfaces taken out of the wasm backend's linker (`wasi:keyvalue`,
    /// `wasi:keyvalue/store`, either with `@VERSION`); checked by `skiff_meta::wit::check_pattern`.
    pub disabled_interfaces: Vec<String>,
    /// Limits on what each wasm guest may do beyond memory and CPU (tables, log rate, concurrent
    /// instances per pod, outgoing requests, response deadline).
    pub guest_limits: skiff_runtime::GuestLimits,
    /// Seconds the node's Lease is valid; renewed every quarter of it.
    pub lease_duration_seconds: u32,
    /// Service hops a request may take before the router answers 508 Loop Detected.
    pub hop_limit: u32,
    /// The ingress's HTTP address (`skiff node --ingress-listen`; off when `None`); NodePorts
    /// listen on its host.
    pub ingress_listen: Option<SocketAddr>,
    /// The ingress's HTTPS address (`--ingress-tls-listen`; off when `None`).
    pub ingress_tls_listen: Option<SocketAddr>,
    /// The most bytes the local-path provisioner hands out on this node, all volumes together
    /// (`--max-local-storage`; `None`: the free space of the data directory's filesystem).
    pub max_local_storage: Option<u64>,
    /// The backends to run, by RuntimeClass handler (`--runtimes`, default `wasm` and `oci`).
    /// `wasm` is the default backend when it runs. `oci` runs only where it can (root, the
    /// runtime binary, cgroups); otherwise the node says why on its Node, unless `oci` was the
    /// only one asked for, which is then an error.
    pub runtimes: Vec<String>,
    /// The OCI runtime for Linux containers (`--oci-runtime`, default runc).
    pub oci_runtime: RuntimeKind,
    /// The OCI runtime binary (`--oci-runtime-path`; default: found in `PATH`).
    pub oci_runtime_path: Option<PathBuf>,
    /// Node-pressure eviction (`--eviction-hard`, `--eviction-soft`, `--system-reserved`, …).
    pub eviction: EvictionOptions,
    /// `--memory-capacity`: the memory the Node reports (default: the machine's).
    pub memory_capacity: Option<u64>,
}

/// The backends a node runs unless told otherwise.
pub const DEFAULT_RUNTIMES: &[&str] = &[skiff_runtime::WASM_HANDLER, skiff_runtime::OCI_HANDLER];

impl NodeOptions {
    /// Defaults for a node named `name` using `kubeconfig` and keeping state in `data_dir`.
    pub fn new(
        kubeconfig: impl Into<PathBuf>,
        name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        NodeOptions {
            kubeconfig: kubeconfig.into(),
            bootstrap_kubeconfig: None,
            name: name.into(),
            data_dir: data_dir.into(),
            zone: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 10250)),
            pod_cidr: None,
            registry: None,
            registry_token: None,
            allow_file_images: false,
            max_pods: None,
            disabled_interfaces: Vec::new(),
            guest_limits: skiff_runtime::GuestLimits::default(),
            lease_duration_seconds: node::DEFAULT_LEASE_DURATION_SECONDS,
            hop_limit: skiff_meta::names::HOP_LIMIT_DEFAULT,
            ingress_listen: None,
            ingress_tls_listen: None,
            max_local_storage: None,
            runtimes: DEFAULT_RUNTIMES.iter().map(|h| h.to_string()).collect(),
            oci_runtime: RuntimeKind::default(),
            oci_runtime_path: None,
            eviction: EvictionOptions::default(),
            memory_capacity: None,
        }
    }

    /// Reads the kubeconfig (client and token), creates the data directory, the pod network
    /// and the wasm backend (its runtime and its image service).
    pub async fn build(self) -> Result<NodeConfig> {
        let io = |what: String| move |source| Error::Io { what, source };
        tokio::fs::create_dir_all(&self.data_dir)
            .await
            .map_err(io(format!("creating {}", self.data_dir.display())))?;
        if let Some(bootstrap) = &self.bootstrap_kubeconfig {
            bootstrap::ensure_kubeconfig(bootstrap, &self.kubeconfig, &self.name).await?;
        }
        let client = rotation::client(&self.kubeconfig, &self.name).await?;

        let (want_wasm, want_oci) = wanted_runtimes(&self.runtimes)?;
        let network = Network::new();
        let mut runtimes = Runtimes::new();
        let mut wasm = None;
        let mut compile_cache: Option<metrics::CacheReader> = None;
        if want_wasm {
            let mut rt_config = RuntimeConfig::new(self.data_dir.join("runtime"));
            if let Some(m) = self.max_pods {
                rt_config.max_pods = m;
            }
            for p in &self.disabled_interfaces {
                skiff_meta::wit::check_pattern(p).map_err(Error::Config)?;
            }
            rt_config.disabled_interfaces = self.disabled_interfaces.clone();
            rt_config.limits = self.guest_limits.clone();
            let wasm_network = network.clone();
            let runtime =
                tokio::task::spawn_blocking(move || Runtime::new(rt_config, wasm_network))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))??;
            let images = WasmImages::new(
                self.data_dir.join("images"),
                self.registry.clone(),
                self.registry_token.clone(),
                self.allow_file_images,
            )?;
            let runtime = Arc::new(runtime);
            let cached = runtime.clone();
            compile_cache = Some(Arc::new(move || Some(cached.cache_stats())));
            wasm = Some(runtime.clone());
            runtimes.add(runtime, Arc::new(images));
        }
        let mut conditions = Vec::new();
        let mut shutdown_hooks: Vec<ShutdownHook> = Vec::new();
        if want_oci {
            let oci = OciConfig {
                dir: self.data_dir.join("oci"),
                runtime: self.oci_runtime,
                runtime_path: self.oci_runtime_path.clone(),
                node_name: self.name.clone(),
                max_pods: self.max_pods.unwrap_or(DEFAULT_OCI_MAX_PODS),
            };
            match OciRuntime::new(oci, network.clone(), wasm).await {
                Ok(rt) => {
                    let images = OciImages::new(
                        self.data_dir.join("oci-images").join("blobs"),
                        self.data_dir.join("oci-images").join("unpacked"),
                        self.registry.clone(),
                        self.registry_token.clone(),
                    )?;
                    let version =
                        oci_version(self.oci_runtime, self.oci_runtime_path.clone()).await;
                    tracing::info!(runtime = %version, "Linux containers run on this node");
                    conditions.push(RuntimeCondition {
                        type_: OCI_CONDITION.into(),
                        ready: true,
                        reason: "RuntimeReady".into(),
                        message: format!("Linux containers run with {version}"),
                    });
                    let rt = Arc::new(rt);
                    let stop = rt.clone();
                    shutdown_hooks.push(Arc::new(move || {
                        let stop = stop.clone();
                        Box::pin(async move { stop.shutdown(OCI_SHUTDOWN_GRACE).await })
                    }));
                    runtimes.add(rt, Arc::new(images));
                }
                Err(e) if !want_wasm => {
                    return Err(Error::Config(format!(
                        "the oci runtime cannot start on this node: {e}"
                    )));
                }
                Err(e) => {
                    let reason = oci_failure_reason(&e);
                    tracing::warn!(reason, "Linux containers do not run on this node: {e}");
                    conditions.push(RuntimeCondition {
                        type_: OCI_CONDITION.into(),
                        ready: false,
                        reason: reason.into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if want_wasm {
            runtimes
                .set_default(skiff_runtime::WASM_HANDLER)
                .map_err(|e| Error::Internal(e.to_string()))?;
        }

        let mut config = NodeConfig::new(self.name, client, runtimes, network, "");
        config.endpoint_auth = EndpointAuth::Review;
        if let Some(reader) = compile_cache {
            config.metrics.set_compile_cache(reader);
        }
        config.zone = self.zone;
        config.listen = self.listen;
        config.pod_cidr = self.pod_cidr;
        config.lease_duration_seconds = self.lease_duration_seconds;
        config.hop_limit = self.hop_limit;
        config.ingress_listen = self.ingress_listen;
        config.ingress_tls_listen = self.ingress_tls_listen;
        config.storage = Some(StorageOptions {
            dir: self.data_dir.join("volumes"),
            max_bytes: self.max_local_storage,
        });
        config.conditions = conditions;
        config.shutdown_hooks = shutdown_hooks;
        config.eviction = self.eviction;
        config.memory_capacity = self.memory_capacity;
        Ok(config)
    }

    /// [`build`](Self::build), then [`start`].
    pub async fn start(self) -> Result<NodeHandle> {
        start(self.build().await?).await
    }
}

/// The most Linux container pods a node runs unless `--max-pods` says otherwise (kubelet's
/// default).
const DEFAULT_OCI_MAX_PODS: u32 = 110;

/// The grace period of the containers the Linux container backend still holds at a clean
/// shutdown (the pod workers have stopped theirs by then).
const OCI_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `--runtimes`: which of `wasm` and `oci` to run. At least one; no other name.
fn wanted_runtimes(names: &[String]) -> Result<(bool, bool)> {
    let (mut wasm, mut oci) = (false, false);
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        match n {
            skiff_runtime::WASM_HANDLER => wasm = true,
            skiff_runtime::OCI_HANDLER => oci = true,
            other => {
                return Err(Error::Config(format!(
                    "unknown runtime {other:?}: this node runs \"wasm\" and \"oci\""
                )));
            }
        }
    }
    if !wasm && !oci {
        return Err(Error::Config(
            "a node needs at least one runtime (wasm, oci)".into(),
        ));
    }
    Ok((wasm, oci))
}

/// The Node condition's reason for a Linux container backend that cannot start.
fn oci_failure_reason(e: &skiff_runtime::Error) -> &'static str {
    match e {
        skiff_runtime::Error::Oci(skiff_runtime::oci::OciError::NotFound(_)) => "RuntimeNotFound",
        skiff_runtime::Error::NotSupported(m) if m.contains("root") => "NotRoot",
        skiff_runtime::Error::NotSupported(m) if m.contains("cgroup") => "CgroupsUnavailable",
        _ => "RuntimeUnavailable",
    }
}

/// The OCI runtime's name and version (`runc version 1.1.12`), as its `--version` says.
async fn oci_version(kind: RuntimeKind, path: Option<PathBuf>) -> String {
    let program = path.unwrap_or_else(|| PathBuf::from(kind.name()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await;
    match out {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| kind.name().to_string()),
        _ => kind.name().to_string(),
    }
}

/// A running node. Dropping it aborts its tasks; [`NodeHandle::shutdown`] stops it cleanly.
pub struct NodeHandle {
    local_addr: SocketAddr,
    ingress_addr: Option<SocketAddr>,
    ingress_tls_addr: Option<SocketAddr>,
    router: net::Router,
    network: Network,
    shutdown: watch::Sender<bool>,
    /// Stops the listeners (endpoint, ingress, NodePorts) and new pods, before `shutdown`.
    drain: watch::Sender<bool>,
    /// The listeners' tasks: they end once their connections are drained.
    serving: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown_hooks: Vec<ShutdownHook>,
}

/// The node endpoint's bounds on its connections. kubelet's server has no connection cap and
/// no header timeout (only `IdleTimeout` 90 s and a 1 MiB head), and no flags for them; its
/// clients are the API server and other nodes, authenticated, but a connection is held before
/// authentication, so anyone who can reach the port could hold it. These are the API server's
/// bounds (`skiff_serve::ConnectionLimits::DEFAULT`: 4096 connections, 32 s for the first byte
/// and each head and between requests, 90 s idle, 64 KiB heads) with a quarter of the
/// connections per client IP instead of an eighth: one address (a node forwarding Service
/// traffic, the API server following logs for many users) may need many, a stranger may not
/// take them all. HTTP/1.1 only.
pub const ENDPOINT_CONNECTION_LIMITS: skiff_serve::ConnectionLimits =
    skiff_serve::ConnectionLimits {
        max_connections_per_client_ip: 1024,
        ..skiff_serve::ConnectionLimits::DEFAULT
    };

/// How long a node's shutdown lets requests in flight (to the endpoint, the ingress and
/// NodePorts, and through them to pods) finish before it stops the pods.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

impl NodeHandle {
    /// The node's Service router, as the ingress reaches Services.
    pub fn service_backend(&self) -> Arc<dyn net::ServiceBackend> {
        Arc::new(self.router.clone())
    }

    /// The address the node endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the ingress's HTTP listener, if it runs.
    pub fn ingress_addr(&self) -> Option<SocketAddr> {
        self.ingress_addr
    }

    /// The bound address of the ingress's HTTPS listener, if it runs.
    pub fn ingress_tls_addr(&self) -> Option<SocketAddr> {
        self.ingress_tls_addr
    }

    /// Stops in two steps. First the listeners stop accepting and the requests in flight —
    /// to pods too — get up to [`DRAIN_GRACE`] to finish, while the pods keep running and no
    /// new pod starts. Then the watches end, every pod stops (its grace period, capped), the
    /// backends' shutdown hooks run (the Linux container backend removes its bridge).
    pub async fn shutdown(mut self) {
        let _ = self.drain.send(true);
        let serving = std::mem::take(&mut self.serving);
        let aborts: Vec<_> = serving.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(DRAIN_GRACE, futures::future::join_all(serving))
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after {DRAIN_GRACE:?}; closing them");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout(Duration::from_secs(15), t).await {
                Ok(_) => {}
                Err(_) => tracing::warn!("a node task did not stop within 15s"),
            }
        }
        for hook in std::mem::take(&mut self.shutdown_hooks) {
            hook().await;
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        // The network holds the router, which holds the network: break the cycle.
        self.network.set_router(None);
        for t in self.serving.iter().chain(&self.tasks) {
            t.abort();
        }
    }
}

async fn client(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    Ok(kube::Client::try_from(config)?)
}

/// Starts a node: the listener, registration, heartbeats and the pod watch.
pub async fn start(config: NodeConfig) -> Result<NodeHandle> {
    let io = |what: String| move |source| Error::Io { what, source };
    if config.runtimes.is_empty() {
        return Err(Error::Config(
            "a node needs at least one runtime backend".into(),
        ));
    }
    // An explicit range must at least parse before the API server is asked for it.
    let asked = config
        .pod_cidr
        .as_deref()
        .map(IpPool::parse)
        .transpose()
        .map_err(Error::Config)?;
    let client = config.client.clone();
    let outgoing = match &config.endpoint_auth {
        EndpointAuth::Static(token) => endpointauth::OutgoingToken::fixed(token),
        EndpointAuth::Review => endpointauth::OutgoingToken::default(),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listening on {}", config.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(io("reading the listener address".into()))?;
    let host_ip = match local_addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };

    // The ingress binds its listeners before the Node registers: a port in use stops the
    // node here. Dropped on a later error, it stops again.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Turns true first at shutdown: the listeners stop accepting and drain, no new pod starts;
    // the pods stop only after (`NodeHandle::shutdown`).
    let (drain_tx, drain_rx) = watch::channel(false);
    // The Service router: its table is fed by watches and by the pod workers' readiness.
    let services = Arc::new(net::table::Table::new(config.name.clone()));
    let router = net::Router::new(
        services.clone(),
        config.network.clone(),
        client.clone(),
        outgoing.clone(),
        config.hop_limit,
    );
    router.set_metrics(config.metrics.clone());
    let ingress = if config.ingress_listen.is_some() || config.ingress_tls_listen.is_some() {
        let backend = config
            .service_backend
            .clone()
            .unwrap_or_else(|| Arc::new(router.clone()));
        let opts = net::ingress::IngressOptions {
            node: config.name.clone(),
            listen: config.ingress_listen,
            tls_listen: config.ingress_tls_listen,
            fallback_address: host_ip,
        };
        let ingress = net::ingress::start(client.clone(), backend, opts, drain_rx.clone())
            .await
            .map_err(|e| Error::Config(format!("starting the ingress: {e}")))?;
        Some(ingress)
    } else {
        None
    };
    let ingress_addr = ingress.as_ref().and_then(|i| i.http_addr());
    let ingress_tls_addr = ingress.as_ref().and_then(|i| i.https_addr());

    let memory_capacity = config.memory_capacity.unwrap_or_else(node::memory_bytes);
    let eviction_state = Arc::new(eviction::Shared::default());
    let facts = NodeFacts {
        name: config.name.clone(),
        zone: config.zone.clone(),
        host_ip,
        port: local_addr.port(),
        pod_cidr: asked.as_ref().map(IpPool::cidr),
        backend_pods: config
            .runtimes
            .iter()
            .map(|b| b.runtime.capacity().pods)
            .fold(0u32, u32::saturating_add),
        runtimes: config.runtimes.handlers(),
        interfaces: interfaces::of(&config.runtimes),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes: memory_capacity,
        conditions: config.conditions.clone(),
        reserved: config.eviction.reserved(memory_capacity),
        eviction: eviction_state.clone(),
        started: jiff::Timestamp::now(),
        lease_duration_seconds: config.lease_duration_seconds.max(1),
    };
    let mut facts = facts;
    let (node_uid, pool) = match node::register(&client, &mut facts).await {
        Ok(registered) => {
            let uid = registered.metadata.uid.clone();
            node::renew_lease(&client, &facts, uid.as_deref()).await?;
            (uid, node_pool(&facts)?)
        }
        Err(kube::Error::Api(e)) if e.code == 422 => {
            // Kept running, so that it says why; it starts no pods until it is accepted.
            tracing::error!(
                node = %config.name,
                reason = %e.message,
                "the API server refused this node's registration; it runs no pods until the \
                 Node is accepted (retried every lease renewal)"
            );
            node::refused_event(&client, &facts, &e.message).await;
            (None, IpPool::unassigned())
        }
        Err(e) => return Err(e.into()),
    };

    let mut ctx = NodeCtx::new(
        client.clone(),
        config.runtimes.clone(),
        config.name.clone(),
        host_ip,
        pool,
    )
    .with_services(services.clone())
    .with_host_dns(host_dns().await)
    .with_metrics(config.metrics.clone())
    .with_eviction(eviction_state);
    if let Some(clock) = &config.token_clock {
        ctx = ctx.with_token_clock(clock.clone());
    }
    let ctx = Arc::new(ctx);
    // Sandboxes the backends re-adopted keep their IPs: none is handed out twice.
    ctx.reserve_adopted();

    let stats = stats::NodeStatsSource::new(ctx.clone(), memory_capacity);
    let stats_task = tokio::spawn(stats.clone().run(shutdown_rx.clone()));
    let state = listener::ListenerState {
        stats,
        ctx: ctx.clone(),
        auth: Arc::new(endpointauth::Authenticator::new(
            &config.endpoint_auth,
            client.clone(),
        )),
        network: config.network.clone(),
        policies: router.policies().clone(),
    };
    let mut stop = drain_rx.clone();
    let serve = tokio::spawn(async move {
        let app = listener::router(state);
        let options = skiff_serve::ServeOptions {
            name: "node endpoint",
            limits: ENDPOINT_CONNECTION_LIMITS,
            tls: None,
            protocols: skiff_serve::Protocols::Http1,
            drain: DRAIN_GRACE,
        };
        let make_service = move |_: &skiff_serve::Peer<'_>| {
            hyper_util::service::TowerToHyperService::new(app.clone())
        };
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        skiff_serve::serve(listener, options, make_service, stopped).await;
    });
    let accepted = node_uid.is_some();
    let mut tasks = Vec::new();
    if let (EndpointAuth::Review, Some(uid)) = (&config.endpoint_auth, &node_uid) {
        tasks.push(tokio::spawn(endpointauth::keep_outgoing_token(
            client.clone(),
            config.name.clone(),
            uid.clone(),
            outgoing,
            shutdown_rx.clone(),
        )));
    }
    let heartbeat = tokio::spawn(heartbeat(ctx.clone(), facts, node_uid, shutdown_rx.clone()));
    let mut serving = ingress.map(|i| i.into_tasks()).unwrap_or_default();
    tasks.extend(net::spawn_watches(
        &client,
        &services,
        router.policies(),
        &shutdown_rx,
    ));
    config.network.set_router(Some(Arc::new(router.clone())));
    // Linux containers get the cluster DNS, the wasm pods and the ClusterIPs on the bridge.
    tasks.extend(
        net::bridge::start_for_node(
            &config.name,
            &config.runtimes,
            ctx.pod_network(),
            services.clone(),
            config.network.clone(),
            Arc::new(router.clone()),
            shutdown_rx.clone(),
        )
        .await,
    );
    if let Some(storage) = config.storage.clone() {
        tasks.push(tokio::spawn(storage::run(
            client.clone(),
            config.name.clone(),
            storage,
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(eviction::run(
        ctx.clone(),
        config.eviction.clone(),
        memory_capacity,
        shutdown_rx.clone(),
    )));
    let pods = tokio::spawn(manage_pods(ctx, drain_rx, shutdown_rx));
    if accepted {
        tracing::info!(node = %config.name, endpoint = %local_addr, "node registered");
    } else {
        tracing::warn!(node = %config.name, endpoint = %local_addr, "node started unregistered");
    }
    serving.push(serve);
    tasks.extend([pods, heartbeat, stats_task]);
    Ok(NodeHandle {
        local_addr,
        ingress_addr,
        ingress_tls_addr,
        router,
        network: config.network.clone(),
        shutdown: shutdown_tx,
        drain: drain_tx,
        serving,
        tasks,
        shutdown_hooks: config.shutdown_hooks.clone(),
    })
}

/// The node's own resolver configuration (for `dnsPolicy: Default`); empty if unreadable.
async fn host_dns() -> skiff_runtime::DnsConfig {
    match tokio::fs::read_to_string("/etc/resolv.conf").await {
        Ok(text) => convert::parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(error = %e, "reading /etc/resolv.conf: pods with dnsPolicy Default get no nameserver");
            skiff_runtime::DnsConfig::default()
        }
    }
}

/// The sandboxes the backends hold (re-adopted after a restart) for pods no longer assigned to
/// this node: `assigned` are the uids of the first pod list. Taken at that list, before any
/// later pod's worker can make a sandbox, so a pod bound here since is never taken for one.
pub(crate) fn orphans(ctx: &NodeCtx, assigned: &HashSet<String>) -> Vec<Arc<dyn PodSandbox>> {
    let mut found = Vec::new();
    for b in ctx.runtimes.iter() {
        for id in b.runtime.pods() {
            if assigned.contains(&id) {
                continue;
            }
            if let Some(sb) = b.runtime.pod(&id) {
                tracing::info!(pod = %id, handler = %b.handler(), "removing the sandbox of a pod no longer assigned to this node");
                found.push(sb);
            }
        }
    }
    found
}

/// Removes the `orphans` sandboxes and frees their IPs.
pub(crate) async fn remove_orphans(ctx: &NodeCtx, orphans: Vec<Arc<dyn PodSandbox>>) {
    for sb in orphans {
        // Read first: the address the sandbox holds now (none once its network is released).
        let ip = sb.ip();
        if let Err(e) = sb.remove(ORPHAN_GRACE).await {
            tracing::warn!(pod = %sb.id(), error = %e, "removing an orphaned sandbox");
        }
        if let Some(ip) = ip {
            ctx.release_ip(ip, sb.id());
        }
    }
}

/// The grace period of the containers of a sandbox whose pod is gone (kubelet kills orphaned
/// pods with the default grace period).
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// The pod range of a registered Node: the CIDR the API server accepted or gave it.
fn node_pool(facts: &NodeFacts) -> Result<IpPool> {
    let cidr = facts.pod_cidr.as_deref().ok_or_else(|| {
        Error::Config(format!(
            "the API server gave Node {} no podCIDR (is its cluster CIDR full?)",
            facts.name
        ))
    })?;
    IpPool::parse(cidr).map_err(Error::Config)
}

/// Registers a Node the API server refused before (or that is gone): on success the node
/// takes the pod range it was given.
async fn register_again(ctx: &NodeCtx, facts: &mut NodeFacts) -> Option<String> {
    match node::register(&ctx.client, facts).await {
        Ok(n) => {
            match node_pool(facts) {
                Ok(pool) => ctx.assign_pool(pool),
                Err(e) => {
                    tracing::error!(error = %e, "the registered Node has no usable pod range")
                }
            }
            tracing::info!(node = %facts.name, pod_cidr = ?facts.pod_cidr, "node registered");
            n.metadata.uid
        }
        Err(kube::Error::Api(e)) if e.code == 422 => {
            tracing::error!(node = %facts.name, reason = %e.message, "the API server still refuses this node's registration");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "registering the node");
            None
        }
    }
}

async fn heartbeat(
    ctx: Arc<NodeCtx>,
    mut facts: NodeFacts,
    mut uid: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let mut lease_tick = tokio::time::interval(facts.lease_renew());
    lease_tick.tick().await;
    let mut last_status = tokio::time::Instant::now();
    // A changed MemoryPressure condition is written at once.
    let mut pressure = facts.eviction.status_changes();
    let mut write_now = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = lease_tick.tick() => {}
            Ok(()) = pressure.changed() => {
                pressure.borrow_and_update();
                write_now = true;
            }
        }
        if uid.is_none() {
            // Refused at start (or gone): no Node, so no lease or status to write.
            uid = register_again(&ctx, &mut facts).await;
            if uid.is_none() {
                continue;
            }
            last_status = tokio::time::Instant::now();
        }
        if let Err(e) = node::renew_lease(&client, &facts, uid.as_deref()).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        if write_now || last_status.elapsed() >= node::STATUS_REFRESH {
            write_now = false;
            last_status = tokio::time::Instant::now();
            match node::update_status(&client, &facts).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    tracing::warn!("the Node object is gone; registering again");
                    uid = register_again(&ctx, &mut facts).await;
                }
                Err(e) => tracing::warn!(error = %e, "updating the node status"),
            }
        }
    }
}

struct PodWorker {
    tx: watch::Sender<Pod>,
    task: JoinHandle<()>,
}

/// Runs a worker per pod bound here until `stop`; once `drain` turns true, pods not yet
/// running here are left for after the restart (or for another node, once this one is gone).
async fn manage_pods(
    ctx: Arc<NodeCtx>,
    drain: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, PodWorker> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    // Orphaned sandboxes are removed once, after the first complete list.
    let mut orphans_checked = false;
    // Workers of pods that went away, finishing their cleanup.
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let ev = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            ev = stream.next() => ev,
        };
        workers.retain(|_, w| !w.task.is_finished() || !w.tx.is_closed());
        stopping.retain(|t| !t.is_finished());
        match ev {
            None => break,
            Some(Err(e)) => tracing::warn!(error = %e, "watching pods"),
            Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = listed.take() {
                    if !orphans_checked {
                        orphans_checked = true;
                        // Found now, before a pod bound since gets a sandbox; removed in the
                        // background: the watch goes on while they stop.
                        let found = orphans(&ctx, &seen);
                        let ctx = ctx.clone();
                        stopping.push(tokio::spawn(async move {
                            remove_orphans(&ctx, found).await;
                        }));
                    }
                    let gone: Vec<String> = workers
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(w) = workers.remove(&uid) {
                            drop(w.tx);
                            stopping.push(w.task);
                        }
                    }
                }
            }
            Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                if pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                    != Some(ctx.node_name.as_str())
                {
                    continue;
                }
                if let Some(seen) = &mut listed {
                    seen.insert(uid.clone());
                }
                match workers.get(&uid) {
                    Some(w) if !w.task.is_finished() => {
                        w.tx.send_replace(pod);
                    }
                    _ if *drain.borrow() => {
                        tracing::info!(
                            pod = pod.metadata.name.as_deref().unwrap_or_default(),
                            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
                            "the node is shutting down; not starting the pod"
                        );
                    }
                    _ => {
                        let (tx, rx) = watch::channel(pod.clone());
                        let w = worker::Worker::new(ctx.clone(), pod);
                        let span = w.span();
                        let task = tokio::spawn(tracing::Instrument::instrument(w.run(rx), span));
                        workers.insert(uid, PodWorker { tx, task });
                    }
                }
            }
            Some(Ok(Event::Delete(pod))) => {
                if let Some(uid) = &pod.metadata.uid
                    && let Some(w) = workers.remove(uid)
                {
                    drop(w.tx);
                    stopping.push(w.task);
                }
            }
        }
    }
    // The node stops: every pod's worker stops its sandbox.
    let all: Vec<PodWorker> = workers.into_values().collect();
    let mut tasks: Vec<JoinHandle<()>> = all
        .into_iter()
        .map(|w| {
            drop(w.tx);
            w.task
        })
        .collect();
    tasks.extend(stopping);
    futures::future::join_all(tasks).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_wasm_and_oci_only() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            wanted_runtimes(&names(DEFAULT_RUNTIMES)).ok(),
            Some((true, true))
        );
        assert_eq!(wanted_runtimes(&names(&["oci"])).ok(), Some((false, true)));
        assert_eq!(
            wanted_runtimes(&names(&[" wasm", ""])).ok(),
            Some((true, false))
        );
        assert!(wanted_runtimes(&names(&[])).is_err());
        let e = wanted_runtimes(&names(&["wasm", "youki"])).expect_err("unknown");
        assert!(e.to_string().contains("youki"), "{e}");
    }

    #[test]
    fn an_oci_backend_that_cannot_start_says_why() {
        use skiff_runtime::Error as E;
        let not_found = E::Oci(skiff_runtime::oci::OciError::NotFound("no runc".into()));
        assert_eq!(oci_failure_reason(&not_found), "RuntimeNotFound");
        let root = E::NotSupported("Linux containers need root".into());
        assert_eq!(oci_failure_reason(&root), "NotRoot");
        let cg = E::NotSupported("Linux containers need cgroups: none".into());
        assert_eq!(oci_failure_reason(&cg), "CgroupsUnavailable");
        assert_eq!(
            oci_failure_reason(&E::Internal("x".into())),
            "RuntimeUnavailable"
        );
    }
}
