//! Priority and quota on the in-process tier: the scheduler binds the highest-priority pending
//! pod first when capacity frees, and the quota controller fills `status.hard`/`status.used`
//! and releases usage when objects go.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::fake::{FakeNodeSpec, FakeNodes};
use skiff_testkit::inproc::{InProcess, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn controllers(client: &Client, names: &[&str], scheduler: bool) -> Running {
    let mut opts = Options {
        scheduler,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select(&names.join(",")).expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

fn pod(name: &str, class: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c1", "image": "example.com/app:v1"}]});
    if let Some(class) = class {
        spec["priorityClassName"] = json!(class);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn unschedulable(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_created_last_binds_first_when_capacity_frees() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &[], true);
    let fake = FakeNodes::start(api.client.clone()).await;
    let mut spec = FakeNodeSpec::new("node-a", "zone-a");
    spec.pods = 1;
    fake.add(&[spec]).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("blocker", None)).await.unwrap();
    wait_object(&pods, "blocker", DEADLINE, |p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-a")
    })
    .await
    .unwrap();
    let classes: Api<PriorityClass> = Api::all(api.client.clone());
    let high: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 1000})).unwrap();
    classes.create(&pp, &high).await.unwrap();
    for (name, class) in [("low1", None), ("low2", None), ("urgent", Some("high"))] {
        pods.create(&pp, &pod(name, class)).await.unwrap();
        // Each is seen and found not to fit before the next comes.
        wait_object(&pods, name, DEADLINE, unschedulable)
            .await
            .unwrap();
    }
    pods.delete("blocker", &DeleteParams::default())
        .await
        .unwrap();
    let urgent = wait_object(&pods, "urgent", DEADLINE, |p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-a")
    })
    .await
    .unwrap();
    assert_eq!(urgent.spec.unwrap().priority, Some(1000));
    for name in ["low1", "low2"] {
        let p = pods.get(name).await.unwrap();
        assert_eq!(
            p.spec.and_then(|s| s.node_name),
            None,
            "{name} was bound before the higher-priority pod"
        );
    }
}

fn used(q: &ResourceQuota, name: &str) -> Option<String> {
    q.status
        .as_ref()
        .and_then(|s| s.used.as_ref())
        .and_then(|u| u.get(name))
        .map(|v| v.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_controller_counts_usage_and_releases_it_on_delete() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["resourcequota"], false);
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let quotas: Api<ResourceQuota> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    // A pod from before the quota counts once the controller sees the quota.
    pods.create(&pp, &pod("early", None)).await.unwrap();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "2", "count/configmaps": "10"}},
    }))
    .unwrap();
    quotas.create(&pp, &quota).await.unwrap();
    let q = wait_object(&quotas, "q", DEADLINE, |q| {
        used(q, "pods").as_deref() == Some("1")
    })
    .await
    .unwrap();
    let status = q.status.unwrap();
    assert_eq!(status.hard.unwrap()["pods"].0, "2");
    assert_eq!(used_of(&status.used, "count/configmaps"), "0");

    pods.create(&pp, &pod("second", None)).await.unwrap();
    let err = pods.create(&pp, &pod("third", None)).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"third\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
            );
        }
        other => panic!("expected 403, got {other}"),
    }
    pods.delete("early", &DeleteParams::default())
        .await
        .unwrap();
    wait_object(&quotas, "q", DEADLINE, |q| {
        used(q, "pods").as_deref() == Some("1")
    })
    .await
    .unwrap();
    let third = pods.create(&pp, &pod("third", None)).await.unwrap();
    assert_eq!(third.name_any(), "third");
    // A pod that finished no longer counts against `pods`.
    pods.patch_status(
        "third",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    wait_object(&quotas, "q", DEADLINE, |q| {
        used(q, "pods").as_deref() == Some("1")
    })
    .await
    .unwrap();
}

fn used_of(
    used: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
    name: &str,
) -> String {
    used.as_ref()
        .and_then(|u| u.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}
