//! End-to-end tests of the node agent: a real `skiff server`, `skiff registry` and `skiff node`
//! process each; the samples and test guests are pushed with `skiff push` and run as pods bound
//! by `spec.nodeName`; their answers and logs are read through the node endpoint.
//!
//! The `skiff` binary comes from `skiff_tests::skiff_bin()` (build it first:
//! `cargo build -p skiff`).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node as KNode, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use skiff_tests::fixtures::{is_ready as ready, phase};
use skiff_tests::pods::{container, container_log, create_pod, wait_pod};
use skiff_tests::{Cluster, repo_root, wait_for, wait_object};

const NODE: &str = "node-1";

/// A server, a registry and one node `node-1` with `extra` flags.
async fn cluster(extra: &[&str]) -> Cluster {
    Cluster::builder()
        .registry()
        .node(NODE, extra)
        .start()
        .await
        .expect("no external tools are needed")
}

/// Creates the objects of a sample manifest, with images in this cluster's registry and pods
/// bound to this cluster's node.
async fn apply_sample(c: &Cluster, manifest: &str) {
    let text = std::fs::read_to_string(repo_root().join("samples").join(manifest))
        .expect("the manifest exists")
        .replace("127.0.0.1:5000", &c.registry().addr)
        .replace("nodeName: local", &format!("nodeName: {NODE}"));
    for doc in text.split("\n---\n") {
        let value: serde_json::Value = serde_yaml::from_str(doc).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        let pp = PostParams::default();
        match value["kind"].as_str() {
            Some("Pod") => {
                let pod: Pod = serde_json::from_value(value).expect("a pod");
                c.pods("default")
                    .create(&pp, &pod)
                    .await
                    .expect("pod created");
            }
            Some("ConfigMap") => {
                let cm: ConfigMap = serde_json::from_value(value).expect("a configmap");
                c.api::<ConfigMap>("default")
                    .create(&pp, &cm)
                    .await
                    .expect("configmap created");
            }
            Some("Secret") => {
                let s: Secret = serde_json::from_value(value).expect("a secret");
                c.api::<Secret>("default")
                    .create(&pp, &s)
                    .await
                    .expect("secret created");
            }
            other => panic!("unexpected kind {other:?} in {manifest}"),
        }
    }
}

/// Whether IPv4 address `ip` lies in `cidr` (`a.b.c.d/n`).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().map(u32::from).ok();
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(net), len.parse::<u32>()) {
        (Some(ip), Some(net), Ok(len)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            ip & mask == net & mask
        }
        _ => false,
    }
}

/// The podCIDR the cluster gave the node.
async fn pod_cidr(c: &Cluster) -> String {
    Api::<KNode>::all(c.client.clone())
        .get(NODE)
        .await
        .expect("the node")
        .spec
        .and_then(|s| s.pod_cidr)
        .expect("the node has a podCIDR")
}

fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container(p, name)?.state?.waiting?.reason
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_http_runs_and_answers_through_the_node_endpoint() {
    let c = cluster(&["--zone", "zone-a"]).await;
    c.push("hello-http/hello-http.wasm", "samples/hello-http:1.0");

    // The Node is registered the way kubelet registers one, and its Lease is held.
    let node = Api::<KNode>::all(c.client.clone())
        .get(NODE)
        .await
        .expect("the node is registered");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    // `wasm` always; `oci` exactly when the node says its Linux container runtime is ready
    // (asked for, root, with a runtime binary); the harness's nodes run wasm only.
    let handlers: Vec<&str> = labels[skiff_meta::names::RUNTIME_LABEL]
        .split('.')
        .collect();
    assert!(handlers.contains(&"wasm"), "{handlers:?}");
    let oci_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "OCIRuntimeReady"))
        .is_some_and(|c| c.status == "True");
    assert_eq!(handlers.contains(&"oci"), oci_ready, "{handlers:?}");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["topology.kubernetes.io/zone"], "zone-a");
    let status = node.status.clone().expect("node status");
    let info = status.node_info.expect("nodeInfo");
    assert!(!info.kubelet_version.is_empty() && !info.container_runtime_version.is_empty());
    assert_eq!(info.operating_system, "linux");
    let pods: u64 = status.capacity.expect("capacity")["pods"]
        .0
        .parse()
        .expect("a number of pods");
    assert!(pods > 0);
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .expect("kubelet endpoint");
    assert_eq!(c.node(NODE).addr, format!("127.0.0.1:{port}"));
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let lease = Api::<Lease>::namespaced(c.client.clone(), "kube-node-lease")
        .get(NODE)
        .await
        .expect("the node lease exists");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(NODE)
    );

    apply_sample(&c, "hello-http/pod.yaml").await;
    let pod = wait_pod(&c, NODE, "hello-http", "Running and Ready", |p| {
        (phase(p) == Some("Running") && ready(p)).then(|| p.clone())
    })
    .await;
    let st = pod.status.clone().expect("status");
    // The pod's IP comes from the podCIDR the cluster gave the node.
    let pod_cidr = pod_cidr(&c).await;
    let ip = st.pod_ip.as_deref().expect("a pod IP");
    assert!(in_cidr(ip, &pod_cidr), "{ip} in {pod_cidr}");
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(st.qos_class.as_deref(), Some("Burstable"));
    assert!(st.start_time.is_some());
    let cs = container(&pod, "hello").expect("container status");
    assert!(cs.ready && cs.started == Some(true));
    assert!(cs.container_id.is_some_and(|id| id.starts_with("wasm://")));
    assert!(cs.image_id.contains("@sha256:"), "{}", cs.image_id);

    let (code, body) = c
        .node(NODE)
        .get("/proxy/default/hello-http/8080/")
        .expect("proxy answers");
    assert_eq!((code, body.as_str()), (200, "Hello from Skiff!\n"));
    let (code, body) = c
        .node(NODE)
        .get("/pods/default/hello-http/8080/echo?x=1")
        .expect("pod port answers");
    assert_eq!(code, 200);
    assert!(body.starts_with("GET /echo?x=1"), "{body}");
    let (code, _) = c
        .node(NODE)
        .request("/proxy/default/hello-http/8080/", None)
        .expect("answers");
    assert_eq!(code, 401, "no token, no access");
    let (code, _) = c
        .node(NODE)
        .request("/proxy/default/hello-http/8080/", Some("wrong"))
        .expect("answers");
    assert_eq!(code, 401, "a wrong token, no access");
    let (code, _) = c
        .node(NODE)
        .get("/proxy/default/nope/8080/")
        .expect("answers");
    assert_eq!(code, 404);

    let reasons: Vec<String> = c
        .events_about("default", "hello-http")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }

    // A new image in the pod spec: the container is restarted from it.
    let v2 = c.push("hello-http/hello-http-v2.wasm", "samples/hello-http:2.0");
    let patch = serde_json::json!({"spec": {"containers": [{"name": "hello", "image": v2}]}});
    c.pods("default")
        .patch(
            "hello-http",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .expect("image updated");
    wait_pod(&c, NODE, "hello-http", "the new image running", |p| {
        let cs = container(p, "hello")?;
        (cs.image == v2 && cs.state?.running.is_some() && cs.restart_count == 1).then_some(())
    })
    .await;
    let (code, body) = c
        .node(NODE)
        .get("/proxy/default/hello-http/8080/")
        .expect("proxy answers");
    assert_eq!((code, body.as_str()), (200, "Hello from Skiff v2!\n"));

    // Graceful deletion: the node stops the pod and removes the object.
    c.pods("default")
        .delete("hello-http", &DeleteParams::default())
        .await
        .expect("delete accepted");
    wait_object(
        &c.pods("default"),
        "hello-http",
        "the node to stop the pod and remove the object",
        Duration::from_secs(60),
        |p: Option<&Pod>| p.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nnode log:\n{}", c.node(NODE).log()));
    let (code, _) = c
        .node(NODE)
        .get("/proxy/default/hello-http/8080/")
        .expect("answers");
    assert_eq!(code, 404, "the deleted pod no longer serves");
    drop(c.server);
}

#[tokio::test(flavor = "multi_thread")]
async fn env_reader_prints_env_config_map_and_secret() {
    let c = cluster(&[]).await;
    c.push("env-reader/env-reader.wasm", "samples/env-reader:1.0");
    apply_sample(&c, "env-reader/pod.yaml").await;
    let pod = wait_pod(&c, NODE, "env-reader", "Succeeded", |p| {
        (phase(p) == Some("Succeeded")).then(|| p.clone())
    })
    .await;
    let term = container(&pod, "reader")
        .and_then(|s| s.state)
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(term.exit_code, 0);
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    let log = container_log(&c, NODE, "env-reader", "reader", "");
    for line in [
        "GREETING=hello",
        "COLOR=blue",
        "USERNAME=skiff",
        "POD_NAME=env-reader",
        "/config/color: blue",
        "/config/app.properties: mode=demo\\nreplicas=1",
        "/secret/password: s3cr3t",
    ] {
        assert!(log.lines().any(|l| l == line), "no {line:?} in log:\n{log}");
    }
    // The same log through the API server's pods/log, which forwards to the node.
    let via_api = c
        .pods("default")
        .logs(
            "env-reader",
            &kube::api::LogParams {
                container: Some("reader".into()),
                ..Default::default()
            },
        )
        .await
        .expect("pods/log answers");
    assert_eq!(via_api, log);
    // tailLines and timestamps, as kubelet serves them.
    let tail = container_log(&c, NODE, "env-reader", "reader", "?tailLines=1");
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let stamped = container_log(
        &c,
        NODE,
        "env-reader",
        "reader",
        "?timestamps=true&tailLines=1",
    );
    let (stamp, rest) = stamped.split_once(' ').expect("a timestamp");
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{stamped}");
    assert_eq!(rest, tail);
}

#[tokio::test(flavor = "multi_thread")]
async fn fileserver_init_container_fills_the_volume_the_server_serves() {
    let c = cluster(&[]).await;
    c.push("fileserver/puller.wasm", "samples/fileserver-puller:1.0");
    c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    apply_sample(&c, "fileserver/pod.yaml").await;
    let pod = wait_pod(&c, NODE, "fileserver", "Running and Ready", |p| {
        (phase(p) == Some("Running") && ready(p)).then(|| p.clone())
    })
    .await;
    let init = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .expect("init container statuses");
    let term = init[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("init terminated");
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    let (code, body) = c
        .node(NODE)
        .get("/proxy/default/fileserver/8080/")
        .expect("proxy answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("Hello from the Skiff fileserver sample!"),
        "{body}"
    );
    let log = container_log(&c, NODE, "fileserver", "puller", "");
    assert!(log.contains("puller: wrote"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_guests_are_reported_and_the_node_keeps_running_others() {
    let c = cluster(&["--allow-file-images"]).await;
    let hello = c.push("hello-http/hello-http.wasm", "samples/hello-http:1.0");
    let trap = c.push("testdata/trap.wasm", "testdata/trap:1.0");
    let exit3 = c.push("testdata/exit3.wasm", "testdata/exit3:1.0");
    let oom = c.push("testdata/oom.wasm", "testdata/oom:1.0");
    let bad = c.push("testdata/bad-import.wasm", "testdata/bad-import:1.0");
    let escape = c.push("testdata/escape.wasm", "testdata/escape:1.0");
    let spin = c.push("testdata/spin.wasm", "testdata/spin:1.0");
    // The registry refuses to store a file that is not wasm, so this one comes from a file.
    let not_wasm = format!(
        "file://{}",
        repo_root().join("samples/testdata/not-wasm.wasm").display()
    );
    let pods = [
        ("trap", format!("containers: [{{name: c, image: {trap}}}]")),
        (
            "exit3",
            format!("restartPolicy: Never\n  containers: [{{name: c, image: {exit3}}}]"),
        ),
        (
            "oom",
            format!(
                "restartPolicy: Never\n  containers: [{{name: c, image: {oom}, resources: {{limits: {{memory: 32Mi}}}}}}]"
            ),
        ),
        (
            "not-wasm",
            format!("containers: [{{name: c, image: \"{not_wasm}\"}}]"),
        ),
        (
            "bad-import",
            format!("containers: [{{name: c, image: {bad}}}]"),
        ),
        (
            "escape",
            format!(
                "restartPolicy: Never\n  containers: [{{name: c, image: {escape}, volumeMounts: [{{name: data, mountPath: /data}}]}}]\n  volumes: [{{name: data, emptyDir: {{}}}}]"
            ),
        ),
        (
            "spin",
            format!(
                "terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {spin}\n    ports: [{{containerPort: 8080}}]\n    resources: {{limits: {{cpu: 200m}}}}\n    livenessProbe: {{httpGet: {{port: 8080, path: /}}, periodSeconds: 1, failureThreshold: 2}}"
            ),
        ),
        (
            "hello",
            format!("containers: [{{name: c, image: {hello}, ports: [{{containerPort: 8080}}]}}]"),
        ),
    ];
    for (name, spec) in &pods {
        create_pod(&c, NODE, &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: NODE\n  {spec}\n"
        ))
        .await;
    }

    // A trapping guest: terminated with its reason, then back-off.
    let pod = wait_pod(&c, NODE, "trap", "CrashLoopBackOff", |p| {
        (waiting_reason(p, "c").as_deref() == Some("CrashLoopBackOff")).then(|| p.clone())
    })
    .await;
    let cs = container(&pod, "c").expect("status");
    assert!(cs.restart_count >= 1);
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 134);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(last.message.unwrap_or_default().contains("trap"));
    let trap_log = container_log(&c, NODE, "trap", "c", "?previous=true");
    assert!(trap_log.contains("trap: about to trap"), "{trap_log}");

    // Exit code 3.
    let term = wait_pod(&c, NODE, "exit3", "Failed", |p| {
        (phase(p) == Some("Failed")).then(|| container(p, "c")?.state?.terminated)?
    })
    .await;
    assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));

    // Allocating past the limit.
    let term = wait_pod(&c, NODE, "oom", "OOMKilled", |p| {
        container(p, "c")?.state?.terminated
    })
    .await;
    assert_eq!(term.reason.as_deref(), Some("OOMKilled"));

    // Not wasm, and an import nobody provides: waiting with a clear reason and an Event.
    for (name, needle) in [
        ("not-wasm", "not a wasm"),
        ("bad-import", "acme:missing/thing"),
    ] {
        let w = wait_pod(&c, NODE, name, "CreateContainerError", |p| {
            let w = container(p, "c")?.state?.waiting?;
            (w.reason.as_deref() == Some("CreateContainerError")).then_some(w)
        })
        .await;
        let msg = w.message.unwrap_or_default();
        assert!(msg.contains(needle), "{name}: {msg}");
        let events = c.events_about("default", name).await;
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some("Failed")
                && e.type_.as_deref() == Some("Warning")
                && e.message.as_deref().is_some_and(|m| m.contains(needle))),
            "{name}: no Failed event in {events:?}"
        );
    }

    // No way out of the preopens.
    wait_pod(&c, NODE, "escape", "Succeeded", |p| {
        (phase(p) == Some("Succeeded")).then_some(())
    })
    .await;
    let log = container_log(&c, NODE, "escape", "c", "");
    for path in [
        "/etc/passwd",
        "/data/../../etc/passwd",
        "/proc/self/environ",
    ] {
        assert!(log.contains(&format!("DENIED {path}")), "{log}");
    }
    assert!(!log.contains("READ "), "{log}");

    // A busy loop whose liveness probe fails is restarted.
    let restarts = wait_pod(&c, NODE, "spin", "a restart", |p| {
        let n = container(p, "c")?.restart_count;
        (n >= 1).then_some(n)
    })
    .await;
    assert!(restarts >= 1);
    let events = c.events_about("default", "spin").await;
    for reason in ["Unhealthy", "Killing"] {
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some(reason)),
            "spin: no {reason} event"
        );
    }

    // Through all of it, the node kept running the healthy pod.
    wait_pod(&c, NODE, "hello", "Running", |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await;
    let (code, body) = c
        .node(NODE)
        .get("/proxy/default/hello/8080/")
        .expect("answers");
    assert_eq!((code, body.as_str()), (200, "Hello from Skiff!\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_map_volume_files_follow_updates() {
    let c = cluster(&[]).await;
    let image = c.push("env-reader/env-reader.wasm", "samples/env-reader:1.0");
    let cm: ConfigMap =
        serde_yaml::from_str("metadata: {name: live}\ndata: {color: blue}").expect("configmap");
    c.api::<ConfigMap>("default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap created");
    create_pod(
        &c,
        NODE,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: looper}}\nspec:\n  nodeName: NODE\n  \
         containers:\n  - name: c\n    image: {image}\n    args: [\"--loop\", \"1\"]\n    \
         volumeMounts: [{{name: config, mountPath: /config}}]\n  \
         volumes: [{{name: config, configMap: {{name: live}}}}]\n"
        ),
    )
    .await;
    wait_pod(&c, NODE, "looper", "Running", |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await;
    wait_for("the first report", Duration::from_secs(60), || async {
        container_log(&c, NODE, "looper", "c", "")
            .contains("/config/color: blue")
            .then_some(())
    })
    .await
    .unwrap();
    let patch = serde_json::json!({"data": {"color": "green"}});
    c.api::<ConfigMap>("default")
        .patch(
            "live",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("configmap updated");
    wait_for(
        "the mounted file to show the update",
        Duration::from_secs(90),
        || async {
            container_log(&c, NODE, "looper", "c", "")
                .contains("/config/color: green")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nnode log:\n{}", c.node(NODE).log()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_waits_in_image_pull_back_off() {
    let c = cluster(&[]).await;
    create_pod(
        &c,
        NODE,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: missing}}\nspec:\n  nodeName: NODE\n  \
         containers: [{{name: c, image: {}/nothing/here:1.0}}]\n",
            c.registry().addr
        ),
    )
    .await;
    let w = wait_pod(&c, NODE, "missing", "ErrImagePull", |p| {
        let w = container(p, "c")?.state?.waiting?;
        matches!(
            w.reason.as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
        .then_some(w)
    })
    .await;
    assert!(w.message.is_some_and(|m| m.contains("nothing/here")));
    assert_eq!(
        wait_pod(&c, NODE, "missing", "Pending", |p| phase(p)
            .map(str::to_string))
        .await,
        "Pending"
    );
    let events = c.events_about("default", "missing").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Failed") && e.type_.as_deref() == Some("Warning")),
        "no Failed event in {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_class_this_node_does_not_run_is_refused_with_an_event() {
    let c = cluster(&[]).await;
    let hello = c.push("hello-http/hello-http.wasm", "samples/hello-http:1.0");
    let api: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(c.client.clone());
    // `wasm` exists from the server's start.
    let rc = serde_yaml::from_str("metadata: {name: vm}\nhandler: kata").expect("a runtime class");
    api.create(&PostParams::default(), &rc)
        .await
        .expect("runtime class created");
    for (pod, class) in [("on-kata", "vm"), ("on-wasm", "wasm")] {
        create_pod(&c, NODE, &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  nodeName: NODE\n  \
             runtimeClassName: {class}\n  containers: [{{name: c, image: {hello}, ports: [{{containerPort: 8080}}]}}]\n"
        ))
        .await;
    }
    wait_pod(&c, NODE, "on-wasm", "Running", |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await;
    let w = wait_pod(&c, NODE, "on-kata", "a waiting reason", |p| {
        let w = container(p, "c")?.state?.waiting?;
        w.message.is_some().then_some(w)
    })
    .await;
    assert!(
        w.message
            .as_deref()
            .is_some_and(|m| m.contains("no runtime for \"kata\"")),
        "{w:?}"
    );
    let events = c.events_about("default", "on-kata").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox")),
        "no FailedCreatePodSandBox event in {events:?}"
    );
}

/// Pods that finished give their IPs back, as under kubelet, so a node's range does not fill
/// up with finished Job pods: on a node whose range holds 5 pods, 8 pods that run to
/// completion one after another all finish (the 6th used to wait in ContainerCreating for a
/// free IP); each status keeps the IP it had, and the first pod's log is still served.
#[tokio::test(flavor = "multi_thread")]
async fn finished_pods_give_their_ips_back() {
    let c = Cluster::builder()
        .server_args(&["--node-cidr-mask-size", "29"])
        .registry()
        .node(NODE, &[])
        .start()
        .await
        .expect("no external tools are needed");
    c.push("env-reader/env-reader.wasm", "samples/env-reader:1.0");
    let pod_cidr = pod_cidr(&c).await;
    assert!(pod_cidr.ends_with("/29"), "{pod_cidr}");
    let image = format!("{}/samples/env-reader:1.0", c.registry().addr);
    let mut ips = Vec::new();
    for i in 0..8 {
        let name = format!("done-{i}");
        create_pod(
            &c,
            NODE,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{nodeName: NODE, \
                 restartPolicy: Never, containers: [{{name: reader, image: '{image}'}}]}}"
            ),
        )
        .await;
        let pod = wait_pod(&c, NODE, &name, "Succeeded", |p| {
            (phase(p) == Some("Succeeded")).then(|| p.clone())
        })
        .await;
        let ip = pod
            .status
            .and_then(|s| s.pod_ip)
            .unwrap_or_else(|| panic!("{name} keeps its IP in its status"));
        assert!(in_cidr(&ip, &pod_cidr), "{ip} in {pod_cidr}");
        ips.push(ip);
    }
    // The first pod's status still shows its IP (another pod's by now), and says its sandbox
    // is stopped, as kubelet's does.
    let first = c.pods("default").get("done-0").await.expect("done-0");
    let st = first.status.expect("a status");
    assert_eq!(st.pod_ip.as_deref(), Some(ips[0].as_str()));
    let sandbox = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodReadyToStartContainers")
        .map(|c| c.status.clone());
    assert_eq!(sandbox.as_deref(), Some("False"), "{ips:?}");
    let log = container_log(&c, NODE, "done-0", "reader", "");
    assert!(
        log.lines().any(|l| l == "HOSTNAME=done-0"),
        "the first pod's log:\n{log}"
    );
}
