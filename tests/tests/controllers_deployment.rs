//! Scheduler and Deployment controller end to end on simulated nodes: spreading over zones,
//! rolling update, rollout history/undo/pause/resume/restart, scaling, FailedScheduling Events,
//! controllers re-listing after an API server restart, and malformed workloads refused with 422.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use skiff_tests::{
    Cluster, ClusterBuilder, image_of, node_of, wait_for, wait_object, wait_object_map,
};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example.com/hello:v1
        resources:
          requests: {cpu: 100m, memory: 64Mi}
"#;

async fn pods_by_node(client: &kube::Client, selector: &str) -> BTreeMap<String, Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut m: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
    {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        m.entry(node_of(&p)).or_default().push(p);
    }
    m
}

fn images(pods: &BTreeMap<String, Vec<Pod>>) -> Vec<String> {
    let mut v: Vec<String> = pods.values().flatten().map(image_of).collect();
    v.sort();
    v.dedup();
    v
}

/// kubectl and three simulated nodes, node-a..c in zone-a..c.
fn three_zones() -> ClusterBuilder {
    Cluster::builder().kubectl().fake_zones(&["a", "b", "c"])
}

/// The names of the ReplicaSets of the Deployment `web`.
async fn replica_sets(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = c
        .api::<ReplicaSet>("default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list ReplicaSets")
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_spreads_rolls_and_undoes() {
    let Some(c) = three_zones().start().await else {
        return;
    };
    let client = c.client.clone();
    let k = |args: &[&str]| c.k(args);
    c.apply(DEPLOYMENT);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");

    // Six replicas over three nodes in three zones: two per node.
    let by_node = pods_by_node(&client, "app=web").await;
    let counts: Vec<usize> = by_node.values().map(Vec::len).collect();
    assert_eq!(by_node.len(), 3, "{:?}", by_node.keys());
    assert_eq!(counts, vec![2, 2, 2]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployments.get("web").await.unwrap();
    let st = d.status.clone().unwrap();
    assert_eq!(
        (st.replicas, st.updated_replicas, st.available_replicas),
        (Some(6), Some(6), Some(6))
    );
    let conds = st.conditions.unwrap();
    let available = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(available.status, "True");
    let progressing = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );

    // Rolling update to v2.
    k(&["set", "image", "deployment/web", "app=example.com/hello:v2"]);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let by_node = pods_by_node(&client, "app=web").await;
    assert_eq!(images(&by_node), vec!["example.com/hello:v2"]);
    assert_eq!(by_node.values().map(Vec::len).sum::<usize>(), 6);
    let history = k(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo returns to v1 as revision 3.
    k(&["rollout", "undo", "deployment/web"]);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let by_node = pods_by_node(&client, "app=web").await;
    assert_eq!(images(&by_node), vec!["example.com/hello:v1"]);
    let rev = k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(rev.trim(), "3");
    let rs = k(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "one ReplicaSet per template:\n{rs}");

    // Pause: a template change makes no new ReplicaSet until resume. The controller has
    // seen the change once status.observedGeneration reaches it; by then a new ReplicaSet
    // would exist (it is created before the status is written).
    let sets_before = replica_sets(&c).await;
    k(&["rollout", "pause", "deployment/web"]);
    k(&["set", "image", "deployment/web", "app=example.com/hello:v3"]);
    let generation = deployments
        .get("web")
        .await
        .unwrap()
        .metadata
        .generation
        .expect("a generation");
    let observed = wait_object(
        &deployments,
        "web",
        "the controller to observe the paused template change",
        Duration::from_secs(30),
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref()?.observed_generation)
                .is_some_and(|g| g >= generation)
        },
    )
    .await
    .unwrap()
    .expect("the Deployment exists");
    let progressing = observed
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("Unknown", Some("DeploymentPaused"))
    );
    assert_eq!(
        replica_sets(&c).await,
        sets_before,
        "no new ReplicaSet while paused"
    );
    assert_eq!(
        images(&pods_by_node(&client, "app=web").await),
        vec!["example.com/hello:v1"]
    );
    k(&["rollout", "resume", "deployment/web"]);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(
        images(&pods_by_node(&client, "app=web").await),
        vec!["example.com/hello:v3"]
    );

    // Restart rolls every pod.
    let before: Vec<String> = pods_by_node(&client, "app=web")
        .await
        .values()
        .flatten()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    k(&["rollout", "restart", "deployment/web"]);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let after = pods_by_node(&client, "app=web").await;
    assert!(
        after
            .values()
            .flatten()
            .all(|p| !before.contains(p.metadata.name.as_ref().unwrap())),
        "restart replaced every pod"
    );

    // Scale down through the scale subresource.
    k(&["scale", "deployment/web", "--replicas=2"]);
    wait_for("two pods", Duration::from_secs(60), || async {
        let n: usize = pods_by_node(&client, "app=web")
            .await
            .values()
            .map(Vec::len)
            .sum();
        (n == 2).then_some(())
    })
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unschedulable_pod_gets_failed_scheduling_event() {
    let Some(c) = three_zones().start().await else {
        return;
    };
    let client = c.client.clone();
    c.k(&["cordon", "node-a"]);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - name: app
    image: example.com/hello:v1
    resources:
      requests: {memory: 1000Gi}
"#;
    c.apply(pod);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let message = wait_for(
        "a FailedScheduling event",
        Duration::from_secs(30),
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("FailedScheduling")
                        && e.involved_object.name.as_deref() == Some("huge")
                })
                .and_then(|e| e.message)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory. preemption: not supported."
    );
    let describe = c.k(&["describe", "pod", "huge"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");

    // A pod that fits is bound once a node is uncordoned and room exists.
    c.k(&["uncordon", "node-a"]);
    c.k(&["delete", "pod", "huge", "--wait=false"]);
    let small = pod.replace("huge", "small").replace("1000Gi", "1Gi");
    c.apply(&small);
    wait_object_map(
        &c.pods("default"),
        "small",
        "the small pod to be bound",
        Duration::from_secs(30),
        |p| Some(node_of(p)).filter(|n| !n.is_empty()),
    )
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controllers_relist_after_api_server_restart() {
    // Controllers run here as an outside client, so they live through the server's restart.
    let Some(mut c) = three_zones()
        .controllers_in_process(skiff_controllers::Options::default())
        .start()
        .await
    else {
        return;
    };
    let client = c.client.clone();
    c.apply(DEPLOYMENT);
    let status = ["rollout", "status", "deployment/web", "--timeout=120s"];
    let out = c.k(&status);
    assert!(out.contains("successfully rolled out"), "{out}");

    c.server.restart().expect("server restarts");
    // After the restart the controllers' watches resume or re-list: a deleted pod is replaced
    // and a scale-up is carried out.
    let victim = pods_by_node(&client, "app=web")
        .await
        .values()
        .flatten()
        .next()
        .unwrap()
        .metadata
        .name
        .clone()
        .unwrap();
    c.k(&["delete", "pod", &victim, "--wait=false"]);
    c.k(&["scale", "deployment/web", "--replicas=8"]);
    let out = c.k(&status);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = pods_by_node(&client, "app=web").await;
    assert_eq!(pods.values().map(Vec::len).sum::<usize>(), 8);
    assert!(
        !pods
            .values()
            .flatten()
            .any(|p| p.metadata.name.as_deref() == Some(&victim))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_workloads_are_refused() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .server_args(&["--no-controllers", "--no-scheduler"])
        .start()
        .await
    else {
        return;
    };
    let refused = |manifest: &str, expect: &[&str]| {
        let out = c.try_k_stdin(&["apply", "-f", "-"], manifest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "refused: {manifest}");
        for e in expect {
            assert!(stderr.contains(e), "{e:?} not in {stderr}");
        }
    };
    refused(
        &DEPLOYMENT.replace("labels: {app: web}", "labels: {app: other}"),
        &[
            "is invalid",
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ],
    );
    let cronjob = |schedule: &str, tz: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: tick}}\nspec:\n  schedule: \"{schedule}\"\n{tz}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, image: example.com/tick:1}}]\n"
        )
    };
    refused(
        &cronjob("every minute please", ""),
        &["is invalid", "spec.schedule"],
    );
    refused(&cronjob("61 * * * *", ""), &["is invalid", "spec.schedule"]);
    refused(
        &cronjob("0 9 * * *", "  timeZone: Mars/Olympus\n"),
        &["spec.timeZone", "unknown time zone Mars/Olympus"],
    );
    c.apply(&cronjob("0 9 * * 1-5", "  timeZone: Europe/Berlin\n"));
}
