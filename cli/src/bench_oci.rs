//! `skiff bench oci`: Linux container pods against wasm pods on a real node, side by side in
//! one run — pod create -> Running for a busybox `httpd` pod (runtimeClassName `oci`) and a
//! wasm hello pod, memory per idle pod of each kind, and where a container's start time goes
//! (its phases timed from outside with the same tools the node runs).
//!
//! Root only: the node needs cgroups, network namespaces and a bridge. The API server and the
//! registry run in this process, the node as a child process (as in `skiff bench pods`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_runtime::oci::cgroup;
use skiff_runtime::oci::spec::CgroupVersion;
use skiff_testkit::oci_image::{self, OciTools};

use crate::bench::{machine_description, ms, percentile};
use crate::bench_pods::{
    HELLO_WASM, NAMESPACE, NODE, NodeProcess, RunningTimes, find_program, hello_pod, kube_client,
    rss_bytes, spawn_node,
};

#[derive(clap::Args)]
pub(crate) struct OciBenchArgs {
    /// Directory for the server, registry and node state (a fresh one is made inside it).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Pods of each kind in the latency run, created one after another, alternating kinds.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// The node's pod CIDR (the whole cluster CIDR of this run).
    #[arg(long, default_value = "10.66.0.0/16")]
    pod_cidr: String,
    /// Rounds of the outside timing of a container's start phases.
    #[arg(long, default_value_t = 10)]
    phase_rounds: usize,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// One row of the results table.
struct Row(String, String);

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A tool on PATH, or an error naming the Debian package that has it.
fn tool(name: &str, package: &str) -> Result<PathBuf> {
    find_program(Path::new(name)).ok_or_else(|| {
        anyhow!("{name} not found on PATH (apt-get install -y --no-install-recommends {package})")
    })
}

fn busybox_pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "busybox"}},
        "spec": {
            "nodeName": NODE,
            "runtimeClassName": "oci",
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": image,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [{"containerPort": 8080}],
            }],
        },
    }))?)
}

/// Creates `pod` and waits until the watch saw it Running; the time from the create request.
async fn create_to_running(pods: &Api<Pod>, running: &RunningTimes, pod: &Pod) -> Result<Duration> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let t = Instant::now();
    pods.create(&PostParams::default(), pod).await?;
    let deadline = t + Duration::from_secs(120);
    if let Some(at) = running.running_at(&name, deadline).await {
        return Ok(at.saturating_duration_since(t));
    }
    let phase = pods
        .get(&name)
        .await
        .ok()
        .and_then(|p| p.status)
        .map(|s| format!("{:?} {:?}", s.phase, s.container_statuses))
        .unwrap_or_default();
    bail!("pod {name} was not seen Running within 120 s: {phase}");
}

/// Sends SIGTERM to `pid` (the node removes its pods' containers and its bridge) and waits.
async fn stop_node(node: &mut NodeProcess) {
    let _ = Command::new("kill")
        .args(["-TERM", &node.pid.to_string()])
        .status();
    if tokio::time::timeout(Duration::from_secs(60), node.child.wait())
        .await
        .is_err()
    {
        eprintln!("the node did not stop within 60 s of SIGTERM; killing it");
        let _ = node.child.start_kill();
        let _ = node.child.wait().await;
    }
}

pub(crate) async fn run(args: OciBenchArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "skiff bench oci needs root: Linux container pods need cgroups, network namespaces \
             and a bridge"
        );
    }
    for (name, package) in [("runc", "runc"), ("conmon", "conmon"), ("ip", "iproute2")] {
        tool(name, package)?;
    }
    let tools = OciTools {
        umoci: tool("umoci", "umoci")?,
        skopeo: tool("skopeo", "skopeo")?,
        busybox: tool("busybox", "busybox-static")?,
    };
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-oci-")
        .tempdir_in(&args.dir)?;
    let dir = tmp.path().to_path_buf();
    println!("state directory: {}", dir.display());
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let version = CgroupVersion::detect();
    println!("cgroup layout: {version:?}; {build} build");

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
    let wasm_image = format!("{registry_addr}/samples/hello-http:1.0");
    {
        let mut opts = skiff_registry::ClientOptions::new(dir.join("push-cache"));
        opts.token = Some(registry.token().to_string());
        let client = skiff_registry::RegistryClient::new(opts)?;
        client
            .push_wasm(&wasm_image, Bytes::from_static(HELLO_WASM))
            .await
            .context("pushing the hello sample")?;
    }
    let layout = oci_image::busybox(&tools).context("building the busybox image")?;
    let oci_image_ref = oci_image::push(
        &tools,
        &layout,
        &registry_addr.to_string(),
        "bench/busybox:1.0",
        Some(registry.token()),
    )
    .context("pushing the busybox image")?;

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

    let max_pods = (2 + 3 * args.pods).max(110);
    let mut node = spawn_node(
        &server.kubeconfig_path,
        &dir,
        registry_addr,
        &args.pod_cidr,
        max_pods,
    )
    .await?;
    println!(
        "node {NODE}: pid {}, pod CIDR {}; log {}",
        node.pid,
        args.pod_cidr,
        dir.join("node.log").display()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let running = RunningTimes::default();
    let watch_task = tokio::spawn(running.clone().watch(pods.clone()));

    let result = measure(
        &args,
        version,
        &node,
        &dir,
        &pods,
        &running,
        &wasm_image,
        &oci_image_ref,
    )
    .await;

    // Clean up: delete every pod, wait until they are gone, then SIGTERM the node.
    let _ = pods
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match pods.list(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            Err(_) => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    watch_task.abort();
    stop_node(&mut node).await;
    server.shutdown().await;
    let _ = registry.shutdown(Duration::from_secs(5)).await;
    let mut rows = result?;
    if args.phase_rounds > 0 {
        let work = dir.join("phases");
        std::fs::create_dir_all(&work)?;
        let rounds = args.phase_rounds;
        let phase_rows =
            tokio::task::spawn_blocking(move || phases(rounds, &tools, &layout, &work))
                .await
                .context("timing the start phases")??;
        rows.extend(phase_rows);
    }

    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = format!(
        "\n### Linux container pods against wasm pods — {date}\n\nCommand: `skiff bench oci \
         --pods {} --pod-cidr {} --phase-rounds {}` ({build} build), cgroup {version:?}  \n\
         Machine: {}\n\n| measure | result |\n|---|---|\n",
        args.pods,
        args.pod_cidr,
        args.phase_rounds,
        machine_description(),
    );
    for Row(k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    crate::bench::publish(&md, args.append.as_deref())
}

fn summary(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    (
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        samples.last().copied().unwrap_or_default(),
    )
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / 1048576.0)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &OciBenchArgs,
    version: CgroupVersion,
    node: &NodeProcess,
    dir: &Path,
    pods: &Api<Pod>,
    running: &RunningTimes,
    wasm_image: &str,
    oci_image: &str,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    // Warm-up: the first pod of each kind pulls its image (and compiles the wasm one).
    let w = create_to_running(pods, running, &hello_pod("wasm-warm", wasm_image)?).await?;
    let o = create_to_running(pods, running, &busybox_pod("oci-warm", oci_image)?).await?;
    println!(
        "first pods (image pull): wasm {} ms, oci {} ms",
        ms(w),
        ms(o)
    );
    rows.push(Row(
        "first pod, create -> Running (image pull)".into(),
        format!("wasm {} ms, OCI busybox {} ms", ms(w), ms(o)),
    ));

    // Side by side: a wasm pod, then an OCI pod, N times.
    let rss_before = rss_bytes(node.pid)?;
    let mut wasm = Vec::new();
    let mut oci = Vec::new();
    for i in 0..args.pods {
        wasm.push(
            create_to_running(pods, running, &hello_pod(&format!("wasm-{i}"), wasm_image)?).await?,
        );
        oci.push(
            create_to_running(pods, running, &busybox_pod(&format!("oci-{i}"), oci_image)?).await?,
        );
    }
    let rss_after_latency = rss_bytes(node.pid)?;
    let (w50, w99, wmax) = summary(&mut wasm);
    let (o50, o99, omax) = summary(&mut oci);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "create -> Running, {} each: wasm p50 {} p99 {} max {} ms; oci p50 {} p99 {} max {} ms; \
         ratio oci/wasm p50 {:.1}x p99 {:.1}x",
        args.pods,
        ms(w50),
        ms(w99),
        ms(wmax),
        ms(o50),
        ms(o99),
        ms(omax),
        ratio(o50, w50),
        ratio(o99, w99)
    );
    rows.push(Row(
        format!(
            "wasm hello pod, create -> Running ({} pods, alternating with OCI)",
            args.pods
        ),
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            ms(w50),
            ms(w99),
            ms(wmax)
        ),
    ));
    rows.push(Row(
        format!(
            "OCI busybox `httpd` pod, create -> Running ({} pods)",
            args.pods
        ),
        format!(
            "p50 {} ms, **p99 {} ms**, max {} ms (aim p99 ≤ 150 ms: {})",
            ms(o50),
            ms(o99),
            ms(omax),
            if o99 <= Duration::from_millis(150) {
                "met"
            } else {
                "not met"
            }
        ),
    ));
    rows.push(Row(
        "ratio OCI / wasm".into(),
        format!(
            "{:.1}x of medians, {:.1}x of p99s",
            ratio(o50, w50),
            ratio(o99, w99)
        ),
    ));

    // Memory per idle pod. Linux pods: their cgroups' working set plus their conmons' RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cgroup_bytes = 0u64;
    let mut uids = Vec::new();
    for i in 0..args.pods {
        let pod = pods.get(&format!("oci-{i}")).await?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let path = Path::new("/skiff").join(&uid).join("c");
        cgroup_bytes += cgroup::usage(version, &path).memory_bytes;
        uids.push(uid);
    }
    let mut conmon_bytes = 0u64;
    let mut conmons = 0usize;
    for uid in &uids {
        let containers = dir.join("node/oci/pods").join(uid).join("containers");
        for entry in std::fs::read_dir(&containers)
            .with_context(|| format!("reading {}", containers.display()))?
            .flatten()
        {
            let pid_file = entry.path().join("monitor.pid");
            let Ok(pid) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<u32>() else {
                continue;
            };
            conmon_bytes += rss_bytes(pid)?;
            conmons += 1;
        }
    }
    let n = args.pods.max(1) as f64;
    let oci_per_pod = (cgroup_bytes + conmon_bytes) as f64 / n;
    println!(
        "{} idle OCI pods: cgroups {} + {conmons} conmons {} => {} per pod",
        args.pods,
        mib(cgroup_bytes as f64),
        mib(conmon_bytes as f64),
        mib(oci_per_pod)
    );

    // Wasm pods: the node's RSS growth per pod, N more idle hello pods created now.
    let base = rss_bytes(node.pid)?;
    for i in 0..args.pods {
        create_to_running(pods, running, &hello_pod(&format!("idle-{i}"), wasm_image)?).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_bytes(node.pid)?.saturating_sub(base);
    let wasm_per_pod = grown as f64 / n;
    // The node's own share of an OCI pod: growth over the side-by-side run minus its wasm half.
    let node_per_oci =
        (rss_after_latency.saturating_sub(rss_before) as f64 - grown as f64).max(0.0) / n;
    println!(
        "idle wasm pod: node RSS +{} per pod; node RSS per OCI pod (estimate) {}",
        mib(wasm_per_pod),
        mib(node_per_oci)
    );
    rows.push(Row(
        format!("memory per idle OCI busybox pod ({} pods)", args.pods),
        format!(
            "**{}**: cgroup working set {} + conmon RSS {} per pod (cgroup {version:?})",
            mib(oci_per_pod),
            mib(cgroup_bytes as f64 / n),
            mib(conmon_bytes as f64 / n)
        ),
    ));
    rows.push(Row(
        format!("memory per idle wasm hello pod ({} pods)", args.pods),
        if wasm_per_pod >= 1024.0 {
            format!(
                "**{:.0} KiB** (node RSS growth); OCI / wasm {:.0}x",
                wasm_per_pod / 1024.0,
                oci_per_pod / wasm_per_pod
            )
        } else {
            format!(
                "node RSS grew {:.0} KiB per pod, below what RSS resolves; no ratio",
                wasm_per_pod / 1024.0
            )
        },
    ));
    rows.push(Row(
        "node RSS per OCI pod besides its cgroup and conmon (estimate)".into(),
        format!(
            "{} (node growth over the side-by-side run minus the wasm pods' share)",
            mib(node_per_oci)
        ),
    ));

    Ok(rows)
}

/// Commands that undo what [`phases`] made, run in reverse order when dropped (even on error).
#[derive(Default)]
struct Undo(Vec<Vec<String>>);

impl Undo {
    fn push(&mut self, cmd: &[&str]) {
        self.0.push(cmd.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(cmd) = self.0.pop() {
            let _ = Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `cmd`, failing with its stderr; returns how long it took.
fn timed(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn ip(args: &[&str]) -> Result<Duration> {
    timed(Command::new("ip").args(args))
}

/// Where an OCI container's start time goes, timed from outside with the tools the node runs:
/// a network namespace with a veth pair, the image unpacked once (umoci) and an overlay root
/// per container, `runc create` and `runc start` of `httpd`, and `runc delete -f`.
fn phases(
    rounds: usize,
    tools: &OciTools,
    layout: &oci_image::Layout,
    work: &Path,
) -> Result<Vec<Row>> {
    let version = CgroupVersion::detect();
    let mut undo = Undo::default();
    let image = work.join("image");
    let unpack = timed(
        Command::new(&tools.umoci)
            .args(["unpack", "--image"])
            .arg(format!("{}:{}", layout.dir.display(), layout.tag))
            .arg(&image),
    )?;
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(image.join("config.json"))?)?;
    let state = work.join("runc");
    let me = std::process::id() % 10_000;
    let cgroup_parent = format!("/skiff-bench-{}", std::process::id());
    let (mut netns, mut overlay, mut create, mut start, mut delete) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let ns = format!("skiff-bench-{me}-{r}");
        let host = format!("sbh{me}x{r}");
        let peer = format!("sbp{me}x{r}");
        let mut t = Duration::ZERO;
        t += ip(&["netns", "add", &ns])?;
        undo.push(&["ip", "netns", "del", &ns]);
        t += ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
        undo.push(&["ip", "link", "del", &host]);
        t += ip(&["link", "set", &peer, "netns", &ns])?;
        t += ip(&["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
        t += ip(&["-n", &ns, "addr", "add", "169.254.77.2/30", "dev", "eth0"])?;
        t += ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        t += ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        t += ip(&["link", "set", &host, "up"])?;
        netns.push(t);

        let bundle = work.join(format!("c{r}"));
        let (upper, wdir, merged) = (
            bundle.join("upper"),
            bundle.join("work"),
            bundle.join("rootfs"),
        );
        for d in [&upper, &wdir, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let t = Instant::now();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.join("rootfs").display(),
            upper.display(),
            wdir.display()
        );
        timed(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&merged),
        )?;
        overlay.push(t.elapsed());
        undo.push(&["umount", &merged.display().to_string()]);

        let mut config = base.clone();
        config["root"] = json!({"path": merged, "readonly": false});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["httpd", "-f", "-p", "8080", "-h", "/www"]);
        config["linux"]["cgroupsPath"] = json!(format!("{cgroup_parent}/c{r}"));
        let namespaces = config["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n["type"] != "network")
            .chain([json!({"type": "network", "path": format!("/var/run/netns/{ns}")})])
            .collect::<Vec<_>>();
        config["linux"]["namespaces"] = json!(namespaces);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
        let id = format!("skiff-bench-{me}-{r}");
        // The container inherits runc's stdio: a file, not a pipe this process would wait on.
        let log = bundle.join("runc.log");
        let runc = |args: &[&str]| -> Result<Command> {
            let mut c = Command::new("runc");
            c.arg("--root")
                .arg(&state)
                .args(["--log"])
                .arg(&log)
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(bundle.join("stderr"))?);
            Ok(c)
        };
        create.push(timed(runc(&["create", "--bundle"])?.arg(&bundle).arg(&id))?);
        undo.push(&[
            "runc",
            "--root",
            &state.display().to_string(),
            "delete",
            "-f",
            &id,
        ]);
        start.push(timed(&mut runc(&["start", &id])?)?);
        delete.push(timed(&mut runc(&["delete", "-f", &id])?)?);
    }
    drop(undo);
    let _ = cgroup::remove(version, Path::new(&cgroup_parent));
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        ms(percentile(v, 0.5))
    };
    let text = format!(
        "netns + veth {} ms, overlay mount {} ms, runc create {} ms, runc start {} ms \
         (runc delete -f {} ms); image unpack once {} ms",
        med(&mut netns),
        med(&mut overlay),
        med(&mut create),
        med(&mut start),
        med(&mut delete),
        ms(unpack)
    );
    println!("start phases, median of {rounds}: {text}");
    Ok(vec![Row(
        format!("OCI start phases timed outside the node (median of {rounds})"),
        text,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_pods_ask_for_the_oci_class_on_the_bench_node() {
        let pod = busybox_pod("oci-0", "127.0.0.1:5000/bench/busybox:1.0").unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("oci"));
        assert_eq!(spec.node_name.as_deref(), Some(NODE));
        assert_eq!(
            spec.containers[0].command.as_deref(),
            Some(&["httpd", "-f", "-p", "8080", "-h", "/www"].map(String::from)[..])
        );
    }

    /// The outside timing of the start phases runs the real tools and undoes what it made.
    #[test]
    fn root_bench_oci_phases_leave_nothing_behind() {
        let test = "root_bench_oci_phases_leave_nothing_behind";
        let required = std::env::var_os("SKIFF_REQUIRE_TOOLS").is_some();
        if !is_root() {
            eprintln!("SKIPPED {test}: the start phases need root (namespaces, cgroups, mounts)");
            return;
        }
        let found = (|| {
            for (name, package) in [("runc", "runc"), ("ip", "iproute2")] {
                tool(name, package)?;
            }
            Ok::<_, anyhow::Error>(OciTools {
                umoci: tool("umoci", "umoci")?,
                skopeo: tool("skopeo", "skopeo")?,
                busybox: tool("busybox", "busybox-static")?,
            })
        })();
        let tools = match found {
            Ok(t) => t,
            Err(e) if !required => {
                eprintln!("SKIPPED {test}: {e}");
                return;
            }
            Err(e) => panic!("{test}: {e}"),
        };
        let layout = oci_image::busybox(&tools).expect("the busybox image builds");
        let work = tempfile::tempdir().unwrap();
        let rows = phases(1, &tools, &layout, work.path()).expect("the phases run");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].1.contains("runc create"), "{}", rows[0].1);
        let me = std::process::id() % 10_000;
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let netns = String::from_utf8_lossy(&netns.stdout);
        assert!(!netns.contains(&format!("skiff-bench-{me}-0")), "{netns}");
        let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        assert!(!links.contains(&format!("sbh{me}x0")), "{links}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(work.path().to_str().unwrap()), "{mounts}");
        let parent = format!("skiff-bench-{}", std::process::id());
        for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(!controller.path().join(&parent).exists());
        }
        assert!(!Path::new("/sys/fs/cgroup").join(&parent).exists());
    }
}
