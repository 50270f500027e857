//! Authentication as users of kubectl (1.37 and 1.32) meet it against a real `skiff server`:
//! kubeconfigs minted by `skiff kubeconfig` (through a CertificateSigningRequest, and offline
//! with `--data-dir`) authenticate their user, groups and context namespace; `--token-auth-file`
//! users; `--as`/`--as-group` impersonation by the admin; a certificate from another CA and an
//! unknown token are `Unauthorized`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use skiff_tests::{Server, ok, skiff_bin, tools};

const UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
/// kubectl's words for a 401, whichever request met it (discovery, without a cache, words it
/// "the server has asked for the client to provide credentials").
const LOGGED_OUT: &str = "error: You must be logged in to the server (";

/// kubectl with the given kubeconfig and its own discovery cache.
fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let cache = kubeconfig.with_extension("cache");
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs")
}

/// `kubectl auth whoami -o json`'s userInfo.
fn whoami(bin: &Path, kubeconfig: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["auth", "whoami", "-o", "json"];
    args.extend(extra);
    let out = ok(&kubectl(bin, kubeconfig, &args));
    let review: Value = serde_json::from_str(&out).expect("whoami prints JSON");
    review["status"]["userInfo"].clone()
}

fn skiff(args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("skiff runs")
}

fn groups(user: &Value) -> Vec<String> {
    user["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A CA this cluster does not know, and a client certificate from it.
fn foreign_certificate(dir: &Path) -> (String, String) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.crt",
            "-subj",
            "/CN=other-ca",
            "-days",
            "1",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl makes a CA");
    let ca = std::fs::read_to_string(dir.join("other-ca.crt")).unwrap();
    let key = std::fs::read_to_string(dir.join("other-ca.key")).unwrap();
    skiff_api::pki::client_certificate(
        &ca,
        &key,
        "mallory",
        &["system:masters".to_string()],
        std::time::Duration::from_secs(3600),
    )
    .expect("a certificate from the other CA")
}

fn scenario(bin: &Path, server: &Server, dir: &Path, tag: &str) {
    let admin = server.kubeconfig.as_path();
    let data_dir = server.dir.to_str().unwrap();
    let admin_str = admin.to_str().unwrap();

    // Through a CertificateSigningRequest, approved with the admin's kubeconfig.
    let alice = dir.join(format!("alice-{tag}.kubeconfig"));
    let out = skiff(&[
        "kubeconfig",
        "--kubeconfig",
        admin_str,
        "--user",
        "alice",
        "--group",
        "team-a",
        "--group",
        "devs",
        "--namespace",
        "team-a",
        "-o",
        alice.to_str().unwrap(),
    ]);
    ok(&out);
    let mode = std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the kubeconfig holds a private key");
    let user = whoami(bin, &alice, &[]);
    assert_eq!(user["username"], "alice", "{user}");
    assert_eq!(
        groups(&user),
        ["team-a", "devs", "system:authenticated"],
        "{user}"
    );
    let namespace = ok(&kubectl(
        bin,
        &alice,
        &["config", "view", "--minify", "-o", "jsonpath={..namespace}"],
    ));
    assert_eq!(namespace.trim(), "team-a");
    // The request is gone once the kubeconfig is written.
    let csrs = ok(&kubectl(bin, admin, &["get", "csr", "-o", "name"]));
    assert!(!csrs.contains("skiff-kubeconfig-alice"), "{csrs}");

    // Offline, with the data directory's CA, to standard output.
    let out = skiff(&[
        "kubeconfig",
        "--data-dir",
        data_dir,
        "--user",
        "bob",
        "--group",
        "team-b",
        "--group",
        "ops",
        "--expiration",
        "24h",
    ]);
    let text = ok(&out);
    assert!(text.contains("client-certificate-data"), "{text}");
    let bob = dir.join(format!("bob-{tag}.kubeconfig"));
    std::fs::write(&bob, text).unwrap();
    let user = whoami(bin, &bob, &[]);
    assert_eq!(user["username"], "bob", "{user}");
    assert_eq!(groups(&user), ["team-b", "ops", "system:authenticated"]);
    let namespace = ok(&kubectl(
        bin,
        &bob,
        &["config", "view", "--minify", "-o", "jsonpath={..namespace}"],
    ));
    assert_eq!(namespace.trim(), "", "no --namespace: the server's default");

    // A static token-file user.
    let user = whoami(bin, admin, &["--token", "carol-token"]);
    assert_eq!(user["username"], "carol", "{user}");
    assert_eq!(user["uid"], "uid-carol", "{user}");
    assert_eq!(groups(&user), ["dev", "qa", "system:authenticated"]);

    // The admin impersonates.
    let user = whoami(bin, admin, &["--as", "dave", "--as-group", "g1"]);
    assert_eq!(user["username"], "dave", "{user}");
    assert_eq!(groups(&user), ["g1", "system:authenticated"]);

    // An unknown token, and a certificate from another CA, are not logged in.
    let err = failure(&kubectl(
        bin,
        admin,
        &["--token", "nobody-token", "get", "namespaces"],
    ));
    assert!(err.contains(UNAUTHORIZED), "{err}");
    let (cert, key) = foreign_certificate(dir);
    let ca = std::fs::read_to_string(server.dir.join("pki/ca.crt")).unwrap();
    let mallory = dir.join(format!("mallory-{tag}.kubeconfig"));
    let text = skiff_api::pki::client_kubeconfig(&server.url, &ca, "mallory", &cert, &key, None);
    std::fs::write(&mallory, text).unwrap();
    let err = failure(&kubectl(bin, &mallory, &["get", "namespaces"]));
    assert!(err.contains(LOGGED_OUT), "{err}");
    let err = failure(&kubectl(bin, &mallory, &["auth", "whoami"]));
    assert!(err.contains(LOGGED_OUT), "{err}");
}

#[test]
fn kubeconfigs_token_files_and_impersonation_with_kubectl() {
    let mut kubectls = Vec::new();
    if let Some(k) = tools::kubectl_137() {
        kubectls.push(("137", k));
    }
    if let Some(k) = tools::kubectl_132() {
        kubectls.push(("132", k));
    }
    if kubectls.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "# static users\ncarol-token,carol,uid-carol,\"dev,qa\"\n",
    )
    .unwrap();
    let server = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()])
        .expect("skiff server starts");
    for (tag, bin) in &kubectls {
        eprintln!("kubectl {tag}: {}", bin.display());
        scenario(bin, &server, dir.path(), tag);
    }
}

#[test]
fn a_malformed_token_file_fails_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "good,u,1\nonly-two,columns\n").unwrap();
    let out = Command::new(skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--token-auth-file")
        .arg(&tokens)
        .stdin(Stdio::null())
        .output()
        .expect("skiff server runs");
    let err = failure(&out);
    let expected = format!(
        "token file {}, line 2: must have at least 3 columns",
        tokens.display()
    );
    assert!(err.contains(&expected), "{err}");
}

/// Under RBAC, impersonation takes the `impersonate` verb: refused with Kubernetes' message
/// until a ClusterRole grants it for users, and then for users only (a group stays refused).
#[tokio::test]
async fn impersonation_under_rbac_needs_the_impersonate_verb() {
    let Some(bin) = tools::kubectl_137() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,uid-alice\n").unwrap();
    let server = Server::start_with(&[
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization-mode",
        "RBAC",
    ])
    .expect("skiff server starts");
    let admin = server.kubeconfig.as_path();
    let as_alice = |extra: &[&str]| {
        let mut args = vec!["--token", "alice-token", "auth", "whoami", "-o", "json"];
        args.extend(extra);
        kubectl(&bin, admin, &args)
    };
    // `auth whoami` words any 403 its own way, discovery too; a raw read shows the server's
    // message.
    let read_as_alice = |extra: &[&str]| {
        let mut args = vec![
            "--token",
            "alice-token",
            "get",
            "--raw",
            "/api/v1/namespaces",
        ];
        args.extend(extra);
        kubectl(&bin, admin, &args)
    };
    let err = failure(&read_as_alice(&["--as", "bob"]));
    assert!(
        err.contains(
            r#"Error from server (Forbidden): users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
        "{err}"
    );
    ok(&kubectl(
        &bin,
        admin,
        &[
            "create",
            "clusterrole",
            "impersonate-users",
            "--verb=impersonate",
            "--resource=users",
        ],
    ));
    ok(&kubectl(
        &bin,
        admin,
        &[
            "create",
            "clusterrolebinding",
            "alice-impersonates",
            "--clusterrole=impersonate-users",
            "--user=alice",
        ],
    ));
    let out = skiff_tests::wait_for(
        "alice allowed to impersonate bob",
        std::time::Duration::from_secs(30),
        || {
            let out = as_alice(&["--as", "bob"]);
            async move { out.status.success().then_some(out) }
        },
    )
    .await
    .expect("the binding takes effect");
    let review: Value = serde_json::from_str(&ok(&out)).expect("whoami prints JSON");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "bob", "{user}");
    assert_eq!(groups(user), ["system:authenticated"], "{user}");
    let err = failure(&read_as_alice(&["--as", "bob", "--as-group", "admins"]));
    assert!(
        err.contains(
            r#"Error from server (Forbidden): groups "admins" is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        ),
        "{err}"
    );
}
