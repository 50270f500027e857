//! Controllers end to end on simulated nodes: a dead node's pods move elsewhere, drain honours
//! a PodDisruptionBudget, namespace deletion empties the namespace, cascading deletes
//! (foreground and orphan), and Jobs (completions/parallelism, Indexed, backoffLimit).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use skiff_meta::names::FAKE_EXIT_CODE;
use skiff_tests::fixtures::{deployment, is_ready};
use skiff_tests::{Cluster, node_of, wait_for, wait_object};

/// A server with `flags`, kubectl, and three simulated nodes (node-a..c in zone-a..c) renewing
/// their Leases every second.
async fn cluster(flags: &[&str]) -> Option<Cluster> {
    Cluster::builder()
        .kubectl()
        .server_args(flags)
        .fake_zones(&["a", "b", "c"])
        .fake_renewal(Duration::from_secs(1))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_of_a_dead_node_come_back_elsewhere() {
    let Some(c) = cluster(&["--node-monitor-grace-period=4", "--pod-eviction-timeout=2"]).await
    else {
        return;
    };
    c.apply(&deployment("web", 6));
    c.k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let on_a = c
        .live_pods("default", "app=web")
        .await
        .iter()
        .filter(|p| node_of(p) == "node-a")
        .count();
    assert_eq!(on_a, 2);
    let started = Instant::now();
    c.fake().kill("node-a").await;
    wait_for("pods to leave node-a", Duration::from_secs(90), || async {
        let pods = c.live_pods("default", "app=web").await;
        let ready_elsewhere = pods
            .iter()
            .filter(|p| node_of(p) != "node-a" && is_ready(p))
            .count();
        (ready_elsewhere == 6 && pods.iter().all(|p| node_of(p) != "node-a")).then_some(())
    })
    .await
    .unwrap();
    println!(
        "pods of the dead node were running elsewhere after {:.1}s (grace 4s, eviction 2s)",
        started.elapsed().as_secs_f64()
    );
    let ready = c.k(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready.trim(), "Unknown");
    let taints = c.k(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.spec.taints[*].key}",
    ]);
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    // As on Kubernetes, the evicted pods stay Terminating while no kubelet can confirm them
    // stopped; deleting the Node lets pod garbage collection remove them.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let stranded: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| node_of(p) == "node-a")
        .collect();
    assert_eq!(stranded.len(), 2);
    assert!(
        stranded
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "pods of the dead node are Terminating"
    );
    c.k(&["delete", "node", "node-a"]);
    wait_for(
        "pods of the deleted node collected",
        Duration::from_secs(60),
        || async {
            let left = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| node_of(p) == "node-a")
                .count();
            (left == 0).then_some(())
        },
    )
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_honours_the_disruption_budget() {
    let Some(c) = cluster(&[]).await else {
        return;
    };
    c.apply(&deployment("web", 3));
    c.k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    c.apply(
        r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector:
    matchLabels: {app: web}
"#,
    );
    let budgets: Api<PodDisruptionBudget> = c.api("default");
    let counts = |healthy, desired, allowed, expected| {
        move |b: Option<&PodDisruptionBudget>| {
            b.and_then(|b| b.status.as_ref()).is_some_and(|s| {
                (
                    s.current_healthy,
                    s.desired_healthy,
                    s.disruptions_allowed,
                    s.expected_pods,
                ) == (healthy, desired, allowed, expected)
            })
        }
    };
    wait_object(
        &budgets,
        "web",
        "3 healthy of 3 desired, no disruption allowed",
        Duration::from_secs(30),
        counts(3, 3, 0, 3),
    )
    .await
    .unwrap();
    // No disruption allowed: drain cordons the node but cannot evict.
    let out = c.try_k(&["drain", "node-a", "--ignore-daemonsets", "--timeout=5s"]);
    assert!(!out.status.success(), "drain must not violate the budget");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disruption budget"), "{stderr}");
    assert_eq!(c.live_pods("default", "app=web").await.len(), 3);
    let unsched = c.k(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(unsched.trim(), "true");
    // One disruption allowed: drain evicts, and the replacement lands on another node.
    c.k(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":2}}"#,
    ]);
    wait_object(
        &budgets,
        "web",
        "3 healthy of 2 desired, one disruption allowed",
        Duration::from_secs(30),
        counts(3, 2, 1, 3),
    )
    .await
    .unwrap();
    let out = c.k(&["drain", "node-a", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains("evicted") || out.contains("drained"), "{out}");
    c.k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = c.live_pods("default", "app=web").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| node_of(p) != "node-a"));
    c.k(&["uncordon", "node-a"]);
    let unsched = c.k(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_ne!(unsched.trim(), "true");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_namespace_removes_everything_in_it() {
    let Some(c) = cluster(&[]).await else {
        return;
    };
    c.k(&["create", "namespace", "team"]);
    c.apply_in("team", &deployment("web", 3));
    c.k(&[
        "-n",
        "team",
        "create",
        "configmap",
        "settings",
        "--from-literal=a=b",
    ]);
    c.k(&[
        "-n",
        "team",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ]);
    c.k(&["delete", "namespace", "team", "--timeout=60s"]);
    let out = c.try_k(&["get", "namespace", "team"]);
    assert!(!out.status.success(), "namespace is gone");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "team");
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cascading_deletes_foreground_and_orphan() {
    let Some(c) = cluster(&[]).await else {
        return;
    };
    c.apply(&deployment("fg", 2));
    c.apply(&deployment("orph", 2));
    c.k(&["rollout", "status", "deployment/fg", "--timeout=60s"]);
    c.k(&["rollout", "status", "deployment/orph", "--timeout=60s"]);

    c.k(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=180s",
    ]);
    wait_for(
        "fg pods and ReplicaSets gone",
        Duration::from_secs(60),
        || async {
            let rs: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
            let sets = rs
                .list(&ListParams::default().labels("app=fg"))
                .await
                .ok()?;
            let pods = c.live_pods("default", "app=fg").await;
            (sets.items.is_empty() && pods.is_empty()).then_some(())
        },
    )
    .await
    .unwrap();

    c.k(&[
        "delete",
        "deployment",
        "orph",
        "--cascade=orphan",
        "--timeout=60s",
    ]);
    let rs: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let sets = wait_for(
        "orphaned ReplicaSet released",
        Duration::from_secs(30),
        || async {
            let sets = rs
                .list(&ListParams::default().labels("app=orph"))
                .await
                .ok()?;
            sets.items
                .iter()
                .all(|r| {
                    r.metadata
                        .owner_references
                        .as_ref()
                        .is_none_or(Vec::is_empty)
                })
                .then_some(sets.items)
        },
    )
    .await
    .unwrap();
    assert_eq!(sets.len(), 1);
    // The orphan finalizer has been processed: the owner is gone and its dependent released.
    // Nothing may delete the dependents now: the ReplicaSet and its two pods stay, untouched.
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    wait_object(
        &deployments,
        "orph",
        "the orphaned Deployment to be gone",
        Duration::from_secs(30),
        |d: Option<&Deployment>| d.is_none(),
    )
    .await
    .unwrap();
    let set = rs
        .get(sets[0].metadata.name.as_deref().unwrap())
        .await
        .expect("the orphaned ReplicaSet remains");
    assert!(
        set.metadata.deletion_timestamp.is_none(),
        "the orphaned ReplicaSet is not being deleted"
    );
    let pods = c
        .pods("default")
        .list(&ListParams::default().labels("app=orph"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 2, "orphans keep running");
    for p in &pods {
        assert!(p.metadata.deletion_timestamp.is_none(), "{p:?}");
        let owners = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(
            owners.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(),
            [set.metadata.uid.as_deref().unwrap()],
            "the pods still belong to their ReplicaSet"
        );
    }
    c.shutdown().await;
}

fn job(name: &str, extra_spec: &str, exit_code: i32) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    metadata:
      annotations: {{{FAKE_EXIT_CODE}: "{exit_code}"}}
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: example.com/work:v1
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_and_fail_at_backoff_limit() {
    let Some(c) = cluster(&[]).await else {
        return;
    };
    c.apply(&job("five", "  completions: 5\n  parallelism: 2", 0));
    c.k(&[
        "wait",
        "--for=condition=complete",
        "job/five",
        "--timeout=60s",
    ]);
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let st = jobs.get("five").await.unwrap().status.unwrap();
    assert_eq!(st.succeeded, Some(5));
    assert!(st.completion_time.is_some());

    c.apply(&job(
        "indexed",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        0,
    ));
    c.k(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=60s",
    ]);
    let st = jobs.get("indexed").await.unwrap().status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));

    c.apply(&job("doomed", "  backoffLimit: 2", 1));
    c.k(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=60s",
    ]);
    let st = jobs.get("doomed").await.unwrap().status.unwrap();
    let failed = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(st.failed, Some(3), "backoffLimit 2 allows three attempts");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let n = pods
        .list(&ListParams::default().labels("job-name=doomed"))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(n, 3, "no pods after the limit");

    // ttlSecondsAfterFinished removes the finished Job.
    c.apply(&job("brief", "  ttlSecondsAfterFinished: 1", 0));
    wait_object(
        &jobs,
        "brief",
        "the finished Job deleted by its TTL",
        Duration::from_secs(60),
        |j: Option<&Job>| j.is_none(),
    )
    .await
    .unwrap();
    c.shutdown().await;
}

/// Regression: three pods each owned by the next (`blockOwnerDeletion: true`) deadlocked a
/// foreground delete, each owner waiting for a dependent that waited for it. Kubernetes' collector
/// unblocks the references of such a cycle; deleting one pod deletes all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_deletes_an_owner_reference_cycle() {
    let Some(c) = cluster(&[]).await else {
        return;
    };
    let pods = c.pods("default");
    let mut uids = Vec::new();
    for name in ["ring-a", "ring-b", "ring-c"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "ring"}},
            "spec": {"containers": [{"name": "c", "image": "example.com/ring:1"}]}
        }))
        .unwrap();
        let pod = pods.create(&Default::default(), &pod).await.unwrap();
        uids.push(pod.metadata.uid.unwrap());
    }
    // ring-a is owned by ring-b, ring-b by ring-c, ring-c by ring-a.
    for (i, name) in ["ring-a", "ring-b", "ring-c"].iter().enumerate() {
        let owner = ["ring-b", "ring-c", "ring-a"][i];
        let patch = serde_json::json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": owner, "uid": uids[(i + 1) % 3],
            "blockOwnerDeletion": true
        }]}});
        pods.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .unwrap();
    }
    c.k(&[
        "delete",
        "pod",
        "ring-a",
        "--cascade=foreground",
        "--wait=false",
    ]);
    wait_for(
        "every pod of the ownership cycle deleted",
        Duration::from_secs(90),
        || async {
            let left = pods
                .list(&ListParams::default().labels("app=ring"))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        },
    )
    .await
    .unwrap();
    c.shutdown().await;
}
