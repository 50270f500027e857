//! The official Python `kubernetes` client's `CustomObjectsApi` against a real `skiff server`:
//! a CRD installed, its objects created, listed, read, merge-patched, their status and scale
//! written, watched and deleted (tests/python/custom_objects.py).

use skiff_tests::{Server, repo_root, tools};

#[test]
fn python_custom_objects_api() {
    let Some(python) = tools::python() else {
        return;
    };
    let server = Server::start().expect("server starts");
    let script = repo_root().join("tests/python/custom_objects.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&server.kubeconfig)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}
