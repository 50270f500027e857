//! `kubectl exec` end to end: kubectl 1.32 (websocket, `v5.channel.k8s.io`) against a real
//! `skiff server`, which splices the stream to an in-process node over the fake runtime (its
//! exec runs a scripted `sh -c`): the output reaches kubectl and kubectl exits with the
//! command's code; a container the pod does not have gets Kubernetes' message; kubectl's SPDY
//! is refused with a message naming the websocket way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use skiff_host::NodeConfig;
use skiff_runtime::fake::{FakeImages, FakeRuntime};
use skiff_runtime::{Network, Runtimes};
use skiff_tests::{Server, tools, wait_object};

const NODE: &str = "exec-node";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_prints_the_output_and_exits_with_the_code() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    let server = Server::start().expect("the server starts");
    let client = server.client().await.expect("a client of the server");
    let network = Network::new();
    let mut runtimes = Runtimes::new();
    runtimes.add(
        Arc::new(FakeRuntime::new(network.clone())),
        Arc::new(FakeImages::new()),
    );
    let mut config = NodeConfig::new(
        NODE,
        client.clone(),
        runtimes,
        network,
        skiff_tests::kubelet_client_token(&server).expect("the server's node credential"),
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let node = skiff_host::start(config).await.expect("the node starts");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, containers) in [("one", vec!["app"]), ("two", vec!["a", "b"])] {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "example.com/app:1"}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": containers}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        wait_object(&pods, name, "Running", WAIT, |p| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running")
        })
        .await
        .expect("the pod runs");
    }

    let out = server
        .kubectl(
            &kubectl,
            &["exec", "one", "--", "sh", "-c", "echo hi; exit 7"],
        )
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{stderr}");
    assert_eq!(out.status.code(), Some(7), "{stderr}");

    let out = server
        .kubectl(&kubectl, &["exec", "two", "-c", "b", "--", "echo", "ok"])
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // With stdin (v5 sends it on channel 0, then closes it with a 255 frame).
    let out = server
        .kubectl_stdin(
            &kubectl,
            &["exec", "-i", "one", "--", "echo", "x"],
            Some("abc\n"),
        )
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n", "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let out = server
        .kubectl(&kubectl, &["exec", "two", "-c", "x", "--", "true"])
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("container x is not valid for pod two"),
        "{stderr}"
    );
    // kubectl's SPDY (the default before 1.30) gets a clear refusal, not a hang.
    let out = std::process::Command::new(&kubectl)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .arg("--cache-dir")
        .arg(server.dir.join("kube-cache"))
        .args(["--request-timeout=30s", "exec", "one", "--", "true"])
        .output()
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("SPDY is not supported") && stderr.contains("websocket"),
        "{stderr}"
    );
    node.shutdown().await;
}
