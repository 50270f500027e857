//! DaemonSet end to end on simulated nodes: one pod per node, a node added later gets its pod,
//! and a template change rolls out node by node.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use skiff_testkit::fake::FakeNodeSpec;
use skiff_tests::{Cluster, image_of, node_of, wait_for};

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - {name: agent, image: example.com/agent:v1}
"#;

async fn placement(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut v: Vec<(String, String)> = api
        .list(&ListParams::default().labels("app=agent"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (node_of(&p), image_of(&p)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_covers_every_node_including_new_ones() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .fake_zones(&["a", "b", "c"])
        .start()
        .await
    else {
        return;
    };
    let client = c.client.clone();
    c.apply(DAEMONSET);
    let status = ["rollout", "status", "daemonset/agent", "--timeout=60s"];
    c.k(&status);
    let nodes: BTreeSet<String> = placement(&client).await.into_iter().map(|p| p.0).collect();
    assert_eq!(
        nodes,
        ["node-a", "node-b", "node-c"].map(String::from).into()
    );

    c.fake()
        .add(&[FakeNodeSpec::new("node-d", "zone-a")])
        .await
        .unwrap();
    wait_for("a pod on the new node", Duration::from_secs(30), || async {
        let p = placement(&client).await;
        (p.len() == 4 && p.iter().any(|(n, _)| n == "node-d")).then_some(())
    })
    .await
    .unwrap();
    c.k(&status);

    c.k(&[
        "set",
        "image",
        "daemonset/agent",
        "agent=example.com/agent:v2",
    ]);
    let out = c.try_k(&status);
    if !out.status.success() {
        let pods = c.try_k(&["get", "pods", "-o", "wide", "--show-labels"]);
        let ds = c.try_k(&["get", "ds", "agent", "-o", "yaml"]);
        panic!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&pods.stdout),
            String::from_utf8_lossy(&ds.stdout)
        );
    }
    let p = placement(&client).await;
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(
        p.iter().all(|(_, image)| image == "example.com/agent:v2"),
        "{p:?}"
    );
    let desired = c.k(&["get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled}/{.status.numberAvailable}/{.status.updatedNumberScheduled}"]);
    assert_eq!(desired.trim(), "4/4/4");
    c.shutdown().await;
}
