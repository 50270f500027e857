//! Node-pressure eviction on a real `skiff node` given a 2 GiB memory capacity and
//! `--eviction-hard memory.available<1Gi`: three `samples/load` guests (BestEffort from a
//! ReplicaSet, Burstable, Guaranteed) grow the buffers they keep until the node runs short;
//! the BestEffort pod goes first, then the Burstable one, never the Guaranteed one — each
//! `Failed` with reason `Evicted`, kubelet's message and an `Evicted` Event. Meanwhile the Node
//! reports `MemoryPressure=True` and carries the `node.kubernetes.io/memory-pressure:NoSchedule`
//! taint, so the ReplicaSet's replacement runs on the other node; both go once memory is back
//! and the transition period has passed. Allocatable is capacity less the hard threshold.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node as KNode, Pod};
use kube::api::{ListParams, PostParams};
use skiff_tests::fixtures::{is_ready, node_of, phase};
use skiff_tests::{Cluster, wait_for, wait_object};

const NODE: &str = "pressure";
const SPARE: &str = "spare";
const WAIT: Duration = Duration::from_secs(120);

/// A load pod bound to the pressured node, its instance reused (so its buffer stays), with
/// these `resources`.
fn load_pod(image: &str, name: &str, resources: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{skiff.dev/reuse-instances: "true"}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
    resources: {resources}
"#
    ))
    .expect("a pod")
}

fn condition(n: &KNode, kind: &str) -> Option<(String, String)> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

fn tainted(n: &KNode) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == "node.kubernetes.io/memory-pressure" && t.effect == "NoSchedule")
        })
}

fn evicted(p: Option<&Pod>) -> bool {
    p.and_then(|p| p.status.as_ref())
        .is_some_and(|s| s.reason.as_deref() == Some("Evicted"))
}

/// Grows the pod's kept buffer by `mib` MiB through the node endpoint.
fn grow(c: &Cluster, pod: &str, mib: u64) {
    let (status, body) = c
        .node(NODE)
        .get(&format!(
            "/proxy/default/{pod}/8080/grow?kib={}",
            mib * 1024
        ))
        .expect("the node answers");
    assert_eq!(status, 200, "growing {pod}: {body}");
}

async fn running(c: &Cluster, name: &str) -> bool {
    c.pods("default")
        .get(name)
        .await
        .ok()
        .is_some_and(|p| phase(&p) == Some("Running") && !evicted(Some(&p)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_pressure_evicts_besteffort_then_burstable_and_never_guaranteed() {
    let Some(mut c) = Cluster::builder()
        .push("load/load.wasm", "samples/load:1.0")
        .node(
            NODE,
            &[
                "--memory-capacity",
                "2Gi",
                "--eviction-hard",
                "memory.available<1Gi",
                "--eviction-monitoring-period",
                "1s",
                "--eviction-pressure-transition-period",
                "15s",
            ],
        )
        .start()
        .await
    else {
        return;
    };
    let nodes: kube::Api<KNode> = kube::Api::all(c.client.clone());
    let node = nodes.get(NODE).await.expect("the node");
    let status = node.status.clone().expect("a status");
    assert_eq!(
        status.capacity.as_ref().expect("capacity")["memory"].0,
        "2097152Ki"
    );
    assert_eq!(
        status.allocatable.as_ref().expect("allocatable")["memory"].0,
        "1048576Ki",
        "allocatable = capacity − the hard threshold"
    );
    assert_eq!(
        condition(&node, "MemoryPressure"),
        Some(("False".into(), "KubeletHasSufficientMemory".into()))
    );

    let image = format!("{}/samples/load:1.0", c.registry().addr);
    let pods = c.pods("default");
    // BestEffort, from a ReplicaSet (scheduled: the only node is the pressured one).
    let rs: ReplicaSet = serde_yaml::from_str(&format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: best-effort}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: best-effort}}}}
  template:
    metadata:
      labels: {{app: best-effort}}
      annotations: {{skiff.dev/reuse-instances: "true"}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 8080}}]
"#
    ))
    .expect("a ReplicaSet");
    c.api::<ReplicaSet>("default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("ReplicaSet created");
    for (name, resources) in [
        (
            "burstable",
            "{requests: {memory: 64Mi, cpu: 100m}, limits: {memory: 1536Mi}}",
        ),
        (
            "guaranteed",
            "{requests: {memory: 320Mi, cpu: 500m}, limits: {memory: 320Mi, cpu: 500m}}",
        ),
    ] {
        pods.create(&PostParams::default(), &load_pod(&image, name, resources))
            .await
            .expect("pod created");
    }
    let best_effort = wait_for("the BestEffort pod to run", WAIT, || async {
        let p = c.live_pods("default", "app=best-effort").await;
        p.into_iter().find(is_ready).and_then(|p| p.metadata.name)
    })
    .await
    .expect("the ReplicaSet's pod runs");
    for name in ["burstable", "guaranteed", best_effort.as_str()] {
        wait_object(&pods, name, "to be Ready", WAIT, |p| {
            p.is_some_and(is_ready)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    }
    let qos = |p: &Pod| p.status.as_ref().and_then(|s| s.qos_class.clone());
    assert_eq!(
        qos(&pods.get(&best_effort).await.unwrap()).as_deref(),
        Some("BestEffort")
    );
    assert_eq!(
        qos(&pods.get("burstable").await.unwrap()).as_deref(),
        Some("Burstable")
    );
    assert_eq!(
        qos(&pods.get("guaranteed").await.unwrap()).as_deref(),
        Some("Guaranteed")
    );
    // The other node joins now: the replacement has somewhere to go.
    c.add_node(SPARE, &[]).await;

    // 400 MiB in use by the pods: no pressure yet.
    grow(&c, "guaranteed", 200);
    grow(&c, "burstable", 200);
    // The BestEffort pod takes the node past the threshold (1.1 GiB in the pods alone): it
    // is evicted, and only it.
    grow(&c, &best_effort, 700);
    let gone = wait_object(&pods, &best_effort, "to be evicted", WAIT, evicted)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()))
        .expect("the pod stays, Failed");
    let st = gone.status.clone().expect("a status");
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    let message = st.message.unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1Gi, available: "
        ),
        "{message}"
    );
    assert!(
        message.contains("Container app was using ")
            && message.ends_with(", request is 0, has larger consumption of memory. "),
        "{message}"
    );
    assert!(
        st.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "DisruptionTarget"
                && c.status == "True"
                && c.reason.as_deref() == Some("TerminationByKubelet")),
        "{:?}",
        st.conditions
    );
    let events = c.events_about("default", &best_effort).await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Evicted")
            && e.type_.as_deref() == Some("Warning")
            && e.message.as_deref() == Some(message.as_str())),
        "{events:?}"
    );
    // The Node says so, and is tainted.
    wait_object(&nodes, NODE, "MemoryPressure and its taint", WAIT, |n| {
        n.is_some_and(|n| {
            condition(n, "MemoryPressure")
                == Some(("True".into(), "KubeletHasInsufficientMemory".into()))
                && tainted(n)
        })
    })
    .await
    .expect("MemoryPressure=True and the memory-pressure taint");
    // The ReplicaSet's replacement runs on the other node.
    let replacement = wait_for("the replacement to run elsewhere", WAIT, || async {
        c.live_pods("default", "app=best-effort")
            .await
            .into_iter()
            .find(|p| is_ready(p) && p.metadata.name.as_deref() != Some(best_effort.as_str()))
    })
    .await
    .expect("a replacement runs");
    assert_eq!(node_of(&replacement), SPARE);

    // Back under the threshold: the condition and the taint go after the transition period,
    // and the other pods were left alone.
    wait_object(&nodes, NODE, "no MemoryPressure, no taint", WAIT, |n| {
        n.is_some_and(|n| {
            condition(n, "MemoryPressure")
                == Some(("False".into(), "KubeletHasSufficientMemory".into()))
                && !tainted(n)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    assert!(running(&c, "burstable").await);
    assert!(running(&c, "guaranteed").await);

    // The Burstable pod grows well past its request (to 1000 MiB): it goes, the Guaranteed
    // one stays.
    // The eviction may end the pod while the grow request is still running (the node samples
    // every second): then the request fails, and the eviction below is what counts.
    let (status, body) = c
        .node(NODE)
        .get(&format!(
            "/proxy/default/burstable/8080/grow?kib={}",
            800 * 1024
        ))
        .expect("the node answers");
    println!("growing burstable by 800 MiB: {status} {body}");
    let gone = wait_object(&pods, "burstable", "to be evicted", WAIT, evicted)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()))
        .expect("the pod stays, Failed");
    let message = gone.status.and_then(|s| s.message).unwrap_or_default();
    assert!(
        message.contains(", request is 64Mi, has larger consumption of memory. "),
        "{message}"
    );
    wait_object(&nodes, NODE, "no MemoryPressure again", WAIT, |n| {
        n.is_some_and(|n| {
            condition(n, "MemoryPressure").is_some_and(|(s, _)| s == "False") && !tainted(n)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    assert!(running(&c, "guaranteed").await, "{}", c.node_logs());
    let evicted_pods: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| {
            // A replacement the node refused while under pressure says "had condition".
            evicted(Some(p))
                && p.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.starts_with("The node was low on resource: memory."))
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(evicted_pods.len(), 2, "{evicted_pods:?}");
    c.shutdown().await;
}
