//! The node lifecycle controller's taints by condition: a Node reporting `MemoryPressure=True`
//! gets `node.kubernetes.io/memory-pressure:NoSchedule`, which goes when the condition does.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::{Clock, Options};
use skiff_testkit::inproc::{InProcess, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);
const TAINT: &str = "node.kubernetes.io/memory-pressure";

fn tainted(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == TAINT && t.effect == "NoSchedule")
        })
}

async fn set_pressure(nodes: &Api<Node>, status: &str) {
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [
        {"type": "MemoryPressure", "status": status, "reason": "Test", "message": "test",
         "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
         "lastHeartbeatTime": now, "lastTransitionTime": now},
    ]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("status patched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_taints_the_node_while_it_lasts() {
    let api = InProcess::start().await.unwrap();
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("nodelifecycle").expect("known controller");
    let _c = skiff_controllers::start(api.client.clone(), opts);
    let nodes: Api<Node> = Api::all(api.client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    set_pressure(&nodes, "False").await;
    set_pressure(&nodes, "True").await;
    wait_object(&nodes, "n1", DEADLINE, tainted)
        .await
        .expect("the memory-pressure taint");
    set_pressure(&nodes, "False").await;
    let n = wait_object(&nodes, "n1", DEADLINE, |n| !tainted(n))
        .await
        .expect("the taint goes with the condition");
    // Nothing else was tainted for a Ready node with a fresh heartbeat.
    assert!(n.spec.and_then(|s| s.taints).unwrap_or_default().is_empty());
}
