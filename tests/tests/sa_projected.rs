//! ServiceAccount tokens projected into pods, end to end: a real `skiff server` (TokenRequest,
//! the ServiceAccount admission plugin adding `kube-api-access-*`, `kube-root-ca.crt`), a
//! registry and a real `skiff node`. A wasm pod serves its own
//! `/var/run/secrets/kubernetes.io/serviceaccount` (the `fileserver` sample); the test reads
//! `token`, `ca.crt` and `namespace` through the API server's pod proxy, then uses the token
//! with kubectl (`auth whoami`) until the pod is deleted. Neither the token nor a Secret's
//! value is ever found under the node's directory; as root, the same holds for a Linux
//! container (secret volume, secret env, projected token).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use skiff_testkit::oci_image::{self, OciTools};
use skiff_tests::fixtures::phase;
use skiff_tests::{Cluster, tools, wait_for, wait_object, wait_object_map};

const NODE: &str = "node-sa";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const WAIT: Duration = Duration::from_secs(120);

/// Every file under `dir` whose bytes contain `needle` (symlinks are not followed).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    let Ok(root) = std::fs::metadata(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                // A mount on another filesystem (a pod's tmpfs) is memory, not the node's disk.
                if meta.dev() == root.dev() {
                    stack.push(path);
                }
            } else if meta.is_file()
                && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

async fn create_secret(c: &Cluster, value: &str) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds"},
        "stringData": {"password": value}
    }))
    .unwrap();
    c.api::<Secret>("default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("the secret is created");
}

async fn create_pod(c: &Cluster, yaml: &str) -> Pod {
    let pod: Pod = serde_yaml::from_str(yaml).expect("a pod");
    c.pods("default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("the pod is created")
}

async fn wait_running(c: &Cluster, name: &str) -> Pod {
    wait_object_map(&c.pods("default"), name, "to run", WAIT, |p| {
        (phase(p) == Some("Running")).then(|| p.clone())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nnode log:\n{}", c.node_logs()))
}

/// `kubectl auth whoami` with `token` instead of the admin's: the user name, or the error.
fn whoami(c: &Cluster, token: &str) -> Result<String, String> {
    let out = c.try_k(&[
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_pod_reads_its_projected_token_ca_and_namespace_and_the_token_works_until_the_pod_goes()
 {
    let Some(c) = Cluster::builder()
        .kubectl()
        .registry()
        .node(NODE, &["--runtimes", "wasm"])
        .start()
        .await
    else {
        return;
    };
    let image = c.push("fileserver/server.wasm", "samples/fileserver-server:1.0");
    let secret_value = "s3cr3t-of-the-sa-projected-test";
    create_secret(&c, secret_value).await;
    let created = create_pod(
        &c,
        &format!(
            r#"
metadata: {{name: reader}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: {image}
    env:
    - {{name: ROOT, value: {MOUNT}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    ports: [{{containerPort: 8080}}]
    volumeMounts: [{{name: creds, mountPath: /creds, readOnly: true}}]
  volumes:
  - {{name: creds, secret: {{secretName: creds}}}}
"#
        ),
    )
    .await;
    // The ServiceAccount admission plugin gave it the default volume and its mount.
    let spec = created.spec.expect("a spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .expect("a kube-api-access volume");
    assert!(
        spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == volume.name && m.mount_path == MOUNT),
        "mounted at {MOUNT}"
    );
    wait_running(&c, "reader").await;

    // Through the API server's pod proxy to the node, to the guest reading its volume.
    let read = |file: &str| {
        c.k(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/reader:8080/proxy/{file}"),
        ])
    };
    let token = read("token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let ca = read("ca.crt");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(read("namespace"), "default");

    assert_eq!(
        whoami(&c, &token).as_deref(),
        Ok("system:serviceaccount:default:default")
    );

    // Neither the token nor the secret is on the node's disk.
    let node_dir = c.node(NODE).dir.clone();
    assert_eq!(files_containing(&node_dir, &token), Vec::<PathBuf>::new());
    assert_eq!(
        files_containing(&node_dir, secret_value),
        Vec::<PathBuf>::new()
    );

    // The token is bound to the pod: it stops working once the pod is gone.
    c.pods("default")
        .delete("reader", &DeleteParams::default())
        .await
        .expect("delete");
    wait_object(
        &c.pods("default"),
        "reader",
        "to be deleted",
        WAIT,
        |p: Option<&Pod>| p.is_none(),
    )
    .await
    .expect("the pod is deleted");
    wait_for("the pod's token to be refused", WAIT, || async {
        whoami(&c, &token).err()
    })
    .await
    .expect("a deleted pod's token is refused");
}

/// Whether this process runs as root; prints why the test is skipped when not.
fn is_root(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("SKIPPED {test}: Linux containers need root (cgroups, namespaces, a bridge)");
    }
    root
}

fn oci_tools(test: &str) -> Option<OciTools> {
    if !is_root(test) {
        return None;
    }
    for (tool, package) in [("runc", "runc"), ("conmon", "conmon"), ("ip", "iproute2")] {
        skiff_tools::system(tool, &format!("apt-get install {package}"))?;
    }
    Some(OciTools {
        umoci: tools::umoci()?,
        skopeo: tools::skopeo()?,
        busybox: tools::busybox()?,
    })
}

/// Sends SIGTERM to process `pid` and waits (a minute at most) until it has exited, so the
/// node removes its containers, mounts and bridge.
fn stop_gracefully(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("process {pid} did not stop within 60 s of SIGTERM");
}

/// Stops the cluster's nodes gracefully when dropped.
struct Graceful(Cluster);

impl Drop for Graceful {
    fn drop(&mut self) {
        for node in &self.0.nodes {
            if let Some(pid) = node.pid() {
                stop_gracefully(pid);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn root_a_linux_pods_secrets_and_token_never_touch_the_node_disk() {
    let test = "root_a_linux_pods_secrets_and_token_never_touch_the_node_disk";
    let Some(tools) = oci_tools(test) else {
        return;
    };
    // A cluster CIDR and node name of its own (the oci tests use 10.200-249.0.0/16).
    let Some(c) = Cluster::builder()
        .kubectl()
        .registry()
        .server_args(&["--cluster-cidr", "10.250.0.0/16"])
        .node("oci-sa", &["--runtimes", "wasm,oci"])
        .start()
        .await
    else {
        return;
    };
    let c = Graceful(c);
    let layout = oci_image::busybox(&tools).expect("the busybox image builds");
    let busybox = oci_image::push(
        &tools,
        &layout,
        &c.0.registry().addr,
        "e2e/busybox:1.0",
        Some(&c.0.registry().token),
    )
    .expect("skopeo pushes the busybox image");
    let secret_value = "s3cr3t-of-the-linux-pod-test";
    create_secret(&c.0, secret_value).await;
    create_pod(
        &c.0,
        &format!(
            r#"
metadata: {{name: linux-reader}}
spec:
  nodeName: oci-sa
  runtimeClassName: oci
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {busybox}
    command: ["sh", "-c", "exec sleep 3600"]
    env:
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    volumeMounts: [{{name: creds, mountPath: /creds, readOnly: true}}]
  volumes:
  - {{name: creds, secret: {{secretName: creds}}}}
"#
        ),
    )
    .await;
    wait_running(&c.0, "linux-reader").await;

    // The container reads the three files (as any user: 0644) and its secret.
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "linux-reader", "--"];
        all.extend_from_slice(args);
        c.0.k(&all)
    };
    let token = exec(&["cat", &format!("{MOUNT}/token")]);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(exec(&["cat", &format!("{MOUNT}/namespace")]), "default");
    let ca = exec(&["cat", &format!("{MOUNT}/ca.crt")]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(exec(&["cat", "/creds/password"]), secret_value);
    assert_eq!(
        exec(&[
            "sh",
            "-c",
            "stat -c %a $(readlink -f /var/run/secrets/kubernetes.io/serviceaccount/token)"
        ])
        .trim(),
        "644"
    );
    assert_eq!(
        whoami(&c.0, &token).as_deref(),
        Ok("system:serviceaccount:default:default")
    );

    // The secret's value (a file and an environment variable) and the token are on the pod's
    // tmpfs only: nowhere on the node's disk.
    let node_dir = c.0.node("oci-sa").dir.clone();
    assert_eq!(
        files_containing(&node_dir, secret_value),
        Vec::<PathBuf>::new()
    );
    assert_eq!(files_containing(&node_dir, &token), Vec::<PathBuf>::new());
}
