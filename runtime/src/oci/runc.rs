//! The OCI runtime binary (runc or crun), run as a separate process for each operation: state,
//! start, kill, delete and exec. Container setup is never linked into the node process (cloning
//! a multi-threaded process is unsafe); `create` runs under the monitor ([`super::monitor`]).
//!
//! crun refuses the hybrid cgroup layout (a cgroup2 mount at `/sys/fs/cgroup/unified` beside
//! the v1 controllers); there it runs behind a small wrapper script that starts it in a private
//! mount namespace with the unified mount unmounted.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::spec::CgroupVersion;
use crate::exec::{ExecProcess, ExecRequest, TerminalSize};

/// Which OCI runtime runs the containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuntimeKind {
    /// runc (the default).
    #[default]
    Runc,
    /// crun.
    Crun,
}

impl RuntimeKind {
    /// The binary's name.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, OciError> {
        match s {
            "runc" => Ok(RuntimeKind::Runc),
            "crun" => Ok(RuntimeKind::Crun),
            other => Err(OciError::NotFound(format!(
                "unknown OCI runtime {other:?}: runc or crun"
            ))),
        }
    }
}

/// Errors of the OCI runtime binary and the monitor. Messages name the container and carry
/// what the runtime printed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The runtime or the monitor binary is not there.
    #[error("{0}")]
    NotFound(String),
    /// Creating the container failed (bad config, missing entrypoint): the runtime's message.
    #[error("container {id}: {message}")]
    Create {
        /// The runtime's container id.
        id: String,
        /// What the runtime or the monitor said.
        message: String,
    },
    /// A runtime command failed.
    #[error("container {id}: {runtime} {op} failed: {stderr}")]
    Command {
        /// The runtime's container id.
        id: String,
        /// `runc` or `crun`.
        runtime: &'static str,
        /// `start`, `kill`, `delete`, `state`, `exec`.
        op: &'static str,
        /// What the runtime printed.
        stderr: String,
    },
    /// The monitor failed or was lost.
    #[error("container {id}: monitor: {detail}")]
    Monitor {
        /// The runtime's container id.
        id: String,
        /// What happened.
        detail: String,
    },
    /// A file or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or program involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io { what, path, source }
}

/// What `runtime state` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RuntimeState {
    /// `created`, `running`, `stopped` or `paused`.
    pub status: String,
    /// The container's init process (0 once stopped).
    #[serde(default)]
    pub pid: i32,
}

/// The runtime binary with its state root.
#[derive(Debug, Clone)]
pub struct OciBinary {
    kind: RuntimeKind,
    /// The runtime binary itself.
    path: PathBuf,
    /// `--root`: where the runtime keeps its containers' state (absolute).
    root: PathBuf,
    /// The hybrid-layout wrapper script, when crun needs one.
    wrapper: Option<PathBuf>,
}

/// The wrapper of crun on a hybrid cgroup layout: a private mount namespace without the
/// cgroup2 mount, then crun with all arguments.
fn wrapper_script(crun: &Path) -> String {
    format!(
        "#!/bin/sh\n# crun refuses the hybrid cgroup layout: run it without the unified mount.\nexec unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"' '{}' \"$@\"\n",
        crun.display()
    )
}

fn hybrid() -> bool {
    CgroupVersion::detect() == CgroupVersion::V1
        && Path::new("/sys/fs/cgroup/unified/cgroup.controllers").is_file()
}

/// `name` in `PATH`.
pub(crate) fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl OciBinary {
    /// Finds the binary in `PATH` (or at `path`); `root` is the runtime's `--root` (made
    /// absolute and created). crun on a hybrid cgroup layout runs behind a wrapper script
    /// written next to `root`.
    pub fn find(
        kind: RuntimeKind,
        path: Option<PathBuf>,
        root: PathBuf,
    ) -> Result<OciBinary, OciError> {
        let path = match path {
            Some(p) if p.is_file() => p,
            Some(p) => {
                return Err(OciError::NotFound(format!(
                    "OCI runtime {} not found at {}",
                    kind.name(),
                    p.display()
                )));
            }
            None => in_path(kind.name()).ok_or_else(|| {
                OciError::NotFound(format!(
                    "OCI runtime {} not found in PATH (apt-get install {})",
                    kind.name(),
                    kind.name()
                ))
            })?,
        };
        let root = std::path::absolute(&root).map_err(io_err("resolving", &root))?;
        std::fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
        let wrapper = if kind == RuntimeKind::Crun && hybrid() {
            if in_path("unshare").is_none() {
                return Err(OciError::NotFound(
                    "crun on a hybrid cgroup layout needs unshare (util-linux) in PATH".into(),
                ));
            }
            let name = format!(
                "{}.crun-hybrid",
                root.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            let script = root.with_file_name(name);
            std::fs::write(&script, wrapper_script(&path)).map_err(io_err("writing", &script))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("making executable", &script))?;
            Some(script)
        } else {
            None
        };
        Ok(OciBinary {
            kind,
            path,
            root,
            wrapper,
        })
    }

    /// Which runtime this is.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// The program to run for a runtime command: the binary, or its wrapper.
    pub fn program(&self) -> &Path {
        self.wrapper.as_deref().unwrap_or(&self.path)
    }

    /// The runtime's state root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the runtime keeps state for `id`.
    fn knows(&self, id: &str) -> bool {
        !id.is_empty() && !id.contains('/') && self.root.join(id).exists()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(self.program());
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `runtime --root ROOT ARGS…` to its end; its stdout, or the error with its stderr.
    async fn run(&self, id: &str, op: &'static str, args: &[&str]) -> Result<Vec<u8>, OciError> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(io_err("running", self.program()))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(OciError::Command {
                id: id.to_string(),
                runtime: self.kind.name(),
                op,
                stderr: stderr_text(&out.stderr, out.status),
            })
        }
    }

    /// `runtime state ID`: `None` when the runtime does not know the id.
    pub async fn state(&self, id: &str) -> Result<Option<RuntimeState>, OciError> {
        if !self.knows(id) {
            return Ok(None);
        }
        match self.run(id, "state", &["state", id]).await {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| OciError::Command {
                    id: id.to_string(),
                    runtime: self.kind.name(),
                    op: "state",
                    stderr: format!("unreadable state: {e}"),
                }),
            // Deleted between the check and the command.
            Err(_) if !self.knows(id) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `runtime start ID`: the created container's process runs. A process that cannot start
    /// (missing entrypoint) fails with the runtime's message.
    pub async fn start(&self, id: &str) -> Result<(), OciError> {
        self.run(id, "start", &["start", id]).await.map(drop)
    }

    /// `runtime kill ID SIGNAL`. A container that is gone or stopped is `Ok`.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), OciError> {
        if !self.knows(id) {
            return Ok(());
        }
        let sig = signal.to_string();
        match self.run(id, "kill", &["kill", id, &sig]).await {
            Ok(_) => Ok(()),
            Err(e) => match self.state(id).await {
                Ok(None) => Ok(()),
                Ok(Some(s)) if s.status == "stopped" => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// `runtime delete [--force] ID`. An unknown id is `Ok`.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        if !self.knows(id) {
            return Ok(());
        }
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        match self.run(id, "delete", args).await {
            Ok(_) => Ok(()),
            Err(_) if !self.knows(id) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `runtime exec` of a process in the running container `id`, as a child of this process.
    /// Without a terminal its stdin (when asked for), stdout and stderr are pipes. With one,
    /// the runtime runs with `-t` and a pseudo-terminal of this process as its standard
    /// streams: it gives the process a terminal of its own and copies between the two;
    /// resizes set our terminal's size and signal the runtime (`SIGWINCH`) to copy it.
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecProcess, OciError> {
        if req.command.is_empty() {
            return Err(OciError::Command {
                id: id.to_string(),
                runtime: self.kind.name(),
                op: "exec",
                stderr: "no command given".into(),
            });
        }
        if !self.knows(id) {
            return Err(OciError::Command {
                id: id.to_string(),
                runtime: self.kind.name(),
                op: "exec",
                stderr: "the container does not exist".into(),
            });
        }
        let mut cmd = self.command();
        cmd.arg("exec");
        if req.tty {
            cmd.arg("-t");
        }
        cmd.arg(id).args(&req.command);
        if req.tty {
            return self.exec_tty(id, cmd, req.stdin);
        }
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(io_err("running", self.program()))?;
        let stdin = child
            .stdin
            .take()
            .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
        let path = self.program().to_path_buf();
        Ok(ExecProcess {
            stdin,
            stdout,
            stderr,
            resize: None,
            exit: Box::pin(async move {
                let status = child
                    .wait()
                    .await
                    .map_err(|e| crate::Error::from(io_err("waiting for", path)(e)))?;
                Ok(exit_code(status))
            }),
        })
    }

    fn exec_tty(&self, id: &str, mut cmd: Command, stdin: bool) -> Result<ExecProcess, OciError> {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let pty_err = |e: rustix::io::Errno| OciError::Io {
            what: "allocating a terminal for exec in",
            path: PathBuf::from(id),
            source: e.into(),
        };
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(pty_err)?;
        grantpt(&master).map_err(pty_err)?;
        unlockpt(&master).map_err(pty_err)?;
        let name = ptsname(&master, Vec::new()).map_err(pty_err)?;
        let name = PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()),
        );
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
            .map_err(io_err("opening", &name))?;
        let slave2 = slave.try_clone().map_err(io_err("opening", &name))?;
        let slave3 = slave.try_clone().map_err(io_err("opening", &name))?;
        cmd.stdin(slave).stdout(slave2).stderr(slave3);
        let mut child = cmd.spawn().map_err(io_err("running", self.program()))?;
        // The child holds its copies; ours are gone with `cmd`.
        drop(cmd);
        let reader = std::fs::File::from(master.try_clone().map_err(io_err("opening", &name))?);
        let writer = std::fs::File::from(master.try_clone().map_err(io_err("opening", &name))?);
        let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
        let runtime_pid = child.id();
        tokio::spawn(async move {
            while let Some(size) = resize_rx.recv().await {
                let ws = rustix::termios::Winsize {
                    ws_row: size.height,
                    ws_col: size.width,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                let _ = rustix::termios::tcsetwinsize(&master, ws);
                if let Some(pid) =
                    runtime_pid.and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::WINCH);
                }
            }
        });
        let path = self.program().to_path_buf();
        Ok(ExecProcess {
            stdin: stdin.then(|| {
                Box::pin(tokio::fs::File::from_std(writer))
                    as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>
            }),
            stdout: Some(Box::pin(PtyReader(tokio::fs::File::from_std(reader)))),
            stderr: None,
            resize: Some(resize_tx),
            exit: Box::pin(async move {
                let status = child
                    .wait()
                    .await
                    .map_err(|e| crate::Error::from(io_err("waiting for", path)(e)))?;
                Ok(exit_code(status))
            }),
        })
    }
}

/// A terminal's output: the end of the terminal (`EIO` once every process closed its side)
/// reads as the end of the stream.
struct PtyReader(tokio::fs::File);

impl tokio::io::AsyncRead for PtyReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e))
                if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
            {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// The exit code of a process: its code, or 128 + the signal that killed it.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// What a failed runtime command printed (runc's `level=error msg="…"` unwrapped), or its
/// status when it printed nothing.
pub(crate) fn stderr_text(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return format!("exited with {status}");
    }
    runtime_message(text)
}

/// The message of runc's logrus lines (`time=… level=error msg="…"`), else the text as is.
pub(crate) fn runtime_message(text: &str) -> String {
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("msg=")?.1;
            match rest.strip_prefix('"') {
                Some(q) => {
                    // Up to the closing quote, with \" and \\ unescaped.
                    let mut out = String::new();
                    let mut chars = q.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => out.extend(chars.next()),
                            '"' => break,
                            c => out.push(c),
                        }
                    }
                    Some(out)
                }
                None => Some(rest.to_string()),
            }
        })
        .collect();
    if msgs.is_empty() {
        text.trim().to_string()
    } else {
        msgs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_log_lines_unwrap_to_their_message() {
        let line = r#"time="2026-12-06T01:42:16Z" level=error msg="runc create failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory""#;
        assert_eq!(
            runtime_message(line),
            r#"runc create failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory"#
        );
        assert_eq!(
            runtime_message(
                "executable file `/nope` not found in $PATH: No such file or directory\n"
            ),
            "executable file `/nope` not found in $PATH: No such file or directory"
        );
    }

    #[test]
    fn runtime_kinds_parse_by_name() {
        assert_eq!("crun".parse::<RuntimeKind>().unwrap(), RuntimeKind::Crun);
        assert_eq!("runc".parse::<RuntimeKind>().unwrap(), RuntimeKind::Runc);
        assert!("youki".parse::<RuntimeKind>().is_err());
    }
}
