//! Persistent storage end to end on a real node: a claim of the `local-path` class is
//! provisioned on the node its first pod is scheduled to, a pod writes a file into it (under a
//! `subPath` the node creates), and a StatefulSet pod on the same claim and subPath serves that
//! file — also after it is deleted and recreated.
//!
//! The `skiff` binary comes from `skiff_tests::skiff_bin()` (build it first:
//! `cargo build -p skiff`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use skiff_tests::fixtures::{is_ready as ready, phase};
use skiff_tests::{Cluster, wait_object_map};

const NODE: &str = "node-1";
const WAIT: Duration = Duration::from_secs(90);

fn yaml<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_yaml::from_str(text).expect("valid YAML")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_pod_reads_what_was_written_to_its_claim_after_it_is_recreated() {
    let c = Cluster::builder()
        .registry()
        .node(NODE, &[])
        .start()
        .await
        .expect("no external tools are needed");
    let puller = c.push("fileserver/puller.wasm", "samples/fileserver-puller:1.0");
    let server = c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    let pp = PostParams::default();

    // The default class, made here if the server has not made it yet.
    let sc: StorageClass = yaml(
        "metadata: {name: local-path}\nprovisioner: skiff.dev/local-path\n\
         reclaimPolicy: Delete\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    let classes: kube::Api<StorageClass> = kube::Api::all(c.client.clone());
    match classes.create(&pp, &sc).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the local-path class: {e}"),
    }

    // The StatefulSet's claim for web-0, filled by a one-off writer pod first.
    let claims = c.api::<PersistentVolumeClaim>("default");
    let claim: PersistentVolumeClaim = yaml(
        "metadata: {name: data-web-0, labels: {app: web}}\n\
         spec: {storageClassName: local-path, accessModes: [ReadWriteOnce], \
         resources: {requests: {storage: 1Mi}}}\n",
    );
    claims.create(&pp, &claim).await.expect("claim created");
    let writer: Pod = yaml(&format!(
        "metadata: {{name: writer}}\n\
         spec:\n  restartPolicy: Never\n  containers:\n  - name: puller\n    image: {puller}\n\
         \x20   env: [{{name: OUTPUT_DIR, value: /data}}]\n\
         \x20   volumeMounts: [{{name: data, mountPath: /data, subPath: site}}]\n\
         \x20 volumes: [{{name: data, persistentVolumeClaim: {{claimName: data-web-0}}}}]\n"
    ));
    let pods = c.pods("default");
    pods.create(&pp, &writer).await.expect("writer created");
    wait_object_map(
        &pods,
        "writer",
        "the writer pod succeeds",
        WAIT,
        |p: &Pod| (phase(p) == Some("Succeeded")).then_some(()),
    )
    .await
    .expect("the claim is provisioned and bound, and the writer runs on it");
    let bound = claims.get("data-web-0").await.unwrap();
    let pv = bound.spec.and_then(|s| s.volume_name).expect("bound");
    assert_eq!(
        pv,
        format!("pvc-{}", claim_uid(&claims, "data-web-0").await)
    );
    let volume = kube::Api::<PersistentVolume>::all(c.client.clone())
        .get(&pv)
        .await
        .unwrap();
    let dir = volume
        .spec
        .and_then(|s| s.host_path)
        .expect("a hostPath")
        .path;
    let page = std::path::Path::new(&dir).join("site/index.html");
    assert!(
        page.is_file(),
        "the writer's file is in the subPath of the volume: {page:?}"
    );

    let sts: StatefulSet = yaml(&format!(
        r#"
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {server}
        env: [{{name: ROOT, value: /data}}]
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}
        volumeMounts: [{{name: data, mountPath: /data, readOnly: true, subPath: site}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      storageClassName: local-path
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Mi}}}}
"#
    ));
    c.api::<StatefulSet>("default")
        .create(&pp, &sts)
        .await
        .expect("statefulset created");
    let first = wait_ready(&c, None).await;
    assert_served(&c);

    pods.delete("web-0", &DeleteParams::default())
        .await
        .expect("web-0 deleted");
    let second = wait_ready(&c, Some(&first)).await;
    assert_ne!(first, second);
    assert_served(&c);
    c.shutdown().await;
}

async fn claim_uid(claims: &kube::Api<PersistentVolumeClaim>, name: &str) -> String {
    claims.get(name).await.unwrap().uid().unwrap()
}

/// Waits for a Ready web-0 other than the pod with uid `not`; returns its uid.
async fn wait_ready(c: &Cluster, not: Option<&str>) -> String {
    wait_object_map(
        &c.pods("default"),
        "web-0",
        "web-0 Ready",
        WAIT,
        |p: &Pod| {
            let uid = p.uid()?;
            (phase(p) == Some("Running") && ready(p) && Some(uid.as_str()) != not).then_some(uid)
        },
    )
    .await
    .expect("web-0 runs and is Ready")
}

fn assert_served(c: &Cluster) {
    let (code, body) = c
        .node(NODE)
        .get("/proxy/default/web-0/8080/")
        .expect("proxy answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("Hello from the Skiff fileserver sample!"),
        "{body}"
    );
}
