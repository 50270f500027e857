//! The audit log as an operator meets it: `skiff server --audit-log-path --audit-policy-file`,
//! kubectl 1.37 and 1.32 as a token-file user; every line of the file is an `audit.k8s.io/v1`
//! Event naming the user and the verbs, at the level the policy gives.

use std::path::Path;

use serde_json::Value;
use skiff_tests::{Server, ok, tools};

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
"#;

fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the audit log exists");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("each line is JSON"))
        .inspect(|e| {
            assert_eq!(e["apiVersion"], "audit.k8s.io/v1", "{e}");
            assert_eq!(e["kind"], "Event", "{e}");
        })
        .collect()
}

fn scenario(bin: &Path, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,uid-alice,\"dev\"\n").unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let log = dir.path().join("audit/audit.log");
    let mut server = Server::start_with(&[
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--audit-log-path",
        log.to_str().unwrap(),
        "--audit-policy-file",
        policy.to_str().unwrap(),
        "--max-requests-inflight",
        "100",
        "--max-mutating-requests-inflight",
        "50",
    ])
    .expect("skiff server starts");
    let alice = |args: &[&str]| {
        let mut all = vec!["--token", "alice-token"];
        all.extend(args);
        server.kubectl(bin, &all).unwrap()
    };
    // Under the default authorization (Node,RBAC) alice edits the default namespace.
    ok(&server
        .kubectl(
            bin,
            &[
                "create",
                "rolebinding",
                "alice-edit",
                "--clusterrole=edit",
                "--user=alice",
                "-n",
                "default",
            ],
        )
        .unwrap());
    let name = format!("audited-{tag}");
    ok(&alice(&[
        "create",
        "configmap",
        &name,
        "--from-literal=colour=blue",
    ]));
    ok(&alice(&["get", "configmap", &name, "-o", "json"]));
    ok(&alice(&[
        "create",
        "secret",
        "generic",
        &name,
        "--from-literal=password=hunter2",
    ]));
    ok(&alice(&["delete", "configmap", &name]));
    server.stop().expect("the server stops");

    let events = events(&log);
    let of_alice: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["username"] == "alice")
        .collect();
    let find = |verb: &str, resource: &str| {
        of_alice
            .iter()
            .find(|e| {
                e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && e["objectRef"]["name"] == name.as_str()
                    && e["stage"] == "ResponseComplete"
            })
            .copied()
            .unwrap_or_else(|| panic!("no {verb} {resource} event: {of_alice:#?}"))
    };
    let create = find("create", "configmaps");
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["requestObject"]["data"]["colour"], "blue");
    assert_eq!(create["user"]["uid"], "uid-alice");
    assert!(
        create["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("kubectl")),
        "{create}"
    );
    assert_eq!(create["sourceIPs"][0], "127.0.0.1");
    let get = find("get", "configmaps");
    assert_eq!(get["responseObject"]["data"]["colour"], "blue");
    let secret = find("create", "secrets");
    assert_eq!(secret["level"], "Metadata");
    assert!(!secret.to_string().contains("hunter2"));
    let delete = find("delete", "configmaps");
    assert_eq!(delete["responseStatus"]["code"], 200);
    // Discovery is logged at Metadata by the catch-all rule; health checks never.
    assert!(of_alice.iter().any(|e| e["objectRef"].is_null()));
    assert!(!events.iter().any(|e| {
        e["requestURI"]
            .as_str()
            .unwrap_or("")
            .starts_with("/healthz")
    }));
    assert!(!events.iter().any(|e| e["stage"] == "RequestReceived"));
}

#[test]
fn kubectl_requests_are_written_to_the_audit_log() {
    let mut ran = false;
    if let Some(bin) = tools::kubectl_137() {
        scenario(&bin, "137");
        ran = true;
    }
    if let Some(bin) = tools::kubectl_132() {
        scenario(&bin, "132");
        ran = true;
    }
    if !ran {
        eprintln!("no kubectl: skipped");
    }
}

#[test]
fn a_policy_of_another_version_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n").unwrap();
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--audit-log-path")
        .arg(dir.path().join("audit.log"))
        .arg("--audit-policy-file")
        .arg(&policy)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("skiff server runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only audit.k8s.io/v1"), "{err}");
}
