//! ReplicationController end to end with kubectl on a simulated node: create, `get rc` columns,
//! `scale rc`, a deleted pod healed, `describe rc`, pods collected with the RC or kept with
//! `--cascade=orphan`, `apply` and a re-apply, and `ReplicaFailure` (with its FailedCreate Event)
//! over a quota.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ReplicationController, ResourceQuota};
use kube::api::{Api, Patch, PatchParams};
use skiff_tests::{Cluster, wait_for, wait_object};

const TIMEOUT: Duration = Duration::from_secs(60);

fn rc_yaml(name: &str, replicas: i32) -> String {
    format!(
        r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: app
        image: example.com/hello:v1
"#
    )
}

/// Waits until `name` in `namespace` reports `ready` ready replicas of `ready` wanted.
async fn wait_ready(c: &Cluster, namespace: &str, name: &str, ready: i32) {
    let rcs: Api<ReplicationController> = c.api(namespace);
    wait_object(
        &rcs,
        name,
        &format!("{name} to have {ready} ready replicas"),
        TIMEOUT,
        |r: Option<&ReplicationController>| {
            r.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.replicas == ready && s.ready_replicas == Some(ready))
        },
    )
    .await
    .unwrap();
}

async fn live_count(c: &Cluster, namespace: &str, app: &str) -> usize {
    c.live_pods(namespace, &format!("app={app}")).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_controller_with_kubectl() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .fake_zones(&["a"])
        .start()
        .await
    else {
        return;
    };
    let out = c.try_k_stdin(&["create", "-f", "-"], &rc_yaml("web", 3));
    assert!(out.status.success(), "{out:?}");
    wait_ready(&c, "default", "web", 3).await;

    let table = c.k(&["get", "rc", "web"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["web", "3", "3", "3"], "{table}");
    let wide = c.k(&["get", "replicationcontrollers", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    assert!(
        wide.contains("example.com/hello:v1") && wide.contains("app=web"),
        "{wide}"
    );
    // `kubectl get all` lists it (category all).
    let all = c.k(&["get", "all"]);
    assert!(all.contains("replicationcontroller/web"), "{all}");

    // Scale up and down through the scale subresource.
    c.k(&["scale", "rc", "web", "--replicas=5"]);
    wait_ready(&c, "default", "web", 5).await;
    c.k(&["scale", "rc/web", "--replicas=2"]);
    wait_ready(&c, "default", "web", 2).await;
    wait_for("two live pods", TIMEOUT, || async {
        (live_count(&c, "default", "web").await == 2).then_some(())
    })
    .await
    .unwrap();

    // A deleted pod is replaced.
    let pods = c.live_pods("default", "app=web").await;
    let victim = pods[0].metadata.name.clone().unwrap_or_default();
    c.k(&["delete", "pod", &victim, "--wait=false"]);
    wait_for("the deleted pod to be replaced", TIMEOUT, || async {
        let live = c.live_pods("default", "app=web").await;
        (live.len() == 2
            && live
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some(&victim)))
        .then_some(())
    })
    .await
    .unwrap();
    wait_ready(&c, "default", "web", 2).await;
    let describe = c.k(&["describe", "rc", "web"]);
    assert!(describe.contains("2 current / 2 desired"), "{describe}");
    assert!(
        describe.contains("Selector:") && describe.contains("app=web"),
        "{describe}"
    );

    // --cascade=orphan keeps the pods, without their owner.
    c.k(&["delete", "rc", "web", "--cascade=orphan"]);
    wait_for("the orphaned pods to lose their owner", TIMEOUT, || async {
        let live = c.live_pods("default", "app=web").await;
        (live.len() == 2
            && live.iter().all(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
            }))
        .then_some(())
    })
    .await
    .unwrap();
    let rcs = c.k(&["get", "rc", "-o", "name"]);
    assert!(!rcs.contains("replicationcontroller/web"), "{rcs}");

    // A default (background) delete takes the pods along.
    let out = c.try_k_stdin(&["create", "-f", "-"], &rc_yaml("gone", 2));
    assert!(out.status.success(), "{out:?}");
    wait_ready(&c, "default", "gone", 2).await;
    c.k(&["delete", "rc", "gone"]);
    wait_for("the RC's pods to be collected", TIMEOUT, || async {
        let pods: Api<Pod> = c.pods("default");
        let left = pods
            .list(&kube::api::ListParams::default().labels("app=gone"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(usize::MAX);
        (left == 0).then_some(())
    })
    .await
    .unwrap();

    // `kubectl apply` creates, then patches (strategic merge) an RC.
    c.apply(&rc_yaml("applied", 1));
    wait_ready(&c, "default", "applied", 1).await;
    c.apply(
        &rc_yaml("applied", 2)
            .replace("image: example.com/hello:v1", "image: example.com/hello:v2"),
    );
    wait_ready(&c, "default", "applied", 2).await;
    let image = c.k(&[
        "get",
        "rc",
        "applied",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), "example.com/hello:v2");

    // Over a quota of two pods, the third replica is refused: ReplicaFailure and an Event.
    c.k(&["create", "namespace", "limited"]);
    c.apply_in(
        "limited",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: pods\nspec:\n  hard:\n    pods: \"2\"\n",
    );
    // The status the quota controller would write (fresh namespace: nothing used).
    let quotas: Api<ResourceQuota> = c.api("limited");
    quotas
        .patch_status(
            "pods",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"hard": {"pods": "2"}, "used": {"pods": "0"}}}),
            ),
        )
        .await
        .unwrap();
    let out = c.try_k_stdin(
        &["create", "-n", "limited", "-f", "-"],
        &rc_yaml("capped", 3),
    );
    assert!(out.status.success(), "{out:?}");
    let rcs: Api<ReplicationController> = c.api("limited");
    let failed = wait_object(
        &rcs,
        "capped",
        "the ReplicaFailure condition",
        TIMEOUT,
        |r: Option<&ReplicationController>| {
            r.and_then(|r| r.status.as_ref()?.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "ReplicaFailure"))
        },
    )
    .await
    .unwrap()
    .expect("the RC exists");
    let cond = failed
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .expect("ReplicaFailure");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    let message = cond.message.unwrap_or_default();
    assert!(message.contains("exceeded quota: pods"), "{message}");
    assert_eq!(live_count(&c, "limited", "capped").await, 2);
    let describe = wait_for(
        "describe to show the FailedCreate event",
        TIMEOUT,
        || async {
            let d = c.k(&["describe", "rc", "capped", "-n", "limited"]);
            d.contains("FailedCreate").then_some(d)
        },
    )
    .await
    .unwrap();
    assert!(describe.contains("ReplicaFailure"), "{describe}");
    assert!(describe.contains("exceeded quota"), "{describe}");
    c.shutdown().await;
}
