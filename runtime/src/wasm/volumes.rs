//! Pod volumes on the node: emptyDir directories, atomically updated file sets (configMap,
//! secret; secrets only on a tmpfs) and hostPath. Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, io_err};
use crate::spec::{FileContent, VolumeSource, VolumeSpec};

/// Where a pod's volumes live on the node.
#[derive(Debug, Clone)]
pub(crate) struct VolumeRoots {
    /// `<data_dir>/pods`.
    pub(crate) disk: PathBuf,
    /// A directory on a tmpfs, if one was found or configured.
    pub(crate) memory: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) host_path: PathBuf,
    /// File sets are always mounted read-only.
    pub(crate) read_only: bool,
    pub(crate) files: bool,
}

/// The volumes of one pod.
#[derive(Debug)]
pub(crate) struct PodVolumes {
    pub(crate) by_name: HashMap<String, Volume>,
    /// Directories to delete with the pod.
    owned: Vec<PathBuf>,
}

/// Checks that `s` is usable as one path component (pod ids, volume names).
pub(crate) fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{what} {s:?} must be letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Checks a relative path (file keys, subPath): no absolute paths, no `..`, not empty.
pub(crate) fn check_relative(what: &str, p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.components().collect())
    } else {
        Err(Error::InvalidSpec(format!(
            "{what} {p:?} must be a relative path without '..'"
        )))
    }
}

/// The directory of a mount's `subPath` inside a volume, created if missing as kubelet does.
/// Refused if it is not a relative path without `..`, or if a symlink inside the volume leads
/// it outside the volume.
pub(crate) fn sub_path_dir(volume: &str, root: &Path, sub: &str) -> Result<PathBuf> {
    let rel = check_relative("subPath", sub)?;
    let outside = || Error::Volume {
        volume: volume.to_string(),
        detail: format!("subPath {sub:?} leads outside the volume"),
    };
    let root = root
        .canonicalize()
        .map_err(io_err("resolving volume", root))?;
    let mut dir = root.clone();
    for part in rel.components() {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = dir.canonicalize().map_err(|_| outside())?;
                if !target.starts_with(&root) {
                    return Err(outside());
                }
                dir = target;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(io_err("creating subPath", &dir))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io_err("setting permissions of", &dir))?;
            }
            Err(e) => return Err(io_err("reading subPath", &dir)(e)),
        }
    }
    Ok(dir)
}

/// Finds a tmpfs mount to keep secrets on: `preferred` if it is on a tmpfs, else `/dev/shm`
/// or `/run` if they are.
pub(crate) fn find_tmpfs(preferred: Option<&Path>) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let candidates: Vec<PathBuf> = match preferred {
        Some(p) => vec![p.to_path_buf()],
        None => vec![PathBuf::from("/dev/shm"), PathBuf::from("/run")],
    };
    candidates.into_iter().find(|c| is_on_tmpfs(&mounts, c))
}

fn is_on_tmpfs(mounts: &str, path: &Path) -> bool {
    // The deepest existing ancestor decides.
    let mut probe = path.to_path_buf();
    let canonical = loop {
        if let Ok(c) = probe.canonicalize() {
            break c;
        }
        if !probe.pop() {
            return false;
        }
    };
    let mut best: Option<(usize, &str)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_src), Some(mnt), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mnt = mnt.replace("\\040", " ");
        if canonical.starts_with(&mnt) && best.is_none_or(|(len, _)| mnt.len() >= len) {
            best = Some((mnt.len(), fstype));
        }
    }
    matches!(best, Some((_, "tmpfs" | "ramfs")))
}

impl PodVolumes {
    /// The pod's own scratch directory on the node's disk (state of the pod's capabilities that
    /// has no volume of its own), deleted with the pod.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.owned[0].join("scratch")
    }

    /// Creates the directories of a pod's volumes.
    pub(crate) fn create(roots: &VolumeRoots, pod_id: &str, specs: &[VolumeSpec]) -> Result<Self> {
        check_name("pod id", pod_id)?;
        let disk = roots.disk.join(pod_id);
        let memory = roots.memory.as_ref().map(|m| m.join(pod_id));
        let mut vols = PodVolumes {
            by_name: HashMap::new(),
            owned: vec![disk.clone()],
        };
        if let Some(m) = &memory {
            vols.owned.push(m.clone());
        }
        let result = (|| {
            for spec in specs {
                check_name("volume name", &spec.name)?;
                if vols.by_name.contains_key(&spec.name) {
                    return Err(Error::InvalidSpec(format!(
                        "volume {} is defined twice",
                        spec.name
                    )));
                }
                let need_memory = |volume: &str| {
                    memory.clone().ok_or_else(|| Error::Volume {
                        volume: volume.to_string(),
                        detail: "no tmpfs is available on this node to keep it off disk".into(),
                    })
                };
                let vol = match &spec.source {
                    VolumeSource::EmptyDir { memory: in_memory } => {
                        let base = if *in_memory {
                            need_memory(&spec.name)?
                        } else {
                            disk.clone()
                        };
                        let dir = base.join("volumes").join(&spec.name);
                        std::fs::create_dir_all(&dir).map_err(io_err("creating volume", &dir))?;
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                            .map_err(io_err("setting permissions of", &dir))?;
                        Volume {
                            host_path: dir,
                            read_only: false,
                            files: false,
                        }
                    }
                    VolumeSource::Files { files, sensitive } => {
                        let base = if *sensitive {
                            need_memory(&spec.name)?
                        } else {
                            disk.clone()
                        };
                        let dir = base.join("files").join(&spec.name);
                        std::fs::create_dir_all(&dir).map_err(io_err("creating volume", &dir))?;
                        write_files(&spec.name, &dir, files)?;
                        Volume {
                            host_path: dir,
                            read_only: true,
                            files: true,
                        }
                    }
                    VolumeSource::HostPath { path } => {
                        if !path.is_absolute() {
                            return Err(Error::Volume {
                                volume: spec.name.clone(),
                                detail: format!("hostPath {} is not absolute", path.display()),
                            });
                        }
                        if !path.is_dir() {
                            return Err(Error::Volume {
                                volume: spec.name.clone(),
                                detail: format!("hostPath {} is not a directory", path.display()),
                            });
                        }
                        Volume {
                            host_path: path.clone(),
                            read_only: false,
                            files: false,
                        }
                    }
                };
                vols.by_name.insert(spec.name.clone(), vol);
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(vols),
            Err(e) => {
                vols.remove();
                Err(e)
            }
        }
    }

    /// Replaces the files of a file-set volume atomically.
    pub(crate) fn update_files(
        &self,
        name: &str,
        files: &BTreeMap<String, FileContent>,
    ) -> Result<()> {
        let vol = self.by_name.get(name).ok_or_else(|| Error::Volume {
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

    /// Deletes the pod's directories (not hostPaths).
    pub(crate) fn remove(&self) {
        for dir in &self.owned {
            if let Err(e) = std::fs::remove_dir_all(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove pod directory");
            }
        }
    }
}

/// Writes a file set the way kubelet's atomic writer does: the data goes into a fresh hidden
/// directory, `..data` is switched to it with one rename, and each top-level name is a
/// symlink through `..data`. Readers see either the old or the new set, never a mix.
pub(crate) fn write_files(
    volume: &str,
    root: &Path,
    files: &BTreeMap<String, FileContent>,
) -> Result<()> {
    let mut top = BTreeSet::new();
    let mut checked = Vec::new();
    for (key, content) in files {
        let rel = check_relative("file", key).map_err(|e| Error::Volume {
            volume: volume.to_string(),
            detail: e.to_string(),
        })?;
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if first.starts_with("..") {
            return Err(Error::Volume {
                volume: volume.to_string(),
                detail: format!("file {key:?} may not start with '..'"),
            });
        }
        top.insert(first);
        checked.push((rel, content));
    }
    let stamp = format!(
        "..{}_{:08x}",
        jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f"),
        rand::random::<u32>()
    );
    let data_dir = root.join(&stamp);
    std::fs::create_dir(&data_dir).map_err(io_err("creating", &data_dir))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("setting permissions of", &data_dir))?;
    for (rel, content) in &checked {
        let path = data_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, &content.data).map_err(io_err("writing", &path))?;
        let mode = content.mode.unwrap_or(0o644) & 0o777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("setting permissions of", &path))?;
    }
    // Switch `..data` atomically.
    let old = std::fs::read_link(root.join("..data")).ok();
    let tmp_link = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(io_err("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, root.join("..data")).map_err(io_err("switching", root))?;
    // Top-level symlinks through `..data`.
    for name in &top {
        let link = root.join(name);
        let target = Path::new("..data").join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).map_err(io_err("linking", &link))?;
        }
    }
    // Remove names that are gone, and the previous data directory.
    let entries = std::fs::read_dir(root).map_err(io_err("listing", root))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        let old = root.join(old);
        if old.starts_with(root) {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_path_is_created_inside_its_volume_and_cannot_leave_it() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let root = vol.canonicalize().unwrap();
        let dir = sub_path_dir("data", &vol, "app/db").expect("created");
        assert_eq!(dir, root.join("app/db"));
        assert!(dir.is_dir());
        assert_eq!(sub_path_dir("data", &vol, "app/db").unwrap(), dir);
        std::os::unix::fs::symlink(tmp.path(), vol.join("up")).unwrap();
        let e = sub_path_dir("data", &vol, "up/x").expect_err("a symlink out");
        assert!(e.to_string().contains("outside the volume"), "{e}");
        assert!(!tmp.path().join("x").exists());
        std::os::unix::fs::symlink(root.join("app"), vol.join("inner")).unwrap();
        assert_eq!(sub_path_dir("data", &vol, "inner/db").unwrap(), dir);
        assert!(sub_path_dir("data", &vol, "../x").is_err());
        assert!(sub_path_dir("data", &vol, "/etc").is_err());
    }

    #[test]
    fn files_are_swapped_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = VolumeRoots {
            disk: tmp.path().join("pods"),
            memory: None,
        };
        let mut files = BTreeMap::new();
        files.insert("a.txt".to_string(), FileContent::new(&b"one"[..]));
        files.insert("dir/b.txt".to_string(), FileContent::new(&b"two"[..]));
        let spec = VolumeSpec {
            name: "cfg".into(),
            source: VolumeSource::Files {
                files: files.clone(),
                sensitive: false,
            },
        };
        let vols = PodVolumes::create(&roots, "pod1", &[spec]).unwrap();
        let root = vols.by_name["cfg"].host_path.clone();
        assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"one");
        assert_eq!(std::fs::read(root.join("dir/b.txt")).unwrap(), b"two");

        files.remove("dir/b.txt");
        files.insert("a.txt".to_string(), FileContent::new(&b"uno"[..]));
        vols.update_files("cfg", &files).unwrap();
        assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"uno");
        assert!(!root.join("dir").exists());
        let hidden: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
            .collect();
        assert_eq!(hidden.len(), 1, "old data directory removed");
        vols.remove();
        assert!(!tmp.path().join("pods/pod1").exists());
    }

    #[test]
    fn secrets_need_a_tmpfs() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = VolumeRoots {
            disk: tmp.path().join("pods"),
            memory: None,
        };
        let spec = VolumeSpec {
            name: "s".into(),
            source: VolumeSource::Files {
                files: BTreeMap::new(),
                sensitive: true,
            },
        };
        let err = PodVolumes::create(&roots, "pod1", &[spec]).unwrap_err();
        assert!(err.to_string().contains("tmpfs"), "{err}");
    }

    #[test]
    fn rejects_escaping_names() {
        assert!(check_relative("file", "../x").is_err());
        assert!(check_relative("file", "/etc/passwd").is_err());
        assert!(check_relative("file", "a/../../x").is_err());
        assert!(check_relative("file", "a/b").is_ok());
        assert!(check_name("pod id", "..").is_err());
        assert!(check_name("pod id", "a/b").is_err());
    }

    #[test]
    fn dev_shm_detection_reads_proc_mounts() {
        let mounts = "tmpfs /dev/shm tmpfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n";
        assert!(is_on_tmpfs(mounts, Path::new("/dev/shm")));
        assert!(!is_on_tmpfs(mounts, Path::new("/")));
    }
}
