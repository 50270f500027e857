//! `skiff bench scale`: Kubernetes' scalability envelope on simulated nodes. One real API server
//! (`skiff server`, a child process, so its memory and CPU are its own), the controllers and the
//! scheduler in this process, simulated nodes that register, renew their Leases every 10 s and
//! report their pods Running; pods made through Deployments (one per namespace, as the density
//! test's ReplicationControllers). Measures the time to create, schedule and run every pod, pod
//! startup latency, mutating/list/watch latencies, the heartbeat load and the server's RSS, and
//! prints them against Kubernetes' SLOs (and `skiff bench churn`: store growth under churn).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use http::Request;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event as WEvent};
use serde_json::json;

use crate::bench::{ms, percentile};

#[derive(clap::Args)]
pub(crate) struct ScaleBenchArgs {
    /// Directory for the benchmark server's data directory.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Simulated nodes.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods, made by Deployments.
    #[arg(long, default_value_t = 150_000)]
    pods: usize,
    /// Replicas of each Deployment (one Deployment per namespace).
    #[arg(long, default_value_t = 3_000)]
    pods_per_namespace: usize,
    /// Pods created one by one after the saturation phase, to measure startup latency as the
    /// density test does.
    #[arg(long, default_value_t = 200)]
    latency_pods: usize,
    /// Seconds of steady state (only heartbeats) over which the server's CPU is measured.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// Full pod lists (and ten times as many namespaced lists) timed.
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Longest wait for every pod to run, in seconds.
    #[arg(long, default_value_t = 3_600)]
    timeout: u64,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// The parts of a Pod the benchmark reads: decoding whole Pods would cost this process more
/// than the server.
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct SlimPod {
    metadata: kube::api::ObjectMeta,
    #[serde(default)]
    spec: Option<SlimSpec>,
    #[serde(default)]
    status: Option<SlimStatus>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct SlimSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct SlimStatus {
    phase: Option<String>,
}

impl kube::Resource for SlimPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;
    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &kube::api::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        &mut self.metadata
    }
}

/// Pods seen by the benchmark's watch.
#[derive(Default)]
struct Tracker {
    first_seen: HashMap<String, Instant>,
    /// When the latency-phase pods' creates were sent.
    created: HashMap<String, Instant>,
    bound: HashSet<String>,
    running: HashSet<String>,
    /// First seen -> Running seen, every pod.
    startup_observed: Vec<Duration>,
    /// Create sent -> Running seen, latency-phase pods.
    startup_latency: Vec<Duration>,
    all_bound_at: Option<Instant>,
    all_running_at: Option<Instant>,
}

impl Tracker {
    fn see(&mut self, pod: SlimPod, saturation: usize) {
        let now = Instant::now();
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.unwrap_or_default(),
            pod.metadata.name.unwrap_or_default()
        );
        let first = *self.first_seen.entry(key.clone()).or_insert(now);
        if pod.spec.and_then(|s| s.node_name).is_some()
            && self.bound.insert(key.clone())
            && self.bound.len() >= saturation
            && self.all_bound_at.is_none()
        {
            self.all_bound_at = Some(now);
        }
        if pod.status.and_then(|s| s.phase).as_deref() == Some("Running")
            && self.running.insert(key.clone())
        {
            self.startup_observed.push(now - first);
            if let Some(sent) = self.created.get(&key) {
                self.startup_latency.push(now - *sent);
            }
            if self.running.len() >= saturation && self.all_running_at.is_none() {
                self.all_running_at = Some(now);
            }
        }
    }
}

/// Resident and peak resident memory of a process, in bytes (`/proc/PID/status`).
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Prints a phase's latencies as soon as they are measured (a later phase that fails keeps
/// them), with this process's resident memory.
fn print_phase(what: &str, lat: &[Duration]) {
    let mut sorted = lat.to_vec();
    sorted.sort();
    let (own, _) = rss(std::process::id());
    println!(
        "  {what}: {} samples, p50 {} ms, p99 {} ms; this process RSS {}",
        sorted.len(),
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99)),
        mib(own)
    );
}

/// Resets a process's peak resident memory (`VmHWM`) to its current RSS, so that the next
/// reading is the peak of one phase (`/proc/PID/clear_refs`, Linux 4.0+); false if refused.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time a process has used (user + system), from `/proc/PID/stat` (100 ticks a second).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `skiff server` as a child process; killed on drop.
async fn start_server(data: &Path) -> Result<(tokio::process::Child, PathBuf)> {
    let port = free_port()?;
    let log = std::fs::File::create(data.with_extension("log"))?;
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("server")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // The controllers and scheduler run in the benchmark process (a second, unelected set
        // beside the server's own would create and bind every pod twice over).
        .arg("--no-controllers")
        .arg("--no-scheduler")
        // A pod CIDR for every simulated node: the default 10.244.0.0/16 holds 256 /24s.
        .arg("--cluster-cidr")
        .arg("100.64.0.0/10")
        // Every simulated client (5,000 nodes, the controllers, the scheduler) connects from
        // 127.0.0.1: the per-address connection bound, meant for one abusive client, would
        // refuse their bursts (the controllers' slow-start creates open hundreds at once).
        .arg("--max-connections-per-client-ip")
        .arg("0")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting skiff server")?;
    let kubeconfig = data.join("admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if kubeconfig.exists()
            && let Ok(client) = crate::bench::client_for(&kubeconfig).await
            && client.apiserver_version().await.is_ok()
        {
            return Ok((child, kubeconfig));
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not come up in 120 s (log: {})",
                data.with_extension("log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

fn pod_template() -> serde_json::Value {
    json!({"containers": [{"name": "c", "image": "bench",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]})
}

/// One GET of `path`, timed before its body is decoded: its time and body.
async fn timed_get(client: &kube::Client, path: &str) -> Result<(Duration, String)> {
    let t = Instant::now();
    let body = client
        .request_text(Request::get(path).body(Vec::new())?)
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok((t.elapsed(), body))
}

/// The names in a list response (decoding nothing else).
#[derive(serde::Deserialize)]
struct ListNames {
    #[serde(default)]
    items: Vec<ItemName>,
    #[serde(default)]
    metadata: ListMeta,
}

#[derive(serde::Deserialize)]
struct ItemName {
    metadata: NameMeta,
}

#[derive(serde::Deserialize)]
struct NameMeta {
    #[serde(default)]
    namespace: String,
    name: String,
    #[serde(rename = "deletionTimestamp", default)]
    deletion: Option<serde::de::IgnoredAny>,
}

#[derive(Default, serde::Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

/// A list's items, how many of them were distinct (`namespace/name`) and how many terminating.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    items: usize,
    distinct: usize,
    terminating: usize,
}

/// A whole list through pages of `limit`, as informers list.
async fn paged_list(
    client: &kube::Client,
    path: &str,
    limit: usize,
) -> Result<(Duration, Counted)> {
    let t = Instant::now();
    let (mut items, mut terminating) = (0, 0);
    let mut names = HashSet::new();
    let mut cont = String::new();
    loop {
        let url = if cont.is_empty() {
            format!("{path}?limit={limit}")
        } else {
            format!("{path}?limit={limit}&continue={cont}")
        };
        let body = client
            .request_text(Request::get(&url).body(Vec::new())?)
            .await?;
        let page: ListNames = serde_json::from_str(&body)?;
        items += page.items.len();
        terminating += page
            .items
            .iter()
            .filter(|i| i.metadata.deletion.is_some())
            .count();
        for i in page.items {
            names.insert(format!("{}/{}", i.metadata.namespace, i.metadata.name));
        }
        match page.metadata.cont {
            Some(c) if !c.is_empty() => cont = c,
            _ => break,
        }
    }
    let counted = Counted {
        items,
        distinct: names.len(),
        terminating,
    };
    Ok((t.elapsed(), counted))
}

/// The items of one whole list response.
fn count_items(body: &str) -> Result<Counted> {
    let list: ListNames = serde_json::from_str(body)?;
    let distinct = list
        .items
        .iter()
        .map(|i| (&i.metadata.namespace, &i.metadata.name))
        .collect::<HashSet<_>>()
        .len();
    Ok(Counted {
        items: list.items.len(),
        distinct,
        terminating: list
            .items
            .iter()
            .filter(|i| i.metadata.deletion.is_some())
            .count(),
    })
}

fn p(sorted: &[Duration]) -> String {
    format!(
        "p50 {} ms, p99 {} ms",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99))
    )
}

fn slo(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

pub(crate) async fn run(args: ScaleBenchArgs) -> Result<()> {
    if args.nodes == 0 || args.pods == 0 || args.pods_per_namespace == 0 {
        bail!("--nodes, --pods and --pods-per-namespace must be positive");
    }
    if args.pods > args.nodes * 110 {
        bail!(
            "{} pods do not fit on {} simulated nodes of 110 pods",
            args.pods,
            args.nodes
        );
    }
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-scale-")
        .tempdir_in(&args.dir)?;
    let data = tmp.path().join("server");
    std::fs::create_dir_all(&data)?;
    let (server, kubeconfig) = start_server(&data).await?;
    let pid = server.id().context("server pid")?;
    let client = crate::bench::client_for(&kubeconfig).await?;
    let (rss_empty, _) = rss(pid);
    println!("server up (pid {pid}), RSS {}", mib(rss_empty));

    // Nodes register and keep their Leases fresh every 10 s.
    let t = Instant::now();
    let fake = skiff_testkit::fake::FakeNodes::start(client.clone()).await;
    let specs: Vec<_> = (0..args.nodes)
        .map(|i| {
            skiff_testkit::fake::FakeNodeSpec::new(
                &format!("scale-node-{i}"),
                &format!("zone-{}", i % 3),
            )
        })
        .collect();
    fake.add(&specs).await?;
    let register_time = t.elapsed();
    println!(
        "{} nodes registered in {:.1} s",
        args.nodes,
        register_time.as_secs_f64()
    );

    // The controllers and scheduler in this process, and the benchmark's own pod watch.
    let controllers =
        skiff_controllers::start(client.clone(), skiff_controllers::Options::default());
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let watch_task = {
        let (client, tracker, pods) = (client.clone(), tracker.clone(), args.pods);
        tokio::spawn(async move {
            let api: Api<SlimPod> = Api::all(client);
            let mut stream =
                watcher::watcher(api, watcher::Config::default().page_size(5000)).boxed();
            loop {
                match stream.try_next().await {
                    Ok(Some(WEvent::Apply(p) | WEvent::InitApply(p))) => {
                        tracker.lock().unwrap().see(p, pods)
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "bench pod watch");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    };

    // Saturation: one Deployment per namespace.
    let namespaces = args.pods.div_ceil(args.pods_per_namespace);
    let mut mutating = Vec::new();
    let started = Instant::now();
    for n in 0..namespaces {
        let ns = format!("scale-{n}");
        create_namespace(&client, &ns).await?;
        let replicas = args
            .pods_per_namespace
            .min(args.pods - n * args.pods_per_namespace);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "density"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "density"}},
                "template": {"metadata": {"labels": {"app": "density"}}, "spec": pod_template()}},
        }))?;
        let t = Instant::now();
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &d)
            .await?;
        mutating.push(t.elapsed());
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    let (created_at, bound_at, running_at) = loop {
        let (seen, bound, running, b_at, r_at) = {
            let t = tracker.lock().unwrap();
            (
                t.first_seen.len(),
                t.bound.len(),
                t.running.len(),
                t.all_bound_at,
                t.all_running_at,
            )
        };
        if let (Some(b), Some(r)) = (b_at, r_at) {
            break (started.elapsed(), b - started, r - started);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "{:>5.0} s: {seen} pods created, {bound} bound, {running} running; server RSS {}",
                started.elapsed().as_secs_f64(),
                mib(rss(pid).0)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "after {} s only {running} of {} pods run ({bound} bound)",
                args.timeout,
                args.pods
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Pods ever made for the Deployments: more than their replicas means a controller made extras.
    let seen_in_saturation = tracker.lock().unwrap().first_seen.len();
    let created_at = {
        // When the last saturation pod was first seen.
        let t = tracker.lock().unwrap();
        t.first_seen
            .values()
            .max()
            .map_or(created_at, |last| *last - started)
    };
    println!(
        "all {} pods: created by {:.1} s, bound by {:.1} s, running by {:.1} s",
        args.pods,
        created_at.as_secs_f64(),
        bound_at.as_secs_f64(),
        running_at.as_secs_f64()
    );

    // Steady state: only heartbeats (and the controllers' resyncs).
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let steady_cpu = (cpu_time(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let (rss_steady, _) = rss(pid);
    let (bench_rss, _) = rss(std::process::id());
    println!(
        "steady state: server RSS {}, server CPU {:.0}% of a core; this process (controllers, scheduler, {} simulated nodes) RSS {}",
        mib(rss_steady),
        steady_cpu * 100.0,
        args.nodes,
        mib(bench_rss)
    );

    println!("startup latency: {} pods at 10/s", args.latency_pods);
    // Startup latency: pods created one at a time, 10 a second, as the density test does.
    let lat_ns = "scale-latency";
    create_namespace(&client, lat_ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), lat_ns);
    let lat_started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..args.latency_pods {
        let name = format!("latency-{i}");
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": pod_template()}))?;
        let (pods, tracker) = (pods.clone(), tracker.clone());
        let sent = Instant::now();
        tracker
            .lock()
            .unwrap()
            .created
            .insert(format!("{lat_ns}/{name}"), sent);
        creates.spawn(async move {
            pods.create(&PostParams::default(), &pod).await?;
            anyhow::Ok(sent.elapsed())
        });
        tokio::time::sleep_until(
            (lat_started + Duration::from_millis(100 * (i as u64 + 1))).into(),
        )
        .await;
    }
    while let Some(r) = creates.join_next().await {
        mutating.push(r??);
    }
    let lat_deadline = Instant::now() + Duration::from_secs(120);
    while tracker.lock().unwrap().startup_latency.len() < args.latency_pods {
        if Instant::now() > lat_deadline {
            bail!("latency pods did not all run within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    print_phase(
        "pod startup (created -> Running observed)",
        &tracker.lock().unwrap().startup_latency,
    );
    println!("mutating calls");
    // Mutating calls at this size: ConfigMap create, update, delete from 8 clients.
    let cm_ns = "scale-mutating";
    create_namespace(&client, cm_ns).await?;
    let mut set = tokio::task::JoinSet::new();
    for c in 0..8 {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), cm_ns);
        set.spawn(async move {
            let mut lat = Vec::new();
            for i in 0..50 {
                let name = format!("m{c}-{i}");
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name}, "data": {"k": "v"}}),
                )?;
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await?;
                lat.push(t.elapsed());
                let t = Instant::now();
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"k": "w"}})),
                )
                .await?;
                lat.push(t.elapsed());
                let t = Instant::now();
                api.delete(&name, &DeleteParams::default()).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        });
    }
    while let Some(r) = set.join_next().await {
        mutating.extend(r??);
    }
    mutating.sort();
    print_phase("mutating calls", &mutating);

    println!("watch latency");
    // Watch latency: write sent -> event received on a watch of the namespace.
    let watch_ns = "scale-watch";
    create_namespace(&client, watch_ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), watch_ns);
    let mut events = cms.watch(&WatchParams::default(), "0").await?.boxed();
    let mut watch_lat = Vec::new();
    for i in 0..200 {
        let name = format!("w-{i}");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        let t = Instant::now();
        cms.create(&PostParams::default(), &cm).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(o)))) if o.metadata.name.as_deref() == Some(&name) => {
                    watch_lat.push(t.elapsed());
                    break;
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) | Ok(Err(_)) => bail!("the watch ended"),
                Err(_) => bail!("no watch event for {name} in 30 s"),
            }
        }
    }
    drop(events);
    watch_lat.sort();
    print_phase("watch (create sent -> ADDED received)", &watch_lat);

    println!("lists");
    // Lists at this size: every pod, whole and paged, and one namespace's pods. The server's
    // peak memory is measured over these lists alone.
    let (_, hwm_before_lists) = rss(pid);
    let peak_per_phase = reset_peak(pid);
    let mut full = Vec::new();
    let mut full_bytes = 0;
    let mut full_items = Counted::default();
    for _ in 0..args.lists {
        let (d, body) = timed_get(&client, "/api/v1/pods").await?;
        full_items = count_items(&body)?;
        println!(
            "full pod list: {} ms, {} bytes, {} items ({} distinct, {} terminating); this process RSS {}",
            ms(d),
            body.len(),
            full_items.items,
            full_items.distinct,
            full_items.terminating,
            mib(rss(std::process::id()).0)
        );
        full.push(d);
        full_bytes = body.len();
    }
    full.sort();
    let (paged, paged_items) = paged_list(&client, "/api/v1/pods", 500).await?;
    println!(
        "paged pod list: {} ms, {} items ({} distinct, {} terminating); this process RSS {}",
        ms(paged),
        paged_items.items,
        paged_items.distinct,
        paged_items.terminating,
        mib(rss(std::process::id()).0)
    );
    let mut nsl = Vec::new();
    for i in 0..args.lists * 10 {
        let ns = format!("scale-{}", i % namespaces);
        nsl.push(
            timed_get(&client, &format!("/api/v1/namespaces/{ns}/pods"))
                .await?
                .0,
        );
    }
    nsl.sort();
    print_phase("namespace pod lists", &nsl);
    let (rss_after, hwm_lists) = rss(pid);
    // The same full list from several clients at once, as informers relist after a restart.
    reset_peak(pid);
    let t = Instant::now();
    let concurrent: Vec<Duration> =
        futures::future::try_join_all((0..args.lists).map(|_| timed_get(&client, "/api/v1/pods")))
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
    let concurrent_wall = t.elapsed();
    let (_, hwm_concurrent) = rss(pid);
    println!(
        "{} concurrent full lists: {} ms (slowest {} ms); server peak RSS {}",
        args.lists,
        ms(concurrent_wall),
        ms(concurrent.iter().max().copied().unwrap_or_default()),
        mib(hwm_concurrent)
    );
    let peak_note = if peak_per_phase {
        "peak over the lists"
    } else {
        "peak since start: /proc/PID/clear_refs refused"
    };

    let (startup_observed, startup) = {
        let mut t = tracker.lock().unwrap();
        t.startup_observed.sort();
        t.startup_latency.sort();
        (t.startup_observed.clone(), t.startup_latency.clone())
    };
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m
                .lines()
                .next()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
            .unwrap_or_default()
    );
    let mutating_p99 = percentile(&mutating, 0.99);
    let list_p99 = percentile(&full, 0.99).max(percentile(&nsl, 0.99));
    let startup_p99 = percentile(&startup, 0.99);
    let mut table = format!(
        "`skiff bench scale --nodes {} --pods {}` ({}; {}). API server: `skiff server` (child process, redb store); controllers, scheduler and simulated nodes in the benchmark process; pods through {} Deployments of up to {} replicas.\n\n| measurement | result | Kubernetes SLO |\n|---|---|---|\n",
        args.nodes,
        args.pods,
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        machine,
        namespaces,
        args.pods_per_namespace
    );
    let mut row =
        |m: String, r: String, s: String| table.push_str(&format!("| {m} | {r} | {s} |\n"));
    row(
        format!("register {} nodes (Node, status, Lease)", args.nodes),
        format!("{:.1} s", register_time.as_secs_f64()),
        String::new(),
    );
    row(
        format!("{} pods created / bound / Running", args.pods),
        format!(
            "{:.1} s / {:.1} s / {:.1} s ({:.0} pods/s to Running)",
            created_at.as_secs_f64(),
            bound_at.as_secs_f64(),
            running_at.as_secs_f64(),
            args.pods as f64 / running_at.as_secs_f64().max(1e-9)
        ),
        String::new(),
    );
    row(
        format!(
            "pods made for the Deployments' {} replicas (seen by a watch)",
            args.pods
        ),
        seen_in_saturation.to_string(),
        String::new(),
    );
    row(
        format!(
            "pod startup, {} pods at 10/s after saturation (create sent -> Running watched)",
            startup.len()
        ),
        p(&startup),
        format!("p99 <= 5 s: {}", slo(startup_p99 <= Duration::from_secs(5))),
    );
    row(
        "pod startup during saturation (pod first watched -> Running watched)".into(),
        p(&startup_observed),
        String::new(),
    );
    row(
        format!(
            "mutating API calls ({} samples: Deployment and Pod creates, ConfigMap create/patch/delete)",
            mutating.len()
        ),
        p(&mutating),
        format!(
            "p99 <= 1 s: {}",
            slo(mutating_p99 <= Duration::from_secs(1))
        ),
    );
    row(
        format!(
            "LIST all {} pods ({:.0} MB)",
            args.pods + args.latency_pods,
            full_bytes as f64 / 1e6
        ),
        p(&full),
        format!("p99 <= 30 s: {}", slo(list_p99 <= Duration::from_secs(30))),
    );
    row(
        format!(
            "LIST all pods in pages of 500 ({} items, {} distinct, {} terminating; the whole list: {} items)",
            paged_items.items, paged_items.distinct, paged_items.terminating, full_items.items
        ),
        format!("{} ms", ms(paged)),
        String::new(),
    );
    row(
        format!("{} full pod lists at once", args.lists),
        format!(
            "{} ms; server peak RSS {}",
            ms(concurrent_wall),
            mib(hwm_concurrent)
        ),
        String::new(),
    );
    row(
        format!(
            "LIST one namespace's {} pods",
            args.pods_per_namespace.min(args.pods)
        ),
        p(&nsl),
        "p99 <= 5 s (namespaced)".into(),
    );
    row(
        "watch latency (create sent -> ADDED received)".into(),
        p(&watch_lat),
        String::new(),
    );
    row(
        format!("heartbeats: {} Leases renewed every 10 s", args.nodes),
        format!(
            "{:.0} renewals/s; server CPU {:.0}% of a core in steady state",
            args.nodes as f64 / 10.0,
            steady_cpu * 100.0
        ),
        String::new(),
    );
    row(
        "API server RSS: empty / steady state / after the lists; peak before the lists / over the lists".into(),
        format!(
            "{} / {} / {}; {} / {} ({peak_note})",
            mib(rss_empty),
            mib(rss_steady),
            mib(rss_after),
            mib(hwm_before_lists),
            mib(hwm_lists)
        ),
        "(kube-apiserver: about 25 GB at this scale)".into(),
    );
    row(
        "benchmark process RSS (controllers, scheduler, simulated nodes)".into(),
        mib(bench_rss),
        String::new(),
    );
    crate::bench::publish(&format!("\n{table}\n"), args.append.as_deref())?;
    watch_task.abort();
    controllers.shutdown().await;
    fake.shutdown().await;
    drop(server);
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct ChurnBenchArgs {
    /// Directory for the benchmark server's data directory.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Seconds of churn.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Keys each client cycles through (create, update, update, delete).
    #[arg(long, default_value_t = 64)]
    keys_per_client: usize,
    /// Bytes in each ConfigMap.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Revisions of history the server keeps.
    #[arg(long, default_value_t = 10_000)]
    history_revisions: u64,
    /// Seconds between the server's history compactions.
    #[arg(long, default_value_t = 60)]
    compaction_interval_seconds: u64,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// `skiff bench churn`: store growth under churn.
pub(crate) async fn churn(args: ChurnBenchArgs) -> Result<()> {
    if args.seconds == 0 || args.clients == 0 || args.keys_per_client == 0 {
        bail!("--seconds, --clients and --keys-per-client must be positive");
    }
    let mut opts =
        skiff_testkit::churn::ChurnOptions::new(&args.dir, Duration::from_secs(args.seconds));
    opts.clients = args.clients;
    opts.keys_per_client = args.keys_per_client;
    opts.value_bytes = args.value_bytes;
    opts.history_revisions = args.history_revisions;
    opts.compaction_interval = Duration::from_secs(args.compaction_interval_seconds);
    let r = skiff_testkit::churn::run(opts).await?;
    let table = format!(
        "`skiff bench churn --seconds {}` ({}; {} clients over {} ConfigMaps of {} bytes, history {} revisions compacted every {} s)\n\n| measurement | result |\n|---|---|\n\
         | writes (create, patch, patch, delete per key) | {} in {:.0} s ({:.0}/s) |\n\
         | largest file during the run | {} |\n\
         | most events in the log during the run | {} |\n\
         | background history compactions / file shrinks | {} / {} |\n\
         | after the next background pass: file, in use, log events | {} , {}, {} |\n\
         | live data (keys + values) | {} bytes ({} keys) |\n\
         | after compacting all history: file, in use | {} bytes, {} bytes ({:.2}x the live data) |\n",
        args.seconds,
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        args.clients,
        args.clients * args.keys_per_client,
        args.value_bytes,
        args.history_revisions,
        args.compaction_interval_seconds,
        r.writes,
        r.elapsed.as_secs_f64(),
        r.writes_per_second(),
        mib(r.peak_file_bytes),
        r.peak_log_entries,
        r.history_compactions,
        r.file_compactions,
        mib(r.after_pass.file_bytes),
        mib(r.after_pass.allocated_bytes),
        r.after_pass.log_entries,
        r.live_bytes,
        r.after_full_compaction.keys,
        r.after_full_compaction.file_bytes,
        r.after_full_compaction.allocated_bytes,
        r.final_ratio()
    );
    crate::bench::publish(&format!("\n{table}\n"), args.append.as_deref())?;
    Ok(())
}
