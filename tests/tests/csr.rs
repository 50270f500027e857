//! A client certificate through the Kubernetes CSR flow against a real `skiff server`: openssl
//! makes a key and a request for `/CN=jane/O=dev`, kubectl applies the CertificateSigningRequest
//! and approves it (`kubectl certificate approve`), the in-process signer issues it from the
//! cluster CA, and `openssl verify` accepts it with the requested subject; PodTemplates print
//! kubectl's columns and go with label and field selectors; `kubectl auth can-i` and
//! `kubectl auth whoami` answer from the access and self-subject reviews.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use skiff_tests::{Server, ok, tools, wait_object_map};

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn scenario(kubectl: &Path) {
    let server = Server::start().expect("server starts");
    let k = |args: &[&str]| ok(&server.kubectl(kubectl, args).expect("kubectl runs"));
    let k_in = |args: &[&str], input: &str| {
        ok(&server
            .kubectl_stdin(kubectl, args, Some(input))
            .expect("kubectl runs"))
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "jane.key",
            "-out",
            "jane.csr",
            "-subj",
            "/CN=jane/O=dev",
        ],
        d,
    );
    let request = openssl(&["base64", "-A", "-in", "jane.csr"], d);
    let request = request.trim();
    let manifest = format!(
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: jane
spec:
  request: {request}
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 86400
  usages:
  - client auth
"
    );
    let out = k_in(&["apply", "-f", "-"], &manifest);
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/jane created"),
        "{out}"
    );

    let out = k(&["get", "csr"]);
    let header = out.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "AGE",
        "SIGNERNAME",
        "REQUESTOR",
        "REQUESTEDDURATION",
        "CONDITION",
    ] {
        assert!(header.contains(column), "{out}");
    }
    assert!(out.contains("Pending"), "{out}");
    assert!(
        out.contains("admin"),
        "the requestor is the authenticated user: {out}"
    );

    let out = k(&["certificate", "approve", "jane"]);
    assert!(out.contains("approved"), "{out}");

    let client = skiff_tests::client::client(&server.kubeconfig)
        .await
        .expect("client");
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let cert = wait_object_map(
        &csrs,
        "jane",
        "status.certificate",
        Duration::from_secs(60),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .filter(|c| !c.0.is_empty())
                .map(|c| c.0.clone())
        },
    )
    .await
    .expect("the certificate is issued");
    std::fs::write(d.join("jane.crt"), &cert).unwrap();
    let ca = server.dir.join("pki/ca.crt");
    let out = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), "jane.crt"], d);
    assert!(out.contains("jane.crt: OK"), "{out}");
    let subject = openssl(
        &[
            "x509", "-in", "jane.crt", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
        d,
    );
    assert_eq!(subject.trim(), "subject=O=dev,CN=jane");
    let out = k(&["get", "csr", "jane"]);
    assert!(out.contains("Approved,Issued"), "{out}");

    // A denied request stays denied and unsigned.
    let denied = manifest.replace("name: jane", "name: denied");
    k_in(&["apply", "-f", "-"], &denied);
    let out = k(&["certificate", "deny", "denied"]);
    assert!(out.contains("denied"), "{out}");
    let out = k(&["get", "csr", "denied"]);
    assert!(out.contains("Denied") && !out.contains("Issued"), "{out}");

    // PodTemplates: kubectl's columns, and deletes by label and by field selector.
    for (name, app) in [("a", "drop"), ("b", "keep"), ("c", "drop")] {
        let template = format!(
            "apiVersion: v1
kind: PodTemplate
metadata:
  name: {name}
  labels: {{app: {app}}}
template:
  metadata:
    labels: {{role: {name}}}
  spec:
    containers:
    - name: main
      image: example.com/{name}:1
"
        );
        k_in(&["apply", "-f", "-"], &template);
    }
    let out = k(&["get", "podtemplates"]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "CONTAINERS", "IMAGES", "POD LABELS"] {
        assert!(header.contains(column), "{out}");
    }
    assert!(
        out.contains("example.com/a:1") && out.contains("role=a"),
        "{out}"
    );
    k(&["delete", "podtemplates", "-l", "app=drop"]);
    k(&[
        "delete",
        "podtemplates",
        "--field-selector",
        "metadata.name=b",
    ]);
    let out = k(&["get", "podtemplates", "-o", "name"]);
    assert!(out.trim().is_empty(), "{out}");

    // The reviews: can-i asks a SelfSubjectAccessReview, --list a rules review, whoami a
    // SelfSubjectReview.
    assert_eq!(k(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let out = k(&["auth", "can-i", "--list"]);
    assert!(out.contains("*.*"), "{out}");
    let out = k(&["auth", "whoami"]);
    assert!(out.contains("Username") && out.contains("admin"), "{out}");
    assert!(out.contains("system:masters"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_approved_with_kubectl_1_37_is_issued_by_the_cluster_ca() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    if tools::require(
        "openssl",
        Some(std::path::PathBuf::from("/usr/bin/openssl")),
        "scripts/install-test-deps.sh installs it",
    )
    .is_none()
    {
        return;
    }
    scenario(&kubectl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_approved_with_kubectl_1_32_is_issued_by_the_cluster_ca() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    if tools::require(
        "openssl",
        Some(std::path::PathBuf::from("/usr/bin/openssl")),
        "scripts/install-test-deps.sh installs it",
    )
    .is_none()
    {
        return;
    }
    scenario(&kubectl).await;
}
