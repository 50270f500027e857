//! Flags selecting and tuning the in-process scheduler and controllers of `skiff server`/`skiff up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ControllerArgs {
    /// Do not run the workload controllers.
    #[arg(long)]
    no_controllers: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    no_scheduler: bool,
    /// Controllers to run: `*` for all, names to pick, `-name` to drop (e.g. `*,-deployment`).
    #[arg(long, default_value = "*")]
    controllers: String,
    /// Seconds a node may go without renewing its Lease before it is marked Unknown.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Seconds pods tolerate an unreachable or not-ready node before they are evicted.
    #[arg(long, default_value_t = 300)]
    pod_eviction_timeout: u64,
    /// Run the controllers without electing a leader through the
    /// kube-system/skiff-controller-manager Lease.
    #[arg(long)]
    no_leader_elect: bool,
    /// PEM CA certificate the csrsigning controller issues `kubernetes.io/kube-apiserver-client`
    /// certificates from (default: the server data directory's `pki/ca.crt`).
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// PEM private key of that CA (default: the server data directory's `pki/ca.key`).
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// Lifetime of issued certificates, and the most a request's expirationSeconds gets.
    #[arg(long, default_value = "8760h0m0s")]
    cluster_signing_duration: String,
    /// How often the HorizontalPodAutoscaler controller syncs every HPA (a Go duration).
    #[arg(long, default_value = "15s")]
    horizontal_pod_autoscaler_sync_period: String,
    /// The scale-down stabilization window of an HPA that sets none (a Go duration).
    #[arg(long, default_value = "5m0s")]
    horizontal_pod_autoscaler_downscale_stabilization: String,
    /// How far from its target a metric may be before the HPA scales (a fraction).
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, how long its cpu samples count only once it is ready and measured
    /// over a full window since (a Go duration).
    #[arg(long, default_value = "5m0s")]
    horizontal_pod_autoscaler_cpu_initialization_period: String,
    /// After a pod starts, how long it may be unready and still count as never ready (a Go
    /// duration).
    #[arg(long, default_value = "30s")]
    horizontal_pod_autoscaler_initial_readiness_delay: String,
}

impl ControllerArgs {
    /// The HorizontalPodAutoscaler controller's settings from the flags.
    fn hpa_options(&self) -> anyhow::Result<skiff_controllers::hpa::HpaOptions> {
        let duration = |flag: &str, value: &str| {
            skiff_meta::duration::parse_go_duration(value)
                .with_context(|| format!("--{flag} {value:?}"))
        };
        if !(0.0..1.0).contains(&self.horizontal_pod_autoscaler_tolerance) {
            anyhow::bail!(
                "--horizontal-pod-autoscaler-tolerance {}: must be at least 0 and below 1",
                self.horizontal_pod_autoscaler_tolerance
            );
        }
        let sync_period = duration(
            "horizontal-pod-autoscaler-sync-period",
            &self.horizontal_pod_autoscaler_sync_period,
        )?;
        if sync_period.is_zero() {
            anyhow::bail!("--horizontal-pod-autoscaler-sync-period must be above zero");
        }
        Ok(skiff_controllers::hpa::HpaOptions {
            sync_period,
            tolerance: self.horizontal_pod_autoscaler_tolerance,
            cpu_initialization_period: duration(
                "horizontal-pod-autoscaler-cpu-initialization-period",
                &self.horizontal_pod_autoscaler_cpu_initialization_period,
            )?,
            initial_readiness_delay: duration(
                "horizontal-pod-autoscaler-initial-readiness-delay",
                &self.horizontal_pod_autoscaler_initial_readiness_delay,
            )?,
            downscale_stabilization: duration(
                "horizontal-pod-autoscaler-downscale-stabilization",
                &self.horizontal_pod_autoscaler_downscale_stabilization,
            )?,
        })
    }

    /// The CA the csrsigning controller signs with: the flags' files, else the CA of the data
    /// directory holding the server's admin kubeconfig (`skiff server`/`skiff up`), else none.
    fn signing_ca(
        &self,
        kubeconfig: &Path,
    ) -> anyhow::Result<Option<skiff_controllers::csrsigning::SigningCa>> {
        let duration = skiff_meta::duration::parse_go_duration(&self.cluster_signing_duration)
            .with_context(|| {
                format!(
                    "--cluster-signing-duration {:?}",
                    self.cluster_signing_duration
                )
            })?;
        let pki = kubeconfig.parent().map(|dir| dir.join("pki"));
        let (cert, key) = match (
            &self.cluster_signing_cert_file,
            &self.cluster_signing_key_file,
        ) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => match pki {
                Some(pki) if pki.join("ca.crt").exists() && pki.join("ca.key").exists() => {
                    (pki.join("ca.crt"), pki.join("ca.key"))
                }
                _ => return Ok(None),
            },
            _ => anyhow::bail!(
                "--cluster-signing-cert-file and --cluster-signing-key-file go together"
            ),
        };
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        Ok(Some(skiff_controllers::csrsigning::SigningCa {
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
            duration,
        }))
    }

    /// Starts what the flags ask for as clients of the server whose admin kubeconfig is
    /// `kubeconfig`: the controllers with the server's `controller-manager.kubeconfig` and the
    /// scheduler with its `scheduler.kubeconfig` (their own identities, which RBAC limits), from
    /// the same directory; the admin kubeconfig only when those are missing.
    pub(crate) async fn start(
        &self,
        kubeconfig: &Path,
        url: &str,
    ) -> anyhow::Result<Option<skiff_controllers::Running>> {
        let mut opts = skiff_controllers::Options::default();
        opts.select(&self.controllers)?;
        if self.no_controllers {
            opts.controllers.clear();
        }
        opts.scheduler = !self.no_scheduler;
        opts.node_monitor_grace_period = Duration::from_secs(self.node_monitor_grace_period);
        opts.pod_eviction_timeout = Duration::from_secs(self.pod_eviction_timeout);
        opts.cluster_signing = self.signing_ca(kubeconfig)?;
        opts.root_ca = cluster_ca(kubeconfig)?;
        opts.hpa = self.hpa_options()?;
        if !opts.scheduler && opts.controllers.is_empty() {
            return Ok(None);
        }
        let own = |file: &str| {
            kubeconfig
                .parent()
                .map(|dir| dir.join(file))
                .filter(|path| path.exists())
        };
        let manager = own(skiff_api::server::CONTROLLER_MANAGER_KUBECONFIG);
        let client = client_of_server(manager.as_deref().unwrap_or(kubeconfig), url)
            .await
            .context("connecting the controllers to the API server")?;
        if let Some(path) = own(skiff_api::server::SCHEDULER_KUBECONFIG).filter(|_| opts.scheduler)
        {
            let scheduler = client_of_server(&path, url)
                .await
                .context("connecting the scheduler to the API server")?;
            opts.scheduler_client = Some(skiff_controllers::OwnClient(scheduler));
        }
        if self.no_leader_elect {
            return Ok(Some(skiff_controllers::start(client, opts)));
        }
        // The same server restarting keeps its identity and takes the lease back at once.
        let election = skiff_controllers::leader::ElectionOptions {
            identity: format!("skiff-server@{url}"),
            ..Default::default()
        };
        Ok(Some(skiff_controllers::start_elected(
            client, opts, election,
        )))
    }
}

impl ControllerArgs {
    /// [`start`](Self::start) beside `server`, in its process (their metrics served at its
    /// `/metrics`); with the ready file's keys of the server (`apiServer`, `kubeconfig`).
    pub(crate) async fn start_beside(
        &self,
        server: &skiff_api::ServerHandle,
    ) -> anyhow::Result<(
        Option<skiff_controllers::Running>,
        serde_json::Map<String, serde_json::Value>,
    )> {
        let controllers = self.start(&server.kubeconfig_path, &server.url).await?;
        if controllers.is_some() {
            server
                .metrics
                .add(skiff_controllers::runner::metrics_registry());
        }
        let mut ready = serde_json::Map::new();
        ready.insert("apiServer".into(), server.url.clone().into());
        ready.insert(
            "kubeconfig".into(),
            server.kubeconfig_path.display().to_string().into(),
        );
        Ok((controllers, ready))
    }
}

/// A client with a kubeconfig's credentials, talking to the server at `url` (this process's):
/// API servers sharing a data directory (on one etcd) each rewrite its kubeconfigs with their
/// own address, so the file may name another server, which may die while this one lives.
async fn client_of_server(kubeconfig: &Path, url: &str) -> anyhow::Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))?;
    config.cluster_url = url
        .parse()
        .with_context(|| format!("the server URL {url:?}"))?;
    Ok(kube::Client::try_from(config)?)
}

/// The cluster CA (PEM) of a kubeconfig's current cluster, which `root-ca-cert-publisher`
/// publishes as every namespace's `kube-root-ca.crt`.
fn cluster_ca(kubeconfig: &Path) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cluster_name = config
        .current_context
        .as_ref()
        .and_then(|current| config.contexts.iter().find(|c| &c.name == current))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = config
        .clusters
        .iter()
        .find(|c| cluster_name.as_ref().is_none_or(|n| &c.name == n))
        .and_then(|c| c.cluster.as_ref());
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("the kubeconfig's certificate-authority-data is not base64")?;
        return Ok(Some(
            String::from_utf8(pem).context("the cluster CA is not PEM text")?,
        ));
    }
    match &cluster.certificate_authority {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )),
        None => Ok(None),
    }
}
