//! What the OCI backend keeps on disk per pod (`DIR/pods/<id>/state.json`, replaced atomically)
//! so that a restarted node re-adopts the pod's containers: the pod's network and volumes,
//! each Linux container's runtime id, bundle, root filesystem, cgroup and monitor.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};
use crate::oci_image::ContainerRootfs;

/// The file name of a pod's state in its directory.
pub(crate) const STATE_FILE: &str = "state.json";

/// A pod as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PodRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) hostname: String,
    pub(crate) ip: Option<Ipv4Addr>,
    /// The bridge gateway and prefix the pod's network lies in.
    pub(crate) gateway: Option<(Ipv4Addr, u8)>,
    /// The pod's network namespace name (`ip netns`), when it has one.
    pub(crate) netns: Option<String>,
    /// A tmpfs mounted for the pod's memory-backed volumes, if any.
    pub(crate) tmpfs: Option<PathBuf>,
    pub(crate) volumes: BTreeMap<String, VolumeRecord>,
    pub(crate) containers: BTreeMap<String, ContainerRecord>,
}

/// A pod volume as its containers bind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct VolumeRecord {
    /// The node directory bound into containers.
    pub(crate) host_path: PathBuf,
    /// Mounted read-only whatever the mount says (file sets).
    pub(crate) read_only: bool,
    /// A file set (`update_files` applies).
    pub(crate) files: bool,
    /// Deleted with the pod (not a hostPath).
    pub(crate) owned: bool,
}

/// A Linux container as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    /// The id the OCI runtime knows it by.
    pub(crate) runtime_id: String,
    /// The bundle directory (`config.json`, log, exit files).
    pub(crate) bundle: PathBuf,
    pub(crate) rootfs: RootfsRecord,
    /// Absolute cgroup path.
    pub(crate) cgroups_path: PathBuf,
    /// Ports the container declares.
    pub(crate) ports: Vec<u16>,
    /// The image directory its root filesystem is made from (a restart gets a fresh one).
    #[serde(default)]
    pub(crate) image: Option<PathBuf>,
    /// The monitor of the current run, once started.
    pub(crate) monitor_pid: Option<i32>,
    /// The container's init process of the current run, once started.
    pub(crate) pid: Option<i32>,
    /// When the current run started (RFC 3339).
    pub(crate) started_at: Option<String>,
}

/// [`ContainerRootfs`] as saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum RootfsRecord {
    Overlay {
        merged: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    Copy {
        rootfs: PathBuf,
    },
}

impl From<&ContainerRootfs> for RootfsRecord {
    fn from(r: &ContainerRootfs) -> Self {
        match r {
            ContainerRootfs::Overlay {
                merged,
                upper,
                work,
            } => RootfsRecord::Overlay {
                merged: merged.clone(),
                upper: upper.clone(),
                work: work.clone(),
            },
            ContainerRootfs::Copy { rootfs } => RootfsRecord::Copy {
                rootfs: rootfs.clone(),
            },
        }
    }
}

impl From<&RootfsRecord> for ContainerRootfs {
    fn from(r: &RootfsRecord) -> Self {
        match r {
            RootfsRecord::Overlay {
                merged,
                upper,
                work,
            } => ContainerRootfs::Overlay {
                merged: merged.clone(),
                upper: upper.clone(),
                work: work.clone(),
            },
            RootfsRecord::Copy { rootfs } => ContainerRootfs::Copy {
                rootfs: rootfs.clone(),
            },
        }
    }
}

/// Writes `record` to `pod_dir/state.json` atomically (a temporary file renamed over it).
pub(crate) fn save(pod_dir: &Path, record: &PodRecord) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::Internal(format!("encoding pod state: {e}")))?;
    let tmp = pod_dir.join(format!(".{STATE_FILE}.tmp"));
    std::fs::write(&tmp, bytes).map_err(io_err("writing pod state", &tmp))?;
    let path = pod_dir.join(STATE_FILE);
    std::fs::rename(&tmp, &path).map_err(io_err("replacing pod state", &path))
}

/// Reads a pod's saved state.
pub(crate) fn load(pod_dir: &Path) -> Result<PodRecord> {
    let path = pod_dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io_err("reading pod state", &path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("pod state {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_pod_reads_back_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let mut record = PodRecord {
            id: "p1".into(),
            name: "ns/p1".into(),
            hostname: "p1".into(),
            ip: Some(Ipv4Addr::new(10, 244, 0, 5)),
            gateway: Some((Ipv4Addr::new(10, 244, 0, 1), 24)),
            netns: Some("skiff-p1".into()),
            tmpfs: None,
            volumes: BTreeMap::new(),
            containers: BTreeMap::new(),
        };
        record.containers.insert(
            "app".into(),
            ContainerRecord {
                runtime_id: "p1-app".into(),
                bundle: tmp.path().join("app"),
                rootfs: RootfsRecord::Copy {
                    rootfs: tmp.path().join("app/root/rootfs"),
                },
                cgroups_path: "/skiff/p1/app".into(),
                ports: vec![80],
                image: None,
                monitor_pid: Some(42),
                pid: Some(43),
                started_at: Some("2026-01-01T00:00:00Z".into()),
            },
        );
        save(tmp.path(), &record).unwrap();
        let back = load(tmp.path()).unwrap();
        assert_eq!(back.containers["app"].monitor_pid, Some(42));
        assert_eq!(back.ip, record.ip);
        assert_eq!(back.gateway, record.gateway);
        let rootfs = ContainerRootfs::from(&back.containers["app"].rootfs);
        assert_eq!(rootfs.path(), tmp.path().join("app/root/rootfs"));
        assert!(!tmp.path().join(format!(".{STATE_FILE}.tmp")).exists());
    }
}
