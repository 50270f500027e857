//! The node agent on the in-process tier: a real `skiff_host` node with the fake runtime backend,
//! talking to the API router on the memory store through a kube client — no processes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_host::NodeConfig;
use skiff_runtime::fake::{FakeImages, FakeRuntime};
use skiff_runtime::{Network, Runtimes};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// A pod bound to an in-process node runs, reports kubelet-style status (keeping the QoS class
/// the API server set: a zero cpu request stays BestEffort), and goes away when deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_a_bound_pod_and_reports_its_status() {
    let api = InProcess::start().await.unwrap();
    let network = Network::new();
    let mut runtimes = Runtimes::new();
    runtimes.add(
        Arc::new(FakeRuntime::new(network.clone())),
        Arc::new(FakeImages::new()),
    );
    let mut config = NodeConfig::new(
        "node-a",
        api.client.clone(),
        runtimes,
        network,
        "endpoint-token",
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let node = skiff_host::start(config).await.expect("the node starts");

    let nodes: Api<Node> = Api::all(api.client.clone());
    wait_object(&nodes, "node-a", DEADLINE, |n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await
    .expect("the Node registers and is Ready");

    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "example.com/app:1",
                            "resources": {"requests": {"cpu": "0"}}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_object(&pods, "web", DEADLINE, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && condition(p, "Ready").as_deref() == Some("True")
    })
    .await
    .expect("the pod runs and is Ready");
    let status = running.status.unwrap();
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.pod_ip.is_some(), "the pod has an IP");
    let app = &status.container_statuses.unwrap()[0];
    assert!(
        app.ready && app.state.as_ref().unwrap().running.is_some(),
        "{app:?}"
    );

    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_deleted(&pods, "web", DEADLINE)
        .await
        .expect("the node stops the pod and it is deleted");
    node.shutdown().await;
}
