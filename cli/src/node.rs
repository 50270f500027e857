//! `skiff node`: the node agent — registers a Node, runs the pods bound to it (wasm, and Linux
//! containers where it can: `--runtimes`) and serves the node endpoint (logs, pod proxy).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's kubeconfig for the API server: its own credential, `system:node:NAME` in
    /// `system:nodes` (minted with `skiff kubeconfig --user system:node:NAME --group
    /// system:nodes`, or written here by TLS bootstrap with `--bootstrap-kubeconfig`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// A kubeconfig with a bootstrap token (`skiff token create`): when `--kubeconfig` does not
    /// exist or its certificate expired, the node asks the cluster for its client certificate
    /// with it and writes `--kubeconfig` (as kubelet's flag of the same name).
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// The Node's name.
    #[arg(long)]
    name: String,
    /// Directory for the node's state: compile cache, pod volumes, pulled images.
    #[arg(long)]
    data_dir: PathBuf,
    /// Zone label (topology.kubernetes.io/zone).
    #[arg(long)]
    zone: Option<String>,
    /// Address of the node endpoint: logs, pod proxy and pod ports (plain HTTP; only the API
    /// server, and other nodes on /endpoints, are let in).
    #[arg(long, default_value = skiff_host::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// IPv4 range of the pods' virtual IPs; it bounds the node's `pods` capacity. Default: the
    /// range the API server gives the Node from its `--cluster-cidr`. An explicit one must lie
    /// inside the cluster CIDR and overlap no other node's; if the API server refuses it, the
    /// node logs why and runs no pods.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Registry (HOST:PORT) for image names that do not name one.
    #[arg(long)]
    registry: Option<String>,
    /// Registry token (pulls are anonymous unless the registry requires it).
    #[arg(long, env = "SKIFF_REGISTRY_TOKEN", hide_env_values = true)]
    registry_token: Option<String>,
    /// Accept `file:///abs/path.wasm` images (for development and tests).
    #[arg(long)]
    allow_file_images: bool,
    /// The most pods this node accepts (default 10,000); never more than the pod CIDR has
    /// addresses (253 for the default /24).
    #[arg(long)]
    max_pods: Option<u32>,
    /// Take a WIT package or interface out of the wasm runtime (repeatable): `wasi:keyvalue`,
    /// `wasi:keyvalue/store`, either with `@VERSION`. Components importing it do not link here,
    /// and the Node's `skiff.dev/interfaces` annotation (which the scheduler reads) omits it.
    #[arg(long = "disable-interface", value_name = "PKG", value_parser = parse_interface)]
    disable_interface: Vec<String>,
    /// Seconds the node's Lease stays valid; it is renewed every quarter of this (as kubelet's
    /// flag of the same name).
    #[arg(long, default_value_t = skiff_host::DEFAULT_LEASE_DURATION_SECONDS, value_parser = clap::value_parser!(u32).range(1..=3600))]
    node_lease_duration_seconds: u32,
    /// Serve Ingresses of class `skiff` (and NodePorts, on this address's host) over HTTP
    /// here, e.g. 127.0.0.1:8080. Off unless given.
    #[arg(long)]
    ingress_listen: Option<SocketAddr>,
    /// Serve Ingresses over HTTPS here, with certificates from their TLS Secrets chosen by SNI.
    /// Off unless given.
    #[arg(long)]
    ingress_tls_listen: Option<SocketAddr>,
    /// How many Service hops a request may take (counted in the `skiff-service-hops` header the
    /// router owns) before it is answered 508 Loop Detected.
    #[arg(long, default_value_t = skiff_meta::names::HOP_LIMIT_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=1000))]
    service_hop_limit: u32,
    /// The most storage the local-path provisioner hands out on this node, all volumes
    /// together, as a quantity (for example 10Gi). Default: only the free space of the data
    /// directory's filesystem limits it.
    #[arg(long, value_parser = parse_storage)]
    max_local_storage: Option<u64>,
    #[command(flatten)]
    runtimes: RuntimeArgs,
    #[command(flatten)]
    eviction: EvictionArgs,
    #[command(flatten)]
    guest_limits: GuestLimitArgs,
    #[command(flatten)]
    ready: crate::ready::ReadyArgs,
}

/// Limits on what each wasm guest may do beyond its memory and CPU limits (`skiff node` and
/// `skiff up`); see RELIABILITY.md. Each is per pod (or per container run) so that one
/// hostile pod cannot starve its neighbours.
#[derive(clap::Args)]
pub(crate) struct GuestLimitArgs {
    /// Most elements of one wasm table: growing past it ends the run with reason
    /// TableLimitExceeded; declaring more is refused at creation. Default 100000.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    max_table_elements: Option<u32>,
    /// Bytes per second a container may write to its log (stdout and stderr together), as a
    /// quantity; the excess is dropped with a note in the log and a LogRateLimited Event.
    /// Default 1Mi; 0 turns it off.
    #[arg(long, value_parser = parse_storage)]
    container_log_rate: Option<u64>,
    /// Most instances serving HTTP requests in one pod at once; more requests answer 503 with
    /// an InstanceLimitExceeded Event. Default 100; 0 means the engine's capacity.
    #[arg(long)]
    max_instances_per_pod: Option<u32>,
    /// Outgoing HTTP requests per second one pod may start; faster ones wait their turn
    /// (OutgoingRequestsThrottled Event). Default 10000; 0 turns it off.
    #[arg(long)]
    outgoing_request_rate: Option<u32>,
    /// Most outgoing HTTP requests of one pod in flight; more fail with
    /// connection-limit-reached (OutgoingRequestLimitExceeded Event). Default 100; 0 turns it
    /// off.
    #[arg(long)]
    max_outgoing_requests_per_pod: Option<u32>,
    /// How long a pod may take to start answering a request before its instance is killed and
    /// the caller answered 504 (RequestTimeout Event). Default 60s; 0s turns it off.
    #[arg(long, value_parser = parse_duration)]
    pod_request_timeout: Option<std::time::Duration>,
    /// Connect, first-byte and between-bytes timeout of a pod's outgoing requests that leave
    /// the node, unless the guest sets its own. Default 60s.
    #[arg(long, value_parser = parse_duration)]
    outgoing_request_timeout: Option<std::time::Duration>,
}

impl GuestLimitArgs {
    /// Puts the limits given into the node's options.
    pub(crate) fn apply(&self, opts: &mut skiff_host::NodeOptions) {
        let l = &mut opts.guest_limits;
        if let Some(n) = self.max_table_elements {
            l.max_table_elements = n;
        }
        if let Some(n) = self.container_log_rate {
            l.log_bytes_per_second = n;
        }
        if let Some(n) = self.max_instances_per_pod {
            l.max_instances_per_pod = n;
        }
        if let Some(n) = self.outgoing_request_rate {
            l.outgoing_requests_per_second = n;
        }
        if let Some(n) = self.max_outgoing_requests_per_pod {
            l.max_outgoing_requests_per_pod = n;
        }
        if let Some(d) = self.pod_request_timeout {
            l.request_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.outgoing_request_timeout {
            l.outgoing_timeout = d;
        }
    }
}

/// Which backends a node runs (`skiff node` and `skiff up`).
#[derive(clap::Args)]
pub(crate) struct RuntimeArgs {
    /// The pod runtimes, by RuntimeClass handler: `wasm` (the default for pods without a
    /// runtimeClassName) and `oci` (Linux containers; needs root and the OCI runtime, else the
    /// node runs without it and says why on its Node, unless it is the only one asked for).
    #[arg(long, value_delimiter = ',', default_value = "wasm,oci")]
    runtimes: Vec<String>,
    /// The OCI runtime of Linux containers: runc or crun.
    #[arg(long, default_value = "runc", value_parser = parse_oci_runtime)]
    oci_runtime: skiff_host::RuntimeKind,
    /// The OCI runtime binary (default: found in PATH).
    #[arg(long)]
    oci_runtime_path: Option<PathBuf>,
}

impl RuntimeArgs {
    /// Puts the choice into the node's options.
    pub(crate) fn apply(&self, opts: &mut skiff_host::NodeOptions) {
        opts.runtimes = self.runtimes.clone();
        opts.oci_runtime = self.oci_runtime;
        opts.oci_runtime_path = self.oci_runtime_path.clone();
    }
}

/// Node-pressure eviction and reservations, as kubelet's flags of the same names (`skiff node`
/// and `skiff up`).
#[derive(clap::Args)]
pub(crate) struct EvictionArgs {
    /// Hard eviction thresholds: `memory.available<QUANTITY` or `memory.available<PERCENT%`
    /// (comma-separated); pods are evicted at once when one is met. Also subtracted from
    /// allocatable memory. An empty value turns them off. memory.available is the only signal.
    #[arg(long, default_value = skiff_host::eviction::DEFAULT_HARD)]
    eviction_hard: String,
    /// Soft eviction thresholds (same syntax), acting after their grace period.
    #[arg(long)]
    eviction_soft: Option<String>,
    /// Grace periods of the soft thresholds: `memory.available=1m30s`.
    #[arg(long)]
    eviction_soft_grace_period: Option<String>,
    /// The most seconds a pod evicted by a soft threshold gets to stop (its own
    /// terminationGracePeriodSeconds if less).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32))]
    eviction_max_pod_grace_period: u32,
    /// How long MemoryPressure stays True (and the node tainted) after a threshold was last
    /// met.
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    eviction_pressure_transition_period: std::time::Duration,
    /// How often the node measures its memory against the thresholds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    eviction_monitoring_period: std::time::Duration,
    /// Resources kept for the system, out of allocatable: `cpu=500m,memory=1Gi`.
    #[arg(long, value_parser = parse_reserved)]
    system_reserved: Option<skiff_host::eviction::Reserved>,
    /// Resources kept for Kubernetes components (the node itself), out of allocatable.
    #[arg(long, value_parser = parse_reserved)]
    kube_reserved: Option<skiff_host::eviction::Reserved>,
    /// The memory capacity the Node reports and eviction measures against, as a quantity (for
    /// example 2Gi). Default: the machine's memory.
    #[arg(long, value_parser = parse_storage)]
    memory_capacity: Option<u64>,
}

impl EvictionArgs {
    /// Puts the choice into the node's options.
    pub(crate) fn apply(&self, opts: &mut skiff_host::NodeOptions) -> anyhow::Result<()> {
        let e = &mut opts.eviction;
        e.set_thresholds(
            Some(&self.eviction_hard),
            self.eviction_soft.as_deref(),
            self.eviction_soft_grace_period.as_deref(),
        )?;
        e.max_pod_grace_period =
            std::time::Duration::from_secs(u64::from(self.eviction_max_pod_grace_period));
        e.pressure_transition_period = self.eviction_pressure_transition_period;
        e.monitoring_period = self.eviction_monitoring_period;
        e.system_reserved = self.system_reserved.unwrap_or_default();
        e.kube_reserved = self.kube_reserved.unwrap_or_default();
        opts.memory_capacity = self.memory_capacity;
        Ok(())
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    skiff_host::eviction::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_reserved(s: &str) -> Result<skiff_host::eviction::Reserved, String> {
    skiff_host::eviction::parse_reserved(s).map_err(|e| e.to_string())
}

/// `--oci-runtime`: runc or crun.
fn parse_oci_runtime(s: &str) -> Result<skiff_host::RuntimeKind, String> {
    match s {
        "runc" => Ok(skiff_host::RuntimeKind::Runc),
        "crun" => Ok(skiff_host::RuntimeKind::Crun),
        other => Err(format!("{other:?}: the OCI runtime is runc or crun")),
    }
}

impl NodeArgs {
    /// The Node's name (`--name`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    // A signal while the node starts waits for it to be up, then stops it cleanly.
    crate::signals::install();
    let mut config = skiff_host::NodeOptions::new(&args.kubeconfig, &args.name, &args.data_dir);
    config.bootstrap_kubeconfig = args.bootstrap_kubeconfig;
    config.zone = args.zone;
    config.listen = args.listen;
    config.pod_cidr = args.pod_cidr;
    config.registry = args.registry;
    config.registry_token = args.registry_token;
    config.allow_file_images = args.allow_file_images;
    config.max_pods = args.max_pods;
    config.disabled_interfaces = args.disable_interface;
    config.lease_duration_seconds = args.node_lease_duration_seconds;
    config.ingress_listen = args.ingress_listen;
    config.ingress_tls_listen = args.ingress_tls_listen;
    config.hop_limit = args.service_hop_limit;
    config.max_local_storage = args.max_local_storage;
    args.runtimes.apply(&mut config);
    args.eviction.apply(&mut config)?;
    args.guest_limits.apply(&mut config);
    let node = config
        .start()
        .await
        .with_context(|| format!("starting node {}", args.name))?;
    println!(
        "node {} endpoint listening on http://{}",
        args.name,
        node.local_addr()
    );
    let mut ready = serde_json::Map::new();
    ready.insert("node".into(), args.name.clone().into());
    ready.insert("nodeEndpoint".into(), node.local_addr().to_string().into());
    if let Some(addr) = node.ingress_addr() {
        println!("node {} ingress listening on http://{addr}", args.name);
        ready.insert("ingress".into(), addr.to_string().into());
    }
    if let Some(addr) = node.ingress_tls_addr() {
        println!("node {} ingress listening on https://{addr}", args.name);
        ready.insert("ingressTls".into(), addr.to_string().into());
    }
    args.ready.write(ready)?;
    crate::signals::wait_for_shutdown().await;
    args.ready.remove();
    node.shutdown().await;
    Ok(())
}

/// `--max-local-storage`: a Kubernetes quantity of bytes.
pub(crate) fn parse_storage(s: &str) -> Result<u64, String> {
    let q = skiff_meta::quantity::Quantity::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    u64::try_from(q.value_i64()).map_err(|_| format!("{s:?} must not be negative"))
}

/// `--disable-interface`: a WIT package or interface name.
fn parse_interface(s: &str) -> Result<String, String> {
    skiff_meta::wit::check_pattern(s).map(|()| s.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_local_storage_is_a_quantity_of_bytes() {
        assert_eq!(super::parse_storage("10Gi"), Ok(10 << 30));
        assert_eq!(super::parse_storage("1M"), Ok(1_000_000));
        assert!(super::parse_storage("-1Gi").is_err());
        assert!(super::parse_storage("lots").is_err());
    }

    #[derive(clap::Parser)]
    struct Eviction {
        #[command(flatten)]
        args: super::EvictionArgs,
    }

    fn eviction(args: &[&str]) -> anyhow::Result<skiff_host::NodeOptions> {
        use clap::Parser;
        let parsed = Eviction::try_parse_from(std::iter::once("node").chain(args.iter().copied()))?;
        let mut opts = skiff_host::NodeOptions::new("/k", "n", "/d");
        parsed.args.apply(&mut opts)?;
        Ok(opts)
    }

    #[test]
    fn eviction_flags_are_kubelets() {
        let defaults = eviction(&[]).expect("defaults");
        assert_eq!(defaults.eviction, skiff_host::EvictionOptions::default());
        assert_eq!(defaults.memory_capacity, None);
        let o = eviction(&[
            "--eviction-hard",
            "memory.available<1Gi",
            "--eviction-soft",
            "memory.available<1500Mi",
            "--eviction-soft-grace-period",
            "memory.available=1m30s",
            "--eviction-max-pod-grace-period",
            "20",
            "--eviction-pressure-transition-period",
            "30s",
            "--eviction-monitoring-period",
            "1s",
            "--system-reserved",
            "cpu=100m,memory=256Mi",
            "--memory-capacity",
            "2Gi",
        ])
        .expect("valid flags");
        let e = &o.eviction;
        assert_eq!(e.hard[0].value.bytes(0), 1 << 30);
        assert_eq!(e.soft[0].grace_period, std::time::Duration::from_secs(90));
        assert_eq!(e.max_pod_grace_period, std::time::Duration::from_secs(20));
        assert_eq!(
            e.pressure_transition_period,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(e.monitoring_period, std::time::Duration::from_secs(1));
        assert_eq!(e.system_reserved.memory_bytes, 256 << 20);
        assert_eq!(o.memory_capacity, Some(2 << 30));
        // Off with an empty value; other signals are not supported; a soft threshold needs
        // its grace period.
        assert!(
            eviction(&["--eviction-hard", ""])
                .expect("off")
                .eviction
                .hard
                .is_empty()
        );
        let e = eviction(&["--eviction-hard", "nodefs.available<10%"]).expect_err("nodefs");
        assert!(e.to_string().contains("not supported"), "{e}");
        assert!(eviction(&["--eviction-soft", "memory.available<1Gi"]).is_err());
        assert!(eviction(&["--system-reserved", "pid=100"]).is_err());
    }

    #[test]
    fn oci_runtime_is_runc_or_crun() {
        assert_eq!(
            super::parse_oci_runtime("crun"),
            Ok(skiff_host::RuntimeKind::Crun)
        );
        assert!(super::parse_oci_runtime("youki").is_err());
    }
}
