//! A container's cgroup as the node reads and removes it: whether the kernel OOM-killed in it,
//! its CPU time, memory working set and throttling, and its removal at teardown. Both cgroup v1
//! (per-controller hierarchies, including the hybrid layout) and v2 are read; every function has
//! an `_at` twin that takes the hierarchy's mount point, for tests on fake trees.

use std::io;
use std::path::{Path, PathBuf};

use super::spec::{CgroupVersion, cgroup_dirs};

/// Where the node's cgroup hierarchy is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What a container's cgroup has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time of all its processes since the cgroup was created, in nanoseconds.
    pub cpu_nanos: u64,
    /// Time spent throttled by the CPU quota, in nanoseconds.
    pub throttled_nanos: u64,
    /// Memory working set (usage minus inactive file pages), in bytes, as the kubelet counts it.
    pub memory_bytes: u64,
}

/// Whether the kernel OOM-killed a process of the cgroup `cgroups_path` (absolute, as in the
/// container's config). A missing cgroup reads as `false`.
pub fn oom_killed(version: CgroupVersion, cgroups_path: &Path) -> bool {
    oom_killed_at(version, Path::new(CGROUP_ROOT), cgroups_path)
}

/// [`oom_killed`] under the hierarchy mounted at `root`.
pub fn oom_killed_at(version: CgroupVersion, root: &Path, cgroups_path: &Path) -> bool {
    let file = match version {
        CgroupVersion::V1 => dir(root, Some("memory"), cgroups_path).join("memory.oom_control"),
        CgroupVersion::V2 => dir(root, None, cgroups_path).join("memory.events"),
    };
    keyed(&file, "oom_kill").is_some_and(|n| n > 0)
}

/// What the cgroup `cgroups_path` has used; counters it does not have read as 0.
pub fn usage(version: CgroupVersion, cgroups_path: &Path) -> CgroupUsage {
    usage_at(version, Path::new(CGROUP_ROOT), cgroups_path)
}

/// [`usage`] under the hierarchy mounted at `root`.
pub fn usage_at(version: CgroupVersion, root: &Path, cgroups_path: &Path) -> CgroupUsage {
    match version {
        CgroupVersion::V1 => {
            let cpuacct = dir(root, Some("cpuacct"), cgroups_path);
            let cpu = dir(root, Some("cpu"), cgroups_path);
            let memory = dir(root, Some("memory"), cgroups_path);
            let used = single(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
            let inactive = keyed(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
            CgroupUsage {
                cpu_nanos: single(&cpuacct.join("cpuacct.usage")).unwrap_or(0),
                throttled_nanos: keyed(&cpu.join("cpu.stat"), "throttled_time").unwrap_or(0),
                memory_bytes: used.saturating_sub(inactive),
            }
        }
        CgroupVersion::V2 => {
            let d = dir(root, None, cgroups_path);
            let stat = d.join("cpu.stat");
            let used = single(&d.join("memory.current")).unwrap_or(0);
            let inactive = keyed(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
            CgroupUsage {
                cpu_nanos: keyed(&stat, "usage_usec").unwrap_or(0).saturating_mul(1000),
                throttled_nanos: keyed(&stat, "throttled_usec")
                    .unwrap_or(0)
                    .saturating_mul(1000),
                memory_bytes: used.saturating_sub(inactive),
            }
        }
    }
}

/// Removes the cgroup `cgroups_path` in every hierarchy that has it (each v1 controller, or the
/// v2 tree), child cgroups first. A cgroup that is already gone is `Ok`; one that still holds
/// processes fails (`EBUSY`).
pub fn remove(version: CgroupVersion, cgroups_path: &Path) -> io::Result<()> {
    remove_at(version, Path::new(CGROUP_ROOT), cgroups_path)
}

/// [`remove`] under the hierarchy mounted at `root`.
pub fn remove_at(version: CgroupVersion, root: &Path, cgroups_path: &Path) -> io::Result<()> {
    let dirs = match cgroup_dirs(version, root, cgroups_path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut first = None;
    for d in dirs {
        if let Err(e) = remove_tree(&d) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Removes the cgroup `cgroups_path` in every hierarchy where nothing uses it any more (no
/// child cgroup, no process); where it is still in use (another node on this machine has pods
/// under the shared parent) or already gone it stays as it is.
pub fn remove_unused(version: CgroupVersion, cgroups_path: &Path) {
    remove_unused_at(version, Path::new(CGROUP_ROOT), cgroups_path)
}

/// [`remove_unused`] under the hierarchy mounted at `root`.
pub fn remove_unused_at(version: CgroupVersion, root: &Path, cgroups_path: &Path) {
    for d in cgroup_dirs(version, root, cgroups_path).unwrap_or_default() {
        // rmdir of a cgroup with children or processes fails (EBUSY): that one is in use.
        if let Err(e) = std::fs::remove_dir(&d) {
            tracing::debug!(cgroup = %d.display(), error = %e, "cgroup kept");
        }
    }
}

/// Removes a cgroup directory and its child cgroups, deepest first. Only directories are
/// removed (`rmdir`): the control files go with them.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("removing cgroup {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

/// The directory of `cgroups_path` in `controller`'s v1 hierarchy, or in the v2 tree.
fn dir(root: &Path, controller: Option<&str>, cgroups_path: &Path) -> PathBuf {
    let relative = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    match controller {
        Some(c) => root.join(c).join(relative),
        None => root.join(relative),
    }
}

/// A file holding one number.
fn single(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn keyed(file: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests;
