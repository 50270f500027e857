//! A Linux pod's volumes on the node, bound into its containers: emptyDir directories (on a
//! tmpfs mounted for the pod with `medium: Memory`), file sets written as kubelet's atomic
//! writer does (a `..data` symlink swap, so an update shows through a bind mount; secrets on
//! the tmpfs) and hostPath directories bound as they are. Blocking: call from
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::state::VolumeRecord;
use crate::error::{Error, Result, io_err};
use crate::spec::{FileContent, VolumeSource, VolumeSpec};
use crate::wasm::volumes::{check_name, write_files};

/// The pod's tmpfs, under its directory.
const TMPFS_DIR: &str = "tmpfs";

/// Creates the volumes of a pod in `pod_dir`. Returns them by name, and the tmpfs mounted for
/// them (if any) — always if `always_tmpfs` (a Linux pod's containers keep their
/// `config.json`, whose environment may hold secrets, there). On failure nothing is left
/// mounted.
pub(crate) fn create(
    pod_dir: &Path,
    specs: &[VolumeSpec],
    always_tmpfs: bool,
) -> Result<(BTreeMap<String, VolumeRecord>, Option<PathBuf>)> {
    let needs_memory = always_tmpfs
        || specs.iter().any(|s| {
            matches!(
                s.source,
                VolumeSource::EmptyDir { memory: true }
                    | VolumeSource::Files {
                        sensitive: true,
                        ..
                    }
            )
        });
    let tmpfs = if needs_memory {
        let dir = pod_dir.join(TMPFS_DIR);
        mount_tmpfs(&dir)?;
        Some(dir)
    } else {
        None
    };
    match create_in(pod_dir, tmpfs.as_deref(), specs) {
        Ok(v) => Ok((v, tmpfs)),
        Err(e) => {
            if let Some(t) = &tmpfs {
                unmount(t);
            }
            Err(e)
        }
    }
}

fn create_in(
    pod_dir: &Path,
    tmpfs: Option<&Path>,
    specs: &[VolumeSpec],
) -> Result<BTreeMap<String, VolumeRecord>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        check_name("volume name", &spec.name)?;
        if out.contains_key(&spec.name) {
            return Err(Error::InvalidSpec(format!(
                "volume {} is defined twice",
                spec.name
            )));
        }
        let base = |memory: bool| match (memory, tmpfs) {
            (true, Some(t)) => t.to_path_buf(),
            _ => pod_dir.to_path_buf(),
        };
        let record = match &spec.source {
            VolumeSource::EmptyDir { memory } => {
                let dir = base(*memory).join("volumes").join(&spec.name);
                std::fs::create_dir_all(&dir).map_err(io_err("creating volume", &dir))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io_err("setting permissions of", &dir))?;
                VolumeRecord {
                    host_path: dir,
                    read_only: false,
                    files: false,
                    owned: true,
                }
            }
            VolumeSource::Files { files, sensitive } => {
                let dir = base(*sensitive).join("files").join(&spec.name);
                std::fs::create_dir_all(&dir).map_err(io_err("creating volume", &dir))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("setting permissions of", &dir))?;
                write_files(&spec.name, &dir, files)?;
                VolumeRecord {
                    host_path: dir,
                    read_only: true,
                    files: true,
                    owned: true,
                }
            }
            VolumeSource::HostPath { path } => {
                if !path.is_absolute() {
                    return Err(Error::Volume {
                        volume: spec.name.clone(),
                        detail: format!("hostPath {} is not absolute", path.display()),
                    });
                }
                if !path.exists() {
                    return Err(Error::Volume {
                        volume: spec.name.clone(),
                        detail: format!("hostPath {} does not exist", path.display()),
                    });
                }
                VolumeRecord {
                    host_path: path.clone(),
                    read_only: false,
                    files: false,
                    owned: false,
                }
            }
        };
        out.insert(spec.name.clone(), record);
    }
    Ok(out)
}

/// Replaces the files of a file-set volume atomically.
pub(crate) fn update_files(
    volumes: &BTreeMap<String, VolumeRecord>,
    name: &str,
    files: &BTreeMap<String, FileContent>,
) -> Result<()> {
    let vol = volumes.get(name).ok_or_else(|| Error::Volume {
        volume: name.to_string(),
        detail: "no such volume".into(),
    })?;
    if !vol.files {
        return Err(Error::Volume {
            volume: name.to_string(),
            detail: "only file-set volumes (configMap, secret) can be updated".into(),
        });
    }
    write_files(name, &vol.host_path, files)
}

fn mount_tmpfs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err("creating tmpfs mount point", dir))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs"])
        .arg(dir)
        .output()
        .map_err(io_err("mounting a tmpfs on", dir))?;
    if !out.status.success() {
        return Err(Error::Volume {
            volume: dir.display().to_string(),
            detail: format!(
                "mounting a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Unmounts a tmpfs (lazily: a container still holding it keeps it until it ends). Logged,
/// never failing.
pub(crate) fn unmount(dir: &Path) {
    if !is_mount_point(dir) {
        return;
    }
    match Command::new("umount").arg("-l").arg(dir).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            path = %dir.display(),
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "cannot unmount a pod tmpfs"
        ),
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "cannot run umount"),
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(&dir))
        .collect()
}

fn is_mount_point(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mounts_under(&dir).contains(&dir)
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_volumes_are_created_and_file_sets_swapped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("a.txt".to_string(), FileContent::new(&b"one"[..]));
        let specs = vec![
            VolumeSpec {
                name: "data".into(),
                source: VolumeSource::EmptyDir { memory: false },
            },
            VolumeSpec {
                name: "cfg".into(),
                source: VolumeSource::Files {
                    files: files.clone(),
                    sensitive: false,
                },
            },
            VolumeSpec {
                name: "host".into(),
                source: VolumeSource::HostPath {
                    path: tmp.path().to_path_buf(),
                },
            },
        ];
        let (vols, tmpfs) = create(tmp.path(), &specs, false).unwrap();
        assert!(tmpfs.is_none());
        assert!(vols["data"].host_path.is_dir());
        assert!(!vols["host"].owned);
        let cfg = vols["cfg"].host_path.clone();
        assert_eq!(std::fs::read(cfg.join("a.txt")).unwrap(), b"one");
        files.insert("a.txt".to_string(), FileContent::new(&b"two"[..]));
        update_files(&vols, "cfg", &files).unwrap();
        assert_eq!(std::fs::read(cfg.join("a.txt")).unwrap(), b"two");
        assert!(update_files(&vols, "data", &files).is_err());
        assert!(update_files(&vols, "nope", &files).is_err());
    }

    #[test]
    fn a_missing_host_path_and_a_doubled_name_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = VolumeSpec {
            name: "h".into(),
            source: VolumeSource::HostPath {
                path: tmp.path().join("missing"),
            },
        };
        assert!(create(tmp.path(), &[missing], false).is_err());
        let d = VolumeSpec {
            name: "d".into(),
            source: VolumeSource::EmptyDir { memory: false },
        };
        assert!(create(tmp.path(), &[d.clone(), d], false).is_err());
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path("/a\\040b\\134c"),
            PathBuf::from("/a b\\c")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
