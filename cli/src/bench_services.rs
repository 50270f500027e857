//! `skiff bench services`: Services, ingress and scale from zero on real nodes — hello through
//! a node's ingress against `wasmtime serve` (same component, same load tool), the latency one
//! Service hop adds in-process and across nodes, the first request to a Deployment at zero
//! replicas, and the time from a pod turning Ready to the first request another node's router
//! sends it.
//!
//! The API server, the scheduler and the controllers run in this process; the two nodes run as
//! child processes (`skiff node`, this binary, each with its ingress on a loopback port), so
//! traffic between them crosses real sockets as it does in a cluster.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_meta::names::{SCALE_TO_ZERO, SCALE_TO_ZERO_IDLE};

use crate::bench::{machine_description, ms, percentile};
use crate::bench_pods::{Http, WrkResult, find_program, free_port, http_client, median, parse_wrk};

/// The hello sample (answers every request with a fixed text).
const HELLO_WASM: &[u8] = include_bytes!("../../samples/hello-http/hello-http.wasm");
/// The frontend sample (answers `POD PATH`; `/call?url=URL` calls URL and answers its body).
const FRONTEND_WASM: &[u8] = include_bytes!("../../samples/frontend/frontend.wasm");
const NAMESPACE: &str = "bench";
const NODE_A: &str = "bench-a";
const NODE_B: &str = "bench-b";
const PORT: u16 = 8080;
/// How long one awaited step (a pod, a route, an answer) may take before the run fails.
const STEP: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub(crate) struct ServicesBenchArgs {
    /// Directory for the server and node state (a fresh one is made inside it).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The load generator (wrk); the throughput part is skipped if it is missing.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// The wasmtime CLI to compare with; the comparison is skipped if it is missing.
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// Rounds, alternated between the compared paths; medians are reported.
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
    /// Requests per path and round in the Service hop run (sent one at a time, interleaved).
    #[arg(long, default_value_t = 2000)]
    hop_requests: usize,
    /// First requests from zero replicas to time.
    #[arg(long, default_value_t = 50)]
    cold_starts: usize,
    /// Routing-table updates (pod Ready on one node -> first request routed from another) to time.
    #[arg(long, default_value_t = 50)]
    updates: usize,
    /// Record a `perf` profile of the ingress node during one extra load run, into this directory.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// One row of the results table.
struct Row(String, String);

/// A node child process and where it listens.
struct NodeProcess {
    child: tokio::process::Child,
    pid: u32,
    endpoint: SocketAddr,
    ingress: SocketAddr,
}

async fn spawn_node(kubeconfig: &Path, dir: &Path, name: &str, zone: &str) -> Result<NodeProcess> {
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))
        .with_context(|| format!("creating {name}.log"))?;
    let ready_file = dir.join(format!("{name}.ready"));
    let mut child = tokio::process::Command::new(&exe)
        .arg("node")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--name", name, "--zone", zone])
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(["--listen", "127.0.0.1:0", "--ingress-listen", "127.0.0.1:0"])
        .arg("--allow-file-images")
        .arg("--ready-file")
        .arg(&ready_file)
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} node", exe.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("node {name} exited at once"))?;
    let ready = crate::ready::wait_for_file(&ready_file, &mut child, STEP)
        .await
        .with_context(|| format!("node {name} did not start; see {name}.log"))?;
    let addr = |key: &str| -> Result<SocketAddr> {
        ready
            .get(key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("node {name}'s ready file names no {key}"))?
            .parse()
            .with_context(|| format!("node {name}'s {key}"))
    };
    Ok(NodeProcess {
        endpoint: addr("nodeEndpoint")?,
        ingress: addr("ingress")?,
        child,
        pid,
    })
}

/// What the benchmark's pod watch saw of one pod, with local timestamps.
#[derive(Clone, Debug)]
struct PodSeen {
    app: String,
    created: Instant,
    bound: Option<Instant>,
    ready: Option<Instant>,
    gone: bool,
}

/// Every pod of the namespace as one watch saw it; waiters are woken on each event.
#[derive(Clone, Default)]
struct PodWatch {
    pods: Arc<Mutex<HashMap<String, PodSeen>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl PodWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodSeen>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self, api: Api<Pod>) {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    let Some(name) = p.metadata.name.clone() else {
                        continue;
                    };
                    let app = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app").cloned())
                        .unwrap_or_default();
                    let ready = skiff_meta::pod::is_pod_ready(&p);
                    let bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                    let mut pods = self.lock();
                    let seen = pods.entry(name).or_insert(PodSeen {
                        app,
                        created: now,
                        bound: None,
                        ready: None,
                        gone: false,
                    });
                    if bound && seen.bound.is_none() {
                        seen.bound = Some(now);
                    }
                    if ready && seen.ready.is_none() {
                        seen.ready = Some(now);
                    }
                }
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(name) = p.metadata.name
                        && let Some(seen) = self.lock().get_mut(&name)
                    {
                        seen.gone = true;
                    }
                }
                _ => continue,
            }
            self.changed.notify_waiters();
        }
    }

    /// Waits until `cond` holds over the pods seen; answers what `cond` returned.
    async fn until<T>(
        &self,
        what: &str,
        mut cond: impl FnMut(&HashMap<String, PodSeen>) -> Option<T>,
    ) -> Result<T> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if let Some(t) = cond(&self.lock()) {
                    return t;
                }
                changed.await;
            }
        };
        tokio::time::timeout(STEP, wait)
            .await
            .map_err(|_| anyhow!("timed out after {STEP:?} waiting for {what}"))
    }

    /// Waits until every pod of `app` is gone.
    async fn until_none(&self, app: &str) -> Result<()> {
        self.until(&format!("the pods of {app} to go"), |pods| {
            (!pods.values().any(|p| p.app == app && !p.gone)).then_some(())
        })
        .await
    }

    fn names(&self) -> HashSet<String> {
        self.lock().keys().cloned().collect()
    }
}

/// GETs `path` on `addr` with `Host: host`; answers the status (0 when the connection failed).
async fn get_host(http: &Http, addr: SocketAddr, host: &str, path: &str) -> u16 {
    // The body is read whole (in `get_answer`) so the connection goes back to the pool.
    get_answer(http, addr, host, path)
        .await
        .map_or(0, |(status, _)| status)
}

/// Asks `probe` again, 1 ms apart, until it answers `None` (done); fails after [`STEP`] with the
/// last `Some(what it saw)`. For router state, which has no API to watch.
async fn poll<F, Fut>(mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let deadline = Instant::now() + STEP;
    loop {
        let Some(seen) = probe().await? else {
            return Ok(());
        };
        if Instant::now() > deadline {
            bail!("{seen}, for {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One GET through `addr` for `host`: its status and body.
async fn get_answer(http: &Http, addr: SocketAddr, host: &str, path: &str) -> Result<(u16, Bytes)> {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let resp = http.request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// Sends GETs until one answers 200; fails after [`STEP`].
async fn until_200(http: &Http, addr: SocketAddr, host: &str, path: &str) -> Result<()> {
    poll(|| async move {
        let status = get_host(http, addr, host, path).await;
        Ok((status != 200)
            .then(|| format!("http://{host}{path} through {addr} answered {status}, not 200")))
    })
    .await
}

fn file_image(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A Deployment of `image` pinned to `node`, labelled `app: NAME`, serving port 8080 (`http`).
fn deployment(
    name: &str,
    image: &str,
    node: &str,
    replicas: i32,
    annotations: serde_json::Value,
) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": PORT}],
                    }],
                },
            },
        },
    }))?)
}

fn service(name: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }))?)
}

/// An Ingress sending every path of `NAME.localhost` to Service `NAME` port 80.
fn ingress(name: &str) -> Result<Ingress> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"rules": [{
            "host": format!("{name}.localhost"),
            "http": {"paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}},
            }]},
        }]},
    }))?)
}

/// The cluster the measurements run against.
struct Cluster {
    client: kube::Client,
    token: String,
    a: NodeProcess,
    b: NodeProcess,
    http: Http,
    pods: PodWatch,
    dir: PathBuf,
}

impl Cluster {
    /// Creates Deployment, Service and Ingress `name`.
    async fn app(
        &self,
        name: &str,
        wasm: &Path,
        node: &str,
        replicas: i32,
        annotations: serde_json::Value,
    ) -> Result<()> {
        let pp = PostParams::default();
        Api::<Deployment>::namespaced(self.client.clone(), NAMESPACE)
            .create(
                &pp,
                &deployment(name, &file_image(wasm), node, replicas, annotations)?,
            )
            .await
            .with_context(|| format!("creating Deployment {name}"))?;
        Api::<Service>::namespaced(self.client.clone(), NAMESPACE)
            .create(&pp, &service(name)?)
            .await
            .with_context(|| format!("creating Service {name}"))?;
        Api::<Ingress>::namespaced(self.client.clone(), NAMESPACE)
            .create(&pp, &ingress(name)?)
            .await
            .with_context(|| format!("creating Ingress {name}"))?;
        Ok(())
    }

    async fn scale(&self, name: &str, replicas: i32) -> Result<()> {
        Api::<Deployment>::namespaced(self.client.clone(), NAMESPACE)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .with_context(|| format!("scaling Deployment {name} to {replicas}"))?;
        Ok(())
    }

    /// Waits until Service `name`'s EndpointSlices list no endpoint.
    async fn until_no_endpoints(&self, name: &str) -> Result<()> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        skiff_testkit::inproc::wait_list(
            &slices,
            &format!("kubernetes.io/service-name={name}"),
            STEP,
            |s| s.iter().all(|s| s.endpoints.is_empty()),
        )
        .await?;
        Ok(())
    }
}

pub(crate) async fn run(args: ServicesBenchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-services-")
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
    std::fs::write(dir.join("hello-http.wasm"), HELLO_WASM)?;
    std::fs::write(dir.join("frontend.wasm"), FRONTEND_WASM)?;

    let server = skiff_api::start(skiff_api::ServerOptions::new(
        dir.join("api"),
        "127.0.0.1:0".parse()?,
    ))
    .await
    .context("starting the API server")?;
    let client = skiff_controllers::client_from_kubeconfig(&server.kubeconfig_path).await?;
    let controllers = skiff_controllers::start(
        skiff_controllers::client_from_kubeconfig(&server.kubeconfig_path).await?,
        skiff_controllers::Options::default(),
    );
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

    let a = spawn_node(&server.kubeconfig_path, &dir, NODE_A, "zone-a").await?;
    let b = spawn_node(&server.kubeconfig_path, &dir, NODE_B, "zone-b").await?;
    println!(
        "{NODE_A}: pid {}, endpoint {}, ingress {}; {NODE_B}: pid {}, endpoint {}, ingress {}",
        a.pid, a.endpoint, a.ingress, b.pid, b.endpoint, b.ingress
    );
    let nodes: Api<Node> = Api::all(client.clone());
    for name in [NODE_A, NODE_B] {
        skiff_testkit::inproc::wait_object(&nodes, name, STEP, |n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .await
        .with_context(|| format!("node {name} never became Ready"))?;
    }
    let pods = PodWatch::default();
    let watch_task = tokio::spawn(pods.clone().run(Api::namespaced(client.clone(), NAMESPACE)));
    let mut cluster = Cluster {
        client,
        // Node endpoints admit only the API server's own credential, not the admin's token.
        token: std::fs::read_to_string(dir.join("api/pki/kubelet-client.token"))
            .context("reading the API server's node credential")?
            .trim()
            .to_string(),
        a,
        b,
        http: http_client(),
        pods,
        dir: dir.clone(),
    };

    let result = measure(&args, &cluster).await;

    watch_task.abort();
    for node in [&mut cluster.a, &mut cluster.b] {
        let _ = node.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
    }
    controllers.shutdown().await;
    server.shutdown().await;
    let rows = result?;

    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = format!(
        "\n### Services, ingress and scale from zero — {date}\n\nCommand: `skiff bench services \
         --rounds {} --seconds {} --connections {} --threads {} --hop-requests {} --cold-starts {} \
         --updates {}` ({build} build)  \nMachine: {}\n\n| measure | result |\n|---|---|\n",
        args.rounds,
        args.seconds,
        args.connections,
        args.threads,
        args.hop_requests,
        args.cold_starts,
        args.updates,
        machine_description(),
    );
    for Row(k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    crate::bench::publish(&md, args.append.as_deref())
}

async fn measure(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    let hello = c.dir.join("hello-http.wasm");
    let frontend = c.dir.join("frontend.wasm");
    c.app("hello", &hello, NODE_A, 1, json!({})).await?;
    c.app("front", &frontend, NODE_A, 1, json!({})).await?;
    c.app("back-a", &frontend, NODE_A, 1, json!({})).await?;
    c.app("back-b", &frontend, NODE_B, 1, json!({})).await?;
    c.app(
        "cold",
        &hello,
        NODE_A,
        0,
        // The benchmark returns it to zero itself; the controller must not race it.
        json!({SCALE_TO_ZERO: "true", SCALE_TO_ZERO_IDLE: "1h"}),
    )
    .await?;
    c.app("late", &frontend, NODE_B, 0, json!({})).await?;

    let mut rows = Vec::new();
    rows.extend(throughput(args, c).await?);
    rows.extend(hops(args, c).await?);
    rows.extend(policies(args, c).await?);
    rows.extend(cold_starts(args, c).await?);
    rows.extend(updates(args, c).await?);
    Ok(rows)
}

/// wrk against `url`, with extra request headers.
async fn run_wrk(
    wrk: &Path,
    args: &ServicesBenchArgs,
    url: &str,
    headers: &[String],
) -> Result<WrkResult> {
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency");
    for h in headers {
        cmd.arg("-H").arg(h);
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

/// One compared path of the throughput run.
struct LoadPath {
    label: &'static str,
    url: String,
    headers: Vec<String>,
    runs: Vec<WrkResult>,
}

async fn throughput(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    let Some(wrk) = find_program(&args.wrk) else {
        println!(
            "SKIP throughput: {} not found (install wrk: apt-get install wrk, or pass --wrk PATH)",
            args.wrk.display()
        );
        return Ok(vec![Row(
            "hello throughput".into(),
            "skipped: wrk not found".into(),
        )]);
    };
    until_200(&c.http, c.a.ingress, "hello.localhost", "/").await?;
    let pod = c
        .pods
        .until("a ready hello pod", |pods| {
            pods.iter()
                .find(|(_, p)| p.app == "hello" && p.ready.is_some() && !p.gone)
                .map(|(n, _)| n.clone())
        })
        .await?;
    let mut paths = vec![
        LoadPath {
            label: "ingress (Ingress -> Service -> pod, same node)",
            url: format!("http://{}/", c.a.ingress),
            headers: vec!["Host: hello.localhost".into()],
            runs: Vec::new(),
        },
        LoadPath {
            label: "node endpoint (`/pods/NS/POD/8080/`, for reference)",
            url: format!("http://{}/pods/{NAMESPACE}/{pod}/{PORT}/", c.a.endpoint),
            headers: vec![format!("Authorization: Bearer {}", c.token)],
            runs: Vec::new(),
        },
    ];
    let wasmtime = find_program(&args.wasmtime);
    let mut serve = None;
    match &wasmtime {
        Some(bin) => {
            let port = free_port()?;
            let child = tokio::process::Command::new(bin)
                .arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg(c.dir.join("hello-http.wasm"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} serve", bin.display()))?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            until_200(&c.http, addr, "localhost", "/").await?;
            serve = Some(child);
            paths.push(LoadPath {
                label: "`wasmtime serve` (same .wasm)",
                url: format!("http://{addr}/"),
                headers: Vec::new(),
                runs: Vec::new(),
            });
        }
        None => println!(
            "SKIP wasmtime serve comparison: {} not found (pass --wasmtime PATH)",
            args.wasmtime.display()
        ),
    }
    for round in 1..=args.rounds.max(1) {
        for p in &mut paths {
            let r = run_wrk(&wrk, args, &p.url, &p.headers).await?;
            println!(
                "round {round}: {:<55} {:>7.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                p.label,
                r.requests_per_sec,
                ms(r.p50),
                ms(r.p99),
                r.errors
            );
            p.runs.push(r);
        }
    }
    if let Some(out) = &args.perf {
        profile(args, &wrk, c, &paths[0], out).await?;
    }
    if let Some(mut child) = serve {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    let load = format!(
        "wrk -t{} -c{} -d{}s, median of {} alternated rounds",
        args.threads,
        args.connections,
        args.seconds,
        args.rounds.max(1)
    );
    let summary = |runs: &[WrkResult]| {
        (
            median(runs.iter().map(|r| r.requests_per_sec).collect()),
            median(runs.iter().map(|r| r.p50.as_secs_f64() * 1e3).collect()),
            median(runs.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect()),
            runs.iter().map(|r| r.errors).sum::<u64>(),
        )
    };
    let mut rows = Vec::new();
    for p in &paths {
        let (rps, p50, p99, errors) = summary(&p.runs);
        rows.push(Row(
            format!("hello via {}", p.label),
            format!("{rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors ({load})"),
        ));
    }
    if let Some(w) = paths.get(2) {
        let ingress = &paths[0];
        let per_round: Vec<String> = ingress
            .runs
            .iter()
            .zip(&w.runs)
            .map(|(i, w)| format!("{:.2}", i.requests_per_sec / w.requests_per_sec))
            .collect();
        let (i_rps, _, i_p99, _) = summary(&ingress.runs);
        let (w_rps, _, w_p99, _) = summary(&w.runs);
        let line = format!(
            "{:.2}x of medians (per round {}; aim ≥ 1.5x); p99 {:.2}x of wasmtime's (aim ≤ 1)",
            i_rps / w_rps,
            per_round.join(", "),
            i_p99 / w_p99
        );
        println!("ingress / wasmtime serve: {line}");
        rows.push(Row("ratio ingress / `wasmtime serve`".into(), line));
    } else {
        rows.push(Row(
            "`wasmtime serve` comparison".into(),
            "skipped: wasmtime not found".into(),
        ));
    }
    Ok(rows)
}

/// `perf record` of a node for `seconds`, into `out/NAME.perf.data`.
fn perf_record(pid: u32, seconds: u64, out: &Path, name: &str) -> Result<tokio::process::Child> {
    tokio::process::Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out.join(format!("{name}.perf.data")))
        .args(["--", "sleep"])
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting perf record")
}

/// Sequential cross-node hops for `--seconds` while `perf record` samples both nodes.
async fn profile_hop(
    args: &ServicesBenchArgs,
    c: &Cluster,
    host: &str,
    path: &str,
    out: &Path,
) -> Result<()> {
    if find_program(Path::new("perf")).is_none() {
        println!("SKIP hop profile: perf not found");
        return Ok(());
    }
    std::fs::create_dir_all(out)?;
    let mut a = perf_record(c.a.pid, args.seconds, out, "hop-node-a")?;
    let mut b = perf_record(c.b.pid, args.seconds, out, "hop-node-b")?;
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut n = 0u64;
    while Instant::now() < until {
        timed_get(&c.http, c.a.ingress, host, path).await?;
        n += 1;
    }
    let _ = a.wait().await;
    let _ = b.wait().await;
    println!(
        "profiled {n} cross-node hops; profiles of both nodes in {}",
        out.display()
    );
    Ok(())
}

/// One more load run through the ingress while `perf record` samples the ingress node.
async fn profile(
    args: &ServicesBenchArgs,
    wrk: &Path,
    c: &Cluster,
    ingress: &LoadPath,
    out: &Path,
) -> Result<()> {
    let Some(perf) = find_program(Path::new("perf")) else {
        println!("SKIP profile: perf not found");
        return Ok(());
    };
    std::fs::create_dir_all(out)?;
    let data = out.join("ingress-node.perf.data");
    let mut rec = tokio::process::Command::new(perf)
        .args(["record", "-F", "999", "-g", "-p"])
        .arg(c.a.pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg(args.seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting perf record")?;
    let r = run_wrk(wrk, args, &ingress.url, &ingress.headers).await?;
    let _ = rec.wait().await;
    println!(
        "profiled run: {:.0} req/s; profile of node {NODE_A} in {} (perf report -i FILE)",
        r.requests_per_sec,
        data.display()
    );
    Ok(())
}

fn encode(url: &str) -> String {
    url.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Times one GET; fails on anything but 200.
async fn timed_get(http: &Http, addr: SocketAddr, host: &str, path: &str) -> Result<Duration> {
    let t = Instant::now();
    let status = get_host(http, addr, host, path).await;
    let d = t.elapsed();
    if status != 200 {
        bail!("http://{host}{path} through {addr} answered {status}");
    }
    Ok(d)
}

async fn hops(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    let host = "front.localhost";
    let local = format!("/call?url={}", encode("http://back-a/"));
    let remote = format!("/call?url={}", encode("http://back-b/"));
    // The backend pod on the same node called by its IP: the same wasm call without the
    // Service router, to tell the router's share of the hop from the guests'.
    let back_a: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let back_a_ip = back_a
        .list(&kube::api::ListParams::default().labels("app=back-a"))
        .await?
        .items
        .into_iter()
        .find_map(|p| p.status?.pod_ip)
        .ok_or_else(|| anyhow!("the back-a pod has no IP"))?;
    let direct = format!(
        "/call?url={}",
        encode(&format!("http://{back_a_ip}:{PORT}/"))
    );
    let paths = [
        ("frontend alone", "/".to_string()),
        ("frontend -> Service on the same node", local),
        (
            "frontend -> the same backend pod by IP (no Service)",
            direct,
        ),
        ("frontend -> Service on another node", remote),
    ];
    for (_, path) in &paths {
        until_200(&c.http, c.a.ingress, host, path).await?;
        // A `/call` answers 200 with the upstream's status on its first line.
        poll(|| async {
            let (_, body) = get_answer(&c.http, c.a.ingress, host, path).await?;
            let reached = !body.starts_with(b"upstream: ") || body.starts_with(b"upstream: 200");
            Ok((!reached).then(|| format!("{path} never reached its backend: {body:?}")))
        })
        .await?;
    }
    // Sequential requests over one keep-alive connection, the three paths interleaved so that
    // the machine's noise falls on all of them alike.
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    let mut round_p50s: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 1..=args.rounds.max(1) {
        let mut this: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
        for _ in 0..args.hop_requests {
            for (i, (_, path)) in paths.iter().enumerate() {
                this[i].push(timed_get(&c.http, c.a.ingress, host, path).await?);
            }
        }
        for (i, mut s) in this.into_iter().enumerate() {
            s.sort();
            round_p50s[i].push(percentile(&s, 0.5).as_secs_f64() * 1e6);
            println!(
                "round {round}: {:<40} p50 {:.0} µs, p99 {:.0} µs",
                paths[i].0,
                percentile(&s, 0.5).as_secs_f64() * 1e6,
                percentile(&s, 0.99).as_secs_f64() * 1e6
            );
            samples[i].extend(s);
        }
    }
    if let Some(out) = &args.perf {
        profile_hop(args, c, host, &paths[3].1, out).await?;
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut rows = Vec::new();
    let stats: Vec<(f64, f64)> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            (us(percentile(s, 0.5)), us(percentile(s, 0.99)))
        })
        .collect();
    let n = args.hop_requests * args.rounds.max(1);
    for (i, (label, _)) in paths.iter().enumerate() {
        let (p50, p99) = stats[i];
        let added = if i == 0 {
            String::new()
        } else {
            let per_round: Vec<String> = round_p50s[i]
                .iter()
                .zip(&round_p50s[0])
                .map(|(h, a)| format!("{:.0}", h - a))
                .collect();
            format!(
                "; **added p50 {:.0} µs** (per round {} µs), added p99 {:.0} µs{}",
                p50 - stats[0].0,
                per_round.join(", "),
                p99 - stats[0].1,
                if i == 1 { " (aim p50 < 100 µs)" } else { "" }
            )
        };
        rows.push(Row(
            format!("{label} (through the ingress, {n} sequential GETs)"),
            format!("p50 {p50:.0} µs, p99 {p99:.0} µs{added}"),
        ));
    }
    Ok(rows)
}

/// How many NetworkPolicies select the backend in the policy run.
const POLICIES: usize = 50;

/// The Service hop on one node with no NetworkPolicy in the cluster and with [`POLICIES`] of
/// them selecting the backend (the last one, by name, the only one that allows the call: every
/// policy is evaluated), rounds alternated.
async fn policies(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let host = "front.localhost";
    let path = format!("/call?url={}", encode("http://back-a/"));
    let api: Api<NetworkPolicy> = Api::namespaced(c.client.clone(), NAMESPACE);
    let policy = |name: String, from: serde_json::Value| -> Result<NetworkPolicy> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {"podSelector": {"matchLabels": {"app": "back-a"}}, "ingress": [{"from": [from]}]}
        }))?)
    };
    let refused = || async {
        let (status, _) = get_answer(&c.http, c.a.ingress, host, &path).await?;
        Ok((status == 200).then(|| format!("{path} still answered 200 under a denying policy")))
    };
    let mut p50s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=args.rounds.max(1) {
        for (with, label) in [(false, "0 policies"), (true, "50 policies")] {
            if with {
                for i in 0..POLICIES - 1 {
                    let from =
                        json!({"podSelector": {"matchLabels": {"app": format!("nobody-{i}")}}});
                    api.create(&PostParams::default(), &policy(format!("np-{i:02}"), from)?)
                        .await?;
                }
                // In force: the call is refused until the allowing policy comes.
                poll(refused).await?;
                let allow = policy("np-zz-allow".into(), json!({"namespaceSelector": {}}))?;
                api.create(&PostParams::default(), &allow).await?;
            }
            until_200(&c.http, c.a.ingress, host, &path).await?;
            let mut s = Vec::with_capacity(args.hop_requests);
            for _ in 0..args.hop_requests {
                s.push(timed_get(&c.http, c.a.ingress, host, &path).await?);
            }
            s.sort();
            let p50 = percentile(&s, 0.5).as_secs_f64() * 1e6;
            println!(
                "round {round}: Service hop with {label:<12} p50 {p50:.0} µs, p99 {:.0} µs",
                percentile(&s, 0.99).as_secs_f64() * 1e6
            );
            p50s[usize::from(with)].push(p50);
            samples[usize::from(with)].extend(s);
            if with {
                api.delete_collection(&Default::default(), &Default::default())
                    .await?;
            }
        }
    }
    let mut rows = Vec::new();
    for (i, label) in ["0", "50"].iter().enumerate() {
        samples[i].sort();
        let per_round: Vec<String> = p50s[i].iter().map(|p| format!("{p:.0}")).collect();
        rows.push(Row(
            format!(
                "frontend -> Service on the same node with {label} NetworkPolicies selecting the \
                 backend (through the ingress, {} sequential GETs)",
                samples[i].len()
            ),
            format!(
                "p50 {:.0} µs (per round {} µs), p99 {:.0} µs",
                percentile(&samples[i], 0.5).as_secs_f64() * 1e6,
                per_round.join(", "),
                percentile(&samples[i], 0.99).as_secs_f64() * 1e6
            ),
        ));
    }
    Ok(rows)
}

async fn cold_starts(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    let host = "cold.localhost";
    // Warm-up: the router learns the Service (until then: 503 not found) and the node compiles
    // the component; then back to zero.
    until_200(&c.http, c.a.ingress, host, "/").await?;
    c.scale("cold", 0).await?;
    c.pods.until_none("cold").await?;
    c.until_no_endpoints("cold").await?;

    // When a watch sees the Deployment scaled to one (the router's write, through the API).
    let scaled: Arc<Mutex<Option<Instant>>> = Arc::default();
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), NAMESPACE);
    let scaled_watch = tokio::spawn({
        let scaled = scaled.clone();
        let cfg = watcher::Config::default().fields("metadata.name=cold");
        let mut stream = watcher::watcher(deployments, cfg).boxed();
        async move {
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(d)) = ev
                    && d.spec.and_then(|s| s.replicas) == Some(1)
                {
                    let mut at = scaled.lock().unwrap_or_else(|e| e.into_inner());
                    at.get_or_insert_with(Instant::now);
                }
            }
        }
    });
    let mut total = Vec::new();
    let mut to_scaled = Vec::new();
    let mut to_bound = Vec::new();
    let mut to_pod = Vec::new();
    let mut to_ready = Vec::new();
    let mut failed = 0usize;
    for i in 0..args.cold_starts {
        let before = c.pods.names();
        *scaled.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let t0 = Instant::now();
        let status = get_host(&c.http, c.a.ingress, host, "/").await;
        let took = t0.elapsed();
        if status == 200 {
            total.push(took);
        } else {
            failed += 1;
            println!("cold start {i}: answered {status}");
        }
        let (created, bound, ready) = c
            .pods
            .until("the new cold pod Ready", |pods| {
                pods.iter()
                    .find(|(n, p)| p.app == "cold" && !before.contains(*n) && p.ready.is_some())
                    .map(|(_, p)| {
                        let ready = p.ready.unwrap_or(p.created);
                        (p.created, p.bound.unwrap_or(ready), ready)
                    })
            })
            .await?;
        if let Some(at) = *scaled.lock().unwrap_or_else(|e| e.into_inner()) {
            to_scaled.push(at.saturating_duration_since(t0));
        }
        to_pod.push(created.saturating_duration_since(t0));
        to_bound.push(bound.saturating_duration_since(t0));
        to_ready.push(ready.saturating_duration_since(t0));
        c.scale("cold", 0).await?;
        c.pods.until_none("cold").await?;
        c.until_no_endpoints("cold").await?;
    }
    scaled_watch.abort();
    total.sort();
    to_scaled.sort();
    to_bound.sort();
    to_pod.sort();
    to_ready.sort();
    let (p50, p99) = (percentile(&total, 0.5), percentile(&total, 0.99));
    println!(
        "{} cold starts: first 200 p50 {} ms, p99 {} ms ({failed} not 200)",
        total.len(),
        ms(p50),
        ms(p99)
    );
    Ok(vec![
        Row(
            format!(
                "first request from zero replicas -> 200, through the ingress ({} cold starts)",
                args.cold_starts
            ),
            format!(
                "p50 {} ms, **p99 {} ms**, max {} ms, {failed} not 200 (aim p99 ≤ 50 ms)",
                ms(p50),
                ms(p99),
                ms(total.last().copied().unwrap_or_default())
            ),
        ),
        Row(
            "cold start, stage: request -> the Deployment at one replica, seen by a watch".into(),
            format!(
                "p50 {} ms, p99 {} ms",
                ms(percentile(&to_scaled, 0.5)),
                ms(percentile(&to_scaled, 0.99))
            ),
        ),
        Row(
            "cold start, stage: request -> the new Pod seen by a watch".into(),
            format!(
                "p50 {} ms, p99 {} ms",
                ms(percentile(&to_pod, 0.5)),
                ms(percentile(&to_pod, 0.99))
            ),
        ),
        Row(
            "cold start, stage: request -> the Pod bound to a node, seen by a watch".into(),
            format!(
                "p50 {} ms, p99 {} ms",
                ms(percentile(&to_bound, 0.5)),
                ms(percentile(&to_bound, 0.99))
            ),
        ),
        Row(
            "cold start, stage: request -> its Ready seen by a watch".into(),
            format!(
                "p50 {} ms, p99 {} ms",
                ms(percentile(&to_ready, 0.5)),
                ms(percentile(&to_ready, 0.99))
            ),
        ),
    ])
}

async fn updates(args: &ServicesBenchArgs, c: &Cluster) -> Result<Vec<Row>> {
    let host = "late.localhost";
    // The router on node A knows the Service (503 "no endpoints" rather than "not found").
    poll(|| async {
        let (status, body) = get_answer(&c.http, c.a.ingress, host, "/").await?;
        let learned = status == 503 && !String::from_utf8_lossy(&body).contains("not found");
        Ok((!learned).then(|| {
            format!("node {NODE_A}'s router never learned Service late: {status} {body:?}")
        }))
    })
    .await?;

    let mut lags = Vec::new();
    let mut misses = 0usize;
    for _ in 0..args.updates {
        let before = c.pods.names();
        c.scale("late", 1).await?;
        // From node A, requests one after another until one reaches the new pod on node B.
        let deadline = Instant::now() + STEP;
        let mut sent;
        let mut tries = 0u64;
        loop {
            sent = Instant::now();
            let status = get_host(&c.http, c.a.ingress, host, "/").await;
            tries += 1;
            if status == 200 {
                break;
            }
            if Instant::now() > deadline {
                bail!("no request from {NODE_A} reached the new pod of late within {STEP:?}");
            }
        }
        let ready = c
            .pods
            .until("the new late pod Ready", |pods| {
                pods.iter()
                    .find(|(n, p)| p.app == "late" && !before.contains(*n) && p.ready.is_some())
                    .and_then(|(_, p)| p.ready)
            })
            .await?;
        // Signed: the router may route before this process's watch hears of Ready.
        let lag = if sent >= ready {
            (sent - ready).as_secs_f64()
        } else {
            -(ready - sent).as_secs_f64()
        };
        if tries == 1 {
            misses += 1;
        }
        lags.push(lag * 1e3);
        c.scale("late", 0).await?;
        c.pods.until_none("late").await?;
        // Back to no endpoint on node A's router.
        poll(|| async {
            let routed = get_host(&c.http, c.a.ingress, host, "/").await == 200;
            Ok(routed.then(|| format!("node {NODE_A} still routes to a deleted pod of late")))
        })
        .await?;
    }
    lags.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{} routing updates: Ready -> first request routed p50 {:.2} ms, p99 {:.2} ms",
        lags.len(),
        pick(0.5),
        pick(0.99)
    );
    Ok(vec![Row(
        format!(
            "routing-table update: pod on {NODE_B} Ready (seen by a watch) -> first request from \
             {NODE_A}'s ingress routed to it ({} updates)",
            args.updates
        ),
        format!(
            "p50 {:.2} ms, **p99 {:.2} ms**, min {:.2} ms{} (aim p99 ≤ 50 ms)",
            pick(0.5),
            pick(0.99),
            pick(0.0),
            if misses > 0 {
                format!("; {misses} answered on the first try")
            } else {
                String::new()
            }
        ),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_travels_percent_encoded_in_the_query() {
        assert_eq!(encode("http://back-a/"), "http%3A%2F%2Fback-a%2F");
        assert_eq!(
            encode("http://10.244.0.5:8080/x?y=1"),
            "http%3A%2F%2F10.244.0.5%3A8080%2Fx%3Fy%3D1"
        );
    }

    #[test]
    fn the_objects_pin_the_app_to_its_node_and_route_its_host() {
        let d = deployment(
            "cold",
            "file:///x.wasm",
            NODE_B,
            0,
            json!({SCALE_TO_ZERO: "true"}),
        )
        .expect("a deployment");
        let spec = d.spec.expect("a spec");
        assert_eq!(spec.replicas, Some(0));
        let pod = spec.template.spec.expect("a pod spec");
        assert_eq!(
            pod.node_selector.expect("a node selector")["kubernetes.io/hostname"],
            NODE_B
        );
        assert_eq!(
            d.metadata.annotations.expect("annotations")[SCALE_TO_ZERO],
            "true"
        );
        let i = ingress("cold").expect("an ingress");
        let rule = &i.spec.expect("a spec").rules.expect("rules")[0];
        assert_eq!(rule.host.as_deref(), Some("cold.localhost"));
        let path = &rule.http.as_ref().expect("http").paths[0];
        let backend = path.backend.service.as_ref().expect("a service backend");
        assert_eq!(backend.name, "cold");
        assert_eq!(backend.port.as_ref().and_then(|p| p.number), Some(80));
        let s = service("cold").expect("a service");
        assert_eq!(
            s.spec.expect("a spec").selector.expect("a selector")["app"],
            "cold"
        );
    }
}
