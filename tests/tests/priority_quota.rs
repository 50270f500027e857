//! PriorityClasses and ResourceQuotas end to end with kubectl: the system classes in `kubectl
//! get pc`, a pod's priority from its class, `kubectl describe quota` with Used/Hard from the
//! quota controller, and a Deployment over a `pods: 2` quota that gets two pods while its
//! ReplicaSet reports `exceeded quota`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::ListParams;
use skiff_tests::{Cluster, wait_for, wait_object};

const DEADLINE: Duration = Duration::from_secs(60);

const QUOTA: &str = r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: pods
spec:
  hard:
    pods: "2"
"#;

const CLASS_AND_POD: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
description: for the test
---
apiVersion: v1
kind: Pod
metadata:
  name: important
  namespace: other
spec:
  priorityClassName: high
  containers:
  - name: app
    image: example.com/hello:v1
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example.com/hello:v1
"#;

/// The whitespace-separated cells of each line of kubectl's output.
fn rows(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_classes_and_a_quota_over_a_deployment_with_kubectl() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .fake_zones(&["a"])
        .start()
        .await
    else {
        return;
    };
    let pcs = c.k(&["get", "pc"]);
    let table = rows(&pcs);
    assert_eq!(
        table[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        "{pcs}"
    );
    let node_critical = table
        .iter()
        .find(|r| r[0] == "system-node-critical")
        .unwrap_or_else(|| panic!("{pcs}"));
    assert_eq!(node_critical[1..3], ["2000001000", "false"], "{pcs}");
    assert_eq!(node_critical[4], "PreemptLowerPriority", "{pcs}");
    let refused = c.try_k(&["delete", "pc", "system-cluster-critical"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("this is a system priority class and cannot be deleted"),
        "{stderr}"
    );

    c.k(&["create", "namespace", "other"]);
    c.apply(CLASS_AND_POD);
    let pod = c.api::<Pod>("other").get("important").await.unwrap();
    assert_eq!(pod.spec.unwrap().priority, Some(1000));
    // A second apply patches the class (strategic merge); its value may not change.
    c.apply(&CLASS_AND_POD.replace("description: for the test", "description: changed"));
    let described = c.k(&["get", "pc", "high", "-o", "jsonpath={.description}"]);
    assert_eq!(described.trim(), "changed");
    let out = c.try_k_stdin(
        &["apply", "-f", "-"],
        &CLASS_AND_POD.replace("value: 1000", "value: 2000"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("value: Forbidden: may not be changed in an update."),
        "{stderr}"
    );
    c.k(&[
        "create",
        "priorityclass",
        "calm",
        "--value=10",
        "--preemption-policy=Never",
    ]);
    let calm = c.k(&[
        "get",
        "pc",
        "calm",
        "-o",
        "jsonpath={.value} {.preemptionPolicy}",
    ]);
    assert_eq!(calm.trim(), "10 Never");

    c.apply(QUOTA);
    let quotas = c.api::<ResourceQuota>("default");
    wait_object(
        &quotas,
        "pods",
        "the quota controller's first count",
        DEADLINE,
        |q| {
            q.and_then(|q| q.status.as_ref())
                .and_then(|s| s.used.as_ref())
                .is_some_and(|u| u.contains_key("pods"))
        },
    )
    .await
    .unwrap();
    let out = c.k(&["describe", "quota", "pods"]);
    let described = rows(&out);
    assert!(
        described.contains(&vec!["Resource", "Used", "Hard"]),
        "{out}"
    );
    assert!(described.contains(&vec!["pods", "0", "2"]), "{out}");

    c.apply(DEPLOYMENT);
    let events = wait_for(
        "the ReplicaSet to report exceeded quota",
        DEADLINE,
        || async {
            let sets = c
                .api::<ReplicaSet>("default")
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let rs = sets.items.first()?.metadata.name.clone()?;
            let events = c.events_about("default", &rs).await;
            events
                .iter()
                .any(|e| {
                    e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("exceeded quota: pods"))
                })
                .then_some(events)
        },
    )
    .await
    .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedCreate")),
        "{events:?}"
    );
    let pods = c.live_pods("default", "app=web").await;
    assert_eq!(pods.len(), 2);
    let out = c.k(&["describe", "quota", "pods"]);
    assert!(rows(&out).contains(&vec!["pods", "2", "2"]), "{out}");
    let rs = c.k(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.replicas}",
    ]);
    assert_eq!(rs.trim(), "2");
}
