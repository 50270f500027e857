//! The official Python `kubernetes` client drives a real `skiff server`: CRUD, conflicts,
//! pagination, scale and watch (tests/python/client_crud.py).

use skiff_tests::{Server, repo_root, tools};

#[test]
fn python_client_crud_and_watch() {
    let Some(python) = tools::python() else {
        return;
    };
    let server = Server::start().expect("server starts");
    let script = repo_root().join("tests/python/client_crud.py");
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
    assert!(stdout.lines().last() == Some("ok"), "{stdout}");
}
