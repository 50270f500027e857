//! The node's local-path provisioner and claim volumes on the in-process tier: a real node with
//! the fake runtime provisions a directory and a pre-bound PV for a claim placed on it, refuses
//! what local volumes cannot give with `ProvisioningFailed`, deletes a released volume, and
//! mounts a bound claim's directory into a pod (a pod on an unbound claim waits).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_host::{NodeConfig, StorageOptions};
use skiff_runtime::fake::{FakeImages, FakeRuntime};
use skiff_runtime::{Network, Runtimes, VolumeSource};
use skiff_testkit::inproc::{self, InProcess, wait_deleted, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

/// Starts node `name` on the fake runtime with its local volumes in `dir`.
async fn node(
    client: &Client,
    name: &str,
    dir: &Path,
    max_bytes: Option<u64>,
) -> (skiff_host::NodeHandle, FakeRuntime) {
    let network = Network::new();
    let fake = FakeRuntime::new(network.clone());
    let mut runtimes = Runtimes::new();
    runtimes.add(Arc::new(fake.clone()), Arc::new(FakeImages::new()));
    let mut config = NodeConfig::new(name, client.clone(), runtimes, network, "token");
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.storage = Some(StorageOptions {
        dir: dir.to_path_buf(),
        max_bytes,
    });
    let node = skiff_host::start(config).await.expect("the node starts");
    (node, fake)
}

async fn class(client: &Client, name: &str) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let sc: StorageClass = from_json(json!({
        "metadata": {"name": name},
        "provisioner": "skiff.dev/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"
    }));
    classes.create(&PostParams::default(), &sc).await.unwrap();
}

/// A claim of `class` placed on `node`, as the scheduler and the PV controller leave it.
fn claim(name: &str, class: &str, node: &str, mode: &str, size: &str) -> PersistentVolumeClaim {
    from_json(json!({
        "metadata": {"name": name, "annotations": {
            "volume.kubernetes.io/selected-node": node,
            "volume.kubernetes.io/storage-provisioner": "skiff.dev/local-path"
        }},
        "spec": {"storageClassName": class, "accessModes": [mode],
                 "resources": {"requests": {"storage": size}}}
    }))
}

/// Waits for an Event with `reason` about `name`; returns its message.
async fn wait_event(client: &Client, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    inproc::wait_event(&events, name, reason, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("no {reason} event for {name}: {e}"))
}

/// A claim placed on the node gets a directory and a PV pre-bound to it (hostPath, node
/// affinity, capacity, modes, class, reclaim policy, provisioned-by); a pod on the claim gets
/// the directory once the claim is bound and waits with FailedMount before; the released
/// volume's directory and PV are deleted under `Delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_this_node_is_provisioned_mounted_and_deleted() {
    let api = InProcess::start().await.unwrap();
    let client = api.client.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volumes");
    let (node, fake) = node(&client, "node-a", &dir, None).await;
    class(&client, "local-a").await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let c = claims
        .create(
            &PostParams::default(),
            &claim("data", "local-a", "node-a", "ReadWriteOnce", "1Mi"),
        )
        .await
        .unwrap();
    let uid = c.uid().unwrap();
    let pv_name = format!("pvc-{uid}");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = wait_object(&pvs, &pv_name, DEADLINE, |_| true)
        .await
        .expect("the node provisions a PV");
    let spec = pv.spec.clone().unwrap();
    let path = dir.join(&pv_name);
    assert_eq!(
        spec.host_path.as_ref().unwrap().path,
        path.display().to_string()
    );
    assert!(path.is_dir(), "the volume directory exists");
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Mi");
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-a"));
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let claim_ref = spec.claim_ref.unwrap();
    assert_eq!(claim_ref.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    let term = &spec
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms[0];
    let req = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (req.key.as_str(), req.values.as_deref()),
        ("kubernetes.io/hostname", Some(&["node-a".to_string()][..]))
    );
    assert_eq!(
        pv.annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str),
        Some("skiff.dev/local-path")
    );

    // A pod on the claim before it is bound waits, with kubelet's FailedMount.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = from_json(json!({
        "metadata": {"name": "db-0"},
        "spec": {
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "example.com/app:1",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        }
    }));
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let msg = wait_event(&client, "db-0", "FailedMount").await;
    assert!(msg.contains("PVC is not bound"), "{msg}");
    let waiting = pods.get("db-0").await.unwrap();
    assert_ne!(
        waiting.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    assert!(
        fake.fake_pod(&pod.uid().unwrap()).is_none(),
        "no sandbox before the claim is bound"
    );

    // Bound (as the PV controller binds a pre-bound volume): the pod runs on the directory.
    let mut bound = claims.get("data").await.unwrap();
    bound.spec.as_mut().unwrap().volume_name = Some(pv_name.clone());
    let bound = claims
        .replace("data", &PostParams::default(), &bound)
        .await
        .unwrap();
    let mut bound = bound;
    bound.status = Some(from_json(json!({"phase": "Bound"})));
    claims
        .replace_status("data", &PostParams::default(), &bound)
        .await
        .unwrap();
    wait_object(&pods, "db-0", DEADLINE, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await
    .expect("the pod runs once its claim is bound");
    let sandbox = fake
        .fake_pod(&pod.uid().unwrap())
        .expect("the fake runtime holds the pod");
    let vol = sandbox
        .volumes()
        .iter()
        .find(|v| v.name == "data")
        .expect("the claim volume reaches the runtime");
    match &vol.source {
        VolumeSource::HostPath { path: p } => assert_eq!(p, &path),
        other => panic!("unexpected volume source {other:?}"),
    }

    // Released under Delete (as the PV controller marks it once the claim is gone): the
    // directory, then the PV, are deleted.
    let mut released = pvs.get(&pv_name).await.unwrap();
    released.status = Some(from_json(json!({"phase": "Released"})));
    pvs.replace_status(&pv_name, &PostParams::default(), &released)
        .await
        .unwrap();
    wait_deleted(&pvs, &pv_name, DEADLINE)
        .await
        .expect("the released volume is deleted");
    assert!(!path.exists(), "its directory is gone");
    node.shutdown().await;
}

/// Claims local volumes cannot serve are refused with a ProvisioningFailed Warning, and leave
/// neither a PV nor a directory: shared access modes, more than `--max-local-storage`, more
/// than the filesystem has free. Claims placed on another node are left to that node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_local_volumes_cannot_serve_are_refused() {
    let api = InProcess::start().await.unwrap();
    let client = api.client.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volumes");
    let (node, _fake) = node(&client, "node-b", &dir, Some(10 << 20)).await;
    class(&client, "local-b").await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for c in [
        claim("shared", "local-b", "node-b", "ReadWriteMany", "1Mi"),
        claim("huge", "local-b", "node-b", "ReadWriteOnce", "11Mi"),
        claim("disk", "local-b", "node-b", "ReadWriteOncePod", "1Ei"),
        claim("elsewhere", "local-b", "node-c", "ReadWriteOnce", "1Mi"),
    ] {
        claims.create(&PostParams::default(), &c).await.unwrap();
    }
    let m = wait_event(&client, "shared", "ProvisioningFailed").await;
    assert!(m.contains("not ReadWriteMany"), "{m}");
    let m = wait_event(&client, "huge", "ProvisioningFailed").await;
    assert!(m.contains("--max-local-storage"), "{m}");
    let m = wait_event(&client, "disk", "ProvisioningFailed").await;
    assert!(m.contains("bytes free"), "{m}");

    // A good claim after them is provisioned: the refusals above were all handled by then.
    let ok = claims
        .create(
            &PostParams::default(),
            &claim("ok", "local-b", "node-b", "ReadWriteOnce", "1Mi"),
        )
        .await
        .unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_object(
        &pvs,
        &format!("pvc-{}", ok.uid().unwrap()),
        DEADLINE,
        |_| true,
    )
    .await
    .expect("a claim that fits is provisioned");
    let names: Vec<String> = pvs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the claim that fits has a PV: {names:?}"
    );
    let dirs = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(dirs, 1, "only the claim that fits has a directory");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let all = events.list(&ListParams::default()).await.unwrap().items;
    assert!(inproc::event_messages(&all, "elsewhere", "ProvisioningFailed").is_empty());
    node.shutdown().await;
}

/// A hand-made hostPath PV pinned to another node: a pod on this node using its claim waits
/// with a FailedMount naming the conflict, and gets no sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_bound_to_another_nodes_volume_fails_to_mount() {
    let api = InProcess::start().await.unwrap();
    let client = api.client.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (node, fake) = node(&client, "node-a", &tmp.path().join("volumes"), None).await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv: PersistentVolume = from_json(json!({
        "metadata": {"name": "elsewhere"},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "hostPath": {"path": tmp.path().display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-z"]}]}]}}
        }
    }));
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let c: PersistentVolumeClaim = from_json(json!({
        "metadata": {"name": "far"},
        "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                 "volumeName": "elsewhere", "resources": {"requests": {"storage": "1Gi"}}}
    }));
    let mut c = claims.create(&PostParams::default(), &c).await.unwrap();
    c.status = Some(from_json(json!({"phase": "Bound"})));
    claims
        .replace_status("far", &PostParams::default(), &c)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = from_json(json!({
        "metadata": {"name": "reader"},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "example.com/app:1",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "far"}}]
        }
    }));
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let msg = wait_event(&client, "reader", "FailedMount").await;
    assert!(msg.contains("volume node affinity conflict"), "{msg}");
    assert!(fake.fake_pod(&pod.uid().unwrap()).is_none());
    node.shutdown().await;
}
