//! kubectl 1.32 and 1.37 against a real `skiff server`: the everyday verbs, their output and
//! their wire protocol (discovery, OpenAPI, tables, patches, apply, watch).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use skiff_tests::{Server, ok, tools};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: IMAGE
        ports:
        - containerPort: 8080
        env:
        - name: GREETING
          value: hello
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello}
spec:
  containers:
  - name: hello
    image: 127.0.0.1:5000/samples/hello-http:1.0
"#;

const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
"#;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn scenario(kubectl: &Path) {
    let server = Server::start().expect("server starts");
    let k = |args: &[&str]| ok(&server.kubectl(kubectl, args).expect("kubectl runs"));
    let k_in = |args: &[&str], input: &str| {
        ok(&server
            .kubectl_stdin(kubectl, args, Some(input))
            .expect("kubectl runs"))
    };

    // get ns: the system namespaces exist, with the Table columns kubectl users know.
    let out = k(&["get", "ns"]);
    assert!(out.starts_with("NAME"), "{out}");
    for header in ["STATUS", "AGE"] {
        assert!(out.lines().next().unwrap().contains(header), "{out}");
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(ns), "{ns} missing in {out}");
    }
    assert!(out.contains("Active"), "{out}");

    // apply (client side) creates, the second apply is a strategic merge patch.
    let out = k_in(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("IMAGE", "example/web:1"),
    );
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = k_in(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("IMAGE", "example/web:2"),
    );
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let image = k(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "example/web:2");
    let env = k(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
    ]);
    assert_eq!(env, "hello", "the strategic merge kept the env list");
    let generation = k(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation, "2", "a template change bumps generation once");
    let out = k_in(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("IMAGE", "example/web:2"),
    );
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");

    // Table columns for deployments and pods.
    let out = k(&["get", "deployments"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(out.contains("web"), "{out}");

    k_in(&["create", "-f", "-"], POD);
    let out = k(&["get", "pods"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert!(
        out.contains("hello") && out.contains("Pending") && out.contains("0/1"),
        "{out}"
    );
    let wide = k(&["get", "pods", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");

    // -o yaml carries the server's fields.
    let yaml = k(&["get", "pod", "hello", "-o", "yaml"]);
    let pod: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml parses");
    assert_eq!(pod["kind"].as_str(), Some("Pod"));
    assert!(
        pod["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36),
        "{yaml}"
    );
    assert!(
        pod["metadata"]["resourceVersion"].as_str().is_some(),
        "{yaml}"
    );
    assert!(
        pod["metadata"]["creationTimestamp"].as_str().is_some(),
        "{yaml}"
    );
    assert_eq!(pod["status"]["phase"].as_str(), Some("Pending"), "{yaml}");
    assert_eq!(
        pod["spec"]["restartPolicy"].as_str(),
        Some("Always"),
        "{yaml}"
    );

    // get -A shows the namespace column from the rows' metadata.
    let out = k(&["get", "pods", "-A"]);
    assert!(
        out.lines().next().unwrap().starts_with("NAMESPACE"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("default") && l.contains("hello")),
        "{out}"
    );

    // Server-side apply, twice; the second is a no-op for the same manager.
    let out = k_in(&["apply", "--server-side", "-f", "-"], CONFIGMAP);
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let out = k_in(
        &["apply", "--server-side", "-f", "-"],
        &CONFIGMAP.replace("blue", "green"),
    );
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        k(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]),
        "green"
    );
    let managers = k(&[
        "get",
        "cm",
        "settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "{managers}");

    // label, annotate.
    k(&["label", "pod", "hello", "tier=front"]);
    assert_eq!(
        k(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        "front"
    );
    assert!(k(&["get", "pods", "-l", "tier=front", "-o", "name"]).contains("pod/hello"));
    assert_eq!(
        k(&["get", "pods", "-l", "app=hello,tier!=front", "-o", "name"]).trim(),
        ""
    );
    k(&["annotate", "pod", "hello", "note=checked"]);
    assert_eq!(
        k(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "checked"
    );

    // patch of all three types.
    k(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"size":"L"}}"#,
    ]);
    k(&[
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/color","value":"red"}]"#,
    ]);
    k(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"example/web:3"}]}}}}"#,
    ]);
    assert_eq!(
        k(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.size} {.data.color}"
        ]),
        "L red"
    );
    assert_eq!(
        k(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"
        ]),
        "example/web:3 8080",
        "strategic merge by container name keeps the other fields"
    );

    // scale through the scale subresource.
    let out = k(&["scale", "deploy", "web", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(
        k(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    // describe pod fetches the pod and its events.
    let out = k(&["describe", "pod", "hello"]);
    for field in [
        "Name:",
        "Namespace:",
        "hello",
        "Labels:",
        "Containers:",
        "Events:",
    ] {
        assert!(out.contains(field), "{field} missing from describe:\n{out}");
    }

    // --dry-run=server validates without storing.
    let out = k_in(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        &CONFIGMAP.replace("settings", "dry"),
    );
    assert!(out.contains("configmap/dry"), "{out}");
    let missing = server.kubectl(kubectl, &["get", "cm", "dry"]).unwrap();
    assert!(
        !missing.status.success() && text(&missing).contains("NotFound"),
        "{}",
        text(&missing)
    );

    // get -w sees a change made while it watches.
    let mut watch = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .arg("--cache-dir")
        .arg(server.dir.join("kube-cache"))
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let mut stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
    });
    output_until(&rx, "the watch to list settings", |seen| {
        seen.contains("settings")
    });
    k(&["create", "configmap", "watched", "--from-literal=a=b"]);
    k(&["label", "cm", "settings", "seen=yes"]);
    output_until(&rx, "the watch to show the changes", |seen| {
        seen.contains("ADDED") && seen.contains("watched") && seen.contains("MODIFIED")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();

    // delete waits until the object is gone.
    let out = k(&["delete", "pod", "hello", "--wait=true", "--timeout=30s"]);
    assert!(out.contains("pod \"hello\" deleted"), "{out}");
    let gone = server.kubectl(kubectl, &["get", "pod", "hello"]).unwrap();
    assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
    let out = k(&["delete", "deploy", "web"]);
    assert!(out.contains("deleted"), "{out}");

    // api-resources lists every kind with its short names.
    let out = k(&["api-resources"]);
    for line in [
        "pods",
        "po",
        "deployments",
        "deploy",
        "cronjobs",
        "leases",
        "clusterroles",
    ] {
        assert!(
            out.contains(line),
            "{line} missing from api-resources:\n{out}"
        );
    }
    let out = k(&["api-resources", "--api-group=apps", "-o", "name"]);
    assert!(
        out.contains("deployments.apps") && out.contains("statefulsets.apps"),
        "{out}"
    );

    // Errors come back in kubectl's words.
    let out = server.kubectl(kubectl, &["get", "pod", "nope"]).unwrap();
    assert!(
        text(&out).contains("Error from server (NotFound): pods \"nope\" not found"),
        "{}",
        text(&out)
    );
    let out = server.kubectl(kubectl, &["get", "widgets"]).unwrap();
    assert!(!out.status.success(), "unknown resources fail");
}

/// Reads what a running command printed so far (each message on `rx` is the whole output)
/// until `done` holds for it; fails after 30 s.
fn output_until(rx: &Receiver<String>, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) if done(&s) => return,
            Ok(s) => seen = s,
            Err(e) => panic!("{e}: no {what}; the output so far:\n{seen}"),
        }
    }
}

#[test]
fn kubectl_1_32() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    scenario(&kubectl);
}

#[test]
fn kubectl_1_37() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    scenario(&kubectl);
}
