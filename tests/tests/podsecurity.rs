//! Pod Security admission through kubectl against a real `skiff server`: the RuntimeClasses the
//! server starts with, a privileged Linux container pod refused with Kubernetes' Forbidden text,
//! and accepted once its namespace is labelled `privileged`. No node is needed: admission
//! answers before any scheduling.

use std::path::Path;

use skiff_tests::{Server, ok, tools};

/// `kubectl run` of an oci pod `name` whose container asks for `privileged: true`.
fn run_privileged(server: &Server, kubectl: &Path, name: &str) -> std::process::Output {
    let overrides = format!(
        r#"{{"spec": {{"runtimeClassName": "oci", "containers": [{{"name": "{name}", "image": "busybox:1.36", "securityContext": {{"privileged": true}}}}]}}}}"#
    );
    server
        .kubectl(
            kubectl,
            &[
                "run",
                name,
                "--image=busybox:1.36",
                "--restart=Never",
                &format!("--overrides={overrides}"),
            ],
        )
        .expect("kubectl runs")
}

fn scenario(kubectl: &Path) {
    let server = Server::start().expect("the server starts");
    let classes = ok(&server
        .kubectl(
            kubectl,
            &[
                "get",
                "runtimeclass",
                "-o",
                "custom-columns=NAME:.metadata.name,HANDLER:.handler",
                "--no-headers",
            ],
        )
        .expect("kubectl runs"));
    let mut lines: Vec<String> = classes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    assert_eq!(lines, ["oci oci", "wasm wasm"], "{classes}");

    let out = run_privileged(&server, kubectl, "root");
    assert!(!out.status.success(), "a privileged oci pod was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "Error from server (Forbidden): pods \"root\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"root\" must not set securityContext.privileged=true)",
    );

    ok(&server
        .kubectl(
            kubectl,
            &[
                "label",
                "namespace",
                "default",
                "pod-security.kubernetes.io/enforce=privileged",
            ],
        )
        .expect("kubectl runs"));
    let created = ok(&run_privileged(&server, kubectl, "root"));
    assert_eq!(created.trim(), "pod/root created");
}

#[test]
fn kubectl_prints_the_pod_security_refusal() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    scenario(&kubectl);
}
