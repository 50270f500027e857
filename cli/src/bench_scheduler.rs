//! `skiff bench scheduler`: an in-process API server, simulated nodes (skiff-testkit), and the
//! scheduler and controllers as its clients.

use anyhow::Context;

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
pub(crate) async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
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
    let s =
        skiff_testkit::bench::scheduler_throughput(client.clone(), args.nodes, args.pods).await?;
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
        let took = skiff_testkit::bench::deployment_available(client, nodes, args.replicas).await?;
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
