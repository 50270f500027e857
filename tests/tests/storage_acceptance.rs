//! Issue 13's acceptance end to end on real processes: a StatefulSet's claims from
//! `volumeClaimTemplates` bound on the default `local-path` class, data that survives a pod's
//! deletion and a scale down and up; `WaitForFirstConsumer` claims provisioned on their pod's
//! node of three, and a cordoned volume node leaving a pod Pending; an unbound `Immediate`
//! claim, claim protection, `Delete` and `Retain` reclaim, and the refusals of a
//! `ReadWriteMany` claim and of a `subPath` with `..`.
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

/// A pod `name` serving from the claim `claim` (Running as soon as it is placed).
fn claim_pod(name: &str, image: &str, claim: &str, sub_path: Option<&str>) -> Pod {
    let sub = sub_path.map_or(String::new(), |s| format!(", subPath: \"{s}\""));
    yaml(&format!(
        "metadata: {{name: {name}}}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: server\n    image: {image}\n\
         \x20   volumeMounts: [{{name: data, mountPath: /data{sub}}}]\n\
         \x20 volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
    ))
}

fn claim_of(name: &str, class: &str, mode: &str) -> PersistentVolumeClaim {
    yaml(&format!(
        "metadata: {{name: {name}}}\n\
         spec: {{storageClassName: {class}, accessModes: [{mode}], \
         resources: {{requests: {{storage: 1Mi}}}}}}\n"
    ))
}

/// Polls until some text of the pod `name` or of an Event about it contains `needle`.
async fn wait_pod_says(c: &Cluster, name: &str, needle: &str) {
    let found = skiff_tests::wait_for(&format!("{name} to say {needle:?}"), WAIT, || async {
        let pod = c.pods("default").get(name).await.ok()?;
        let mut text = serde_json::to_string(&pod.status).ok()?;
        for e in c.events_about("default", name).await {
            text.push_str(&e.message.unwrap_or_default());
        }
        text.contains(needle).then_some(())
    })
    .await;
    if let Err(e) = found {
        let pod = c.pods("default").get(name).await.ok();
        panic!(
            "{e}\npod: {pod:#?}\nevents: {:#?}",
            c.events_about("default", name).await
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_are_protected_while_used_reclaimed_by_policy_and_bad_input_is_refused() {
    let c = Cluster::builder()
        .registry()
        .node(NODE, &[])
        .start()
        .await
        .expect("no external tools are needed");
    let server = c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    let pp = PostParams::default();
    let classes = kube::Api::<k8s_openapi::api::storage::v1::StorageClass>::all(c.client.clone());
    for (name, policy, mode) in [
        ("immediate", "Delete", "Immediate"),
        ("keep", "Retain", "WaitForFirstConsumer"),
    ] {
        let sc = yaml(&format!(
            "metadata: {{name: {name}}}\nprovisioner: skiff.dev/local-path\n\
             reclaimPolicy: {policy}\nvolumeBindingMode: {mode}\n"
        ));
        classes.create(&pp, &sc).await.expect("class created");
    }
    let claims = c.api::<PersistentVolumeClaim>("default");
    let pods = c.pods("default");
    let volumes = kube::Api::<PersistentVolume>::all(c.client.clone());

    // An Immediate claim no volume matches: its pod stays Pending with the scheduler's message.
    claims
        .create(&pp, &claim_of("unmatched", "immediate", "ReadWriteOnce"))
        .await
        .expect("claim created");
    pods.create(&pp, &claim_pod("waiting", &server, "unmatched", None))
        .await
        .expect("pod created");
    wait_pod_says(
        &c,
        "waiting",
        "pod has unbound immediate PersistentVolumeClaims",
    )
    .await;
    let waiting = pods.get("waiting").await.unwrap();
    assert_eq!(phase(&waiting), Some("Pending"));

    // ReadWriteMany is more than a local directory gives.
    claims
        .create(&pp, &claim_of("shared", "local-path", "ReadWriteMany"))
        .await
        .expect("claim created");
    pods.create(&pp, &claim_pod("sharing", &server, "shared", None))
        .await
        .expect("pod created");
    let refused = skiff_tests::wait_for("a ProvisioningFailed Event", WAIT, || async {
        c.events_about("default", "shared")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ProvisioningFailed"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", c.node_logs()));
    assert_eq!(refused.type_.as_deref(), Some("Warning"));

    // A claim in use outlives its deletion until the pod goes; then the Delete policy
    // removes the provisioned directory, while the Retain policy keeps it.
    let mut dirs = Vec::new();
    for (claim, class) in [("gone", "local-path"), ("kept", "keep")] {
        claims
            .create(&pp, &claim_of(claim, class, "ReadWriteOnce"))
            .await
            .expect("claim created");
        let pod = format!("use-{claim}");
        pods.create(&pp, &claim_pod(&pod, &server, claim, None))
            .await
            .expect("pod created");
        wait_object_map(&pods, &pod, "Running", WAIT, |p: &Pod| {
            (phase(p) == Some("Running")).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", c.node_logs()));
        let (_, pv) = bound_claim(&c, claim).await;
        let dir = volumes
            .get(&pv)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.host_path)
            .expect("a hostPath")
            .path;
        assert!(std::path::Path::new(&dir).is_dir(), "{dir}");
        claims
            .delete(claim, &DeleteParams::default())
            .await
            .expect("claim deleted");
        let held = claims.get(claim).await.expect("the claim in use stays");
        assert!(held.metadata.deletion_timestamp.is_some(), "{held:?}");
        assert!(
            held.finalizers()
                .iter()
                .any(|f| f == "kubernetes.io/pvc-protection"),
            "{held:?}"
        );
        pods.delete(&pod, &DeleteParams::default())
            .await
            .expect("pod deleted");
        wait_object(&claims, claim, "the claim goes with its pod", WAIT, |o| {
            o.is_none()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        dirs.push((pv, dir));
    }
    let (deleted, deleted_dir) = &dirs[0];
    wait_object(&volumes, deleted, "the Delete volume goes", WAIT, |o| {
        o.is_none()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", c.node_logs()));
    skiff_tests::wait_for("the Delete volume's directory to go", WAIT, || async {
        (!std::path::Path::new(deleted_dir).exists()).then_some(())
    })
    .await
    .expect("the directory is removed");
    let (kept, kept_dir) = &dirs[1];
    let released = wait_object_map(&volumes, kept, "Released", WAIT, |v: &PersistentVolume| {
        (v.status.as_ref()?.phase.as_deref() == Some("Released")).then_some(())
    })
    .await;
    assert!(released.is_ok(), "{released:?}");
    assert!(
        std::path::Path::new(kept_dir).is_dir(),
        "Retain keeps {kept_dir}"
    );

    // A subPath escaping its volume: kubelet's refusal.
    claims
        .create(&pp, &claim_of("escape", "local-path", "ReadWriteOnce"))
        .await
        .expect("claim created");
    pods.create(&pp, &claim_pod("escaping", &server, "escape", Some("../x")))
        .await
        .expect("pod created");
    wait_pod_says(&c, "escaping", "must not contain '..'").await;
    assert_ne!(phase(&pods.get("escaping").await.unwrap()), Some("Running"));
    c.shutdown().await;
}

/// The node names a volume's required node affinity allows.
fn affinity_nodes(v: &PersistentVolume) -> Vec<String> {
    v.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| {
            r.node_selector_terms
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .flat_map(|e| e.values.iter().flatten().cloned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_consumer_claims_land_on_their_pods_node_and_a_cordoned_volume_node_blocks() {
    let nodes = ["node-1", "node-2", "node-3"];
    let mut builder = Cluster::builder().registry();
    for n in nodes {
        builder = builder.node(n, &[]);
    }
    let c = builder.start().await.expect("no external tools are needed");
    let server = c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    let pp = PostParams::default();
    let claims = c.api::<PersistentVolumeClaim>("default");
    let pods = c.pods("default");
    let volumes = kube::Api::<PersistentVolume>::all(c.client.clone());

    for (i, n) in nodes.iter().enumerate() {
        let claim = format!("c{i}");
        claims
            .create(&pp, &claim_of(&claim, "local-path", "ReadWriteOnce"))
            .await
            .expect("claim created");
        let mut pod = claim_pod(&format!("p{i}"), &server, &claim, None);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_selector =
                Some([("kubernetes.io/hostname".to_string(), n.to_string())].into());
        }
        pods.create(&pp, &pod).await.expect("pod created");
    }
    for (i, n) in nodes.iter().enumerate() {
        let pod = format!("p{i}");
        let placed = wait_object_map(&pods, &pod, "Running", WAIT, |p: &Pod| {
            (phase(p) == Some("Running")).then(|| skiff_tests::node_of(p))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", c.node_logs()));
        assert_eq!(&placed, n);
        let (_, pv) = bound_claim(&c, &format!("c{i}")).await;
        let volume = volumes.get(&pv).await.unwrap();
        assert_eq!(affinity_nodes(&volume), vec![placed.clone()], "{volume:?}");
        let dir = volume
            .spec
            .and_then(|s| s.host_path)
            .expect("a hostPath")
            .path;
        let data = c.node(n).dir.join("data");
        assert!(
            std::path::Path::new(&dir).starts_with(&data),
            "{dir} is under {data:?}"
        );
    }

    // The volume of c1 is on node-2: with node-2 cordoned, a new pod on c1 cannot be placed.
    kube::Api::<k8s_openapi::api::core::v1::Node>::all(c.client.clone())
        .patch(
            "node-2",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("node-2 cordoned");
    pods.create(&pp, &claim_pod("blocked", &server, "c1", None))
        .await
        .expect("pod created");
    wait_pod_says(&c, "blocked", "volume node affinity conflict").await;
    let blocked = pods.get("blocked").await.unwrap();
    assert_eq!(phase(&blocked), Some("Pending"));
    assert!(blocked.spec.and_then(|s| s.node_name).is_none());
    let failed = skiff_tests::wait_for("a FailedScheduling Event", WAIT, || async {
        c.events_about("default", "blocked")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .filter_map(|e| e.message)
            .find(|m| m.contains("volume node affinity conflict"))
    })
    .await;
    assert!(failed.is_ok(), "{failed:?}");
    c.shutdown().await;
}
