//! The scheduler's PodScheduled=False reports: none before its watches have listed (a scheduler
//! starting on a cluster with nodes and pending pods binds them all without one), and a report
//! decided on an unbound pod never overwrites the PodScheduled=True of a bind that landed first.

use std::sync::Arc;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::scheduler::{Scheduler, SchedulerOptions, report_unschedulable};
use skiff_testkit::inproc::{InProcess, wait_list};

fn pod_scheduled(p: &Pod) -> Option<(String, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn create(pods: &Api<Pod>, name: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "app:1.0"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap()
}

#[tokio::test]
async fn a_late_unschedulable_report_leaves_a_bound_pod_scheduled() {
    let api = InProcess::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");

    // Decided unschedulable, then bound by a later pass before the report is written.
    let decided = create(&pods, "late").await;
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "late"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}
    });
    pods.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        "late",
        &PostParams::default(),
        &binding,
    )
    .await
    .unwrap();
    report_unschedulable(api.client.clone(), Arc::new(decided), "0/0 nodes".into()).await;
    let now = pods.get("late").await.unwrap();
    assert_eq!(
        now.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("node-a")
    );
    assert_eq!(pod_scheduled(&now), Some(("True".into(), None)));

    // Changed but still unbound: the report lands on the newer version.
    let decided = create(&pods, "waiting").await;
    pods.patch(
        "waiting",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
    )
    .await
    .unwrap();
    report_unschedulable(api.client.clone(), Arc::new(decided), "0/0 nodes".into()).await;
    let now = pods.get("waiting").await.unwrap();
    assert_eq!(
        pod_scheduled(&now),
        Some(("False".into(), Some("Unschedulable".into())))
    );
}

#[tokio::test]
async fn a_scheduler_starting_on_nodes_and_pending_pods_reports_none_unschedulable() {
    let api = InProcess::start().await.unwrap();
    let nodes: Api<Node> = Api::all(api.client.clone());
    for i in 0..3 {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    for i in 0..40 {
        create(&pods, &format!("p{i}")).await;
    }
    let scheduler = Scheduler::new(api.client.clone(), SchedulerOptions::default());
    let task = tokio::spawn(scheduler.run());
    wait_list(&pods, "", Duration::from_secs(60), |ps| {
        ps.len() == 40
            && ps
                .iter()
                .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
    })
    .await
    .expect("every pod is bound");
    task.abort();
    let events: Api<Event> = Api::namespaced(api.client.clone(), "default");
    let failed: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .filter_map(|e| e.message)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}
