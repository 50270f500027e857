//! `kubectl top` against a real cluster, unmodified: `metrics.k8s.io` served by the API server from
//! the node's `/stats/summary`. A pod burning CPU (the `samples/load` guest under a request loop)
//! shows in `kubectl top pods` within 15 s of its load starting, at the rate the node process's
//! own `/proc/PID/stat` says it spent (±20%, the pod alone busy on the node); an idle pod shows
//! near zero; memory follows the guest growing its heap; `--containers` and `kubectl top nodes`
//! print their rows; `kubectl get --raw …/nodes/N/proxy/stats/summary` reaches the node.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use skiff_tests::fixtures::is_ready;
use skiff_tests::{Cluster, ok, tools, wait_for, wait_object};

const NODE: &str = "node-1";
const WAIT: Duration = Duration::from_secs(120);

/// A load pod `name` on the node (instances reused, so its grown buffer persists).
async fn load_pod(c: &Cluster, name: &str) {
    let image = format!("{}/samples/load:1.0", c.registry().addr);
    let pod: Pod = serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: load, role: {name}}}
  annotations: {{skiff.dev/reuse-instances: "true"}}
spec:
  nodeName: {NODE}
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
"#
    ))
    .expect("a pod");
    c.pods("default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    wait_object(&c.pods("default"), name, "to be Ready", WAIT, |p| {
        p.is_some_and(is_ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
}

/// The CPU time the process `pid` has used (utime + stime of `/proc/PID/stat`), in nanoseconds.
fn process_cpu_nanos(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    ticks * (1_000_000_000 / hz)
}

/// `kubectl top ARGS` with `bin`: the rows under the header, split on whitespace; `None` when
/// kubectl fails (no metrics yet).
fn top(c: &Cluster, bin: &Path, args: &[&str]) -> Option<Vec<Vec<String>>> {
    let mut all = vec!["top"];
    all.extend_from_slice(args);
    let out = c.server.kubectl(bin, &all).expect("kubectl runs");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect(),
    )
}

/// `123m` → 123; `2` → 2000.
fn millicores(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or_else(|_| panic!("cpu {q}")),
        None => q.parse::<u64>().unwrap_or_else(|_| panic!("cpu {q}")) * 1000,
    }
}

/// `12Mi` → 12.
fn mebibytes(q: &str) -> u64 {
    q.strip_suffix("Mi")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("memory {q}"))
}

/// A pod's (CPU millicores, memory MiB) in `kubectl top pods` output.
fn row(rows: &[Vec<String>], name: &str) -> Option<(u64, u64)> {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
        .map(|r| (millicores(&r[1]), mebibytes(&r[2])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_top_shows_a_busy_pod_at_the_rate_its_node_spent_and_memory_as_it_grows() {
    let Some(c) = Cluster::builder()
        .push("load/load.wasm", "samples/load:1.0")
        .node(NODE, &[])
        .kubectl()
        .start()
        .await
    else {
        return;
    };
    let kubectl = c.kubectl_path().to_path_buf();
    load_pod(&c, "burner").await;
    load_pod(&c, "idler").await;
    let node = c.node(NODE);

    // kubelet's endpoints through the API server's node proxy.
    let raw = c.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
    ]);
    let summary: skiff_meta::stats::Summary =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_eq!(summary.node.node_name, NODE);
    let text = c.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/metrics/resource"),
    ]);
    assert!(text.contains("node_cpu_usage_seconds_total"), "{text}");

    // One request after another, each burning 300 ms, on one pod.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let burner = {
        let (stop, started) = (stop.clone(), started.clone());
        let (addr, token) = (node.addr.clone(), node.token.clone());
        std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = skiff_tests::http_get(
                    &addr,
                    "/proxy/default/burner/8080/burn?ms=300",
                    Some(&token),
                    Duration::from_secs(30),
                )
                .expect("the burn answers");
                assert_eq!(status, 200, "{body}");
                started
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| Instant::now() - Duration::from_millis(300));
                served += 1;
            }
            served
        })
    };
    let (burning, elapsed) = wait_for("kubectl top to show the burner busy", WAIT, || async {
        let rows = top(&c, &kubectl, &["pods"])?;
        let (cpu, _) = row(&rows, "burner")?;
        let since = (*started.lock().unwrap())?.elapsed();
        (cpu >= 100).then_some((cpu, since))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    println!(
        "kubectl top showed the burner at {burning}m {:.1} s after its load started",
        elapsed.as_secs_f64()
    );
    assert!(
        elapsed <= Duration::from_secs(15),
        "kubectl top showed the burner only after {elapsed:?}"
    );

    // The rate kubectl shows against what the node process spent over the same span: the
    // node's figure is a rate over its last 5 s, so the process is measured over ~6 s ending
    // when kubectl asks.
    let pid = node.pid().expect("the node runs");
    let (proc0, t0) = (process_cpu_nanos(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (proc1, t1) = (process_cpu_nanos(pid), Instant::now());
    let rows = top(&c, &kubectl, &["pods"]).expect("kubectl top pods");
    let (shown, _) = row(&rows, "burner").expect("the burner's row");
    let spent = (proc1 - proc0) as f64 / 1e6 / (t1 - t0).as_secs_f64();
    println!("kubectl top shows the burner at {shown}m; the node process spent {spent:.0}m");
    let ratio = shown as f64 / spent;
    assert!((0.8..=1.2).contains(&ratio), "ratio {ratio}: {rows:?}");
    let (idle, _) = row(&rows, "idler").expect("the idler's row");
    assert!(idle <= shown / 20, "idler at {idle}m against {shown}m");

    // --containers, a selector, and kubectl 1.37 (aggregated discovery v2).
    let rows = top(&c, &kubectl, &["pods", "--containers", "-l", "role=burner"])
        .expect("kubectl top pods --containers");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0][0].as_str(), rows[0][1].as_str()),
        ("burner", "app")
    );
    assert!(millicores(&rows[0][2]) >= 100, "{rows:?}");
    if let Some(bin) = tools::kubectl_137() {
        let rows = top(&c, &bin, &["pods", "-A"]).expect("kubectl 1.37 top pods -A");
        assert!(
            rows.iter().any(|r| r[0] == "default" && r[1] == "burner"),
            "{rows:?}"
        );
    }
    let rows = top(&c, &kubectl, &["nodes"]).expect("kubectl top nodes");
    let node_row = rows
        .iter()
        .find(|r| r[0] == NODE)
        .unwrap_or_else(|| panic!("{NODE} in {rows:?}"));
    assert!(millicores(&node_row[1]) >= 100, "{rows:?}");
    assert!(
        node_row[2].ends_with('%') && node_row[3].ends_with("Mi"),
        "{rows:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let served = burner.join().expect("the burner thread");
    println!("{served} burn requests served");

    // A pod without metrics is kubectl's NotFound; memory follows the guest's heap.
    let out = c
        .server
        .kubectl(&kubectl, &["top", "pod", "nope"])
        .expect("kubectl runs");
    assert!(!out.status.success());
    let before = row(&top(&c, &kubectl, &["pods"]).expect("top"), "idler")
        .expect("the idler's row")
        .1;
    let (status, body) = node
        .get("/proxy/default/idler/8080/grow?kib=32768")
        .expect("the node answers");
    assert_eq!((status, body.trim()), (200, "33554432"));
    let grown = wait_for("kubectl top to show the idler grown", WAIT, || async {
        let (_, memory) = row(&top(&c, &kubectl, &["pods", "idler"])?, "idler")?;
        (memory >= before + 31).then_some(memory)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    println!("idler at {before}Mi before, {grown}Mi after growing 32 MiB");
    let out = ok(&c
        .server
        .kubectl(&kubectl, &["get", "podmetrics", "idler"])
        .expect("kubectl runs"));
    assert!(out.contains("idler"), "{out}");
    c.shutdown().await;
}
