//! The PersistentVolume controller and the volume protection finalizers on the in-process tier:
//! binding (smallest fit, pre-binding both ways), phases, Released with Retain and Delete, Lost,
//! and claims and volumes kept while in use; the scheduler's volume rules.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::fake::{FakeNodeSpec, FakeNodes};
use skiff_testkit::inproc::{self, InProcess, wait_deleted, wait_list, wait_object};

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

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

/// A hand-made hostPath volume of class `class`.
fn pv(name: &str, size: &str, modes: &[&str], class: &str, policy: &str) -> PersistentVolume {
    from_json(json!({
        "metadata": {"name": name, "labels": {"size": size}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": format!("/tmp/skiff-test/{name}")},
        },
    }))
}

fn claim(name: &str, size: &str, class: &str) -> PersistentVolumeClaim {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": size}},
        },
    }))
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn bound_to(name: &'static str) -> impl Fn(&PersistentVolumeClaim) -> bool {
    move |c| volume_name(c) == name && claim_phase(c) == "Bound"
}

async fn wait_event(client: &Client, object: &str, reason: &str) {
    let events: Api<Event> = Api::all(client.clone());
    inproc::wait_event(&events, object, reason, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("no {reason} event for {object}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_binds_to_the_smallest_volume_that_fits() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], false);
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    for v in [
        pv("pv-1g", "1Gi", &["ReadWriteOnce"], "manual", "Retain"),
        pv("pv-5g", "5Gi", &["ReadWriteOnce"], "manual", "Retain"),
        pv("pv-2g", "2Gi", &["ReadWriteOnce"], "manual", "Retain"),
        pv("pv-2g-rox", "2Gi", &["ReadOnlyMany"], "manual", "Retain"),
        pv("pv-2g-other", "2Gi", &["ReadWriteOnce"], "other", "Retain"),
    ] {
        pvs.create(&pp, &v).await.unwrap();
    }
    let created = claims
        .create(&pp, &claim("data", "1500Mi", "manual"))
        .await
        .unwrap();
    let c = wait_object(&claims, "data", DEADLINE, bound_to("pv-2g"))
        .await
        .unwrap();
    let status = c.status.clone().unwrap_or_default();
    assert_eq!(
        status
            .capacity
            .unwrap_or_default()
            .get("storage")
            .map(|q| q.0.as_str()),
        Some("2Gi")
    );
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let annotations = c.annotations();
    assert_eq!(
        annotations
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        annotations
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let v = wait_object(&pvs, "pv-2g", DEADLINE, |v| volume_phase(v) == "Bound")
        .await
        .unwrap();
    let r = v.spec.unwrap_or_default().claim_ref.unwrap_or_default();
    assert_eq!(r.name.as_deref(), Some("data"));
    assert_eq!(r.namespace.as_deref(), Some("default"));
    assert_eq!(r.uid, created.metadata.uid);
    for other in ["pv-1g", "pv-5g", "pv-2g-rox", "pv-2g-other"] {
        wait_object(&pvs, other, DEADLINE, |v| volume_phase(v) == "Available")
            .await
            .unwrap();
    }
    // Nothing fits a 10Gi claim: it stays Pending.
    claims
        .create(&pp, &claim("huge", "10Gi", "manual"))
        .await
        .unwrap();
    wait_object(&claims, "huge", DEADLINE, |c| claim_phase(c) == "Pending")
        .await
        .unwrap();
    // Its class names no StorageClass: nothing can provision it either.
    wait_event(&api.client, "huge", "ProvisioningFailed").await;
    assert_eq!(volume_name(&claims.get("huge").await.unwrap()), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_binding_works_from_the_claim_and_from_the_volume() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], false);
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    // A claim naming a volume that does not exist yet waits for it, then binds to it although a
    // smaller volume fits too.
    pvs.create(
        &pp,
        &pv("small", "1Gi", &["ReadWriteOnce"], "manual", "Retain"),
    )
    .await
    .unwrap();
    let mut c = claim("wants-big", "1Gi", "manual");
    c.spec.as_mut().unwrap().volume_name = Some("big".into());
    claims.create(&pp, &c).await.unwrap();
    wait_object(&claims, "wants-big", DEADLINE, |c| {
        claim_phase(c) == "Pending"
    })
    .await
    .unwrap();
    pvs.create(
        &pp,
        &pv("big", "3Gi", &["ReadWriteOnce"], "manual", "Retain"),
    )
    .await
    .unwrap();
    let got = wait_object(&claims, "wants-big", DEADLINE, bound_to("big"))
        .await
        .unwrap();
    // A user's volumeName is not the controller's binding.
    assert!(
        !got.annotations()
            .contains_key("pv.kubernetes.io/bound-by-controller")
    );
    wait_object(&pvs, "big", DEADLINE, |v| volume_phase(v) == "Bound")
        .await
        .unwrap();
    // A volume reserved (claimRef without uid) for a claim goes to that claim only.
    let mut reserved = pv("reserved", "4Gi", &["ReadWriteOnce"], "manual", "Retain");
    reserved.spec.as_mut().unwrap().claim_ref = Some(from_json(
        json!({"kind": "PersistentVolumeClaim", "namespace": "default", "name": "chosen"}),
    ));
    pvs.create(&pp, &reserved).await.unwrap();
    wait_object(&pvs, "reserved", DEADLINE, |v| {
        volume_phase(v) == "Available"
    })
    .await
    .unwrap();
    claims
        .create(&pp, &claim("chosen", "1Gi", "manual"))
        .await
        .unwrap();
    claims
        .create(&pp, &claim("someone-else", "1Gi", "manual"))
        .await
        .unwrap();
    let chosen = wait_object(&claims, "chosen", DEADLINE, bound_to("reserved"))
        .await
        .unwrap();
    wait_object(&claims, "someone-else", DEADLINE, bound_to("small"))
        .await
        .unwrap();
    let v = wait_object(&pvs, "reserved", DEADLINE, |v| volume_phase(v) == "Bound")
        .await
        .unwrap();
    assert_eq!(
        v.spec.unwrap_or_default().claim_ref.unwrap_or_default().uid,
        chosen.metadata.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_volume_follows_its_reclaim_policy_and_a_claim_without_its_volume_is_lost() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], false);
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    let dp = DeleteParams::default();
    let mut provisioned = pv("provisioned", "1Gi", &["ReadWriteOnce"], "c-prov", "Delete");
    provisioned
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "pv.kubernetes.io/provisioned-by".into(),
            "skiff.dev/local-path".into(),
        );
    for v in [
        pv("kept", "1Gi", &["ReadWriteOnce"], "c-retain", "Retain"),
        pv("handmade", "1Gi", &["ReadWriteOnce"], "c-delete", "Delete"),
        provisioned,
        pv("vanishing", "1Gi", &["ReadWriteOnce"], "c-lost", "Retain"),
    ] {
        pvs.create(&pp, &v).await.unwrap();
    }
    for (c, class) in [
        ("retain", "c-retain"),
        ("delete", "c-delete"),
        ("prov", "c-prov"),
        ("lost", "c-lost"),
    ] {
        claims.create(&pp, &claim(c, "1Gi", class)).await.unwrap();
    }
    wait_object(&claims, "retain", DEADLINE, bound_to("kept"))
        .await
        .unwrap();
    wait_object(&claims, "delete", DEADLINE, bound_to("handmade"))
        .await
        .unwrap();
    wait_object(&claims, "prov", DEADLINE, bound_to("provisioned"))
        .await
        .unwrap();
    wait_object(&claims, "lost", DEADLINE, bound_to("vanishing"))
        .await
        .unwrap();
    for c in ["retain", "delete", "prov"] {
        claims.delete(c, &dp).await.unwrap();
        wait_deleted(&claims, c, DEADLINE).await.unwrap();
    }
    // Retain keeps the volume, Released, still naming its old claim.
    let kept = wait_object(&pvs, "kept", DEADLINE, |v| volume_phase(v) == "Released")
        .await
        .unwrap();
    assert!(kept.spec.unwrap_or_default().claim_ref.is_some());
    // Delete of a hand-made hostPath volume fails as Kubernetes' (no deleter plugin).
    let failed = wait_object(&pvs, "handmade", DEADLINE, |v| volume_phase(v) == "Failed")
        .await
        .unwrap();
    assert!(
        failed
            .status
            .unwrap_or_default()
            .message
            .unwrap_or_default()
            .contains("no deletable volume plugin matched")
    );
    wait_event(&api.client, "handmade", "VolumeFailedDelete").await;
    // A provisioned volume is Released and left to its provisioner.
    wait_object(&pvs, "provisioned", DEADLINE, |v| {
        volume_phase(v) == "Released"
    })
    .await
    .unwrap();
    // A claim whose volume is deleted is Lost.
    pvs.delete("vanishing", &dp).await.unwrap();
    wait_deleted(&pvs, "vanishing", DEADLINE).await.unwrap();
    wait_object(&claims, "lost", DEADLINE, |c| claim_phase(c) == "Lost")
        .await
        .unwrap();
    wait_event(&api.client, "lost", "ClaimLost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_and_its_bound_volume_outlive_their_deletion_until_the_pod_goes() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(
        &api.client,
        &["persistentvolume-binder", "pvc-protection", "pv-protection"],
        false,
    );
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    let dp = DeleteParams::default();
    pvs.create(
        &pp,
        &pv("vol", "1Gi", &["ReadWriteOnce"], "manual", "Retain"),
    )
    .await
    .unwrap();
    claims
        .create(&pp, &claim("data", "1Gi", "manual"))
        .await
        .unwrap();
    wait_object(&claims, "data", DEADLINE, |c| {
        bound_to("vol")(c)
            && c.finalizers()
                .iter()
                .any(|f| f == "kubernetes.io/pvc-protection")
    })
    .await
    .unwrap();
    wait_object(&pvs, "vol", DEADLINE, |v| {
        v.finalizers()
            .iter()
            .any(|f| f == "kubernetes.io/pv-protection")
    })
    .await
    .unwrap();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "example.com/app:v1",
                            "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }));
    pods.create(&pp, &pod).await.unwrap();
    // The pod (not terminal) keeps the claim; the bound volume keeps itself.
    claims.delete("data", &dp).await.unwrap();
    pvs.delete("vol", &dp).await.unwrap();
    // A later pod event reconciles the claim again; it must still be held.
    let mut labelled = pods.get("user").await.unwrap();
    labelled
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("touched".into(), "yes".into());
    pods.replace("user", &pp, &labelled).await.unwrap();
    wait_list(&pods, "touched=yes", DEADLINE, |l| l.len() == 1)
        .await
        .unwrap();
    let held = claims.get("data").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        held.finalizers()
            .iter()
            .any(|f| f == "kubernetes.io/pvc-protection")
    );
    let held = pvs.get("vol").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(volume_phase(&held), "Bound");
    // The pod goes: then the claim, then (Released) the volume.
    pods.delete(
        "user",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    wait_deleted(&pods, "user", DEADLINE).await.unwrap();
    wait_deleted(&claims, "data", DEADLINE).await.unwrap();
    wait_deleted(&pvs, "vol", DEADLINE).await.unwrap();
}

async fn fake_nodes(client: &Client, names: &[(&str, &str)]) -> FakeNodes {
    let fake = FakeNodes::start(client.clone()).await;
    let specs: Vec<FakeNodeSpec> = names.iter().map(|(n, z)| FakeNodeSpec::new(n, z)).collect();
    fake.add(&specs).await.unwrap();
    fake
}

fn pod_with_claim(name: &str, claim: &str) -> Pod {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": "example.com/app:v1"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }))
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn unschedulable_with(text: &'static str) -> impl Fn(&Pod) -> bool {
    move |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.message.as_deref().is_some_and(|m| m.contains(text))
                })
            })
    }
}

/// Requires the node's zone to be `zone`, as a local volume's affinity does.
fn in_zone(mut v: PersistentVolume, zone: &str) -> PersistentVolume {
    v.spec.as_mut().unwrap().node_affinity = Some(from_json(json!({"required": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
        ]}],
    }})));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_waits_for_its_immediate_claim_to_bind_and_a_missing_claim_is_named() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], true);
    let _nodes = fake_nodes(&api.client, &[("node-a", "zone-a")]).await;
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    claims
        .create(&pp, &claim("data", "1Gi", "manual"))
        .await
        .unwrap();
    pods.create(&pp, &pod_with_claim("user", "data"))
        .await
        .unwrap();
    pods.create(&pp, &pod_with_claim("lost-soul", "nope"))
        .await
        .unwrap();
    wait_object(
        &pods,
        "user",
        DEADLINE,
        unschedulable_with("pod has unbound immediate PersistentVolumeClaims"),
    )
    .await
    .unwrap();
    wait_object(
        &pods,
        "lost-soul",
        DEADLINE,
        unschedulable_with("persistentvolumeclaim \"nope\" not found"),
    )
    .await
    .unwrap();
    wait_event(&api.client, "user", "FailedScheduling").await;
    // A volume appears: the claim binds, and the pod is placed.
    pvs.create(
        &pp,
        &pv("vol", "1Gi", &["ReadWriteOnce"], "manual", "Retain"),
    )
    .await
    .unwrap();
    wait_object(&claims, "data", DEADLINE, bound_to("vol"))
        .await
        .unwrap();
    wait_object(&pods, "user", DEADLINE, |p| node_of(p) == "node-a")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_bound_local_volume_go_only_to_the_nodes_its_affinity_admits() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], true);
    let _nodes = fake_nodes(&api.client, &[("node-a", "zone-a"), ("node-b", "zone-b")]).await;
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    let local = in_zone(
        pv("local-b", "1Gi", &["ReadWriteOnce"], "manual", "Retain"),
        "zone-b",
    );
    pvs.create(&pp, &local).await.unwrap();
    claims
        .create(&pp, &claim("data", "1Gi", "manual"))
        .await
        .unwrap();
    wait_object(&claims, "data", DEADLINE, bound_to("local-b"))
        .await
        .unwrap();
    for i in 0..4 {
        pods.create(&pp, &pod_with_claim(&format!("user-{i}"), "data"))
            .await
            .unwrap();
    }
    for i in 0..4 {
        wait_object(&pods, &format!("user-{i}"), DEADLINE, |p| {
            node_of(p) == "node-b"
        })
        .await
        .unwrap();
    }
    // With node-b cordoned, no node can take another pod of the volume.
    let nodes: Api<Node> = Api::all(api.client.clone());
    nodes
        .patch(
            "node-b",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    wait_object(&nodes, "node-b", DEADLINE, |n| {
        n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
    })
    .await
    .unwrap();
    pods.create(&pp, &pod_with_claim("late", "data"))
        .await
        .unwrap();
    let p = wait_object(
        &pods,
        "late",
        DEADLINE,
        unschedulable_with("1 node(s) had volume node affinity conflict"),
    )
    .await
    .unwrap();
    assert_eq!(node_of(&p), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_first_consumer_claim_is_bound_on_the_node_its_pod_is_given() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], true);
    let _nodes = fake_nodes(&api.client, &[("node-a", "zone-a"), ("node-b", "zone-b")]).await;
    let nodes: Api<Node> = Api::all(api.client.clone());
    nodes
        .patch(
            "node-a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let classes: Api<StorageClass> = Api::all(api.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    let class: StorageClass = from_json(json!({
        "metadata": {"name": "later"},
        "provisioner": "example.com/elsewhere",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }));
    classes.create(&pp, &class).await.unwrap();
    claims
        .create(&pp, &claim("data", "1Gi", "later"))
        .await
        .unwrap();
    wait_event(&api.client, "data", "WaitForFirstConsumer").await;
    let c = claims.get("data").await.unwrap();
    assert_eq!(claim_phase(&c), "Pending");
    assert!(
        !c.annotations()
            .contains_key("volume.kubernetes.io/selected-node")
    );
    pods.create(&pp, &pod_with_claim("user", "data"))
        .await
        .unwrap();
    // The scheduler picks node-b (node-a is cordoned) and names it on the claim; the binder
    // hands the claim to the class's provisioner.
    let c = wait_object(&claims, "data", DEADLINE, |c| {
        c.annotations()
            .get("volume.kubernetes.io/storage-provisioner")
            .is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        c.annotations()
            .get("volume.kubernetes.io/selected-node")
            .map(String::as_str),
        Some("node-b")
    );
    assert_eq!(
        c.annotations()
            .get("volume.kubernetes.io/storage-provisioner")
            .map(String::as_str),
        Some("example.com/elsewhere")
    );
    wait_event(&api.client, "data", "ExternalProvisioning").await;
    // The pod waits for the volume, unbound.
    assert_eq!(node_of(&pods.get("user").await.unwrap()), "");
    // The provisioner's part: a volume on node-b, pre-bound to the claim.
    let mut made = in_zone(
        pv("pvc-made", "1Gi", &["ReadWriteOnce"], "later", "Delete"),
        "zone-b",
    );
    made.spec.as_mut().unwrap().claim_ref = Some(from_json(json!({
        "kind": "PersistentVolumeClaim", "namespace": "default", "name": "data",
        "uid": c.metadata.uid,
    })));
    pvs.create(&pp, &made).await.unwrap();
    wait_object(&claims, "data", DEADLINE, bound_to("pvc-made"))
        .await
        .unwrap();
    wait_object(&pods, "user", DEADLINE, |p| node_of(p) == "node-b")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_first_consumer_claim_without_a_provisioner_takes_the_node_of_a_free_local_volume()
 {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client, &["persistentvolume-binder"], true);
    let _nodes = fake_nodes(&api.client, &[("node-a", "zone-a"), ("node-b", "zone-b")]).await;
    let classes: Api<StorageClass> = Api::all(api.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(api.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
    let pp = PostParams::default();
    let class: StorageClass = from_json(json!({
        "metadata": {"name": "local"},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    }));
    classes.create(&pp, &class).await.unwrap();
    let local = in_zone(
        pv("local-a", "1Gi", &["ReadWriteOnce"], "local", "Retain"),
        "zone-a",
    );
    pvs.create(&pp, &local).await.unwrap();
    claims
        .create(&pp, &claim("data", "1Gi", "local"))
        .await
        .unwrap();
    claims
        .create(&pp, &claim("other", "1Gi", "local"))
        .await
        .unwrap();
    wait_event(&api.client, "data", "WaitForFirstConsumer").await;
    pods.create(&pp, &pod_with_claim("user", "data"))
        .await
        .unwrap();
    let c = wait_object(&claims, "data", DEADLINE, bound_to("local-a"))
        .await
        .unwrap();
    assert_eq!(
        c.annotations()
            .get("volume.kubernetes.io/selected-node")
            .map(String::as_str),
        Some("node-a")
    );
    wait_object(&pods, "user", DEADLINE, |p| node_of(p) == "node-a")
        .await
        .unwrap();
    // No free volume is left for a second claim: its pod fits no node.
    pods.create(&pp, &pod_with_claim("second", "other"))
        .await
        .unwrap();
    wait_object(
        &pods,
        "second",
        DEADLINE,
        unschedulable_with("2 node(s) didn't find available persistent volumes to bind"),
    )
    .await
    .unwrap();
}
