//! Leader election: two controller managers against one API server; only the Lease holder acts,
//! and the standby takes over when the leader stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use skiff_controllers::fake::{FakeNodeSpec, FakeNodes};
use skiff_controllers::leader::ElectionOptions;
use skiff_tests::{Server, ok, tools, wait_for};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: app, image: example.com/hello:v1}
"#;

fn election(identity: &str) -> ElectionOptions {
    ElectionOptions {
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt(skiff_controllers::leader::NAME)
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_when_the_leader_stops() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    let server =
        Server::start_with(&["--no-controllers", "--no-scheduler"]).expect("server starts");
    let client = server.client().await.expect("client");
    let fake = FakeNodes::start(client.clone()).await;
    fake.add(&[FakeNodeSpec::new("node-a", "zone-a")])
        .await
        .unwrap();
    let opts = skiff_controllers::Options::default;
    let first = skiff_controllers::start_elected(client.clone(), opts(), election("first"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    wait_for("first to lead", Duration::from_secs(20), || async {
        (holder(&leases).await.as_deref() == Some("first")).then_some(())
    })
    .await
    .unwrap();
    let second = skiff_controllers::start_elected(client.clone(), opts(), election("second"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("first"),
        "leader keeps the lease"
    );
    ok(&server
        .kubectl_stdin(&kubectl, &["apply", "-f", "-"], Some(DEPLOYMENT))
        .unwrap());
    let status = ["rollout", "status", "deployment/web", "--timeout=60s"];
    ok(&server.kubectl(&kubectl, &status).unwrap());

    first.shutdown().await;
    wait_for("second to take over", Duration::from_secs(30), || async {
        (holder(&leases).await.as_deref() == Some("second")).then_some(())
    })
    .await
    .unwrap();
    ok(&server
        .kubectl(&kubectl, &["scale", "deployment/web", "--replicas=3"])
        .unwrap());
    ok(&server.kubectl(&kubectl, &status).unwrap());
    second.shutdown().await;
    fake.shutdown().await;
}
