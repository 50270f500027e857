//! `skiff status` on a fresh `skiff up` (the node Ready, the samples, the console URL, a
//! deployed component and its URL), its errors (no kubeconfig, nothing listening, a user RBAC
//! refuses), what `skiff up` prints, and `skiff completions` for bash, zsh and fish.

use std::path::Path;
use std::process::{Command, Output};

use skiff_tests::{repo_root, skiff_bin, start_up};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `skiff status ARGS` with no kubeconfig but what the test gives (HOME and the data dir
/// pointed at `home`).
fn status(home: &Path, args: &[&str], kubeconfig_env: Option<&str>) -> Output {
    let mut cmd = Command::new(skiff_bin());
    cmd.arg("status")
        .args(args)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("share"))
        .env_remove("KUBECONFIG");
    if let Some(k) = kubeconfig_env {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().expect("skiff status runs")
}

#[test]
fn status_on_a_fresh_up_shows_the_node_and_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (up, kubeconfig, _ingress) = start_up(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // `skiff up` says where the console is and how to use its kubeconfig.
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap();
    assert!(log.contains("/ui/"), "no console URL in:\n{log}");
    let export = log
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no export line in:\n{log}"));
    let exported = export.trim_start_matches("export KUBECONFIG=");
    assert!(Path::new(exported).is_absolute(), "{export}");
    assert_eq!(
        std::fs::canonicalize(exported).unwrap(),
        std::fs::canonicalize(&kubeconfig).unwrap()
    );

    // Through KUBECONFIG, as the printed line sets it, and through --kubeconfig.
    for (args, env) in [
        (vec![], Some(kubeconfig.as_str())),
        (vec!["--kubeconfig", kubeconfig.as_str()], None),
    ] {
        let out = status(&home, &args, env);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "skiff status failed: {stderr}\n{stdout}"
        );
        assert!(stdout.contains("Server:"), "{stdout}");
        assert!(stdout.contains("/ui/"), "no console URL:\n{stdout}");
        let node = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("local "))
            .unwrap_or_else(|| panic!("no node row for `local`:\n{stdout}"));
        assert!(node.contains(" Ready"), "node not Ready: {node}\n{stdout}");
        assert!(stdout.contains("Pods ("), "{stdout}");
        assert!(stdout.contains("Apps ("), "{stdout}");
        assert!(
            stdout.contains("samples (") && stdout.contains("hello-http"),
            "the samples are not listed:\n{stdout}"
        );
    }

    // A component deployed with `skiff deploy FILE --name NAME` is listed with its URL.
    let wasm = repo_root().join("samples/hello-http/hello-http.wasm");
    let out = Command::new(skiff_bin())
        .arg("deploy")
        .arg(&wasm)
        .args(["--name", "hello", "--kubeconfig", kubeconfig.as_str()])
        .env("HOME", &home)
        .env("SKIFF_CACHE_DIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "skiff deploy: {}", text(&out).1);
    let out = status(&home, &["--kubeconfig", kubeconfig.as_str()], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("Deployed components (1):"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("hello "))
        .unwrap_or_else(|| panic!("no row for the deployed `hello`:\n{stdout}"));
    assert!(
        row.contains("default") && row.contains("1/1") && row.contains("http://hello.localhost"),
        "the row lacks namespace, readiness or URL: {row}"
    );

    // A user RBAC gives nothing sees which part was refused and what to do, not a crash.
    let alice = dir.path().join("alice.kubeconfig");
    let out = Command::new(skiff_bin())
        .args(["kubeconfig", "--user", "alice", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("-o")
        .arg(&alice)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let out = status(&home, &["--kubeconfig", alice.to_str().unwrap()], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(
        stdout.contains("403") && stdout.contains("\"alice\"") && stdout.contains("list nodes"),
        "the refusal does not say who and what:\n{stdout}"
    );

    // Nothing listening: the error asks whether the server runs.
    drop(up);
    let out = status(&home, &["--kubeconfig", kubeconfig.as_str()], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is the server running?") && stderr.contains("skiff up"),
        "{stderr}"
    );
}

#[test]
fn status_without_a_kubeconfig_says_how_to_get_one() {
    let home = tempfile::tempdir().unwrap();
    let out = status(home.path(), &[], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no kubeconfig")
            && stderr.contains("skiff up")
            && stderr.contains("export KUBECONFIG="),
        "{stderr}"
    );
    let missing = home.path().join("nope.kubeconfig");
    let out = status(
        home.path(),
        &["--kubeconfig", missing.to_str().unwrap()],
        None,
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no kubeconfig at"), "{stderr}");
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(skiff_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        let (script, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        for sub in ["up", "status", "deploy", "push", "completions"] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("skiff.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "bash -n: {}", text(&check).1);
        }
    }
    let out = Command::new(skiff_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("bash"), "{}", text(&out).1);
}
