//! `skiff bench pods`: wasm pods on a real node — pod create -> Running and -> first HTTP
//! answer, the hello sample's throughput through the node endpoint against `wasmtime serve`
//! (same component, same load tool), and the node's memory per idle pod.
//!
//! The API server and the registry run in this process; the node runs as a child process
//! (`skiff node`, this binary) so that its resident memory can be read on its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;

use crate::bench::{machine_description, ms, percentile};

/// The hello sample (the same file `skiff up` seeds into its registry).
pub(crate) const HELLO_WASM: &[u8] = include_bytes!("../../samples/hello-http/hello-http.wasm");
pub(crate) const NAMESPACE: &str = "bench";
pub(crate) const NODE: &str = "bench-node";
const PORT: u16 = 8080;

#[derive(clap::Args)]
pub(crate) struct PodsBenchArgs {
    /// Directory for the server, registry and node state (a fresh one is made inside it).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Pods in the latency run, created one after another.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Idle pod totals to reach, in order (cumulative), e.g. `1000,10000`; `0` skips.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    idle: Vec<usize>,
    /// The node's pod CIDR (a /16 holds 65,533 pods; the node's default /24 only 253).
    #[arg(long, default_value = "10.64.0.0/16")]
    pod_cidr: String,
    /// The load generator (wrk) to run; the throughput part is skipped if it is missing.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// The wasmtime CLI to compare with; the comparison is skipped if it is missing.
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// Rounds of (skiff, wasmtime serve) load runs, back to back; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each load run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connections the load generator keeps open.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pods created at once in the idle run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// A plain HTTP/1.1 client with keep-alive (for the node endpoint on loopback).
pub(crate) type Http = HyperClient<HttpConnector, Empty<Bytes>>;

pub(crate) fn http_client() -> Http {
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

/// GETs `url`; returns the status code (0 when the connection failed) and the body.
pub(crate) async fn get(http: &Http, url: &str, token: Option<&str>) -> (u16, Bytes) {
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let Ok(req) = req.body(Empty::new()) else {
        return (0, Bytes::new());
    };
    match http.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, body)
        }
        Err(_) => (0, Bytes::new()),
    }
}

pub(crate) async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

pub(crate) fn hello_pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "hello"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "hello",
                "image": image,
                "ports": [{"containerPort": PORT}],
            }],
        },
    }))?)
}

/// Resident set size of a process from `/proc/PID/status`, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// When each pod of the namespace was first seen Running, from one watch; waiters are woken by
/// each change, never by a timer.
#[derive(Clone)]
pub(crate) struct RunningTimes(Arc<tokio::sync::watch::Sender<HashMap<String, Instant>>>);

impl Default for RunningTimes {
    fn default() -> Self {
        RunningTimes(Arc::new(tokio::sync::watch::Sender::new(HashMap::new())))
    }
}

impl RunningTimes {
    /// When pod `name` was first seen Running, waiting for it until `deadline`.
    pub(crate) async fn running_at(&self, name: &str, deadline: Instant) -> Option<Instant> {
        let mut rx = self.0.subscribe();
        let seen = tokio::time::timeout_at(deadline.into(), rx.wait_for(|m| m.contains_key(name)));
        seen.await.ok()?.ok()?.get(name).copied()
    }

    /// Waits until at least `target` pods named `prefix…` were seen Running or `deadline`
    /// passes; the count seen.
    pub(crate) async fn wait_count(&self, prefix: &str, target: usize, deadline: Instant) -> usize {
        let count =
            |m: &HashMap<String, Instant>| m.keys().filter(|k| k.starts_with(prefix)).count();
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout_at(deadline.into(), rx.wait_for(|m| count(m) >= target)).await;
        count(&self.0.borrow())
    }

    pub(crate) async fn watch(self, api: Api<Pod>) {
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let Ok(pod) = ev else { continue };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if let (true, Some(name)) = (running, pod.metadata.name) {
                self.0.send_if_modified(|m| {
                    if m.contains_key(&name) {
                        return false;
                    }
                    m.insert(name, Instant::now());
                    true
                });
            }
        }
    }
}

/// The node child process.
pub(crate) struct NodeProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
}

pub(crate) async fn spawn_node(
    kubeconfig: &Path,
    dir: &Path,
    registry: SocketAddr,
    pod_cidr: &str,
    max_pods: usize,
) -> Result<NodeProcess> {
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("node")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--name", NODE])
        .arg("--data-dir")
        .arg(dir.join("node"))
        .args(["--listen", "127.0.0.1:0", "--pod-cidr", pod_cidr])
        .arg("--max-pods")
        .arg(max_pods.to_string())
        .arg("--registry")
        .arg(registry.to_string())
        .arg("--ready-file")
        .arg(dir.join("node.ready"))
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} node", exe.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the node exited at once"))?;
    let ready =
        crate::ready::wait_for_file(&dir.join("node.ready"), &mut child, Duration::from_secs(60))
            .await
            .with_context(|| {
                format!(
                    "the node did not start; see {}",
                    dir.join("node.log").display()
                )
            })?;
    let addr: SocketAddr = ready
        .get("nodeEndpoint")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("the ready file names no nodeEndpoint"))?
        .parse()?;
    Ok(NodeProcess { child, pid, addr })
}

/// Finds a program on PATH (or takes a path as given).
pub(crate) fn find_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkResult {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// Responses that were not 2xx/3xx, plus socket errors.
    pub(crate) errors: u64,
}

fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    Some(Duration::from_secs_f64(v * scale))
}

/// Parses the output of `wrk --latency`.
pub(crate) fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_wrk_duration(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_wrk_duration(v);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(WrkResult {
        requests_per_sec: rps?,
        p50: p50?,
        p99: p99?,
        errors,
    })
}

async fn run_wrk(
    wrk: &Path,
    args: &PodsBenchArgs,
    url: &str,
    token: Option<&str>,
) -> Result<WrkResult> {
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency");
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).ok_or_else(|| anyhow!("cannot read wrk's output:\n{text}"))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `url` answers 200.
async fn wait_for_200(http: &Http, url: &str, token: Option<&str>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if get(http, url, token).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

fn pod_url(node: SocketAddr, name: &str) -> String {
    format!("http://{node}/pods/{NAMESPACE}/{name}/{PORT}/")
}

/// One row of the results table.
struct Row(String, String);

pub(crate) async fn run(args: PodsBenchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-pods-")
        .tempdir_in(&args.dir)?;
    let dir = tmp.path().to_path_buf();
    println!("state directory: {}", dir.display());
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if build == "debug" {
        println!("note: a debug build; use a release build for figures");
    }

    // The node's explicit pod CIDR is the whole cluster CIDR, so the API server accepts it.
    let mut server_opts = skiff_api::ServerOptions::new(dir.join("api"), "127.0.0.1:0".parse()?);
    let cluster: skiff_api::Ipv4Cidr = args.pod_cidr.parse()?;
    server_opts.network.cluster_cidr = cluster;
    server_opts.network.node_cidr_mask = cluster.prefix_len();
    let server = skiff_api::start(server_opts)
        .await
        .context("starting the API server")?;
    let registry = skiff_registry::start(
        "127.0.0.1:0".parse()?,
        skiff_registry::RegistryConfig::new(dir.join("registry")),
    )
    .await
    .context("starting the registry")?;
    let registry_addr = registry.local_addr();
    let image = format!("{registry_addr}/samples/hello-http:1.0");
    {
        let mut opts = skiff_registry::ClientOptions::new(dir.join("push-cache"));
        opts.token = Some(registry.token().to_string());
        let client = skiff_registry::RegistryClient::new(opts)?;
        client
            .push_wasm(&image, Bytes::from_static(HELLO_WASM))
            .await
            .context("pushing the hello sample")?;
    }
    let wasm_file = dir.join("hello-http.wasm");
    std::fs::write(&wasm_file, HELLO_WASM)?;

    let client = kube_client(&server.kubeconfig_path).await?;
    let ns_body = serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )?;
    client
        .request_text(
            http::Request::post("/api/v1/namespaces")
                .header("Content-Type", "application/json")
                .body(ns_body)?,
        )
        .await
        .context("creating the bench namespace")?;

    // Room for every pod this run creates (the node reports the smaller of this and its CIDR).
    let max_pods = (1 + args.pods + args.idle.iter().copied().max().unwrap_or(0)).max(110);
    let mut node = spawn_node(
        &server.kubeconfig_path,
        &dir,
        registry_addr,
        &args.pod_cidr,
        max_pods,
    )
    .await?;
    println!(
        "node {NODE}: pid {}, endpoint http://{}, pod CIDR {}",
        node.pid, node.addr, args.pod_cidr
    );
    let capacity = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(NODE)
        .await
        .ok()
        .and_then(|n| n.status?.allocatable?.get("pods").map(|q| q.0.clone()))
        .unwrap_or_else(|| "?".into());
    println!("node allocatable pods: {capacity}");
    // The node endpoint admits only the API server's own credential.
    let token = std::fs::read_to_string(dir.join("api/pki/kubelet-client.token"))
        .context("reading the API server's node credential")?
        .trim()
        .to_string();
    let http = http_client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let running = RunningTimes::default();
    let watch_task = tokio::spawn(running.clone().watch(pods.clone()));

    let result = measure(
        &args, &node, &token, &http, &pods, &running, &image, &wasm_file,
    )
    .await;

    watch_task.abort();
    let _ = node.child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
    server.shutdown().await;
    let _ = registry.shutdown(Duration::from_secs(5)).await;
    let mut rows = result?;
    rows.insert(
        0,
        Row(
            "node allocatable `pods`".into(),
            format!(
                "{capacity} (pod CIDR {}, --max-pods {max_pods})",
                args.pod_cidr
            ),
        ),
    );

    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let idle: Vec<String> = args.idle.iter().map(|n| n.to_string()).collect();
    let mut md = format!(
        "\n### Wasm pods — {date}\n\nCommand: `skiff bench pods --pods {} --idle {} --pod-cidr {} \
         --rounds {} --seconds {} --connections {} --threads {}` ({build} build)  \n\
         Machine: {}\n\n| measure | result |\n|---|---|\n",
        args.pods,
        idle.join(","),
        args.pod_cidr,
        args.rounds,
        args.seconds,
        args.connections,
        args.threads,
        machine_description(),
    );
    for Row(k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    crate::bench::publish(&md, args.append.as_deref())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &PodsBenchArgs,
    node: &NodeProcess,
    token: &str,
    http: &Http,
    pods: &Api<Pod>,
    running: &RunningTimes,
    image: &str,
    wasm_file: &Path,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let rss0 = rss_bytes(node.pid)?;
    println!("node RSS at start: {:.1} MiB", rss0 as f64 / 1048576.0);
    rows.push(Row(
        "node RSS, no pods".into(),
        format!("{:.1} MiB", rss0 as f64 / 1048576.0),
    ));

    // 0. The first pod pulls the image and compiles it: reported on its own.
    let t0 = Instant::now();
    pods.create(&PostParams::default(), &hello_pod("warm-0", image)?)
        .await?;
    if !wait_for_200(
        http,
        &pod_url(node.addr, "warm-0"),
        Some(token),
        Duration::from_secs(120),
    )
    .await
    {
        bail!("the first pod did not answer within 120 s");
    }
    let first = t0.elapsed();
    println!(
        "first pod (pull + compile) create -> serving: {} ms",
        ms(first)
    );
    rows.push(Row(
        "first pod, create -> serving (image pull + compile)".into(),
        format!("{} ms", ms(first)),
    ));

    // 1. Create -> Running and create -> first 200, one pod after another.
    let mut to_running = Vec::new();
    let mut to_serving = Vec::new();
    for i in 0..args.pods {
        let name = format!("lat-{i}");
        let pod = hello_pod(&name, image)?;
        let url = pod_url(node.addr, &name);
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        if !wait_for_200(http, &url, Some(token), Duration::from_secs(30)).await {
            bail!("pod {name} did not answer within 30 s");
        }
        to_serving.push(t.elapsed());
        let deadline = Instant::now() + Duration::from_secs(30);
        let Some(at) = running.running_at(&name, deadline).await else {
            bail!("pod {name} was not seen Running within 30 s");
        };
        to_running.push(at.saturating_duration_since(t));
    }
    to_running.sort();
    to_serving.sort();
    let (r50, r99) = (percentile(&to_running, 0.5), percentile(&to_running, 0.99));
    let (s50, s99) = (percentile(&to_serving, 0.5), percentile(&to_serving, 0.99));
    println!(
        "{} pods: create -> Running p50 {} ms p99 {} ms; create -> serving p50 {} ms p99 {} ms",
        args.pods,
        ms(r50),
        ms(r99),
        ms(s50),
        ms(s99)
    );
    if args.pods > 0 {
        rows.push(Row(
            format!("create -> Running ({} pods, one at a time)", args.pods),
            format!("p50 {} ms, p99 {} ms", ms(r50), ms(r99)),
        ));
        rows.push(Row(
            format!(
                "create -> first HTTP 200 via the node endpoint ({} pods)",
                args.pods
            ),
            format!("p50 {} ms, p99 {} ms (aim p99 ≤ 100 ms)", ms(s50), ms(s99)),
        ));
    }

    // 2. Throughput: the node endpoint against `wasmtime serve`, same component, same wrk.
    rows.extend(throughput(args, node, token, http, wasm_file).await?);

    // 3. Idle pods: cumulative totals; RSS delta per pod and one request to each.
    let base = rss_bytes(node.pid)?;
    let mut created = 0usize;
    for &target in &args.idle {
        if target == 0 || target <= created {
            continue;
        }
        let t = Instant::now();
        create_many(pods, image, created, target, args.concurrency).await?;
        let created_in = t.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        let n = running.wait_count("idle-", target, deadline).await;
        if n < target {
            bail!("only {n} of {target} idle pods Running after 600 s");
        }
        let all_running = t.elapsed();
        let (ok, failed) = answer_all(http, node.addr, token, target, args.concurrency).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_bytes(node.pid)?;
        let per_pod = rss.saturating_sub(base) as f64 / target as f64;
        println!(
            "{target} idle pods: created in {:.1} s, all Running after {:.1} s; {ok}/{target} answered ({failed} failed); node RSS {:.1} MiB, {:.1} KiB per pod",
            created_in.as_secs_f64(),
            all_running.as_secs_f64(),
            rss as f64 / 1048576.0,
            per_pod / 1024.0
        );
        rows.push(Row(
            format!("{target} idle hello pods"),
            format!(
                "{ok}/{target} answered one request; node RSS {:.1} MiB (+{:.1} MiB), {:.1} KiB per pod (aim < 1 MiB); all Running {:.1} s after the first create",
                rss as f64 / 1048576.0,
                rss.saturating_sub(base) as f64 / 1048576.0,
                per_pod / 1024.0,
                all_running.as_secs_f64()
            ),
        ));
        created = target;
    }
    Ok(rows)
}

/// Creates pods `idle-{from}` .. `idle-{to - 1}` with `concurrency` creators.
async fn create_many(
    pods: &Api<Pod>,
    image: &str,
    from: usize,
    to: usize,
    concurrency: usize,
) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(from..to)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(
                    &PostParams::default(),
                    &hello_pod(&format!("idle-{i}"), image)?,
                )
                .await?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Sends one GET to each idle pod; counts 200s and failures.
async fn answer_all(
    http: &Http,
    node: SocketAddr,
    token: &str,
    total: usize,
    concurrency: usize,
) -> (usize, usize) {
    let statuses: Vec<u16> = futures::stream::iter(0..total)
        .map(|i| {
            let url = pod_url(node, &format!("idle-{i}"));
            async move { get(http, &url, Some(token)).await.0 }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    (ok, statuses.len() - ok)
}

async fn throughput(
    args: &PodsBenchArgs,
    node: &NodeProcess,
    token: &str,
    http: &Http,
    wasm_file: &Path,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let Some(wrk) = find_program(&args.wrk) else {
        println!(
            "SKIP throughput: {} not found (install wrk: apt-get install wrk, or pass --wrk PATH)",
            args.wrk.display()
        );
        rows.push(Row(
            "hello throughput".into(),
            "skipped: wrk not found".into(),
        ));
        return Ok(rows);
    };
    let wasmtime = find_program(&args.wasmtime);
    if wasmtime.is_none() {
        println!(
            "SKIP wasmtime serve comparison: {} not found (pass --wasmtime PATH)",
            args.wasmtime.display()
        );
    }
    let skiff_url = pod_url(node.addr, "warm-0");
    let mut serve = match &wasmtime {
        Some(bin) => {
            let port = free_port()?;
            let child = tokio::process::Command::new(bin)
                .arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg(wasm_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} serve", bin.display()))?;
            let url = format!("http://127.0.0.1:{port}/");
            if !wait_for_200(http, &url, None, Duration::from_secs(60)).await {
                bail!("wasmtime serve did not answer on {url} within 60 s");
            }
            Some((child, url))
        }
        None => None,
    };
    // Both servers are warm before the measured rounds.
    let (status, body) = get(http, &skiff_url, Some(token)).await;
    if status != 200 {
        bail!("the node endpoint answered {status}: {body:?}");
    }
    let mut skiff_runs = Vec::new();
    let mut serve_runs = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let s = run_wrk(&wrk, args, &skiff_url, Some(token)).await?;
        println!(
            "round {round}: skiff node endpoint {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
            s.requests_per_sec,
            ms(s.p50),
            ms(s.p99),
            s.errors
        );
        skiff_runs.push(s);
        if let Some((_, url)) = &serve {
            let w = run_wrk(&wrk, args, url, None).await?;
            println!(
                "round {round}: wasmtime serve        {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                w.requests_per_sec,
                ms(w.p50),
                ms(w.p99),
                w.errors
            );
            serve_runs.push(w);
        }
    }
    if let Some((child, _)) = &mut serve {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let summary = |runs: &[WrkResult]| {
        let rps = median(runs.iter().map(|r| r.requests_per_sec).collect());
        let p50 = median(runs.iter().map(|r| r.p50.as_secs_f64()).collect());
        let p99 = median(runs.iter().map(|r| r.p99.as_secs_f64()).collect());
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        (rps, p50 * 1000.0, p99 * 1000.0, errors)
    };
    let load = format!(
        "wrk -t{} -c{} -d{}s, median of {}",
        args.threads,
        args.connections,
        args.seconds,
        skiff_runs.len()
    );
    let (s_rps, s_p50, s_p99, s_err) = summary(&skiff_runs);
    rows.push(Row(
        "hello via the node endpoint (`/pods/NS/POD/8080/`)".into(),
        format!("{s_rps:.0} req/s, p50 {s_p50:.2} ms, p99 {s_p99:.2} ms, {s_err} errors ({load})"),
    ));
    if !serve_runs.is_empty() {
        let (w_rps, w_p50, w_p99, w_err) = summary(&serve_runs);
        rows.push(Row(
            "hello via `wasmtime serve` (same .wasm)".into(),
            format!(
                "{w_rps:.0} req/s, p50 {w_p50:.2} ms, p99 {w_p99:.2} ms, {w_err} errors ({load})"
            ),
        ));
        let ratios: Vec<f64> = skiff_runs
            .iter()
            .zip(&serve_runs)
            .map(|(s, w)| s.requests_per_sec / w.requests_per_sec)
            .collect();
        let ratio = s_rps / w_rps;
        println!(
            "throughput ratio skiff / wasmtime serve: {ratio:.2}x (per round: {})",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push(Row(
            "throughput ratio, node endpoint / wasmtime serve".into(),
            format!(
                "{ratio:.2}x of medians; per round {} (aim ≥ 0.8x); p99 ratio {:.2}x",
                ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s_p99 / w_p99
            ),
        ));
    } else {
        rows.push(Row(
            "wasmtime serve comparison".into(),
            "skipped: wasmtime not found".into(),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:8080/\n  1 threads and 16 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   635.91us    0.89ms  12.92ms   93.69%\n    \
            Req/Sec    26.20k     8.07k   32.00k    86.54%\n  Latency Distribution\n     50%  250.00us\n     \
            75%  491.00us\n     90%  700.00us\n     99%    5.01ms\n  130402 requests in 5.00s, 17.10MB read\n  \
            Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\n\
            Requests/sec:  26080.40\nTransfer/sec:      3.42MB\n";
        let r = parse_wrk(out).expect("parsed");
        assert!((r.requests_per_sec - 26080.40).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(250));
        assert_eq!(r.p99, Duration::from_micros(5010));
        assert_eq!(r.errors, 7);
        assert!(parse_wrk("wrk: connection refused").is_none());
        assert_eq!(
            parse_wrk_duration("1.50s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_wrk_duration("12"), None);
    }
}
