//! Running a command in a live container (`kubectl exec`): the request and the process handle
//! a backend returns, with its standard streams and its exit code.

use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Result;

/// What to run in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv; the first element is looked up in the container's `PATH`.
    pub command: Vec<String>,
    /// Connect the caller's standard input.
    pub stdin: bool,
    /// Give the process a terminal (stdout and stderr are then one stream).
    pub tty: bool,
}

/// A terminal size, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A started exec process. Dropping the streams closes them; the process keeps running until it
/// exits on its own.
pub struct ExecProcess {
    /// Its standard input, when asked for.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its standard output (with a terminal: the terminal's output).
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Its standard error (`None` with a terminal).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Terminal resizes, when it has a terminal.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code once the process ended (128 + N when killed by signal N).
    pub exit: BoxFuture<'static, Result<i32>>,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}
