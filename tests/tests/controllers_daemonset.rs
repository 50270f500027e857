//! DaemonSet end to end on simulated nodes: one pod per node, a node added later gets its pod,
//! and a template change rolls out node by node.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use skiff_controllers::fake::{FakeNodeSpec, FakeNodes};
use skiff_tests::{Server, ok, tools, wait_for};

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
        .map(|p| {
            let spec = p.spec.unwrap();
            (
                spec.node_name.unwrap_or_default(),
                spec.containers[0].image.clone().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_covers_every_node_including_new_ones() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    let server = Server::start().expect("server starts");
    let client = server.client().await.expect("client");
    let fake = FakeNodes::start(client.clone()).await;
    fake.add(&[
        FakeNodeSpec::new("node-a", "zone-a"),
        FakeNodeSpec::new("node-b", "zone-b"),
        FakeNodeSpec::new("node-c", "zone-c"),
    ])
    .await
    .unwrap();
    ok(&server
        .kubectl_stdin(&kubectl, &["apply", "-f", "-"], Some(DAEMONSET))
        .unwrap());
    let status = ["rollout", "status", "daemonset/agent", "--timeout=60s"];
    ok(&server.kubectl(&kubectl, &status).unwrap());
    let nodes: BTreeSet<String> = placement(&client).await.into_iter().map(|p| p.0).collect();
    assert_eq!(
        nodes,
        ["node-a", "node-b", "node-c"].map(String::from).into()
    );

    fake.add(&[FakeNodeSpec::new("node-d", "zone-a")])
        .await
        .unwrap();
    wait_for("a pod on the new node", Duration::from_secs(30), || async {
        let p = placement(&client).await;
        (p.len() == 4 && p.iter().any(|(n, _)| n == "node-d")).then_some(())
    })
    .await
    .unwrap();
    ok(&server.kubectl(&kubectl, &status).unwrap());

    ok(&server
        .kubectl(
            &kubectl,
            &[
                "set",
                "image",
                "daemonset/agent",
                "agent=example.com/agent:v2",
            ],
        )
        .unwrap());
    let out = server.kubectl(&kubectl, &status).unwrap();
    if !out.status.success() {
        let pods = server
            .kubectl(&kubectl, &["get", "pods", "-o", "wide", "--show-labels"])
            .unwrap();
        let ds = server
            .kubectl(&kubectl, &["get", "ds", "agent", "-o", "yaml"])
            .unwrap();
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
    let desired = ok(&server
        .kubectl(
            &kubectl,
            &["get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled}/{.status.numberAvailable}/{.status.updatedNumberScheduled}"],
        )
        .unwrap());
    assert_eq!(desired.trim(), "4/4/4");
    fake.shutdown().await;
}
