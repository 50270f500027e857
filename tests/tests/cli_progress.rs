//! `skiff push` of a 20 MiB component: on a terminal (a pseudo-terminal made by util-linux's
//! `script`) it draws a byte bar that moves; into a pipe it writes plain lines at every tenth,
//! without escape codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_tests::{Registry, repo_root, skiff_bin};

const PAD: usize = 20 * 1024 * 1024;

/// A valid component of more than 20 MiB: a sample with a custom section padding it.
fn big_component(dir: &Path, fill: u8) -> PathBuf {
    let mut wasm = std::fs::read(repo_root().join("samples/hello-http/hello-http.wasm")).unwrap();
    let name = b"skiff-test-padding";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.resize(payload.len() + PAD, fill);
    wasm.push(0); // a custom section
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend_from_slice(&payload);
    let path = dir.join(format!("big-{fill}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

#[test]
fn push_shows_progress_on_a_terminal_and_plain_lines_in_a_pipe() {
    // `script` (util-linux) makes the pseudo-terminal.
    let Some(script) = skiff_tools::system("script", "apt-get install bsdutils") else {
        return;
    };
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // In a pipe: a line per tenth, the last at 100%, no escape codes.
    let file = big_component(dir.path(), 1);
    let reference = format!("{}/progress/piped:1", registry.addr);
    let out = Command::new(skiff_bin())
        .arg("push")
        .arg(&file)
        .arg(&reference)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("SKIFF_REGISTRY_TOKEN", &registry.token)
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("sha256:"),
        "stdout is the digest"
    );
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in a pipe:\n{stderr:?}"
    );
    assert!(
        !stderr.contains('\r'),
        "carriage returns in a pipe:\n{stderr:?}"
    );
    let steps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("push {reference} sha256:")))
        .collect();
    assert!(steps.iter().any(|l| l.contains(": 0% of 20.")), "{stderr}");
    assert!(steps.iter().any(|l| l.contains(": 50% (")), "{stderr}");
    assert!(steps.iter().any(|l| l.contains(": 100% (20.")), "{stderr}");
    assert!(
        steps.len() >= 11,
        "fewer than one line per tenth:\n{stderr}"
    );

    // On a terminal: a bar redrawn in place as the bytes go.
    let file = big_component(dir.path(), 2);
    let reference = format!("{}/progress/tty:1", registry.addr);
    let command = format!(
        "stty cols 120 rows 40; exec {} push {} {} --cache-dir {}",
        skiff_bin().display(),
        file.display(),
        reference,
        dir.path().join("cache").display()
    );
    let out = Command::new(&script)
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("SKIFF_REGISTRY_TOKEN", &registry.token)
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{tty}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tty.contains('\x1b'),
        "no escape codes on a terminal:\n{tty:?}"
    );
    let draws = tty.matches("/20.").count();
    assert!(draws >= 2, "the bar was drawn {draws} times:\n{tty:?}");
    assert!(tty.contains("[="), "no bar:\n{tty:?}");
    assert!(
        tty.contains("sha256:"),
        "the digest is printed at the end:\n{tty:?}"
    );
}
