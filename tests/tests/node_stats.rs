//! kubelet's usage endpoints on a real `skiff node`: `/stats/summary` and `/metrics/resource`
//! answer the API server's credential and refuse users; a pod burning CPU (the `samples/load`
//! guest, requests one after another) is charged within ±20% of what the node process's own
//! `/proc/PID/stat` says it spent over the same interval, an idle pod stays near zero, and a
//! pod's memory follows its guest growing its heap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use skiff_meta::stats::{PodStats, Summary};
use skiff_tests::fixtures::is_ready;
use skiff_tests::{Cluster, Node, wait_for, wait_object};

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

fn summary(node: &Node) -> Summary {
    let (status, body) = node.get("/stats/summary").expect("the node answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn pod<'a>(s: &'a Summary, name: &str) -> &'a PodStats {
    s.pods
        .iter()
        .find(|p| p.pod_ref.name == name)
        .unwrap_or_else(|| panic!("no pod {name} in {s:?}"))
}

fn cpu_nanos(p: &PodStats) -> u64 {
    p.cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds)
        .expect("cumulative CPU")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_serves_usage_a_busy_pod_as_its_process_spent_it_and_memory_as_it_grows() {
    let Some(c) = Cluster::builder()
        .push("load/load.wasm", "samples/load:1.0")
        .node(NODE, &[])
        .start()
        .await
    else {
        return;
    };
    load_pod(&c, "burner").await;
    load_pod(&c, "idler").await;
    let node = c.node(NODE);

    // Only the API server's credential gets in.
    let admin = c.server.token().expect("the admin token");
    for path in ["/stats/summary", "/metrics/resource"] {
        let (status, _) = node.request(path, None).expect("the node answers");
        assert_eq!(status, 401, "{path} without a token");
        let (status, body) = node.request(path, Some(&admin)).expect("the node answers");
        assert!(
            status == 401 || status == 403,
            "{path} with the admin's token: {status} {body}"
        );
    }

    let s = summary(node);
    assert_eq!(s.node.node_name, NODE);
    assert!(s.node.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds) > Some(0));
    assert!(s.node.memory.as_ref().and_then(|m| m.working_set_bytes) > Some(0));
    for name in ["burner", "idler"] {
        let p = pod(&s, name);
        assert_eq!(p.pod_ref.namespace, "default");
        assert!(!p.pod_ref.uid.is_empty());
        assert_eq!(p.containers.len(), 1, "{p:?}");
        assert_eq!(p.containers[0].name, "app");
        assert!(p.containers[0].start_time.is_some());
        assert!(p.start_time.is_some());
    }

    // One request after another, each burning 300 ms, on one pod.
    let stop = Arc::new(AtomicBool::new(false));
    let burner = {
        let (stop, addr, token) = (stop.clone(), node.addr.clone(), node.token.clone());
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
                served += 1;
            }
            served
        })
    };
    // Into the burn, then measured over a few seconds.
    let pid = node.pid().expect("the node runs");
    wait_for("the burner to use CPU", WAIT, || async {
        let s = summary(node);
        (pod(&s, "burner").cpu.as_ref()?.usage_nano_cores? > 100_000_000).then_some(())
    })
    .await
    .expect("the burning pod shows a rate");
    let (pod0, proc0) = (
        cpu_nanos(pod(&summary(node), "burner")),
        process_cpu_nanos(pid),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = summary(node);
    let (pod1, proc1) = (cpu_nanos(pod(&s, "burner")), process_cpu_nanos(pid));
    stop.store(true, Ordering::Relaxed);
    let served = burner.join().expect("the burner thread");
    let (charged, spent) = (pod1 - pod0, proc1 - proc0);
    println!(
        "burner charged {} ms; the node process spent {} ms ({served} requests)",
        charged / 1_000_000,
        spent / 1_000_000
    );
    let ratio = charged as f64 / spent as f64;
    assert!((0.8..=1.2).contains(&ratio), "ratio {ratio}");

    let burning = pod(&s, "burner")
        .cpu
        .as_ref()
        .unwrap()
        .usage_nano_cores
        .unwrap();
    let idle = pod(&s, "idler")
        .cpu
        .as_ref()
        .unwrap()
        .usage_nano_cores
        .unwrap_or(0);
    println!(
        "burner at {}m, idler at {}m",
        burning / 1_000_000,
        idle / 1_000_000
    );
    assert!(idle < burning / 20, "idler {idle} against burner {burning}");
    // The container's figures are the pod's (one container).
    let container = &pod(&s, "burner").containers[0];
    assert_eq!(
        container.cpu.as_ref().unwrap().usage_core_nano_seconds,
        Some(pod1)
    );

    // The same figures in kubelet's Prometheus series.
    let (status, text) = node.get("/metrics/resource").expect("the node answers");
    assert_eq!(status, 200, "{text}");
    let series = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"));
        let fields: Vec<&str> = line.rsplitn(3, ' ').collect();
        assert!(
            fields[0].parse::<i64>().unwrap() > 0,
            "a millisecond timestamp: {line}"
        );
        fields[1].parse().unwrap()
    };
    let seconds = series(
        r#"container_cpu_usage_seconds_total{container="app",namespace="default",pod="burner"} "#,
    );
    assert!(seconds * 1e9 >= pod1 as f64 * 0.999, "{seconds} s");
    series(r#"pod_cpu_usage_seconds_total{namespace="default",pod="burner"} "#);
    series(
        r#"container_memory_working_set_bytes{container="app",namespace="default",pod="idler"} "#,
    );
    series(r#"container_start_time_seconds{container="app",namespace="default",pod="burner"} "#);
    series("node_cpu_usage_seconds_total ");
    series("node_memory_working_set_bytes ");
    assert!(text.contains("\nresource_scrape_error 0\n"), "{text}");

    // Memory follows the guest's heap (its instance is reused, so the buffer stays).
    let memory = |s: &Summary| {
        pod(s, "idler")
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .expect("a working set")
    };
    let before = memory(&summary(node));
    let (status, body) = node
        .get("/proxy/default/idler/8080/grow?kib=32768")
        .expect("the node answers");
    assert_eq!((status, body.trim()), (200, "33554432"));
    let grown = wait_for("the idler's memory to grow", WAIT, || async {
        let m = memory(&summary(node));
        (m >= before + (32 << 20)).then_some(m)
    })
    .await
    .expect("the pod's memory follows its heap");
    println!(
        "idler working set {} KiB before, {} KiB after growing 32 MiB",
        before / 1024,
        grown / 1024
    );
    c.shutdown().await;
}
