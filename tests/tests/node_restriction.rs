//! A node's own credential on a server with `--authorization-mode Node,RBAC` (the issue's node
//! bullet, end to end with kubectl): a kubeconfig minted by `skiff kubeconfig --data-dir` for
//! `system:node:n1` updates its own Node and its pods' status, and gets 403 with Kubernetes'
//! messages for another node's Node, another node's pod status and Secrets of pods not bound to
//! it; the controller manager and scheduler run on their own kubeconfigs, which hold no
//! `system:masters` credential; of every file `skiff up` writes, only the admin kubeconfig and
//! token are `system:masters`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use skiff_tests::{Server, ok, skiff_bin, tools, wait_object};

/// Runs kubectl with `kubeconfig` (its own discovery cache), feeding `stdin` if given.
fn kubectl_as(kubectl: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let cache = kubeconfig.with_extension("cache");
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("kubectl reads its input");
    }
    child.wait_with_output().expect("kubectl runs")
}

/// kubectl's stderr for a command that must fail.
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Mints a node kubeconfig with `skiff kubeconfig --data-dir`.
fn mint_node(server: &Server, node: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{node}.kubeconfig"));
    let out = Command::new(skiff_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(&server.dir)
        .args([
            "--user",
            &format!("system:node:{node}"),
            "--group",
            "system:nodes",
            "-o",
        ])
        .arg(&path)
        .output()
        .expect("skiff kubeconfig runs");
    ok(&out);
    path
}

fn node(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
"
    )
}

fn secret_and_pod(n: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: s{n}
stringData:
  password: hunter{n}
---
apiVersion: v1
kind: Pod
metadata:
  name: p{n}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  containers:
  - name: app
    image: example.com/app:1
  volumes:
  - name: creds
    secret:
      secretName: s{n}
"
    )
}

async fn scenario(kubectl: &Path) {
    let server = Server::start_with(&["--authorization-mode", "Node,RBAC"]).expect("server starts");
    let dir = tempfile::tempdir().unwrap();
    let admin = server.kubeconfig.clone();
    let n1 = mint_node(&server, "n1", dir.path());

    // Only the admin kubeconfig is system:masters; the components have their own.
    for file in ["controller-manager.kubeconfig", "scheduler.kubeconfig"] {
        let text = std::fs::read_to_string(server.dir.join(file)).expect("written at start");
        assert!(text.contains("client-certificate-data"), "{file}");
        assert!(!text.contains("token:"), "{file}");
    }
    let whoami = |kubeconfig: &Path| {
        ok(&kubectl_as(
            kubectl,
            kubeconfig,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
            None,
        ))
    };
    let cm = whoami(&server.dir.join("controller-manager.kubeconfig"));
    assert!(cm.starts_with("system:kube-controller-manager "), "{cm}");
    assert!(!cm.contains("system:masters"), "{cm}");
    let sched = whoami(&server.dir.join("scheduler.kubeconfig"));
    assert!(sched.starts_with("system:kube-scheduler "), "{sched}");
    assert!(!sched.contains("system:masters"), "{sched}");
    let me = whoami(&n1);
    assert!(me.starts_with("system:node:n1 "), "{me}");
    assert!(me.contains("system:nodes"), "{me}");

    // The node registers itself; the admin registers n2.
    ok(&kubectl_as(
        kubectl,
        &n1,
        &["create", "-f", "-"],
        Some(&node("n1")),
    ));
    ok(&kubectl_as(
        kubectl,
        &admin,
        &["create", "-f", "-"],
        Some(&node("n2")),
    ));
    // The ServiceAccount controller, as system:kube-controller-manager under RBAC, makes it.
    let client = skiff_tests::client::client(&admin).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    wait_object(
        &accounts,
        "default",
        "the ServiceAccount controller makes the default ServiceAccount",
        Duration::from_secs(30),
        |sa| sa.is_some(),
    )
    .await
    .unwrap();
    let manifest = format!(
        "{}---\n{}",
        secret_and_pod("1", "n1"),
        secret_and_pod("2", "n2")
    );
    ok(&kubectl_as(
        kubectl,
        &admin,
        &["apply", "-f", "-"],
        Some(&manifest),
    ));

    // Its own Node and its pods' status.
    ok(&kubectl_as(
        kubectl,
        &n1,
        &["label", "node", "n1", "skiff.dev/disk=ssd"],
        None,
    ));
    // As the node itself does (kubectl's `patch --subresource=status` first reads
    // `pods/status`, which Kubernetes' node rules do not grant either).
    let node_client = skiff_tests::client::client(&n1).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(node_client, "default");
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let p1 = pods
        .patch_status("p1", &PatchParams::default(), &running)
        .await
        .expect("n1 reports its pod's status");
    assert_eq!(p1.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    let secret = ok(&kubectl_as(
        kubectl,
        &n1,
        &["get", "secret", "s1", "-o", "jsonpath={.data.password}"],
        None,
    ));
    assert_eq!(secret, "aHVudGVyMQ==");

    // Another node's Node, another node's pod, a Secret no pod of it mounts.
    let err = refused(&kubectl_as(
        kubectl,
        &n1,
        &["label", "node", "n2", "skiff.dev/disk=ssd"],
        None,
    ));
    assert_eq!(
        err,
        r#"Error from server (Forbidden): nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
    );
    match pods
        .patch_status("p2", &PatchParams::default(), &running)
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert_eq!(
                e.message,
                r#"pods "p2" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
            );
        }
        other => panic!("n1 wrote n2's pod status: {other:?}"),
    }
    let err = refused(&kubectl_as(kubectl, &n1, &["get", "secret", "s2"], None));
    assert_eq!(
        err,
        r#"Error from server (Forbidden): secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#
    );
    let err = refused(&kubectl_as(kubectl, &n1, &["get", "secrets"], None));
    assert!(err.starts_with("Error from server (Forbidden): secrets is forbidden: User \"system:node:n1\" cannot list resource \"secrets\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_credential_changes_only_what_is_its_own_kubectl_1_37() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    scenario(&kubectl).await;
}

/// Every regular file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// `skiff up` runs its controllers, scheduler and node on their own credentials: of the files
/// it writes, only the admin kubeconfig (and the admin token it carries) is `system:masters`.
async fn up_scenario(kubectl: &Path) {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-up-masters-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let (_up, ready) = skiff_tests::start_up_with(dir.path(), &["--node-name", "solo"]);
    let show_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let admin = PathBuf::from(ready["kubeconfig"].as_str().expect("the admin kubeconfig"));
    let admin_token = std::fs::read_to_string(data.join("admin.token"))
        .expect("the admin token")
        .trim()
        .to_string();
    assert!(!admin_token.is_empty());
    // The node registered with its own credential before anything is inspected.
    let client = skiff_tests::client::client(&admin).await.unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    wait_object(
        &nodes,
        "solo",
        "the node registers",
        Duration::from_secs(60),
        |n| n.is_some(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show_log()));

    let mut all = Vec::new();
    files(&data, &mut all);
    let mut kubeconfigs = 0;
    for path in &all {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Ok(text) = std::fs::read(path) else {
            continue;
        };
        let admin_file = path.parent() == Some(data.as_path())
            && matches!(name, "admin.kubeconfig" | "admin.token");
        if !admin_file {
            assert!(
                !text
                    .windows(admin_token.len())
                    .any(|w| w == admin_token.as_bytes()),
                "{} holds the admin token",
                path.display()
            );
        }
        if name.ends_with(".kubeconfig") && !admin_file {
            kubeconfigs += 1;
            let who = ok(&kubectl_as(
                kubectl,
                path,
                &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"],
                None,
            ));
            assert!(!who.contains("system:masters"), "{}: {who}", path.display());
        }
    }
    // The controller manager's, the scheduler's and the node's.
    assert!(kubeconfigs >= 3, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_writes_no_masters_credential_but_the_admin_kubeconfig() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    up_scenario(&kubectl).await;
}
