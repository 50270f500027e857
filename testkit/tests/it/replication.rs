//! ReplicationController on the in-process tier: the shared replica controller keeps, scales and
//! heals its pods, adopts orphans and releases pods that stop matching, reports `ReplicaFailure`
//! (and a `FailedCreate` Event) when the API refuses its creates, cleared once they succeed; the
//! collector deletes or orphans its pods with it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_list, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn controllers(client: &Client, names: &[&str]) -> Running {
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select(&names.join(",")).expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

/// An RC whose selector and labels the API defaults from the template's `app` label.
fn rc(name: &str, app: &str, replicas: i32) -> ReplicationController {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "template": {
            "metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "example.com/app:v1"}]},
        }},
    }))
}

fn live(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn controlled_by(p: &Pod, uid: Option<&String>) -> bool {
    skiff_controllers::util::controller_of(&p.metadata).is_some_and(|o| Some(&o.uid) == uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_scales_and_heals_its_pods() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicationcontroller"]);
    let rcs: Api<ReplicationController> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let created = rcs
        .create(&PostParams::default(), &rc("web", "web", 3))
        .await
        .unwrap();
    let spec = created.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.selector,
        Some([("app".to_string(), "web".to_string())].into())
    );
    let uid = created.metadata.uid.clone();
    let got = wait_list(&pods, "app=web", DEADLINE, |p| live(p).len() == 3)
        .await
        .unwrap();
    assert!(got.iter().all(|p| controlled_by(p, uid.as_ref())));
    assert!(got.iter().all(|p| p.name_any().starts_with("web-")));
    wait_object(&rcs, "web", DEADLINE, |r| {
        r.status.as_ref().is_some_and(|s| {
            s.replicas == 3
                && s.fully_labeled_replicas == Some(3)
                && s.observed_generation == r.metadata.generation
        })
    })
    .await
    .unwrap();

    // Scaled through the scale subresource, as `kubectl scale rc` does.
    let scale = rcs
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=web")
    );
    wait_list(&pods, "app=web", DEADLINE, |p| live(p).len() == 5)
        .await
        .unwrap();
    rcs.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let left = wait_list(&pods, "app=web", DEADLINE, |p| live(p).len() == 2)
        .await
        .unwrap();

    // A pod deleted by someone else is replaced.
    let victim = live(&left)[0].name_any();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_list(&pods, "app=web", DEADLINE, |p| {
        live(p).len() == 2 && p.iter().all(|p| p.name_any() != victim)
    })
    .await
    .unwrap();
    wait_object(&rcs, "web", DEADLINE, |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 2)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_adopts_orphans_and_releases_pods_that_stop_matching() {
    let api = InProcess::start().await.unwrap();
    let rcs: Api<ReplicationController> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let mut orphans = Vec::new();
    for name in ["orphan-a", "orphan-b"] {
        let p: Pod = from_json(json!({
            "metadata": {"name": name, "labels": {"app": "adopt"}},
            "spec": {"containers": [{"name": "c", "image": "example.com/app:v1"}]},
        }));
        orphans.push(pods.create(&PostParams::default(), &p).await.unwrap());
    }
    // Started after the orphans exist, the controller's first list of pods has them (pods
    // created later could reach its cache after the RC does, and be replaced before adopted).
    let _c = controllers(&api.client, &["replicationcontroller"]);
    let created = rcs
        .create(&PostParams::default(), &rc("adopter", "adopt", 2))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone();
    // Both orphans are adopted, so nothing is created.
    wait_list(&pods, "app=adopt", DEADLINE, |p| {
        p.len() == 2 && p.iter().all(|p| controlled_by(p, uid.as_ref()))
    })
    .await
    .unwrap();
    wait_object(&rcs, "adopter", DEADLINE, |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 2)
    })
    .await
    .unwrap();
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2, "the adopted pods count as replicas");

    // A pod whose labels change is released and replaced.
    pods.patch(
        "orphan-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .unwrap();
    wait_object(&pods, "orphan-a", DEADLINE, |p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    })
    .await
    .unwrap();
    let got = wait_list(&pods, "app=adopt", DEADLINE, |p| live(p).len() == 2)
        .await
        .unwrap();
    assert!(got.iter().all(|p| controlled_by(p, uid.as_ref())));
    assert!(got.iter().any(|p| p.name_any() == "orphan-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_creates_in_a_terminating_namespace_surface_as_replica_failure() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicationcontroller"]);
    let namespaces: Api<Namespace> = Api::all(api.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "closing"}})),
        )
        .await
        .unwrap();
    // A namespace that is terminating (no namespace controller runs to empty it) refuses new
    // pods with 403 Forbidden; the RC itself is created before.
    let rcs: Api<ReplicationController> = Api::namespaced(api.client.clone(), "closing");
    rcs.create(&PostParams::default(), &rc("doomed", "doomed", 0))
        .await
        .unwrap();
    namespaces
        .delete("closing", &DeleteParams::default())
        .await
        .unwrap();
    wait_object(&namespaces, "closing", DEADLINE, |n| {
        n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
    })
    .await
    .unwrap();
    rcs.patch_scale(
        "doomed",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let failed = wait_object(&rcs, "doomed", DEADLINE, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "ReplicaFailure"))
    })
    .await
    .unwrap();
    let status = failed.status.unwrap_or_default();
    let cond = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .unwrap();
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    let message = cond.message.unwrap_or_default();
    assert!(
        message.contains("is forbidden") && message.contains("being terminated"),
        "{message}"
    );
    assert_eq!(status.replicas, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_replication_controller_collects_its_pods_unless_orphaned() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicationcontroller", "garbagecollector"]);
    let rcs: Api<ReplicationController> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");

    rcs.create(&PostParams::default(), &rc("gone", "gone", 2))
        .await
        .unwrap();
    wait_list(&pods, "app=gone", DEADLINE, |p| live(p).len() == 2)
        .await
        .unwrap();
    rcs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    wait_deleted(&rcs, "gone", DEADLINE).await.unwrap();
    wait_list(&pods, "app=gone", DEADLINE, |p| p.is_empty())
        .await
        .unwrap();

    rcs.create(&PostParams::default(), &rc("kept", "kept", 2))
        .await
        .unwrap();
    wait_list(&pods, "app=kept", DEADLINE, |p| live(p).len() == 2)
        .await
        .unwrap();
    rcs.delete("kept", &DeleteParams::orphan()).await.unwrap();
    wait_deleted(&rcs, "kept", DEADLINE).await.unwrap();
    let kept = wait_list(&pods, "app=kept", DEADLINE, |p| {
        p.len() == 2
            && p.iter().all(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
            })
    })
    .await
    .unwrap();
    assert!(kept.iter().all(|p| p.metadata.deletion_timestamp.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_is_an_event_and_a_condition_cleared_once_pods_can_be_created() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicationcontroller"]);
    let rcs: Api<ReplicationController> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    // Priority admission refuses pods naming a PriorityClass that does not exist (403).
    let mut late = rc("late", "late", 2);
    if let Some(spec) = late
        .spec
        .as_mut()
        .and_then(|s| s.template.as_mut())
        .and_then(|t| t.spec.as_mut())
    {
        spec.priority_class_name = Some("late-class".into());
    }
    rcs.create(&PostParams::default(), &late).await.unwrap();
    let failure = |r: &ReplicationController| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure").cloned())
    };
    let failed = wait_object(&rcs, "late", DEADLINE, |r| failure(r).is_some())
        .await
        .unwrap();
    let cond = failure(&failed).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    assert!(
        cond.message
            .as_deref()
            .is_some_and(|m| m.contains("no PriorityClass with name late-class was found")),
        "{cond:?}"
    );
    // The Warning Event, as `kubectl describe rc` lists it.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(api.client.clone(), "default");
    let found = wait_list(&events, "", DEADLINE, |evs| {
        evs.iter().any(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.involved_object.name.as_deref() == Some("late")
        })
    })
    .await
    .unwrap();
    let ev = found
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedCreate"))
        .unwrap();
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.involved_object.kind.as_deref(),
        Some("ReplicationController")
    );
    assert!(
        ev.message
            .as_deref()
            .is_some_and(|m| m.starts_with("Error creating: ")),
        "{:?}",
        ev.message
    );

    // Once the class exists the pods are created and the condition goes.
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
        Api::all(api.client.clone());
    classes
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "late-class"}, "value": 1000})),
        )
        .await
        .unwrap();
    wait_list(&pods, "app=late", DEADLINE, |p| live(p).len() == 2)
        .await
        .unwrap();
    wait_object(&rcs, "late", DEADLINE, |r| {
        failure(r).is_none() && r.status.as_ref().is_some_and(|s| s.replicas == 2)
    })
    .await
    .unwrap();
}

/// The ReplicaSet controller is the same one: its refused creates are reported the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_reports_replica_failure_too() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicaset"]);
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(api.client.clone(), "default");
    let rs = from_json(json!({
        "metadata": {"name": "rs-late"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rs-late"}}, "template": {
            "metadata": {"labels": {"app": "rs-late"}},
            "spec": {"priorityClassName": "missing",
                "containers": [{"name": "c", "image": "example.com/app:v1"}]},
        }},
    }));
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let failed = wait_object(&rss, "rs-late", DEADLINE, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "ReplicaFailure"))
    })
    .await
    .unwrap();
    let cond = failed
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(api.client.clone(), "default");
    wait_list(&events, "", DEADLINE, |evs| {
        evs.iter().any(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.involved_object.kind.as_deref() == Some("ReplicaSet")
                && e.involved_object.name.as_deref() == Some("rs-late")
        })
    })
    .await
    .unwrap();
}
