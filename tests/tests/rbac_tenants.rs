//! Issue 14's first acceptance: two tenants on one `skiff server --authorization-mode Node,RBAC`
//! with kubeconfigs minted by `skiff kubeconfig --data-dir` — alice `edit` in team-a, bob
//! `edit` in team-b — each runs a Deployment (on a simulated node) with kubectl 1.32; alice's
//! get/list/watch/create/delete in team-b and her cluster-scoped writes are 403 with Kubernetes'
//! messages as kubectl prints them; `kubectl auth can-i` answers a table (and `--list`, `--as`);
//! a Role and RoleBinding granting `get pods` in team-b make exactly that work; alice cannot
//! grant herself more than she holds; `kubectl auth reconcile -f` creates and reconciles roles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skiff_tests::{Cluster, ok, skiff_bin};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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
        image: example.com/hello:v1
"#;

/// A tenant: its kubeconfig, minted by `skiff kubeconfig --data-dir`.
struct Tenant {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Tenant {
    fn mint(c: &Cluster, dir: &Path, user: &str, namespace: &str) -> Tenant {
        let kubeconfig = dir.join(format!("{user}.kubeconfig"));
        let out = Command::new(skiff_bin())
            .arg("kubeconfig")
            .arg("--data-dir")
            .arg(&c.server.dir)
            .args(["--user", user, "--namespace", namespace, "-o"])
            .arg(&kubeconfig)
            .output()
            .expect("skiff kubeconfig runs");
        ok(&out);
        Tenant {
            kubeconfig,
            cache: dir.join(format!("{user}-cache")),
        }
    }

    fn try_k(&self, c: &Cluster, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(c.kubectl_path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("kubectl reads stdin");
        }
        drop(input);
        child.wait_with_output().expect("kubectl ends")
    }

    fn k(&self, c: &Cluster, args: &[&str]) -> String {
        ok(&self.try_k(c, args, None))
    }

    /// Runs kubectl expecting a 403; returns what it printed on stderr (`Error from server
    /// (Forbidden): …`, or `error: failed to create …: …` for kubectl's generators).
    fn refused(&self, c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_k(c, args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "kubectl {args:?} should be refused:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(" is forbidden: "), "{args:?}: {stderr}");
        stderr
    }

    /// `kubectl auth can-i ARGS`: yes (exit 0) or no (exit 1).
    fn can_i(&self, c: &Cluster, args: &[&str]) -> bool {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = self.try_k(c, &all, None);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match out.status.code() {
            Some(0) => {
                assert_eq!(stdout, "yes", "{args:?}");
                true
            }
            Some(1) => {
                assert!(stdout.starts_with("no"), "{args:?}: {stdout}");
                false
            }
            other => panic!(
                "kubectl auth can-i {args:?} exited {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

fn line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("Error from server"))
        .unwrap_or(stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_stay_in_their_namespaces() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .server_args(&["--authorization-mode", "Node,RBAC"])
        .fake_zones(&["a"])
        .start()
        .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for ns in ["team-a", "team-b"] {
        c.k(&["create", "namespace", ns]);
    }
    c.k(&[
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
        "-n",
        "team-a",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
        "-n",
        "team-b",
    ]);
    let alice = Tenant::mint(&c, dir.path(), "alice", "team-a");
    let bob = Tenant::mint(&c, dir.path(), "bob", "team-b");

    // Each runs a Deployment in its own namespace.
    for (tenant, ns) in [(&alice, "team-a"), (&bob, "team-b")] {
        ok(&tenant.try_k(&c, &["apply", "-n", ns, "-f", "-"], Some(DEPLOYMENT)));
        let out = tenant.k(
            &c,
            &[
                "rollout",
                "status",
                "deployment/web",
                "-n",
                ns,
                "--timeout=120s",
            ],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
    }
    let who = alice.k(&c, &["auth", "whoami"]);
    assert!(
        who.contains("alice") && who.contains("system:authenticated"),
        "{who}"
    );

    // alice in team-b: every verb refused with Kubernetes' message.
    let bob_pod = bob
        .k(
            &c,
            &[
                "get",
                "pods",
                "-n",
                "team-b",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ],
        )
        .trim()
        .to_string();
    assert!(!bob_pod.is_empty());
    let err = alice.refused(&c, &["get", "pods", "-n", "team-b"], None);
    assert_eq!(
        line(&err),
        r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-b""#
    );
    let err = alice.refused(&c, &["get", "pod", &bob_pod, "-n", "team-b"], None);
    assert_eq!(
        line(&err),
        format!(
            r#"Error from server (Forbidden): pods "{bob_pod}" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "team-b""#
        )
    );
    let err = alice.refused(
        &c,
        &["get", "--raw", "/api/v1/namespaces/team-b/pods?watch=true"],
        None,
    );
    assert!(
        err.contains(r#"pods is forbidden: User "alice" cannot watch resource "pods" in API group "" in the namespace "team-b""#),
        "{err}"
    );
    let err = alice.refused(&c, &["create", "configmap", "x", "-n", "team-b"], None);
    assert_eq!(
        err.trim(),
        r#"error: failed to create configmap: configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "team-b""#
    );
    let err = alice.refused(&c, &["delete", "deployment", "web", "-n", "team-b"], None);
    assert!(
        err.contains(r#"deployments.apps "web" is forbidden: User "alice" cannot"#)
            && err.contains(
                r#"resource "deployments" in API group "apps" in the namespace "team-b""#
            ),
        "{err}"
    );
    // Cluster-scoped writes.
    let err = alice.refused(&c, &["create", "namespace", "alice-own"], None);
    assert_eq!(
        line(&err),
        r#"Error from server (Forbidden): namespaces is forbidden: User "alice" cannot create resource "namespaces" in API group "" at the cluster scope"#
    );
    let err = alice.refused(
        &c,
        &[
            "create",
            "clusterrole",
            "mine",
            "--verb=get",
            "--resource=pods",
        ],
        None,
    );
    assert!(
        err.contains(r#"clusterroles.rbac.authorization.k8s.io is forbidden: User "alice" cannot create resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#),
        "{err}"
    );

    // kubectl auth can-i, as Kubernetes answers it for edit in team-a.
    let table: &[(&[&str], bool)] = &[
        (&["create", "deployments", "-n", "team-a"], true),
        (&["delete", "pods", "-n", "team-a"], true),
        (&["get", "secrets", "-n", "team-a"], true),
        (&["get", "pods", "--subresource=log", "-n", "team-a"], true),
        (&["create", "roles", "-n", "team-a"], false),
        (&["create", "resourcequotas", "-n", "team-a"], false),
        (&["list", "pods", "-n", "team-b"], false),
        (&["create", "namespaces"], false),
        (&["list", "nodes"], false),
        (&["get", "/api"], true),
        (
            &["create", "selfsubjectaccessreviews.authorization.k8s.io"],
            true,
        ),
    ];
    for (args, want) in table {
        assert_eq!(alice.can_i(&c, args), *want, "alice can-i {args:?}");
    }
    let list = alice.k(&c, &["auth", "can-i", "--list", "-n", "team-a"]);
    assert!(list.contains("deployments.apps"), "{list}");
    let admin_as = |user: &str, args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend(["--as", user]);
        c.try_k(&all).status.code()
    };
    assert_eq!(
        admin_as("alice", &["list", "pods", "-n", "team-b"]),
        Some(1)
    );
    assert_eq!(admin_as("bob", &["list", "pods", "-n", "team-b"]), Some(0));

    // A Role granting get pods in team-b makes exactly that work.
    c.k(&[
        "create",
        "role",
        "pod-getter",
        "--verb=get",
        "--resource=pods",
        "-n",
        "team-b",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "alice-get",
        "--role=pod-getter",
        "--user=alice",
        "-n",
        "team-b",
    ]);
    let got = alice.k(&c, &["get", "pod", &bob_pod, "-n", "team-b", "-o", "name"]);
    assert_eq!(got.trim(), format!("pod/{bob_pod}"));
    alice.refused(&c, &["get", "pods", "-n", "team-b"], None);
    alice.refused(&c, &["delete", "pod", &bob_pod, "-n", "team-b"], None);
    alice.refused(
        &c,
        &[
            "get",
            "pod",
            &bob_pod,
            "-n",
            "team-b",
            "-o",
            "yaml",
            "--subresource=status",
        ],
        None,
    );
    assert!(alice.can_i(&c, &["get", "pods", "-n", "team-b"]));
    assert!(!alice.can_i(&c, &["list", "pods", "-n", "team-b"]));

    // alice cannot grant herself more: with the right to write roles and bindings in team-a,
    // a role or binding beyond edit is refused as an escalation.
    c.k(&[
        "create",
        "role",
        "rbac-writer",
        "--verb=create,get,list",
        "--resource=roles,rolebindings",
        "-n",
        "team-a",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "alice-rbac",
        "--role=rbac-writer",
        "--user=alice",
        "-n",
        "team-a",
    ]);
    let err = alice.refused(
        &c,
        &[
            "create",
            "role",
            "everything",
            "--verb=*",
            "--resource=nodes",
            "-n",
            "team-a",
        ],
        None,
    );
    assert!(
        err.contains(r#"Error from server (Forbidden): roles.rbac.authorization.k8s.io "everything" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && err.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["*"]}"#),
        "{err}"
    );
    let err = alice.refused(
        &c,
        &[
            "create",
            "rolebinding",
            "alice-admin",
            "--clusterrole=admin",
            "--user=alice",
            "-n",
            "team-a",
        ],
        None,
    );
    assert!(
        err.contains(r#"rolebindings.rbac.authorization.k8s.io "alice-admin" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    // Within what she holds, she may.
    alice.k(
        &c,
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "team-a",
        ],
    );
    alice.k(
        &c,
        &[
            "create",
            "rolebinding",
            "bob-reads",
            "--role=reader",
            "--user=bob",
            "-n",
            "team-a",
        ],
    );
    assert!(bob.can_i(&c, &["list", "pods", "-n", "team-a"]));

    // kubectl auth reconcile creates and then adds to roles and bindings.
    let policy = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: auditor, namespace: team-b}
rules:
- {apiGroups: [""], resources: [events], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: auditor, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: auditor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
"#;
    let out = ok(&c.try_k_stdin(&["auth", "reconcile", "-f", "-"], policy));
    assert!(
        out.contains("role.rbac.authorization.k8s.io/auditor reconciled"),
        "{out}"
    );
    assert!(alice.can_i(&c, &["list", "events", "-n", "team-b"]));
    let more = policy.replace("verbs: [get, list]", "verbs: [get, list, watch]");
    ok(&c.try_k_stdin(&["auth", "reconcile", "-f", "-"], &more));
    assert!(alice.can_i(&c, &["watch", "events", "-n", "team-b"]));
}
