//! Serving the API over HTTPS: data directory setup, TLS, connections and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use skiff_store::Store;
use tokio::net::TcpListener;

use crate::app::{AppState, app};
use crate::auth::UserInfo;
use crate::pki;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error("tls configuration: {0}")]
    Tls(String),
    #[error("store: {0}")]
    Store(#[from] skiff_store::Error),
    #[error(
        "cannot write the server's own objects (system namespaces, the kubernetes Service, the IngressClass): {0}"
    )]
    Bootstrap(#[source] crate::error::ApiError),
    #[error("network ranges: {0}")]
    Network(#[from] crate::alloc::RangeError),
    #[error("authorization: {0}")]
    Authorization(String),
    #[error(transparent)]
    TokenFile(#[from] crate::auth::tokenfile::TokenFileError),
    #[error("client CA file {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("service-account keys: {0}")]
    ServiceAccounts(#[from] crate::serviceaccount::Error),
    #[error(transparent)]
    Encryption(#[from] crate::encryption::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run an API server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Revisions of history kept for watches before compaction.
    pub history_revisions: u64,
    /// How often old history is compacted away.
    pub compaction_interval: Duration,
    /// Where ClusterIPs, NodePorts and Node pod CIDRs come from.
    pub network: crate::alloc::NetworkConfig,
    /// kube-apiserver's `--authorization-mode`: `AlwaysAllow` alone lets every authenticated
    /// user do everything; otherwise `system:masters`, then the modes in order (`Node`, `RBAC`).
    pub authorization_modes: Vec<crate::rbac::AuthorizationMode>,
    /// kube-apiserver's `--token-auth-file`: static users, `token,user,uid,"group1,group2"`.
    pub token_auth_file: Option<PathBuf>,
    /// kube-apiserver's `--client-ca-file`: the CA client certificates must chain to (`None`:
    /// the cluster CA, `DATA/pki/ca.crt`).
    pub client_ca_file: Option<PathBuf>,
    /// kube-apiserver's `--encryption-provider-config`: an `EncryptionConfiguration` file;
    /// `None` stores every value as it is.
    pub encryption_provider_config: Option<PathBuf>,
    /// ServiceAccount token issuance: issuer, audiences, keys, the longest lifetime.
    pub service_accounts: crate::serviceaccount::ServiceAccountOptions,
    /// kube-apiserver's `--max-requests-inflight` and `--max-mutating-requests-inflight`, with
    /// the per-user queues and the cap on a user's watches (`crate::fairness`).
    pub fairness: crate::fairness::FairnessOptions,
    /// Bounds on connections: how many (in all, per client IP) and how long a client may take
    /// to send a request's head (`crate::limits`).
    pub connections: crate::limits::ConnectionLimits,
    /// kube-apiserver's `--audit-log-path` (`-`: standard output); `None` writes no audit log.
    pub audit_log_path: Option<PathBuf>,
    /// kube-apiserver's `--audit-policy-file` (`audit.k8s.io/v1` `Policy`); `None`: every
    /// request at `Metadata`.
    pub audit_policy_file: Option<PathBuf>,
    /// `--audit-log-maxsize` (megabytes, 0: never rotate) and `--audit-log-maxbackup`.
    pub audit_log_max_size_mb: u64,
    pub audit_log_max_backups: usize,
    /// kube-apiserver's `--etcd-servers` and friends: keep every object in etcd (`None`: the
    /// embedded redb store, `DATA/store.redb`). Its compaction follows `history_revisions` and
    /// `compaction_interval`.
    pub etcd: Option<skiff_store::EtcdStoreOptions>,
}

impl ServerOptions {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerOptions {
            data_dir: data_dir.into(),
            listen,
            history_revisions: 10_000,
            compaction_interval: Duration::from_secs(60),
            network: crate::alloc::NetworkConfig::default(),
            authorization_modes: vec![
                crate::rbac::AuthorizationMode::Node,
                crate::rbac::AuthorizationMode::Rbac,
            ],
            token_auth_file: None,
            client_ca_file: None,
            encryption_provider_config: None,
            service_accounts: crate::serviceaccount::ServiceAccountOptions::default(),
            fairness: crate::fairness::FairnessOptions::default(),
            connections: crate::limits::ConnectionLimits::default(),
            audit_log_path: None,
            audit_policy_file: None,
            audit_log_max_size_mb: 0,
            audit_log_max_backups: 0,
            etcd: None,
        }
    }
}

/// A running server: its address, its files, and a way to stop it.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub url: String,
    pub kubeconfig_path: PathBuf,
    pub admin_token: String,
    pub ca_cert_pem: String,
    pub store: Arc<dyn Store>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Keeps this server in the `kubernetes` endpoints (`crate::apiservers`).
    endpoints: tokio::task::JoinHandle<()>,
    audit: Option<Arc<crate::audit::Auditor>>,
    /// Whether `start` opened the store (then `shutdown` closes it).
    owns_store: bool,
    /// The bounds on requests in flight (what they refused: `Fairness::rejected`).
    pub fairness: Arc<crate::fairness::Fairness>,
    /// What the server's `/metrics` serves: add a registry to serve it there too (the
    /// controllers' when they run in this process).
    pub metrics: skiff_telemetry::metrics::Exposition,
}

impl ServerHandle {
    /// Stops accepting, ends watches (their responses end as a stream does: clients reconnect
    /// elsewhere), lets requests in flight finish for up to [`SHUTDOWN_GRACE`], takes this
    /// server out of the `kubernetes` endpoints, flushes the audit log, and closes the store
    /// `start` opened (its pending writes committed; a store given to `start_with_store` stays
    /// open for its owner).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let _ = self.endpoints.await;
        if let Some(audit) = &self.audit {
            audit.flush().await;
        }
        if self.owns_store
            && let Err(err) = self.store.close().await
        {
            tracing::warn!(error = %err, "closing the store");
        }
    }
}

/// Opens the store (etcd when `opts.etcd` is set, else redb in the data directory), prepares PKI and kubeconfig, and starts serving.
pub async fn start(opts: ServerOptions) -> Result<ServerHandle> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| Error::DataDir {
        path: dir.clone(),
        source,
    })?;
    let store: Arc<dyn Store> = match &opts.etcd {
        Some(etcd) => {
            let mut etcd = etcd.clone();
            etcd.compaction_retain = opts.history_revisions;
            etcd.compaction_interval = opts.compaction_interval;
            Arc::new(skiff_store::EtcdStore::connect(etcd).await?)
        }
        None => {
            let mut store_opts = skiff_store::RedbStoreOptions::new(dir.join("store.redb"));
            store_opts.compaction_retain = opts.history_revisions;
            store_opts.compaction_interval = opts.compaction_interval;
            Arc::new(skiff_store::RedbStore::open_async(store_opts).await?)
        }
    };
    let mut handle = start_with_store(opts, store).await?;
    handle.owns_store = true;
    Ok(handle)
}

/// As `start`, with a store the caller opened.
pub async fn start_with_store(opts: ServerOptions, store: Arc<dyn Store>) -> Result<ServerHandle> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| Error::DataDir {
        path: dir.clone(),
        source,
    })?;
    opts.network.check()?;
    let static_users = match opts.token_auth_file.clone() {
        Some(path) => {
            let users = tokio::task::spawn_blocking(move || crate::auth::tokenfile::load(&path))
                .await
                .map_err(|e| Error::Tls(e.to_string()))??;
            tracing::info!(users = users.len(), "static token users loaded");
            users
        }
        None => Vec::new(),
    };
    let mut store_metrics = skiff_telemetry::metrics::Registry::default();
    store.register_metrics(&mut store_metrics);
    let store = encrypted(store, opts.encryption_provider_config.as_deref()).await?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: opts.listen,
        source,
    })?;
    let (pki, service_accounts, kubelet_client_token) =
        credentials(dir.clone(), addr, opts.service_accounts.clone()).await?;
    let service_accounts = Arc::new(service_accounts);
    bootstrap(store.clone(), &opts.network, addr, &service_accounts).await?;
    let url = pki::server_url(addr);
    let kubeconfig_path = dir.join("admin.kubeconfig");
    let kubeconfig = pki::kubeconfig(&url, &pki.ca_cert_pem, "admin", &pki.admin_token);
    pki::write_private(&kubeconfig_path, kubeconfig.as_bytes(), 0o600)?;
    write_component_kubeconfigs(&dir, &url, &pki.ca_cert_pem).await?;

    let client_ca_pem = match &opts.client_ca_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::ClientCa {
            path: path.clone(),
            message: e.to_string(),
        })?,
        None => pki.ca_cert_pem.clone(),
    };
    let client_auth = crate::auth::x509::ClientAuth::new(&client_ca_pem).map_err(|message| {
        match &opts.client_ca_file {
            Some(path) => Error::ClientCa {
                path: path.clone(),
                message,
            },
            None => Error::Tls(message),
        }
    })?;
    let tls = tls_config(&pki, client_auth.clone()).map_err(|e| match &opts.client_ca_file {
        Some(path) => Error::ClientCa {
            path: path.clone(),
            message: e.to_string(),
        },
        None => e,
    })?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let fairness = crate::fairness::Fairness::new(opts.fairness.clone());
    let audit = match &opts.audit_log_path {
        Some(path) => {
            let policy = match &opts.audit_policy_file {
                Some(file) => crate::audit::Policy::load(file)?,
                None => crate::audit::Policy::metadata_for_all(),
            };
            let sink = crate::audit::AuditSink::path(path)
                .with_rotation(opts.audit_log_max_size_mb, opts.audit_log_max_backups);
            Some(crate::audit::Auditor::start(policy, sink)?)
        }
        None => None,
    };
    let mut state = AppState::new(
        store.clone(),
        vec![
            (pki.admin_token.clone(), UserInfo::admin("admin")),
            (
                kubelet_client_token,
                UserInfo::new(skiff_meta::names::KUBELET_CLIENT_USER, &[]),
            ),
        ]
        .into_iter()
        .chain(static_users)
        .collect(),
    )
    .with_token_authenticator(Arc::new(crate::bootstraptoken::BootstrapTokens))
    .with_shutdown(shutdown_rx.clone())
    .with_authorization_modes(&opts.authorization_modes)
    .map_err(Error::Authorization)?
    .with_network(opts.network.clone())
    .with_service_accounts(service_accounts.clone())
    .with_token_authenticator(Arc::new(crate::serviceaccount::ServiceAccountAuthenticator))
    .with_fairness(fairness.clone());
    if let Some(audit) = &audit {
        state = state.with_audit(audit.clone());
    }
    let metrics = state.metrics.exposition().clone();
    metrics.add(store_metrics);
    let router = app(Arc::new(state));
    let endpoints = tokio::spawn(crate::apiservers::keep(
        AppState::new(store.clone(), Vec::new()).with_network(opts.network.clone()),
        crate::bootstrap::me(addr),
        shutdown_rx.clone(),
    ));
    let task = tokio::spawn(serve(
        listener,
        tls,
        client_auth,
        router,
        opts.connections.clone(),
        shutdown_rx,
    ));
    tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "API server listening");
    Ok(ServerHandle {
        addr,
        url,
        kubeconfig_path,
        admin_token: pki.admin_token,
        ca_cert_pem: pki.ca_cert_pem,
        store,
        shutdown: shutdown_tx,
        task,
        endpoints,
        audit,
        owns_store: false,
        fairness,
        metrics,
    })
}

/// The data directory's credentials — the CA and this server's serving certificate, the admin
/// token, the service-account signing key, the API server's kubelet-client token — read, or made
/// by the first server to start, under the directory's credentials lock: servers sharing one
/// data directory (several API servers on one etcd) starting at once agree on one set. Each
/// server signs its own serving certificate with the shared CA (its names: loopback, `localhost`,
/// its listen address), so any of them, or a load balancer on loopback before them, verifies.
async fn credentials(
    dir: PathBuf,
    addr: SocketAddr,
    sa_opts: crate::serviceaccount::ServiceAccountOptions,
) -> Result<(pki::Pki, crate::serviceaccount::ServiceAccounts, String)> {
    tokio::task::spawn_blocking(move || {
        let _lock = pki::CredentialsLock::acquire(&dir)?;
        let pki = pki::load_or_create(&dir, addr)?;
        let service_accounts = crate::serviceaccount::ServiceAccounts::load_or_create(
            &dir,
            &sa_opts,
            pki.ca_cert_pem.clone(),
        )?;
        let kubelet_client_token =
            crate::subresources::node_proxy::load_or_create_kubelet_client_token(&dir)?;
        Ok((pki, service_accounts, kubelet_client_token))
    })
    .await
    .map_err(|e| Error::Tls(e.to_string()))?
}

/// The server's TLS: its certificate, and client certificates asked for (not required), whose
/// chains `client_auth` verifies once the connection is up.
fn tls_config(
    pki: &pki::Pki,
    client_auth: Arc<crate::auth::x509::ClientAuth>,
) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("server key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(client_auth)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long shutdown waits for requests in flight (watches end at once) before closing their
/// connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    client_auth: Arc<crate::auth::x509::ClientAuth>,
    router: axum::Router,
    limits: crate::limits::ConnectionLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let options = skiff_serve::ServeOptions {
        name: "API server",
        limits,
        tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
        protocols: skiff_serve::Protocols::Http1AndHttp2,
        drain: SHUTDOWN_GRACE,
    };
    let make_service = move |peer: &skiff_serve::Peer<'_>| {
        // The verified client certificate's user goes with every request of the connection;
        // the authentication middleware uses it without a bearer token.
        let cert_user = peer
            .tls
            .and_then(|session| session.peer_certificates())
            .and_then(|chain| client_auth.user(chain))
            .map(crate::auth::x509::PeerCertificate);
        let addr = peer.addr;
        TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                if let Some(user) = &cert_user {
                    request.extensions_mut().insert(user.clone());
                }
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(addr));
                request
            },
        ))
    };
    let stopped = async move {
        let _ = shutdown.changed().await;
        tracing::info!("API server shutting down");
    };
    skiff_serve::serve(listener, options, make_service, stopped).await;
}

/// The kubeconfig of the controller manager `skiff server` and `skiff up` run (client
/// certificate `system:kube-controller-manager`), beside `admin.kubeconfig` in the data directory.
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "controller-manager.kubeconfig";
/// The kubeconfig of their scheduler (client certificate `system:kube-scheduler`).
pub const SCHEDULER_KUBECONFIG: &str = "scheduler.kubeconfig";

/// How long the components' client certificates are valid; they are minted again at every start.
const COMPONENT_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Writes the controller manager's and the scheduler's kubeconfigs: client certificates signed
/// by the cluster CA (`DATA/pki/ca.key`), in no group, so their RBAC roles
/// (`rbac::components`) are all they may do — only `admin.kubeconfig` is `system:masters`.
async fn write_component_kubeconfigs(
    dir: &std::path::Path,
    url: &str,
    ca_cert_pem: &str,
) -> Result<()> {
    let (dir, url, ca) = (dir.to_path_buf(), url.to_string(), ca_cert_pem.to_string());
    tokio::task::spawn_blocking(move || {
        let ca_key_path = dir.join("pki").join("ca.key");
        let ca_key = std::fs::read_to_string(&ca_key_path).map_err(|source| Error::DataDir {
            path: ca_key_path,
            source,
        })?;
        for (file, user) in [
            (
                CONTROLLER_MANAGER_KUBECONFIG,
                crate::rbac::components::CONTROLLER_MANAGER_USER,
            ),
            (
                SCHEDULER_KUBECONFIG,
                crate::rbac::components::SCHEDULER_USER,
            ),
        ] {
            let (cert, key) =
                pki::client_certificate(&ca, &ca_key, user, &[], COMPONENT_CERTIFICATE_LIFETIME)?;
            let kubeconfig = pki::client_kubeconfig(&url, &ca, user, &cert, &key, None);
            pki::write_private(&dir.join(file), kubeconfig.as_bytes(), 0o600)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Tls(e.to_string()))?
}

/// Writes the server's own objects through the write path, as the server's user, before it serves.
async fn bootstrap(
    store: Arc<dyn Store>,
    network: &crate::alloc::NetworkConfig,
    addr: SocketAddr,
    service_accounts: &Arc<crate::serviceaccount::ServiceAccounts>,
) -> Result<()> {
    let state = AppState::new(store, Vec::new())
        .with_network(network.clone())
        .with_service_accounts(service_accounts.clone());
    crate::bootstrap::run(&state, addr)
        .await
        .map_err(Error::Bootstrap)?;
    crate::rbac::reconcile::run(&state)
        .await
        .map_err(Error::Bootstrap)
}

/// The store seen through the encryption-at-rest configuration, when one is given: every stored
/// value of a covered resource must open with it first, else start-up fails naming the key.
async fn encrypted(
    store: Arc<dyn Store>,
    config: Option<&std::path::Path>,
) -> Result<Arc<dyn Store>> {
    let Some(path) = config else {
        return Ok(store);
    };
    let config = crate::encryption::EncryptionConfig::load(path)?;
    let wrapped = crate::encryption::EncryptedStore::new(store, config);
    let (checked, stale) = wrapped.verify().await?;
    tracing::info!(config = %path.display(), checked, stale, "encryption at rest configured");
    Ok(Arc::new(wrapped))
}
