//! Each container under its own monitor, conmon: it runs the runtime's `create`, stays the
//! container's parent (a subreaper), writes its output to a CRI-format log file and, when it
//! exits, its exit code to an exit file. conmon daemonizes (double fork, `setsid`), so the
//! container, its log and its exit code outlive the node process: a restarted node re-adopts
//! the container from the monitor's pid and files ([`exit_status`], [`wait_exit`]).
//!
//! conmon reports the container's pid, or the runtime's error, on a sync pipe
//! (`_OCI_SYNCPIPE`). The pipe reaches it as fd 3 through `sh` (`exec 3>&1`), which needs no
//! `unsafe` file descriptor juggling before `exec`.

use std::io::BufRead;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::runc::{OciBinary, OciError, in_path, io_err, runtime_message};

/// The monitor's files of one container, all in its bundle by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPaths {
    /// The OCI bundle (`config.json`).
    pub bundle: PathBuf,
    /// The container's CRI-format log.
    pub log: PathBuf,
    /// Where the monitor writes the exit file (named by the container id).
    pub exit_dir: PathBuf,
    /// The container's init pid, written by the runtime.
    pub pid_file: PathBuf,
    /// The monitor's pid.
    pub monitor_pid_file: PathBuf,
    /// The monitor's attach socket directory.
    pub socket_dir: PathBuf,
}

impl ContainerPaths {
    /// The files of the container in `bundle`, logging to `log`.
    pub fn new(bundle: PathBuf, log: PathBuf) -> ContainerPaths {
        ContainerPaths {
            exit_dir: bundle.join("exits"),
            pid_file: bundle.join("container.pid"),
            monitor_pid_file: bundle.join("monitor.pid"),
            socket_dir: bundle.join("sockets"),
            bundle,
            log,
        }
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.exit_dir.join(id)
    }
}

/// A container created under its monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The monitor (conmon) process.
    pub monitor_pid: i32,
    /// The container's init process.
    pub pid: i32,
}

/// How a container's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code; 128 + N when killed by signal N.
    pub code: i32,
    /// When the monitor saw it exit.
    pub finished_at: Timestamp,
}

#[derive(Deserialize)]
struct SyncMessage {
    data: i64,
    #[serde(default)]
    message: Option<String>,
}

/// Removes the exit and pid files of a previous run.
pub fn clear_exit(paths: &ContainerPaths, id: &str) {
    for f in [
        paths.exit_file(id),
        paths.pid_file.clone(),
        paths.monitor_pid_file.clone(),
    ] {
        let _ = std::fs::remove_file(f);
    }
}

/// Creates the container `id` from `paths.bundle` under a new monitor: when it returns, the
/// container exists in state `created` and its process waits for `start`. A create that fails
/// (bad config, missing entrypoint) returns [`OciError::Create`] with the runtime's message.
pub async fn create(
    bin: &OciBinary,
    id: &str,
    paths: &ContainerPaths,
) -> Result<Created, OciError> {
    let conmon = in_path("conmon").ok_or_else(|| {
        OciError::NotFound(
            "the container monitor conmon is not in PATH (apt-get install conmon)".into(),
        )
    })?;
    for d in [&paths.exit_dir, &paths.socket_dir] {
        std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
    }
    if let Some(parent) = paths.log.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    clear_exit(paths, id);
    let (reader, writer) = std::io::pipe().map_err(io_err("creating a pipe for", &conmon))?;
    let errors = paths.bundle.join("monitor.err");
    let err_file = std::fs::File::create(&errors).map_err(io_err("creating", &errors))?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec 3>&1 1>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(&conmon)
        .args(["--api-version", "1", "--log-level", "error"])
        .arg("-c")
        .arg(id)
        .arg("-u")
        .arg(id)
        .arg("-n")
        .arg(id)
        .arg("-r")
        .arg(bin.program())
        .arg("-b")
        .arg(&paths.bundle)
        .arg("-p")
        .arg(&paths.pid_file)
        .arg("-P")
        .arg(&paths.monitor_pid_file)
        .arg("--exit-dir")
        .arg(&paths.exit_dir)
        .arg("--socket-dir-path")
        .arg(&paths.socket_dir)
        .arg("-l")
        .arg(format!("k8s-file:{}", paths.log.display()))
        .arg("--runtime-arg")
        .arg("--root")
        .arg("--runtime-arg")
        .arg(bin.root())
        // conmon writes an `oom` marker file into its working directory when the container is
        // OOM-killed: keep it in the bundle, never in the node's own directory.
        .current_dir(&paths.bundle)
        .env("_OCI_SYNCPIPE", "3")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(err_file)
        .kill_on_drop(false);
    let status = cmd.status().await.map_err(io_err("running", &conmon))?;
    // Only the daemonized monitor holds the pipe's write end now.
    drop(cmd);
    let read_errors = || {
        std::fs::read_to_string(&errors)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    if !status.success() {
        return Err(OciError::Create {
            id: id.to_string(),
            message: format!("the monitor exited with {status}: {}", read_errors()),
        });
    }
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(reader)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await
    .map_err(|e| OciError::Monitor {
        id: id.to_string(),
        detail: format!("reading its sync pipe: {e}"),
    })?
    .map_err(io_err("reading the sync pipe of", &conmon))?;
    if line.trim().is_empty() {
        return Err(OciError::Create {
            id: id.to_string(),
            message: format!(
                "the monitor ended without creating the container: {}",
                read_errors()
            ),
        });
    }
    let msg: SyncMessage = serde_json::from_str(line.trim()).map_err(|e| OciError::Monitor {
        id: id.to_string(),
        detail: format!("unreadable answer {line:?}: {e}"),
    })?;
    if msg.data <= 0 {
        let message = msg
            .message
            .as_deref()
            .map(runtime_message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("{} create failed", bin.kind().name()));
        return Err(OciError::Create {
            id: id.to_string(),
            message,
        });
    }
    let monitor_pid = std::fs::read_to_string(&paths.monitor_pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| OciError::Monitor {
            id: id.to_string(),
            detail: format!("no pid in {}", paths.monitor_pid_file.display()),
        })?;
    Ok(Created {
        monitor_pid,
        pid: msg.data as i32,
    })
}

/// The exit of container `id` when its monitor wrote one: the code, and the exit file's
/// modification time as the finish time.
pub fn exit_status(paths: &ContainerPaths, id: &str) -> Option<Exit> {
    let file = paths.exit_file(id);
    let code = std::fs::read_to_string(&file).ok()?.trim().parse().ok()?;
    let finished_at = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or_else(Timestamp::now);
    Some(Exit { code, finished_at })
}

/// A pidfd of `pid` if it is still a conmon process (the pid of a monitor that ended may have
/// been reused by now).
fn monitor_pidfd(pid: i32) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::NONBLOCK).ok()?;
    // Checked after opening: the pidfd then refers to this very process.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "conmon").then_some(fd)
}

/// Resolves when container `id` has exited: at once when its exit file is there, else when
/// its monitor `monitor_pid` ends (a pidfd becomes readable). A monitor that ended without an
/// exit file is an error.
pub async fn wait_exit(
    paths: &ContainerPaths,
    id: &str,
    monitor_pid: i32,
) -> Result<Exit, OciError> {
    if let Some(e) = exit_status(paths, id) {
        return Ok(e);
    }
    if let Some(fd) = monitor_pidfd(monitor_pid) {
        // `AsyncFd::register_with_interest` is `unsafe` (this crate forbids it); the safe
        // constructor is sound for an `OwnedFd`, which keeps its descriptor until dropped.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
            .map_err(io_err("watching the monitor of", &paths.bundle))?;
        let _ = fd
            .readable()
            .await
            .map_err(io_err("watching the monitor of", &paths.bundle))?;
    }
    exit_status(paths, id).ok_or_else(|| OciError::Monitor {
        id: id.to_string(),
        detail: format!(
            "monitor {monitor_pid} ended without writing the exit code to {}",
            paths.exit_file(id).display()
        ),
    })
}

#[cfg(test)]
mod tests;
