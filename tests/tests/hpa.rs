//! The HorizontalPodAutoscaler end to end: an HPA (`cpu` 50% of a 100m request, min 1, max 5,
//! short stabilization windows) on a Deployment of the `samples/load` guest scales it up under
//! load (requests burning CPU, sent through the node endpoint's pod proxy to every pod in turn)
//! and back down once the load stops; `kubectl get hpa` shows the targets as Kubernetes prints
//! them, `kubectl describe hpa` the metrics, conditions and Events; each rescale has a
//! `SuccessfulRescale` Event saying why; a Deployment at zero replicas is left there
//! (`ScalingDisabled`, the scale-to-zero case); `kubectl autoscale` creates an HPA the
//! controller serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use skiff_tests::fixtures::is_ready;
use skiff_tests::{Cluster, ok, tools, wait_for};

const NODE: &str = "node-1";
/// The acceptance bound for the scale-up.
const SCALE_UP: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(180);

fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 8080}}]
        resources:
          requests: {{cpu: 100m}}
"#
    )
}

const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
  behavior:
    scaleUp: {stabilizationWindowSeconds: 0}
    scaleDown: {stabilizationWindowSeconds: 10}
"#;

/// `kubectl ARGS`, whatever it printed (for failure messages).
fn show(c: &Cluster, args: &[&str]) -> String {
    let out = c.try_k(args);
    format!(
        "$ kubectl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The ready pods of the Deployment `app`.
async fn ready_pods(c: &Cluster, app: &str) -> Vec<String> {
    let pods = c
        .pods("default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.iter()
        .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

async fn replicas(c: &Cluster, name: &str) -> i32 {
    let d: Deployment = c
        .api::<Deployment>("default")
        .get(name)
        .await
        .expect("the deployment");
    d.spec.and_then(|s| s.replicas).unwrap_or(1)
}

async fn hpa(c: &Cluster, name: &str) -> HorizontalPodAutoscaler {
    c.api::<HorizontalPodAutoscaler>("default")
        .get(name)
        .await
        .expect("the hpa")
}

fn condition(h: &HorizontalPodAutoscaler, type_: &str) -> Option<(String, String)> {
    h.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// The messages of the HPA's `SuccessfulRescale` Events.
async fn rescales(c: &Cluster, name: &str) -> Vec<String> {
    let events = c
        .api::<Event>("default")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("HorizontalPodAutoscaler")
                && e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some("SuccessfulRescale")
        })
        .filter_map(|e| e.message.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_hpa_scales_a_busy_deployment_up_and_back_down() {
    let Some(c) = Cluster::builder()
        .push("load/load.wasm", "samples/load:1.0")
        .server_args(&[
            "--horizontal-pod-autoscaler-sync-period",
            "2s",
            "--horizontal-pod-autoscaler-cpu-initialization-period",
            "15s",
        ])
        .node(NODE, &[])
        .kubectl()
        .start()
        .await
    else {
        return;
    };
    let image = format!("{}/samples/load:1.0", c.registry().addr);
    c.apply(&deployment("web", &image));
    wait_for("the first pod to be ready", WAIT, || async {
        (!ready_pods(&c, "web").await.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    c.apply(HPA);

    // Idle at one replica, the HPA reports a valid metric and shows the target.
    let idle = wait_for("the HPA to measure the idle deployment", WAIT, || async {
        let h = hpa(&c, "web").await;
        (condition(&h, "ScalingActive")?.1 == "ValidMetricFound").then_some(h)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));
    assert_eq!(
        idle.status.as_ref().and_then(|s| s.current_replicas),
        Some(1)
    );

    // Load: one request after another, each burning 200 ms, on every ready pod in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let targets = Arc::new(Mutex::new(ready_pods(&c, "web").await));
    let node = c.node(NODE);
    let loader = {
        let (stop, targets) = (stop.clone(), targets.clone());
        let (addr, token) = (node.addr.clone(), node.token.clone());
        std::thread::spawn(move || {
            let mut served = 0u64;
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let pod = {
                    let t = targets.lock().unwrap();
                    if t.is_empty() {
                        None
                    } else {
                        turn = turn.wrapping_add(1);
                        Some(t[turn % t.len()].clone())
                    }
                };
                let Some(pod) = pod else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let path = format!("/proxy/default/{pod}/8080/burn?ms=200");
                if let Ok((200, _)) =
                    skiff_tests::http_get(&addr, &path, Some(&token), Duration::from_secs(30))
                {
                    served += 1;
                }
            }
            served
        })
    };
    let started = Instant::now();
    let up = wait_for(
        "the HPA to scale the busy deployment up",
        SCALE_UP,
        || async {
            *targets.lock().unwrap() = ready_pods(&c, "web").await;
            let n = replicas(&c, "web").await;
            (n > 1).then_some(n)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\n{}\n{}",
            show(&c, &["describe", "hpa", "web"]),
            show(&c, &["top", "pods"])
        )
    });
    println!(
        "scaled up to {up} replicas {:.1} s after the load started",
        started.elapsed().as_secs_f64()
    );

    // kubectl get hpa: Kubernetes' columns, the targets as `cpu: N%/50%`.
    let table = wait_for("kubectl get hpa to show the utilization", WAIT, || async {
        *targets.lock().unwrap() = ready_pods(&c, "web").await;
        let out = c.k(&["get", "hpa", "web"]);
        let row = out.lines().nth(1)?.to_string();
        let target = row.split_whitespace().nth(3)?;
        (target.ends_with("%/50%") && !target.contains("unknown")).then_some(out)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    println!("{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "Deployment/web"]);
    assert_eq!(row[2], "cpu:");
    assert_eq!((row[4], row[5]), ("1", "5"));

    // More replicas while the load lasts; a rescale Event says why.
    let most = wait_for("the HPA to reach more replicas", WAIT, || async {
        *targets.lock().unwrap() = ready_pods(&c, "web").await;
        let n = replicas(&c, "web").await;
        (n >= 3).then_some(n)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));
    println!("{most} replicas under load");
    let up_event = "; reason: cpu resource utilization (percentage of request) above target";
    wait_for("the scale-up Event", WAIT, || async {
        let events = rescales(&c, "web").await;
        events
            .iter()
            .any(|m| m.starts_with("New size: ") && m.ends_with(up_event))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));

    // kubectl describe hpa: metrics, conditions and events as Kubernetes shows them.
    let mut describers = vec![c.kubectl_path().to_path_buf()];
    describers.extend(tools::kubectl_137());
    for bin in &describers {
        let out = ok(&c
            .server
            .kubectl(bin, &["describe", "hpa", "web"])
            .expect("kubectl runs"));
        for want in [
            "Reference:",
            "Deployment/web",
            "resource cpu on pods  (as a percentage of request):",
            "/ 50%",
            "Min replicas:",
            "Max replicas:",
            "Conditions:",
            "AbleToScale",
            "ScalingActive",
            "ValidMetricFound",
            "SuccessfulRescale",
            "horizontal-pod-autoscaler",
        ] {
            assert!(
                out.contains(want),
                "{} lacks {want:?}:\n{out}",
                bin.display()
            );
        }
        println!("{}:\n{out}", bin.display());
    }

    // The load stops: back to one replica after the short scale-down window.
    stop.store(true, Ordering::Relaxed);
    let served = loader.join().expect("the load thread");
    println!("{served} burn requests served");
    let stopped = Instant::now();
    wait_for(
        "the HPA to scale the idle deployment down",
        WAIT,
        || async { (replicas(&c, "web").await == 1).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));
    println!(
        "back to one replica {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
    let events = wait_for("the scale-down Event", WAIT, || async {
        let events = rescales(&c, "web").await;
        events
            .iter()
            .any(|m| m == "New size: 1; reason: All metrics below target")
            .then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    println!("{events:#?}");

    // At zero replicas (what scale-to-zero does to an idle Deployment) the HPA stands aside.
    c.k(&["scale", "deployment", "web", "--replicas=0"]);
    let h = wait_for("the HPA to report scaling disabled", WAIT, || async {
        let h = hpa(&c, "web").await;
        (condition(&h, "ScalingActive")? == ("False".into(), "ScalingDisabled".into())).then_some(h)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));
    assert_eq!(h.status.as_ref().map(|s| s.desired_replicas), Some(0));
    assert_eq!(replicas(&c, "web").await, 0);
    // Woken to one, the HPA holds it within min and max again.
    c.k(&["scale", "deployment", "web", "--replicas=1"]);
    wait_for("the HPA to take over again", WAIT, || async {
        let h = hpa(&c, "web").await;
        (condition(&h, "ScalingActive")?.0 == "True").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "web"])));
    assert_eq!(replicas(&c, "web").await, 1);

    // kubectl autoscale makes an HPA the controller serves (below its minimum: raised to it).
    c.apply(&deployment("other", &image));
    c.k(&[
        "autoscale",
        "deployment",
        "other",
        "--cpu-percent=50",
        "--min=2",
        "--max=3",
    ]);
    let made = hpa(&c, "other").await;
    let spec = made.spec.clone().expect("a spec");
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 3));
    let metric = &spec.metrics.expect("metrics")[0];
    assert_eq!(
        metric
            .resource
            .as_ref()
            .map(|r| (r.name.as_str(), r.target.average_utilization)),
        Some(("cpu", Some(50)))
    );
    wait_for(
        "the autoscaled deployment to reach its minimum",
        WAIT,
        || async { (replicas(&c, "other").await == 2).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "other"])));
    let want = "New size: 2; reason: Current number of replicas below Spec.MinReplicas";
    wait_for(
        "the autoscaled deployment's rescale Event",
        WAIT,
        || async {
            rescales(&c, "other")
                .await
                .iter()
                .any(|m| m == want)
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show(&c, &["describe", "hpa", "other"])));
    // The same object through autoscaling/v1.
    let v1 = c.k(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/other",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).expect("JSON");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    assert_eq!(v1["spec"]["minReplicas"], 2, "{v1}");
    // kubectl 1.37's autoscale, admitted by the server (a dry run: the Deployment keeps one HPA).
    if let Some(bin) = tools::kubectl_137() {
        let out = ok(&c
            .server
            .kubectl(
                &bin,
                &[
                    "autoscale",
                    "deployment",
                    "other",
                    "--name=other137",
                    "--cpu-percent=60",
                    "--min=1",
                    "--max=3",
                    "--dry-run=server",
                    "-o",
                    "json",
                ],
            )
            .expect("kubectl runs"));
        let made: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let cpu = match made["apiVersion"].as_str() {
            Some("autoscaling/v1") => made["spec"]["targetCPUUtilizationPercentage"].clone(),
            _ => made["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"].clone(),
        };
        assert_eq!(cpu, 60, "{made}");
    }
    c.shutdown().await;
}
