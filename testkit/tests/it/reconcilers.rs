//! Reconciler tests on the in-process tier: ReplicaSet, Deployment, Job, CronJob (on a fake
//! clock) and the garbage collector (including an ownerReference cycle).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::fake::{FakeNodeSpec, FakeNodes};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_list, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs only the named controllers (and the scheduler if asked) against `client`.
fn controllers(client: &Client, names: &[&str], scheduler: bool, clock: Clock) -> Running {
    let mut opts = Options {
        scheduler,
        clock,
        ..Options::default()
    };
    opts.select(&names.join(",")).expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

fn template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "example.com/app:v1"}]},
    })
}

fn live(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_and_deletes_pods_to_match_replicas() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["replicaset"], false, Clock::real());
    let rss: Api<ReplicaSet> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let rs: ReplicaSet = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("web")},
    }));
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    let got = wait_list(&pods, "app=web", DEADLINE, |p| live(p) == 3)
        .await
        .unwrap();
    for p in &got {
        let owner = skiff_controllers::util::controller_of(&p.metadata).expect("a controller");
        assert_eq!(Some(&owner.uid), rs.metadata.uid.as_ref());
    }
    wait_object(&rss, "web", DEADLINE, |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 3)
    })
    .await
    .unwrap();

    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_list(&pods, "app=web", DEADLINE, |p| live(p) == 1)
        .await
        .unwrap();
    wait_object(&rss, "web", DEADLINE, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.replicas == 1 && s.observed_generation == r.metadata.generation)
    })
    .await
    .unwrap();
    // A pod deleted by someone else is replaced.
    let left = wait_list(&pods, "app=web", DEADLINE, |p| live(p) == 1)
        .await
        .unwrap();
    let victim = left
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .unwrap()
        .name_any();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_list(&pods, "app=web", DEADLINE, |p| {
        live(p) == 1 && p.iter().all(|p| p.name_any() != victim)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_a_replicaset_and_a_paused_one_creates_nothing() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["deployment"], false, Clock::real());
    let deps: Api<Deployment> = Api::namespaced(api.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(api.client.clone(), "default");
    let d: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("web")},
    }));
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    let got = wait_list(&rss, "app=web", DEADLINE, |l| l.len() == 1)
        .await
        .unwrap();
    let rs = &got[0];
    let owner = skiff_controllers::util::controller_of(&rs.metadata).expect("a controller");
    assert_eq!(Some(&owner.uid), d.metadata.uid.as_ref());
    assert_eq!(rs.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert!(
        rs.labels().contains_key("pod-template-hash"),
        "the ReplicaSet carries the template hash: {:?}",
        rs.labels()
    );

    // A paused Deployment: once the controller has observed it, it has created nothing.
    let paused: Deployment = from_json(json!({
        "metadata": {"name": "held"},
        "spec": {"replicas": 2, "paused": true, "selector": {"matchLabels": {"app": "held"}},
                 "template": template("held")},
    }));
    deps.create(&PostParams::default(), &paused).await.unwrap();
    wait_object(&deps, "held", DEADLINE, |d| {
        d.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_some_and(|g| Some(g) == d.metadata.generation)
    })
    .await
    .unwrap();
    let held = rss
        .list(&kube::api::ListParams::default().labels("app=held"))
        .await
        .unwrap();
    assert!(
        held.items.is_empty(),
        "a paused Deployment created {:?}",
        held.items
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_its_pods_to_completion() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["job"], true, Clock::real());
    let fake = FakeNodes::start(api.client.clone()).await;
    fake.add(&[FakeNodeSpec::new("node-a", "zone-a")])
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let job: Job = from_json(json!({
        "metadata": {"name": "work"},
        "spec": {"completions": 3, "parallelism": 2, "template": {
            "metadata": {"labels": {"app": "work"},
                         "annotations": {skiff_testkit::fake::FAKE_EXIT: "0"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "example.com/work:v1"}]},
        }},
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let done = wait_object(&jobs, "work", DEADLINE, |j| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            })
    })
    .await
    .unwrap();
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert!(status.completion_time.is_some());
    let ran = pods
        .list(&kube::api::ListParams::default().labels("app=work"))
        .await
        .unwrap();
    let succeeded = ran
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .count();
    assert_eq!(succeeded, 3, "three pods ran, no more");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_creates_the_job_of_the_latest_missed_time_on_a_fake_clock() {
    let api = InProcess::start().await.unwrap();
    // Two hours and a half ahead of the wall clock: the Job's scheduled time can only come from
    // the fake clock.
    let now = jiff::Timestamp::now();
    let fake_now = now
        .checked_add(jiff::SignedDuration::from_secs(2 * 3600 + 30 * 60 + 7))
        .unwrap();
    let clock = Clock::fake(fake_now);
    let _c = controllers(&api.client, &["cronjob"], false, clock.clone());
    let cjs: Api<CronJob> = Api::namespaced(api.client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(api.client.clone(), "default");
    let cj: CronJob = from_json(json!({
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
            "metadata": {"labels": {"app": "tick"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "example.com/tick:v1"}]},
        }}}},
    }));
    let cj = cjs.create(&PostParams::default(), &cj).await.unwrap();
    let expected = fake_now.as_second() / 300 * 300;
    let got = wait_list(&jobs, "app=tick", DEADLINE, |l| !l.is_empty())
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "one Job for the latest missed time only");
    let job = &got[0];
    assert_eq!(job.name_any(), format!("tick-{}", expected / 60));
    assert_eq!(
        job.annotations()
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .map(String::as_str),
        Some(
            jiff::Timestamp::from_second(expected)
                .unwrap()
                .to_string()
                .as_str()
        )
    );
    let owner = skiff_controllers::util::controller_of(&job.metadata).expect("a controller");
    assert_eq!(Some(&owner.uid), cj.metadata.uid.as_ref());
    wait_object(&cjs, "tick", DEADLINE, |c| {
        c.status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0.as_second() == expected)
    })
    .await
    .unwrap();

    // Five minutes later on the fake clock, a change wakes the controller: the next Job.
    clock.advance(Duration::from_secs(300));
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    let got = wait_list(&jobs, "app=tick", DEADLINE, |l| l.len() == 2)
        .await
        .unwrap();
    assert!(
        got.iter()
            .any(|j| j.name_any() == format!("tick-{}", (expected + 300) / 60)),
        "{:?}",
        got.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
}

fn pod(name: &str) -> Pod {
    from_json(json!({
        "metadata": {"name": name, "labels": {"app": "gc"}},
        "spec": {"containers": [{"name": "c", "image": "example.com/app:v1"}]},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_collects_the_dependents_of_a_deleted_owner_in_the_foreground() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["garbagecollector"], false, Clock::real());
    let rss: Api<ReplicaSet> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let rs: ReplicaSet = from_json(json!({
        "metadata": {"name": "owner"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "gc"}},
                 "template": template("gc")},
    }));
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    for name in ["a", "b"] {
        let mut p = pod(name);
        p.metadata.owner_references = Some(vec![from_json(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "owner",
            "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true,
        }))]);
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    rss.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_deleted(&rss, "owner", DEADLINE).await.unwrap();
    // The owner went only after its blocking dependents.
    let left = pods
        .list(&kube::api::ListParams::default().labels("app=gc"))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "dependents outlived a foreground delete: {:?}",
        left.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_an_owner_reference_cycle() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["garbagecollector"], false, Clock::real());
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let names = ["p0", "p1", "p2"];
    let mut uids = Vec::new();
    for n in names {
        let p = pods.create(&PostParams::default(), &pod(n)).await.unwrap();
        uids.push(p.metadata.uid.unwrap());
    }
    // p0 is owned by p1, p1 by p2, p2 by p0.
    for i in 0..3 {
        let owner = (i + 1) % 3;
        pods.patch(
            names[i],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": names[owner], "uid": uids[owner],
                "blockOwnerDeletion": true,
            }]}})),
        )
        .await
        .unwrap();
    }
    pods.delete("p0", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_list(&pods, "app=gc", DEADLINE, |l| l.is_empty())
        .await
        .unwrap();
}
