//! The whole volume chain on the in-process tier: scheduler, PV controller, protection
//! finalizers and a real node's local-path provisioner (fake runtime) — a pod's
//! `WaitForFirstConsumer` claim is provisioned on the node the pod is given, bound, the pod
//! placed; once the pod and claim are gone the provisioner deletes the released volume.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_host::{NodeConfig, StorageOptions};
use skiff_runtime::fake::{FakeImages, FakeRuntime};
use skiff_runtime::{Network, Runtimes};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

fn controllers(client: &Client) -> Running {
    let mut opts = Options {
        scheduler: true,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("persistentvolume-binder,pvc-protection,pv-protection")
        .expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_local_path_claim_is_provisioned_on_its_node_bound_and_deleted_after_it() {
    let api = InProcess::start().await.unwrap();
    let client = api.client.clone();
    let _c = controllers(&client);
    let tmp = tempfile::tempdir().unwrap();
    let network = Network::new();
    let fake = FakeRuntime::new(network.clone());
    let mut runtimes = Runtimes::new();
    runtimes.add(Arc::new(fake.clone()), Arc::new(FakeImages::new()));
    let mut config = NodeConfig::new("node-a", client.clone(), runtimes, network, "token");
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.storage = Some(StorageOptions {
        dir: tmp.path().join("volumes"),
        max_bytes: None,
    });
    let _node = skiff_host::start(config).await.expect("the node starts");
    let pp = PostParams::default();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let sc: StorageClass = from_json(json!({
        "metadata": {"name": "chain"},
        "provisioner": "skiff.dev/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }));
    classes.create(&pp, &sc).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim: PersistentVolumeClaim = from_json(json!({
        "metadata": {"name": "data"},
        "spec": {"storageClassName": "chain", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Mi"}}},
    }));
    let uid = claims.create(&pp, &claim).await.unwrap().uid().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = from_json(json!({
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "example.com/app:v1",
                            "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }));
    pods.create(&pp, &pod).await.unwrap();
    let pv_name = format!("pvc-{uid}");
    let c = wait_object(&claims, "data", DEADLINE, |c| {
        c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str())
            && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    })
    .await
    .unwrap();
    assert_eq!(
        c.annotations()
            .get("volume.kubernetes.io/selected-node")
            .map(String::as_str),
        Some("node-a")
    );
    wait_object(&pods, "user", DEADLINE, |p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-a")
    })
    .await
    .unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_object(&pvs, &pv_name, DEADLINE, |v| {
        v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    })
    .await
    .unwrap();
    // The claim goes once its pod is gone; the provisioner then deletes the released volume.
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
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
    wait_deleted(&pvs, &pv_name, DEADLINE).await.unwrap();
}
