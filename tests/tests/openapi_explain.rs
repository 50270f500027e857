//! `kubectl explain` and kubectl 1.27's OpenAPI-driven apply against a real `skiff server`:
//! built-in kinds and a custom resource explained by kubectl 1.37 (OpenAPI v3) and kubectl 1.27
//! (OpenAPI v3, and `/openapi/v2` in protobuf with `--output plaintext-openapiv2`); the
//! explanation follows the CRD when a field is added and a version removed; kubectl 1.27 applies a
//! Deployment and refuses one with an unknown field.

use std::path::Path;
use std::time::Duration;

use skiff_tests::{Server, ok, tools, wait_for};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: gadgets
    singular: gadget
    kind: Gadget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A gadget of the explain test.
        properties:
          spec:
            type: object
            description: What the gadget should be.
            properties:
              size:
                type: string
                description: How big the gadget is.
              count:
                type: integer
                description: How many gadgets there are.
              labels:
                type: object
                nullable: true
                additionalProperties:
                  type: string
              port:
                x-kubernetes-int-or-string: true
                description: A port by number or name.
EXTRA
VERSIONS
"#;

const BETA: &str = r#"  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: string
                description: How big the beta gadget is.
"#;

fn crd(extra_field: bool, beta: bool) -> String {
    let extra = if extra_field {
        "              shade:\n                type: string\n                description: The gadget's shade of grey.\n"
    } else {
        ""
    };
    CRD.replace("EXTRA\n", extra)
        .replace("VERSIONS\n", if beta { BETA } else { "" })
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.com/web:1
BOGUS
"#;

/// Both outputs of kubectl explain must contain every one of `wanted`.
fn assert_has(out: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(out.contains(w), "{w:?} missing in:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_openapi_validation_with_kubectl_137_and_127() {
    let (Some(k137), Some(k127)) = (tools::kubectl(), tools::kubectl_127()) else {
        return;
    };
    let server = Server::start().expect("server starts");
    let try_k =
        |kubectl: &Path, args: &[&str]| server.kubectl(kubectl, args).expect("kubectl runs");
    let k = |kubectl: &Path, args: &[&str]| ok(&try_k(kubectl, args));
    let k_in = |kubectl: &Path, args: &[&str], input: &str| {
        server
            .kubectl_stdin(kubectl, args, Some(input))
            .expect("kubectl runs")
    };

    // Built-in kinds, through OpenAPI v3 (both) and v2 protobuf (1.27).
    for (kubectl, extra) in [
        (k137.as_path(), &[][..]),
        (k127.as_path(), &[][..]),
        (k127.as_path(), &["--output", "plaintext-openapiv2"][..]),
    ] {
        let mut args = vec!["explain", "pods.spec.containers"];
        args.extend(extra);
        let out = k(kubectl, &args);
        assert_has(&out, &["Container", "image", "livenessProbe", "FIELDS:"]);
        let mut args = vec!["explain", "deployment", "--recursive"];
        args.extend(extra);
        let out = k(kubectl, &args);
        let head: String = out.lines().take(40).collect::<Vec<_>>().join("\n");
        assert_has(
            &head,
            &["Deployment", "apps", "FIELDS:", "apiVersion", "metadata"],
        );
        assert_has(&out, &["replicas", "strategy", "containers"]);
    }

    // A custom resource in two served versions.
    let out = ok(&k_in(&k137, &["apply", "-f", "-"], &crd(false, true)));
    assert!(out.contains("gadgets.example.com created"), "{out}");
    k(
        &k137,
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd/gadgets.example.com",
        ],
    );
    for (kubectl, extra) in [
        (k137.as_path(), &[][..]),
        (k127.as_path(), &[][..]),
        (k127.as_path(), &["--output", "plaintext-openapiv2"][..]),
    ] {
        let mut args = vec!["explain", "gadgets.spec"];
        args.extend(extra);
        let out = wait_for(
            "the custom resource to be explained",
            Duration::from_secs(30),
            || {
                let out = try_k(kubectl, &args);
                async move {
                    out.status
                        .success()
                        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
                }
            },
        )
        .await
        .expect("kubectl explains the custom resource");
        assert_has(
            &out,
            &[
                "Gadget",
                "What the gadget should be.",
                "size",
                "How big the gadget is.",
                "count",
            ],
        );
        let mut args = vec!["explain", "gadgets", "--api-version=example.com/v1beta1"];
        args.extend(extra);
        let out = k(kubectl, &args);
        assert_has(&out, &["Gadget", "v1beta1"]);
    }

    // A new field appears and the removed version disappears at once.
    let out = ok(&k_in(&k137, &["apply", "-f", "-"], &crd(true, false)));
    assert!(out.contains("configured"), "{out}");
    for (kubectl, extra) in [
        (k137.as_path(), &[][..]),
        (k127.as_path(), &["--output", "plaintext-openapiv2"][..]),
    ] {
        let mut args = vec!["explain", "gadgets.spec.shade"];
        args.extend(extra);
        let out = wait_for(
            "the new field to be explained",
            Duration::from_secs(30),
            || {
                let out = try_k(kubectl, &args);
                async move {
                    out.status
                        .success()
                        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
                }
            },
        )
        .await
        .expect("kubectl explains the new field");
        assert_has(&out, &["The gadget's shade of grey."]);
    }
    let out = try_k(
        &k137,
        &["explain", "gadgets", "--api-version=example.com/v1beta1"],
    );
    assert!(
        !out.status.success(),
        "the removed version is still explained"
    );

    // kubectl 1.27 apply (it downloads /openapi/v2 as protobuf to validate).
    let out = ok(&k_in(
        &k127,
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("BOGUS\n", ""),
    ));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = k_in(
        &k127,
        &["apply", "-f", "-"],
        &DEPLOYMENT
            .replace("name: web\n  namespace", "name: web2\n  namespace")
            .replace("BOGUS\n", "        bogusField: 1\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown field was accepted");
    // As against Kubernetes: kubectl 1.27 read /openapi/v2 and the fieldValidation parameter,
    // and left the strict check to the server.
    assert!(
        stderr.contains(
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.template.spec.containers[0].bogusField""#
        ),
        "{stderr}"
    );
    assert!(
        try_k(&k137, &["get", "deployment", "web2"]).status.code() != Some(0),
        "the refused Deployment exists"
    );
}
