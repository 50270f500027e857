//! StatefulSet end to end on simulated nodes: web-0, web-1, web-2 created in order, each with
//! its PVC from the volumeClaimTemplate, and a scale-down removing the highest ordinal.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use skiff_tests::{Cluster, wait_for};

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
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
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      storageClassName: manual
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
"#;

/// Simulated nodes provision nothing: hand-made volumes of the claims' class, bound at once (no
/// StorageClass `manual` exists), so the pods can be scheduled.
const VOLUMES: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: PersistentVolume, metadata: {name: manual-0}, spec: {storageClassName: manual, accessModes: [ReadWriteOnce], capacity: {storage: 1Gi}, hostPath: {path: /tmp/manual-0}}}
- {apiVersion: v1, kind: PersistentVolume, metadata: {name: manual-1}, spec: {storageClassName: manual, accessModes: [ReadWriteOnce], capacity: {storage: 1Gi}, hostPath: {path: /tmp/manual-1}}}
- {apiVersion: v1, kind: PersistentVolume, metadata: {name: manual-2}, spec: {storageClassName: manual, accessModes: [ReadWriteOnce], capacity: {storage: 1Gi}, hostPath: {path: /tmp/manual-2}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_creates_ordinals_in_order_with_claims() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .fake_zones(&["a", "b"])
        .start()
        .await
    else {
        return;
    };
    let client = c.client.clone();
    c.apply(VOLUMES);
    c.apply(STATEFULSET);
    let status = ["rollout", "status", "statefulset/web", "--timeout=60s"];
    c.k(&status);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|p| p.metadata.name.clone());
    let names: Vec<String> = list
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    // Created in order: each after its predecessor.
    let created: Vec<_> = list
        .iter()
        .map(|p| p.metadata.creation_timestamp.clone().unwrap().0)
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
    let ready_at = |p: &Pod| skiff_controllers::util::pod_ready(p).unwrap();
    assert!(ready_at(&list[0]) <= created[1] && ready_at(&list[1]) <= created[2]);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let mut claims: Vec<String> = pvcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    claims.sort();
    assert_eq!(claims, ["data-web-0", "data-web-1", "data-web-2"]);
    assert_eq!(
        list[1].spec.as_ref().unwrap().hostname.as_deref(),
        Some("web-1")
    );

    c.k(&["scale", "statefulset/web", "--replicas=2"]);
    wait_for("web-2 removed", Duration::from_secs(30), || async {
        let live: Vec<String> = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.unwrap())
            .collect();
        (live.len() == 2 && !live.contains(&"web-2".to_string())).then_some(())
    })
    .await
    .unwrap();
    c.shutdown().await;
}
