//! Flags selecting and tuning the in-process scheduler and controllers of `skiff server`/`skiff up`.

use std::path::Path;
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
}

impl ControllerArgs {
    /// Starts what the flags ask for as clients of the server behind `kubeconfig`.
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
        if !opts.scheduler && opts.controllers.is_empty() {
            return Ok(None);
        }
        let client = skiff_controllers::client_from_kubeconfig(kubeconfig)
            .await
            .context("connecting the controllers to the API server")?;
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

#[derive(clap::Args)]
pub(crate) struct SchedulerBenchArgs {
    /// Directory for the benchmark server's data directory.
    #[arg(long, default_value = "/var/tmp")]
    dir: std::path::PathBuf,
    /// Simulated nodes for the scheduling run.
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Replicas of the Deployment whose time to Available is measured (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    replicas: i32,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<std::path::PathBuf>,
}

/// `skiff bench scheduler`: an in-process API server, simulated nodes, and the scheduler and
/// controllers as its clients.
pub(crate) async fn bench(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-")
        .tempdir_in(&args.dir)?;
    let data = tmp.path().join("sched");
    std::fs::create_dir_all(&data)?;
    let server = skiff_api::start(skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse()?))
        .await
        .context("starting the server")?;
    let client = skiff_controllers::client_from_kubeconfig(&server.kubeconfig_path).await?;
    let s = skiff_testkit::bench::scheduler_throughput(client.clone(), args.nodes, args.pods)
        .await?;
    let mut table = String::from("| measurement | result |\n|---|---|\n");
    table.push_str(&format!(
        "| schedule {} pods onto {} simulated nodes | {:.1} s, {:.0} pods/s (creating them took {:.1} s) |\n",
        s.pods,
        s.nodes,
        s.schedule_time.as_secs_f64(),
        s.pods_per_second(),
        s.create_time.as_secs_f64()
    ));
    println!("{table}");
    server.shutdown().await;
    if args.replicas > 0 {
        // A fresh server, so the Deployment only sees its own simulated nodes.
        let data = tmp.path().join("deploy");
        std::fs::create_dir_all(&data)?;
        let server = skiff_api::start(skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse()?))
            .await
            .context("starting the server")?;
        let client = skiff_controllers::client_from_kubeconfig(&server.kubeconfig_path).await?;
        let nodes = (args.replicas as usize / 50).max(3);
        let took =
            skiff_testkit::bench::deployment_available(client, nodes, args.replicas).await?;
        server.shutdown().await;
        let row = format!(
            "| {}-replica Deployment fully Available ({} simulated nodes) | {:.1} s |\n",
            args.replicas,
            nodes,
            took.as_secs_f64()
        );
        println!("{row}");
        table.push_str(&row);
    }
    if let Some(path) = args.append {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(f, "\n{table}")?;
    }
    Ok(())
}
