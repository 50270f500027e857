//! Issue 13's acceptance end to end on real processes: a StatefulSet's claims from
//! `volumeClaimTemplates` bound on the default `local-path` class, data that survives a pod's
//! deletion and a scale down and up, and the claim protection and reclaim rules.
//!
//! The `skiff` binary comes from `skiff_tests::skiff_bin()` (build it first:
//! `cargo build -p skiff`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use skiff_tests::fixtures::{is_ready as ready, phase};
use skiff_tests::{Cluster, wait_object, wait_object_map};

const NODE: &str = "node-1";
const WAIT: Duration = Duration::from_secs(90);

fn yaml<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_yaml::from_str(text).expect("valid YAML")
}

/// The page the sample writer puts in a claim.
const PAGE: &str = "Hello from the Skiff fileserver sample!";

/// The page the pod `name` serves from its claim, read through the node's proxy.
fn served(c: &Cluster, name: &str) -> String {
    let (code, body) = c
        .node(NODE)
        .get(&format!("/proxy/default/{name}/8080/index.html"))
        .expect("proxy answers");
    assert_eq!(code, 200, "{name}: {body}");
    body
}

/// Waits until the StatefulSet `db` has `n` Ready replicas.
async fn wait_ready_replicas(c: &Cluster, n: i32) {
    if let Err(e) = wait_object_map(
        &c.api::<StatefulSet>("default"),
        "db",
        &format!("{n} Ready replicas"),
        WAIT,
        |s: &StatefulSet| {
            let st = s.status.as_ref()?;
            (st.replicas == n && st.ready_replicas == Some(n)).then_some(())
        },
    )
    .await
    {
        let pods = c.pods("default").list(&Default::default()).await;
        let statuses: Vec<_> = pods
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|p| (p.name_any(), p.status))
                    .collect()
            })
            .unwrap_or_default();
        panic!("{e}\npods: {statuses:#?}\nnode log:\n{}", c.node_logs());
    }
}

/// Waits for a Running, Ready pod `name` whose uid is not `not`; returns its uid.
async fn wait_pod_ready(c: &Cluster, name: &str, not: Option<&str>) -> String {
    wait_object_map(
        &c.pods("default"),
        name,
        "Running and Ready",
        WAIT,
        |p: &Pod| {
            let uid = p.uid()?;
            (phase(p) == Some("Running") && ready(p) && Some(uid.as_str()) != not).then_some(uid)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", c.node_logs()))
}

/// The claim `name`: its class and the volume it is bound to (panics unless Bound).
async fn bound_claim(c: &Cluster, name: &str) -> (String, String) {
    let claim = c
        .api::<PersistentVolumeClaim>("default")
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("claim {name}: {e}"));
    let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(phase.as_deref(), Some("Bound"), "{name}: {claim:?}");
    let spec = claim.spec.expect("a claim has a spec");
    (
        spec.storage_class_name.unwrap_or_default(),
        spec.volume_name.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_keeps_its_claims_and_their_data_across_deletion_and_scaling() {
    let c = Cluster::builder()
        .registry()
        .node(NODE, &[])
        .start()
        .await
        .expect("no external tools are needed");
    let puller = c.push("fileserver/puller.wasm", "samples/fileserver-puller:1.0");
    let server = c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    let pp = PostParams::default();

    // Each pod's init container writes a page to its claim; the server
    // container serves it and is Ready only once it is there. OnDelete: a template change
    // reaches a pod only when it is recreated.
    let sts: StatefulSet = yaml(&format!(
        r#"
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 3
  updateStrategy: {{type: OnDelete}}
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: writer
        image: {puller}
        env:
        - {{name: OUTPUT_DIR, value: /data}}
        volumeMounts: [{{name: data, mountPath: /data}}]
      containers:
      - name: server
        image: {server}
        env: [{{name: ROOT, value: /data}}]
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}
        volumeMounts: [{{name: data, mountPath: /data, readOnly: true}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Mi}}}}
"#
    ));
    let sets = c.api::<StatefulSet>("default");
    sets.create(&pp, &sts).await.expect("statefulset created");
    wait_ready_replicas(&c, 3).await;

    let volumes = kube::Api::<PersistentVolume>::all(c.client.clone());
    let mut dirs = Vec::new();
    for i in 0..3 {
        let (class, pv) = bound_claim(&c, &format!("data-db-{i}")).await;
        assert_eq!(class, "local-path", "no class: the default class is set");
        let volume = volumes.get(&pv).await.expect("the bound volume exists");
        let dir = volume
            .spec
            .and_then(|s| s.host_path)
            .expect("a local-path volume is a hostPath")
            .path;
        let file = std::path::Path::new(&dir).join("index.html");
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("db-{i} wrote {file:?}: {e}"));
        assert!(text.contains(PAGE), "{text}");
        assert_eq!(served(&c, &format!("db-{i}")), text);
        dirs.push((pv, dir));
    }
    assert_ne!(dirs[0].1, dirs[1].1, "each claim has its own directory");

    // From now on the pods only read: the writer is gone from the template, so a recreated
    // pod is Ready only if its claim still holds the first pod's file.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"template": {"spec": {"initContainers": null}}}}),
        ),
    )
    .await
    .expect("template patched");

    let first = c.pods("default").get("db-1").await.unwrap().uid().unwrap();
    c.pods("default")
        .delete("db-1", &DeleteParams::default())
        .await
        .expect("db-1 deleted");
    let second = wait_pod_ready(&c, "db-1", Some(&first)).await;
    assert_ne!(first, second);
    let recreated = c.pods("default").get("db-1").await.unwrap();
    let init = recreated
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map_or(0, Vec::len);
    assert_eq!(init, 0, "the recreated pod does not write");
    assert!(served(&c, "db-1").contains(PAGE));
    assert_eq!(bound_claim(&c, "data-db-1").await.1, dirs[1].0);

    // Scale to 1: the pods go, their claims stay Bound to the same volumes.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scaled to 1");
    for name in ["db-1", "db-2"] {
        wait_object(&c.pods("default"), name, "gone", WAIT, |p| p.is_none())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    wait_ready_replicas(&c, 1).await;
    for (i, (volume, dir)) in dirs.iter().enumerate().skip(1) {
        let (_, pv) = bound_claim(&c, &format!("data-db-{i}")).await;
        assert_eq!(&pv, volume, "data-db-{i} keeps its volume");
        assert!(std::path::Path::new(dir).join("index.html").is_file());
    }

    // Scale back to 3: the new pods reuse the claims and read the first pods' files.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scaled to 3");
    wait_ready_replicas(&c, 3).await;
    for (i, (volume, _)) in dirs.iter().enumerate() {
        let name = format!("db-{i}");
        assert!(served(&c, &name).contains(PAGE));
        assert_eq!(&bound_claim(&c, &format!("data-{name}")).await.1, volume);
    }
    let claims = c
        .api::<PersistentVolumeClaim>("default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 3, "no new claims: {:?}", claims.items);
    c.shutdown().await;
}
