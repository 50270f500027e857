//! One Linux container of an OCI pod: its bundle, root filesystem and cgroup, its runs under
//! the monitor (create, start, the exit watched), graceful stop, and teardown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::Inner;
use super::state::{ContainerRecord, RootfsRecord};
use crate::error::{Error, Result};
use crate::oci::{cgroup, monitor};
use crate::oci_image::{
    ContainerRootfs, RootfsMode, UnpackedImage, prepare_container_rootfs, release_container_rootfs,
};
use crate::status::{ContainerState, EXIT_KILLED, TerminationReason};

/// How long a container may take to die after SIGKILL before stopping it is reported failed.
const KILL_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The log of the current run, in the bundle.
pub(crate) fn log_path(bundle: &Path) -> PathBuf {
    bundle.join("container.log")
}

/// The log of the previous run (moved aside at a restart).
pub(crate) fn previous_log_path(bundle: &Path) -> PathBuf {
    bundle.join("container.log.previous")
}

/// The monitor's files for a container in `bundle`.
pub(crate) fn paths(bundle: &Path) -> monitor::ContainerPaths {
    monitor::ContainerPaths::new(bundle.to_path_buf(), log_path(bundle))
}

/// A Linux container.
pub(crate) struct LinuxContainer {
    pub(crate) name: String,
    pub(crate) record: Mutex<ContainerRecord>,
    pub(crate) state: watch::Sender<ContainerState>,
    /// Bumped by each run, so that the exit watcher of an old run never touches a new one.
    generation: AtomicU64,
    /// Serialises start, stop and removal.
    pub(crate) ops: tokio::sync::Mutex<()>,
}

impl LinuxContainer {
    pub(crate) fn new(name: String, record: ContainerRecord, state: ContainerState) -> Arc<Self> {
        let (state, _) = watch::channel(state);
        Arc::new(LinuxContainer {
            name,
            record: Mutex::new(record),
            state,
            generation: AtomicU64::new(0),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn record(&self) -> ContainerRecord {
        lock(&self.record).clone()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.borrow().is_running()
    }

    /// Starts a run: deletes what is left of the previous one, creates the container under
    /// its monitor and starts it; watches its exit. Running already: `Ok`.
    pub(crate) async fn start(self: &Arc<Self>, rt: &Arc<Inner>, pod: &str) -> Result<()> {
        let _op = self.ops.lock().await;
        if self.is_running() {
            return Ok(());
        }
        let rec = self.record();
        let id = rec.runtime_id.clone();
        rt.bin.delete(&id, true).await?;
        if rec.started_at.is_some() {
            // A restart: a fresh writable root, as kubelet gives a new container.
            let rootfs = fresh_rootfs(&rec).await?;
            lock(&self.record).rootfs = rootfs;
        }
        let paths = paths(&rec.bundle);
        let log = log_path(&rec.bundle);
        if log.exists() {
            let _ = std::fs::rename(&log, previous_log_path(&rec.bundle));
        }
        monitor::clear_exit(&paths, &id);
        let created = match monitor::create(&rt.bin, &id, &paths).await {
            Ok(c) => c,
            Err(e) => {
                let e = Error::from(e);
                self.state.send_replace(ContainerState::Waiting {
                    reason: "CreateContainerError".into(),
                    message: e.to_string(),
                });
                return Err(e);
            }
        };
        let started_at = Timestamp::now();
        if let Err(e) = rt.bin.start(&id).await {
            let e = Error::from(e);
            let _ = rt.bin.delete(&id, true).await;
            self.state.send_replace(ContainerState::Terminated {
                exit_code: 128,
                reason: TerminationReason::StartError,
                message: e.to_string(),
                started_at,
                finished_at: Timestamp::now(),
            });
            return Err(e);
        }
        {
            let mut r = lock(&self.record);
            r.monitor_pid = Some(created.monitor_pid);
            r.pid = Some(created.pid);
            r.started_at = Some(started_at.to_string());
        }
        tracing::debug!(pod, container = %self.name, id, "started");
        self.state
            .send_replace(ContainerState::Running { started_at });
        self.watch_exit(rt, created.monitor_pid, started_at);
        Ok(())
    }

    /// Watches the exit of the current run (also for a re-adopted running container).
    pub(crate) fn watch_exit(
        self: &Arc<Self>,
        rt: &Arc<Inner>,
        monitor_pid: i32,
        started_at: Timestamp,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let this = Arc::downgrade(self);
        let rt = rt.clone();
        let rec = self.record();
        tokio::spawn(async move {
            let paths = paths(&rec.bundle);
            let exit = monitor::wait_exit(&paths, &rec.runtime_id, monitor_pid).await;
            let Some(this) = this.upgrade() else { return };
            if this.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            let state = match exit {
                Ok(exit) => terminated(
                    &rt,
                    &rec.cgroups_path,
                    exit.code,
                    started_at,
                    exit.finished_at,
                ),
                Err(e) => ContainerState::Terminated {
                    exit_code: EXIT_KILLED,
                    reason: TerminationReason::Error,
                    message: format!("the container's monitor was lost: {e}"),
                    started_at,
                    finished_at: Timestamp::now(),
                },
            };
            this.state.send_replace(state);
        });
    }

    /// SIGTERM, up to `grace` to exit, SIGKILL; then the runtime container is deleted.
    pub(crate) async fn stop(&self, rt: &Inner, grace: Duration) -> Result<()> {
        let _op = self.ops.lock().await;
        let id = self.record().runtime_id;
        if self.is_running() {
            let mut rx = self.state.subscribe();
            rt.bin.kill(&id, 15).await?;
            let ended = matches!(
                tokio::time::timeout(grace, rx.wait_for(|s| !s.is_running())).await,
                Ok(Ok(_))
            );
            if !ended {
                rt.bin.kill(&id, 9).await?;
                let killed = matches!(
                    tokio::time::timeout(KILL_WAIT, rx.wait_for(|s| !s.is_running())).await,
                    Ok(Ok(_))
                );
                if !killed {
                    return Err(Error::Internal(format!(
                        "container {}: still running {}s after SIGKILL",
                        self.name,
                        KILL_WAIT.as_secs()
                    )));
                }
            }
        }
        rt.bin.delete(&id, true).await?;
        Ok(())
    }

    /// Removes everything of a container that is not running: the runtime container, its
    /// cgroup, its root filesystem and bundle.
    pub(crate) async fn teardown(&self, rt: &Inner) -> Result<()> {
        let _op = self.ops.lock().await;
        teardown_record(rt, &self.record()).await
    }
}

/// Replaces a container's writable root by a fresh one from its image, at the same path.
async fn fresh_rootfs(rec: &ContainerRecord) -> Result<RootfsRecord> {
    let Some(image_dir) = rec.image.clone() else {
        return Ok(rec.rootfs.clone());
    };
    let old = ContainerRootfs::from(&rec.rootfs);
    let root_dir = rec.bundle.join("root");
    let name = rec.runtime_id.clone();
    tokio::task::spawn_blocking(move || {
        let fail = |detail: String| Error::Volume {
            volume: name.clone(),
            detail,
        };
        release_container_rootfs(&old, &root_dir)
            .map_err(|e| fail(format!("releasing the root filesystem: {e}")))?;
        let image = UnpackedImage::open(&image_dir)
            .map_err(|e| fail(format!("opening image {}: {e}", image_dir.display())))?;
        let mode = match old {
            ContainerRootfs::Overlay { .. } => RootfsMode::Auto,
            ContainerRootfs::Copy { .. } => RootfsMode::Copy,
        };
        let new = prepare_container_rootfs(&image, &root_dir, mode)
            .map_err(|e| fail(format!("preparing the root filesystem: {e}")))?;
        if new.path() != old.path() {
            let _ = release_container_rootfs(&new, &root_dir);
            return Err(fail(format!(
                "the fresh root filesystem is at {}, not {}",
                new.path().display(),
                old.path().display()
            )));
        }
        Ok(RootfsRecord::from(&new))
    })
    .await
    .map_err(|e| Error::Internal(format!("rootfs task: {e}")))?
}

/// The terminated state of a run that exited with `code`.
pub(crate) fn terminated(
    rt: &Inner,
    cgroups_path: &Path,
    code: i32,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> ContainerState {
    let oom = cgroup::oom_killed(rt.cgroups, cgroups_path);
    let reason = if oom {
        TerminationReason::OomKilled
    } else if code == 0 {
        TerminationReason::Completed
    } else {
        TerminationReason::Error
    };
    ContainerState::Terminated {
        exit_code: code,
        reason,
        message: if oom {
            "the container exceeded its memory limit".into()
        } else {
            String::new()
        },
        started_at,
        finished_at,
    }
}

/// Removes a container's runtime container, cgroup, root filesystem and bundle; every step
/// runs, the first failure is returned.
pub(crate) async fn teardown_record(rt: &Inner, rec: &ContainerRecord) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut note = |e: Error| {
        tracing::warn!(container = %rec.runtime_id, error = %e, "container teardown");
        first.get_or_insert(e);
    };
    if let Err(e) = rt.bin.delete(&rec.runtime_id, true).await {
        note(e.into());
    }
    if let Err(e) = cgroup::remove(rt.cgroups, &rec.cgroups_path) {
        note(Error::Io {
            what: "removing cgroup",
            path: rec.cgroups_path.clone(),
            source: e,
        });
    }
    let rootfs = ContainerRootfs::from(&rec.rootfs);
    let root_dir = rec.bundle.join("root");
    let released =
        tokio::task::spawn_blocking(move || release_container_rootfs(&rootfs, &root_dir))
            .await
            .map_err(|e| Error::Internal(format!("rootfs release task: {e}")));
    match released {
        Ok(Ok(())) => {
            if let Err(e) = std::fs::remove_dir_all(&rec.bundle)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                note(Error::Io {
                    what: "removing bundle",
                    path: rec.bundle.clone(),
                    source: e,
                });
            }
        }
        Ok(Err(e)) => note(Error::Volume {
            volume: rec.runtime_id.clone(),
            detail: format!("releasing the root filesystem: {e}"),
        }),
        Err(e) => note(e),
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
