//! `skiff bench api`: measures the API server on this machine — the fsync floor of the data
//! disk, durable creates/s at several client counts, GET latency, a 10k-pod list, and watch
//! fan-out — and prints the figures as a Markdown table (optionally appending it to a file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use http::Request;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand)]
enum BenchWhat {
    /// Benchmark the API server (in-process, over HTTPS on loopback).
    ///
    /// Example: skiff bench api --dir /var/tmp/skiff-bench --append BENCHMARKS.md
    Api(ApiBenchArgs),
    /// Benchmark the scheduler and controllers on simulated nodes.
    ///
    /// Example: skiff bench scheduler --nodes 1000 --pods 10000 --append BENCHMARKS.md
    Scheduler(crate::bench_scheduler::SchedulerBenchArgs),
    /// Benchmark wasm pods on a real node: start latency, throughput against `wasmtime serve`,
    /// memory per idle pod.
    ///
    /// Example: skiff bench pods --pods 100 --idle 1000,10000
    Pods(crate::bench_pods::PodsBenchArgs),
    /// Benchmark Services, ingress and scale from zero on two real nodes: hello through the
    /// ingress against `wasmtime serve`, the latency of one Service hop in-process and across
    /// nodes, first requests from zero replicas, routing-table updates.
    ///
    /// Example: skiff bench services --rounds 3 --cold-starts 50 --updates 50
    Services(crate::bench_services::ServicesBenchArgs),
    /// Benchmark Linux container pods against wasm pods on a real node (root only): create ->
    /// Running side by side, memory per idle pod, where the container's start time goes.
    ///
    /// Example: skiff bench oci --pods 30 --append BENCHMARKS.md
    Oci(crate::bench_oci::OciBenchArgs),
    /// Benchmark fairness: one user floods with concurrent LISTs, another does sequential
    /// GETs; the second user's latency and the first's 429s, fairness on and off.
    ///
    /// Example: skiff bench fairness --flood 400 --seconds 10 --append BENCHMARKS.md
    Fairness(crate::bench_fairness::FairnessBenchArgs),
    /// Benchmark `kubectl top pods -A`: the `metrics.k8s.io` list over many pods on simulated
    /// nodes that serve canned summaries, cold and warm.
    ///
    /// Example: skiff bench top --nodes 100 --pods 10000 --append BENCHMARKS.md
    Top(crate::bench_top::TopBenchArgs),
    /// Benchmark Kubernetes' scalability envelope: one API server (a `skiff server` process),
    /// the controllers and scheduler, simulated nodes; times, latencies and RSS against the SLOs.
    ///
    /// Example: skiff bench scale --nodes 5000 --pods 150000 --append BENCHMARKS.md
    Scale(crate::bench_scale::ScaleBenchArgs),
    /// Benchmark store growth: ConfigMaps created, patched and deleted at full speed; the redb
    /// file and event log during the run, after compaction, against the live data.
    ///
    /// Example: skiff bench churn --seconds 600 --append BENCHMARKS.md
    Churn(crate::bench_scale::ChurnBenchArgs),
    /// Benchmark crash safety: SIGKILL a `skiff server` process under concurrent writers,
    /// restart it on the same data directory, check every acknowledged write; restart times.
    ///
    /// Example: skiff bench crash --kills 50 --clients 64 --append BENCHMARKS.md
    Crash(crate::bench_crash::CrashBenchArgs),
}

#[derive(clap::Args)]
struct ApiBenchArgs {
    /// Directory on the disk to measure; a fresh data directory is made inside it.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Seconds each create-throughput level runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pods in the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent watchers in the fan-out benchmark.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
    /// Also measure durable creates on an API server over etcd: these client URLs
    /// (comma-separated), or `local` for a single-member etcd (Debian's `etcd`) started in
    /// `--dir`, on the same disk as the redb figures.
    #[arg(long, value_name = "URL[,URL]|local")]
    etcd_servers: Option<String>,
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchWhat::Api(a) => api(a).await,
        BenchWhat::Scheduler(a) => crate::bench_scheduler::run(a).await,
        BenchWhat::Pods(a) => crate::bench_pods::run(a).await,
        BenchWhat::Services(a) => crate::bench_services::run(a).await,
        BenchWhat::Oci(a) => crate::bench_oci::run(a).await,
        BenchWhat::Fairness(a) => crate::bench_fairness::run(a).await,
        BenchWhat::Top(a) => crate::bench_top::run(a).await,
        BenchWhat::Scale(a) => crate::bench_scale::run(a).await,
        BenchWhat::Churn(a) => crate::bench_scale::churn(a).await,
        BenchWhat::Crash(a) => crate::bench_crash::run(a).await,
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The cost of one durable write on this disk: write 4 KiB and fdatasync, many times.
fn fsync_floor(dir: &Path) -> Result<(Duration, Duration)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0u8; 4096];
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    samples.sort();
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

pub(crate) async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"key": "value"}}))
        .expect("valid configmap")
}

/// Creates/s with `clients` concurrent clients (one connection each) for `seconds`.
async fn creates(
    kubeconfig: &Path,
    ns: &str,
    clients: usize,
    seconds: u64,
) -> Result<(f64, Duration)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(client_for(kubeconfig).await?, ns);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                api.create(
                    &PostParams::default(),
                    &configmap(&format!("c{clients}-{c}-{i}")),
                )
                .await?;
                latencies.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().max(Duration::from_secs(seconds));
    all.sort();
    Ok((
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.99),
    ))
}

async fn api(args: ApiBenchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-")
        .tempdir_in(&args.dir)?;
    let data = tmp.path().join("data");
    println!("data directory: {}", data.display());
    std::fs::create_dir_all(&data)?;

    let (fsync_p50, fsync_p99) = fsync_floor(&data)?;
    println!(
        "fsync floor: p50 {} ms, p99 {} ms",
        ms(fsync_p50),
        ms(fsync_p99)
    );

    let mut opts = skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse()?);
    // The watchers all connect from 127.0.0.1, each on a connection of its own.
    opts.connections.max_connections_per_client_ip = 0;
    let server = skiff_api::start(opts)
        .await
        .context("starting the server")?;
    let kubeconfig = server.kubeconfig_path.clone();
    let client = client_for(&kubeconfig).await?;
    for ns in ["bench", "list", "watch"] {
        let body = serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        let req = Request::post("/api/v1/namespaces")
            .header("Content-Type", "application/json")
            .body(body)?;
        client.request_text(req).await?;
    }

    let mut rows = vec![(
        "fsync floor (4 KiB write + fdatasync)".to_string(),
        format!(
            "p50 {} µs, p99 {} µs",
            fsync_p50.as_micros(),
            fsync_p99.as_micros()
        ),
    )];
    for clients in [1usize, 8, 64] {
        let (rate, p99) = creates(&kubeconfig, "bench", clients, args.seconds).await?;
        println!(
            "durable creates with {clients} clients: {rate:.0}/s (p99 {} ms)",
            ms(p99)
        );
        rows.push((
            format!("durable creates/s, {clients} client(s)"),
            format!("{rate:.0}/s (p99 {} ms)", ms(p99)),
        ));
    }

    // GET latency of one object, sequentially from one client.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    cms.create(&PostParams::default(), &configmap("target"))
        .await?;
    let mut samples = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        cms.get("target").await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let (g50, g99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!("GET: p50 {} ms, p99 {} ms", ms(g50), ms(g99));
    rows.push((
        "GET one object".into(),
        format!("p50 {} ms, p99 {} ms", ms(g50), ms(g99)),
    ));

    // List of N pods: created by 64 writers, then listed whole (raw JSON, no client decoding).
    let pods_created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let per = args.pods.div_ceil(64);
    for w in 0..64 {
        let client = client_for(&kubeconfig).await?;
        let total = args.pods;
        let created = pods_created.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let n = w * per + i;
                if n >= total {
                    break;
                }
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{n}"), "labels": {"app": "bench", "n": n.to_string()}},
                    "spec": {"containers": [{"name": "app", "image": "127.0.0.1:5000/samples/hello-http:1.0", "ports": [{"containerPort": 8080}]}]}});
                let req = Request::post("/api/v1/namespaces/list/pods")
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&pod)?)?;
                client.request_text(req).await?;
                created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut samples = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let body = client
            .request_text(Request::get("/api/v1/namespaces/list/pods").body(Vec::new())?)
            .await?;
        samples.push(t.elapsed());
        bytes = body.len();
    }
    samples.sort();
    let list_med = percentile(&samples, 0.5);
    println!(
        "list of {} pods: median {} ms ({} bytes)",
        args.pods,
        ms(list_med),
        bytes
    );
    rows.push((
        format!("list {} pods", args.pods),
        format!(
            "median {} ms of 5 ({:.1} MB)",
            ms(list_med),
            bytes as f64 / 1e6
        ),
    ));

    // Watch fan-out: N watchers on one namespace; one create; time until each has the event.
    let watch_api: Api<ConfigMap> = Api::namespaced(client.clone(), "watch");
    let rv = client
        .request_text(Request::get("/api/v1/namespaces/watch/configmaps").body(Vec::new())?)
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())?
        .and_then(|v| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "0".into());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(tokio::sync::Barrier::new(args.watchers + 1));
    let mut watchers = Vec::new();
    let clients: Vec<kube::Client> = {
        let mut v = Vec::new();
        for _ in 0..16 {
            v.push(client_for(&kubeconfig).await?);
        }
        v
    };
    for w in 0..args.watchers {
        let api: Api<ConfigMap> = Api::namespaced(clients[w % clients.len()].clone(), "watch");
        let tx = tx.clone();
        let rv = rv.clone();
        let ready = ready.clone();
        watchers.push(tokio::spawn(async move {
            let stream = api.watch(&WatchParams::default().timeout(120), &rv).await;
            ready.wait().await;
            let mut stream = match stream {
                Ok(s) => s.boxed(),
                Err(e) => return Err(anyhow::anyhow!("watch {w}: {e}")),
            };
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    let _ = tx.send(Instant::now());
                    break;
                }
            }
            anyhow::Ok(())
        }));
    }
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    watch_api
        .create(&PostParams::default(), &configmap("fanout"))
        .await?;
    let mut arrivals = Vec::new();
    while arrivals.len() < args.watchers {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(at)) => arrivals.push(at.duration_since(t0)),
            _ => break,
        }
    }
    arrivals.sort();
    let delivered = arrivals.len();
    let (w50, wmax) = (
        percentile(&arrivals, 0.5),
        arrivals.last().copied().unwrap_or_default(),
    );
    println!(
        "watch fan-out: {delivered}/{} watchers got the event; p50 {} ms, last {} ms",
        args.watchers,
        ms(w50),
        ms(wmax)
    );
    rows.push((
        format!("one event to {} watchers", args.watchers),
        format!(
            "{delivered}/{} delivered; p50 {} ms, all by {} ms",
            args.watchers,
            ms(w50),
            ms(wmax)
        ),
    ));
    for w in watchers {
        w.abort();
    }
    server.shutdown().await;
    if let Some(servers) = &args.etcd_servers {
        rows.extend(etcd_creates(servers, &tmp.path().join("etcd"), args.seconds).await?);
    }

    let machine = machine_description();
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = format!(
        "\n### API server — {date}\n\nCommand: `skiff bench api --dir {} --seconds {} --pods {} --watchers {}{}` ({} build)  \nMachine: {machine}\n\n| measure | result |\n|---|---|\n",
        args.dir.display(),
        args.seconds,
        args.pods,
        args.watchers,
        args.etcd_servers
            .as_ref()
            .map(|servers| format!(" --etcd-servers {servers}"))
            .unwrap_or_default(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    publish(&md, args.append.as_deref())
}

/// Durable creates/s with 1, 8 and 64 clients on an API server over etcd (`local`: a
/// single-member etcd started in `dir`), under a key prefix of its own.
async fn etcd_creates(servers: &str, dir: &Path, seconds: u64) -> Result<Vec<(String, String)>> {
    std::fs::create_dir_all(dir)?;
    let mut local = None;
    let endpoints: Vec<String> = if servers == "local" {
        let etcd = skiff_testkit::etcd::Etcd::start(&dir.join("etcd"))
            .context("starting a local etcd (apt-get install etcd-server)")?;
        let endpoints = vec![etcd.endpoint()];
        local = Some(etcd);
        endpoints
    } else {
        servers.split(',').map(str::to_owned).collect()
    };
    let mut opts = skiff_api::ServerOptions::new(dir.join("server"), "127.0.0.1:0".parse()?);
    opts.connections.max_connections_per_client_ip = 0;
    let mut etcd = skiff_api::EtcdStoreOptions::new(endpoints);
    etcd.prefix = format!("/skiff-bench-{}", std::process::id());
    opts.etcd = Some(etcd);
    let server = skiff_api::start(opts)
        .await
        .context("starting the server on etcd")?;
    let kubeconfig = server.kubeconfig_path.clone();
    let client = client_for(&kubeconfig).await?;
    let body = serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    )?;
    let req = Request::post("/api/v1/namespaces")
        .header("Content-Type", "application/json")
        .body(body)?;
    client.request_text(req).await?;
    let mut rows = Vec::new();
    for clients in [1usize, 8, 64] {
        let (rate, p99) = creates(&kubeconfig, "bench", clients, seconds).await?;
        println!(
            "durable creates on etcd with {clients} clients: {rate:.0}/s (p99 {} ms)",
            ms(p99)
        );
        rows.push((
            format!("durable creates/s, {clients} client(s), etcd"),
            format!("{rate:.0}/s (p99 {} ms)", ms(p99)),
        ));
    }
    server.shutdown().await;
    drop(local);
    Ok(rows)
}

/// Prints a benchmark's markdown and, with `--append FILE`, appends it there.
pub(crate) fn publish(md: &str, append: Option<&Path>) -> Result<()> {
    println!("{md}");
    if let Some(path) = append {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(md.as_bytes())?;
        println!("appended to {}", path.display());
    }
    Ok(())
}

pub(crate) fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {:.0} GiB RAM",
        mem as f64 / 1024.0 / 1024.0
    )
}
