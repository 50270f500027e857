//! `skiff server`: the API server on a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// Directory for the store, the CA, the admin token and admin.kubeconfig.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Revisions of change history kept for watches to resume from.
    #[arg(long, default_value_t = 10_000)]
    history_revisions: u64,
    /// Seconds between compactions of old history.
    #[arg(long, default_value_t = 60)]
    compaction_interval_seconds: u64,
    /// kube-apiserver's EncryptionConfiguration file (YAML or JSON): which resources are
    /// encrypted at rest, with the aesgcm, secretbox or identity providers (the first writes,
    /// all read). Without it values are stored as they are.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    service_accounts: ServiceAccountArgs,
    #[command(flatten)]
    authorization: AuthorizationArgs,
    #[command(flatten)]
    authentication: AuthenticationArgs,
    #[command(flatten)]
    flow_control: FlowControlArgs,
    #[command(flatten)]
    audit: AuditArgs,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    controllers: crate::controllers::ControllerArgs,
    #[command(flatten)]
    ready: crate::ready::ReadyArgs,
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::signals::install();
    let mut opts = skiff_api::ServerOptions::new(&args.data_dir, args.listen);
    opts.history_revisions = args.history_revisions;
    opts.compaction_interval =
        std::time::Duration::from_secs(args.compaction_interval_seconds.max(1));
    opts.network = args.network.config()?;
    args.authentication.apply(&mut opts);
    opts.service_accounts = args.service_accounts.options()?;
    opts.authorization_modes = args.authorization.modes();
    opts.encryption_provider_config = args.encryption_provider_config.clone();
    args.flow_control.apply(&mut opts);
    args.audit.apply(&mut opts);
    args.etcd.apply(&mut opts)?;
    let server = skiff_api::start(opts)
        .await
        .with_context(|| format!("starting the API server on {}", args.listen))?;
    println!("Skiff API server listening on {}", server.url);
    println!("Admin kubeconfig: {}", server.kubeconfig_path.display());
    println!(
        "Try: KUBECONFIG={} kubectl get namespaces",
        server.kubeconfig_path.display()
    );
    let (controllers, ready) = args.controllers.start_beside(&server).await?;
    args.ready.write(ready)?;
    crate::signals::wait_for_shutdown().await;
    args.ready.remove();
    if let Some(c) = controllers {
        c.shutdown().await;
    }
    server.shutdown().await;
    Ok(())
}

/// Where Service ClusterIPs, NodePorts and the nodes' pod CIDRs come from (`skiff server` and
/// `skiff up`), as kube-apiserver's and kube-controller-manager's flags of the same names.
#[derive(clap::Args)]
pub(crate) struct NetworkArgs {
    /// IPv4 range of Service ClusterIPs; its first address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: skiff_api::Ipv4Cidr,
    /// Ports NodePort and LoadBalancer Services get their node ports from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: skiff_api::PortRange,
    /// IPv4 range of every pod IP in the cluster; each Node gets a slice of it as its podCIDR.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: skiff_api::Ipv4Cidr,
    /// Prefix length of each Node's podCIDR (24: 256 addresses, 253 pods).
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
}

/// Who users are (`skiff server` and `skiff up`), as kube-apiserver's flags of the same names.
#[derive(clap::Args)]
pub(crate) struct AuthenticationArgs {
    /// Static users: a CSV file of `token,user,uid,"group1,group2"` lines (the groups column
    /// optional); their bearer tokens authenticate them.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to (default: the cluster CA,
    /// DATA/pki/ca.crt); CN is the user, each O a group.
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<std::path::PathBuf>,
}

impl AuthenticationArgs {
    pub(crate) fn apply(&self, opts: &mut skiff_api::ServerOptions) {
        opts.token_auth_file = self.token_auth_file.clone();
        opts.client_ca_file = self.client_ca_file.clone();
    }
}

impl NetworkArgs {
    pub(crate) fn config(&self) -> anyhow::Result<skiff_api::NetworkConfig> {
        let config = skiff_api::NetworkConfig {
            service_cidr: self.service_cluster_ip_range,
            node_ports: self.service_node_port_range,
            cluster_cidr: self.cluster_cidr,
            node_cidr_mask: self.node_cidr_mask_size,
        };
        config.check()?;
        Ok(config)
    }
}

/// Who may do what (`skiff server` and `skiff up`), as kube-apiserver's flag of the same name.
#[derive(clap::Args)]
pub(crate) struct AuthorizationArgs {
    /// Authorization modes, comma-separated, asked in order after `system:masters`:
    /// `Node` (nodes reach what their pods need), `RBAC` (Roles and bindings); `AlwaysAllow`
    /// alone lets every authenticated user do everything (no tenants: tests and demos only).
    #[arg(long, value_delimiter = ',', default_value = "Node,RBAC")]
    pub(crate) authorization_mode: Vec<skiff_api::AuthorizationMode>,
}

impl AuthorizationArgs {
    pub(crate) fn modes(&self) -> Vec<skiff_api::AuthorizationMode> {
        self.authorization_mode.clone()
    }
}

/// ServiceAccount tokens (`skiff server` and `skiff up`), as kube-apiserver's flags of the same
/// names.
#[derive(clap::Args)]
pub(crate) struct ServiceAccountArgs {
    /// The issuer of ServiceAccount tokens (their `iss` claim).
    #[arg(long, default_value = skiff_api::serviceaccount::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// The API's audiences, comma-separated: a token must name one to authenticate a request
    /// (default: the issuer).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// The ECDSA P-256 private key (PKCS#8 PEM) tokens are signed with (default:
    /// DATA/pki/sa.key, made on first start).
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// A PEM file of more keys (public, or private for their public half) tokens may be signed
    /// with; repeatable.
    #[arg(long)]
    service_account_key_file: Vec<PathBuf>,
    /// The longest lifetime a requested token gets, as a Go duration (`24h`); default none.
    #[arg(long)]
    service_account_max_token_expiration: Option<String>,
}

impl ServiceAccountArgs {
    pub(crate) fn options(
        &self,
    ) -> anyhow::Result<skiff_api::serviceaccount::ServiceAccountOptions> {
        let max_token_expiration = match &self.service_account_max_token_expiration {
            Some(s) => Some(skiff_meta::duration::parse_go_duration(s).map_err(|e| {
                anyhow::anyhow!("--service-account-max-token-expiration {s:?}: {e}")
            })?),
            None => None,
        };
        if max_token_expiration.is_some_and(|d| d.as_secs() < 3600 || d.as_secs() > 1 << 32) {
            anyhow::bail!(
                "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"
            );
        }
        Ok(skiff_api::serviceaccount::ServiceAccountOptions {
            issuer: self.service_account_issuer.clone(),
            api_audiences: self
                .api_audiences
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            signing_key_file: self.service_account_signing_key_file.clone(),
            key_files: self.service_account_key_file.clone(),
            max_token_expiration,
        })
    }
}

/// Bounds on requests in flight, with per-user fair queuing when busy.
#[derive(clap::Args)]
pub(crate) struct FlowControlArgs {
    /// Non-mutating requests in flight at once before requests queue per user (0: no bound;
    /// default: the machine's CPU cores, at least 2). Watches and other long-running requests
    /// are not counted; `system:masters` and the cluster's own components are exempt.
    #[arg(long)]
    max_requests_inflight: Option<usize>,
    /// Mutating requests in flight at once before requests queue per user (0: no bound;
    /// default: 8 per CPU core).
    #[arg(long)]
    max_mutating_requests_inflight: Option<usize>,
    /// Requests of one user waiting for a slot; beyond it they get 429 with Retry-After.
    #[arg(long, default_value_t = 50)]
    max_queued_requests_per_user: usize,
    /// The longest a queued request waits for a slot, in seconds, before it gets 429.
    #[arg(long, default_value_t = 15)]
    request_queue_wait_seconds: u64,
    /// Watches (and other long-running requests) one user may hold at once (0: no bound).
    #[arg(long, default_value_t = 1000)]
    max_watches_per_user: usize,
    /// Connections open at once (0: no bound); past it a new connection is closed on accept.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Connections open at once from one client IP address (0: no bound).
    #[arg(long, default_value_t = 512)]
    max_connections_per_client_ip: usize,
    /// Seconds a client gets for the TLS handshake, its first byte and each HTTP/1.1 request
    /// head, and that an HTTP/1.1 connection may sit idle between requests (slow clients).
    #[arg(long, default_value_t = 32)]
    request_header_timeout_seconds: u64,
    /// Seconds a connection may have no request in flight — an HTTP/2 connection with no stream
    /// open — before it is closed gracefully (GOAWAY); never less than the request header
    /// timeout. kube-apiserver's `IdleTimeout`, 90 s.
    #[arg(long, default_value_t = 90)]
    idle_connection_timeout_seconds: u64,
    /// HTTP/2 streams one connection may have open at once (further requests wait for one);
    /// kube-apiserver's flag, whose default means 100.
    #[arg(long, default_value_t = 100)]
    http2_max_streams_per_connection: u32,
}

impl FlowControlArgs {
    pub(crate) fn apply(&self, opts: &mut skiff_api::ServerOptions) {
        use skiff_api::fairness::FairnessOptions;
        opts.fairness = FairnessOptions {
            max_requests_inflight: self
                .max_requests_inflight
                .unwrap_or_else(FairnessOptions::default_max_requests_inflight),
            max_mutating_requests_inflight: self
                .max_mutating_requests_inflight
                .unwrap_or_else(FairnessOptions::default_max_mutating_requests_inflight),
            queue_length_per_user: self.max_queued_requests_per_user,
            queue_wait: std::time::Duration::from_secs(self.request_queue_wait_seconds.max(1)),
            max_watches_per_user: self.max_watches_per_user,
        };
        opts.connections = skiff_api::limits::ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_client_ip: self.max_connections_per_client_ip,
            request_header_timeout: std::time::Duration::from_secs(
                self.request_header_timeout_seconds.max(1),
            ),
            idle_timeout: std::time::Duration::from_secs(self.idle_connection_timeout_seconds),
            http2_max_concurrent_streams: self.http2_max_streams_per_connection.max(1),
            ..Default::default()
        };
    }
}

/// The audit log.
#[derive(clap::Args)]
pub(crate) struct AuditArgs {
    /// Write one audit.k8s.io/v1 Event JSON line per request to this file (`-`: standard
    /// output). Without it no audit log is written.
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// An audit.k8s.io/v1 Policy file choosing each request's level (first matching rule
    /// wins). Without it every request is logged at Metadata. Request and RequestResponse
    /// levels write bodies as they are, Secrets included, where the policy asks.
    #[arg(long, value_name = "FILE")]
    audit_policy_file: Option<PathBuf>,
    /// Rotate the audit log file past this many megabytes (0: never).
    #[arg(long, default_value_t = 0)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 0)]
    audit_log_maxbackup: usize,
}

impl AuditArgs {
    pub(crate) fn apply(&self, opts: &mut skiff_api::ServerOptions) {
        opts.audit_log_path = self.audit_log_path.clone();
        opts.audit_policy_file = self.audit_policy_file.clone();
        opts.audit_log_max_size_mb = self.audit_log_maxsize;
        opts.audit_log_max_backups = self.audit_log_maxbackup;
    }
}

/// kube-apiserver's etcd flags: keep every object in an etcd cluster (which several API servers
/// may share) instead of the embedded store in the data directory.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct EtcdArgs {
    /// etcd client URLs, comma-separated (`http://` or, with --etcd-cafile, `https://`).
    /// Without it objects are kept in DATA_DIR/store.redb.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    etcd_servers: Vec<String>,
    /// PEM CA bundle that signed the etcd servers' certificates.
    #[arg(long, value_name = "FILE")]
    etcd_cafile: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-keyfile).
    #[arg(long, value_name = "FILE")]
    etcd_certfile: Option<PathBuf>,
    /// PEM private key of --etcd-certfile.
    #[arg(long, value_name = "FILE")]
    etcd_keyfile: Option<PathBuf>,
    /// Prefix of every key in etcd (as kube-apiserver's; give each cluster sharing one etcd
    /// its own).
    #[arg(long, default_value = "/registry", value_name = "PREFIX")]
    etcd_prefix: String,
}

impl EtcdArgs {
    pub(crate) fn apply(&self, opts: &mut skiff_api::ServerOptions) -> anyhow::Result<()> {
        if self.etcd_servers.is_empty() {
            anyhow::ensure!(
                self.etcd_cafile.is_none()
                    && self.etcd_certfile.is_none()
                    && self.etcd_keyfile.is_none(),
                "--etcd-cafile, --etcd-certfile and --etcd-keyfile need --etcd-servers"
            );
            return Ok(());
        }
        if let Some(bad) = self
            .etcd_servers
            .iter()
            .find(|url| !url.starts_with("http://") && !url.starts_with("https://"))
        {
            anyhow::bail!("--etcd-servers: {bad:?} is not an http:// or https:// URL");
        }
        let mut etcd = skiff_api::EtcdStoreOptions::new(self.etcd_servers.clone());
        etcd.prefix = self.etcd_prefix.clone();
        etcd.ca_file = self.etcd_cafile.clone();
        etcd.cert_file = self.etcd_certfile.clone();
        etcd.key_file = self.etcd_keyfile.clone();
        opts.etcd = Some(etcd);
        Ok(())
    }
}
