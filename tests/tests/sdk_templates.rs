//! `skiff new` starter apps end to end, one test per template, as a user runs them:
//! `skiff new demo --template T && cd demo && skiff build && skiff deploy` on `skiff up` prints
//! a URL that answers; the built `target/demo.wasm` is a component exporting
//! `wasi:http/incoming-handler`. `skiff build` on a machine without the template's toolchain
//! fails naming the missing tool (`missing toolchain: …`), checked by running it with a PATH
//! that lacks the toolchain (for Rust: `WASM_RUST_PREFIX` pointing nowhere).
//!
//! The toolchains (clang-22 and wit-bindgen; Debian's rustc-web; componentize-py;
//! componentize-js) are installed by scripts/install-test-deps.sh; a test whose toolchain is
//! missing prints `SKIPPED: …`, unless `SKIFF_REQUIRE_TOOLS` is set (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use skiff_registry::wasm::{WasmKind, inspect};
use skiff_tests::{http_request, repo_root, skiff_bin, start_up as up};
use skiff_tools::require;

/// The export that makes a component an HTTP service.
const HTTP_EXPORT: &str = "wasi:http/incoming-handler";

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cargo_bin(tool: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join(tool)
}

fn venv_bin(tool: &str) -> PathBuf {
    repo_root().join("tests/.venv/bin").join(tool)
}

/// The toolchain pieces `template` needs, as (name, path); `None` (with `SKIPPED` printed) when
/// one is missing and tools are not required.
fn toolchain(template: &str) -> Option<Vec<PathBuf>> {
    const INSTALL: &str = "run scripts/install-test-deps.sh";
    let host = format!(
        "/usr/lib/rustlib/{}-unknown-linux-gnu/bin",
        std::env::consts::ARCH
    );
    let needs: Vec<(&str, PathBuf)> = match template {
        "http-c" => vec![
            ("clang-22", "/usr/bin/clang-22".into()),
            ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a".into()),
            (
                "wasm-component-ld",
                Path::new(&host).join("wasm-component-ld"),
            ),
            ("wit-bindgen", cargo_bin("wit-bindgen")),
        ],
        "http-rust" => vec![
            ("rustc-web", "/usr/bin/rustc".into()),
            ("cargo-web", "/usr/bin/cargo".into()),
            ("rust-web-src", "/usr/lib/rustlib/src/rust/library".into()),
            (
                "wasm-component-ld",
                Path::new(&host).join("wasm-component-ld"),
            ),
            ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a".into()),
        ],
        "http-python" => vec![("componentize-py", venv_bin("componentize-py"))],
        "http-js" => vec![
            ("node", "/usr/bin/node".into()),
            ("componentize-js", venv_bin("componentize-js")),
        ],
        other => panic!("no template {other}"),
    };
    let mut dirs = Vec::new();
    for (name, path) in needs {
        let found = require(name, Some(path), INSTALL)?;
        if let Some(dir) = found.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    Some(dirs)
}

/// `skiff new demo --template TEMPLATE` in `dir`; the app's directory.
fn new_app(dir: &Path, template: &str) -> PathBuf {
    let out = Command::new(skiff_bin())
        .args(["new", "demo", "--template", template])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("skiff new runs");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cd demo && skiff build && skiff deploy"),
        "{stdout}"
    );
    let app = dir.join("demo");
    let manifest = std::fs::read_to_string(app.join("skiff.toml")).unwrap();
    for line in [
        "name = \"demo\"",
        "source = \"target/demo.wasm\"",
        "route = \"/\"",
        "command = \"sh build.sh\"",
    ] {
        assert!(
            manifest.contains(line),
            "skiff.toml lacks {line:?}:\n{manifest}"
        );
    }
    app
}

/// `skiff build` in the app's directory with `path` as PATH and `env` set.
fn build(app: &Path, path: &str, env: &[(&str, &str)]) -> Output {
    Command::new(skiff_bin())
        .arg("build")
        .current_dir(app)
        .env("PATH", path)
        .envs(env.iter().copied())
        // The Rust app is its own cargo workspace with its own target directory.
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("skiff build runs")
}

/// PATH for a build: the toolchain's directories, then the system's.
fn build_path(tool_dirs: &[PathBuf]) -> String {
    let mut dirs: Vec<String> = tool_dirs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    dirs.dedup();
    dirs.join(":")
}

/// A PATH holding only the basic commands a build script uses, and none of the toolchains.
fn stripped_path(dir: &Path) -> String {
    let bin = dir.join("stripped-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "dirname", "uname", "mkdir", "rm", "cp", "cat"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {tool} on this machine"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    bin.to_string_lossy().into_owned()
}

/// How a test hides a template's toolchain from its build.
enum Hide {
    /// PATH holds only basic commands (the toolchain is looked up on PATH).
    Path,
    /// The Rust template finds Debian's rustc-web by path, under `WASM_RUST_PREFIX`.
    RustPrefix,
}

/// The whole path for one template: `skiff new`; with its toolchain hidden `skiff build` names
/// `missing_tool`; with it, `skiff build` makes an HTTP component; `skiff deploy` prints a URL
/// that answers.
fn template_end_to_end(template: &str, hide: Hide, missing_tool: &str) {
    let Some(tool_dirs) = toolchain(template) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-new-")
        .tempdir()
        .unwrap();
    let app = new_app(dir.path(), template);

    // Without the toolchain the build says which piece is missing, and makes nothing.
    let out = match hide {
        Hide::Path => build(&app, &stripped_path(dir.path()), &[]),
        Hide::RustPrefix => build(
            &app,
            &build_path(&tool_dirs),
            &[("WASM_RUST_PREFIX", "/nonexistent")],
        ),
    };
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("missing toolchain: {missing_tool}")),
        "{}",
        text(&out)
    );
    assert!(!app.join("target/demo.wasm").exists());

    // With it, a wasi:http component.
    let out = build(&app, &build_path(&tool_dirs), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let wasm = std::fs::read(app.join("target/demo.wasm")).unwrap();
    match inspect(&wasm).unwrap() {
        WasmKind::Component(info) => assert!(
            info.exports.iter().any(|e| e.starts_with(HTTP_EXPORT)),
            "{template}: exports {:?}",
            info.exports
        ),
        other => panic!("{template}: not a component: {other:?}"),
    }

    // `skiff deploy` beside the skiff.toml prints the URL, which answers with the greeting.
    let (_up, kubeconfig, _ingress) = up(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(skiff_bin())
        .args(["deploy", "--kubeconfig", &kubeconfig])
        .current_dir(&app)
        .env("HOME", &home)
        .env("SKIFF_CACHE_DIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .env_remove("SKIFF_REGISTRY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("skiff deploy runs");
    let log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{}", text(&out), log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().last().unwrap_or_default();
    let (authority, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("no URL on the last line: {}", text(&out)));
    let host = authority.split(':').next().unwrap();
    let address = if host.ends_with(".localhost") || host == "localhost" {
        // curl and browsers resolve *.localhost to loopback; so does this test.
        format!(
            "127.0.0.1:{}",
            authority.rsplit_once(':').map_or("80", |a| a.1)
        )
    } else {
        authority.to_string()
    };
    let asked = format!("/{path}hi?x=1");
    let answer = http_request(&address, authority, &asked, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{url}: {e:#}\n{}", log()));
    assert_eq!(answer.status, 200, "{url}: {answer:?}");
    assert_eq!(
        answer.body,
        format!("Hello from demo! You asked for {asked}\n")
    );
}

#[test]
fn http_c_template_builds_a_component_that_answers() {
    template_end_to_end("http-c", Hide::Path, "clang-22");
}

#[test]
fn http_rust_template_builds_a_component_that_answers() {
    template_end_to_end("http-rust", Hide::RustPrefix, "rustc-web");
}

#[test]
fn http_js_template_builds_a_component_that_answers() {
    template_end_to_end("http-js", Hide::Path, "node");
}

#[test]
fn http_python_template_builds_a_component_that_answers() {
    template_end_to_end("http-python", Hide::Path, "componentize-py");
}
