//! The CRI log format the container monitor writes (conmon's `k8s-file`): one line per
//! output line, `RFC3339Nano stdout|stderr P|F text`, where `P` marks a fragment that the
//! next lines of the same stream continue and `F` the end of a line. Readers of a container's
//! log file, with tail, since and follow (inotify on the file, never a polling loop).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures::FutureExt;
use jiff::Timestamp;
use tokio::io::unix::AsyncFd;

use crate::logs::{LogLine, LogOptions, LogStream, LogStreamKind};

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine {
    /// When the monitor read it.
    pub timestamp: Timestamp,
    /// Which stream.
    pub stream: LogStreamKind,
    /// `P`: a fragment, continued by the next line of the same stream.
    pub partial: bool,
    /// The text, without the newline.
    pub text: String,
}

/// Parses one line of a CRI log (without its newline); `None` when it is not one.
pub fn parse_line(line: &str) -> Option<CriLine> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?.parse::<Timestamp>().ok()?;
    let stream = match parts.next()? {
        "stdout" => LogStreamKind::Stdout,
        "stderr" => LogStreamKind::Stderr,
        _ => return None,
    };
    let tags = parts.next()?;
    let partial = match tags.split(':').next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(CriLine {
        timestamp,
        stream,
        partial,
        text: parts.next().unwrap_or("").to_string(),
    })
}

type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A reader of a CRI log file.
struct Reader {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Bytes after the last newline read.
    leftover: Vec<u8>,
    /// A line being joined from `P` fragments, per stream: its first timestamp and text.
    partial: [Option<(Timestamp, Vec<u8>)>; 2],
    pending: VecDeque<LogLine>,
    since: Option<Timestamp>,
    tail: Option<usize>,
    follow: bool,
    started: bool,
    finished: bool,
    inotify: Option<AsyncFd<OwnedFd>>,
    done: Option<Done>,
}

impl Reader {
    /// Reads what was appended since the last read and queues its complete lines.
    fn read_new(&mut self) {
        if self.file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(_) => return,
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut buf = Vec::new();
        if file.read_to_end(&mut buf).is_err() {
            return;
        }
        if buf.is_empty() {
            // Truncated under us: start over from the beginning.
            if let (Ok(pos), Ok(meta)) = (file.stream_position(), file.metadata())
                && meta.len() < pos
            {
                let _ = file.seek(SeekFrom::Start(0));
                self.leftover.clear();
            }
            return;
        }
        self.leftover.extend_from_slice(&buf);
        let Some(end) = self.leftover.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let rest = self.leftover.split_off(end + 1);
        let complete = std::mem::replace(&mut self.leftover, rest);
        for raw in complete.split(|b| *b == b'\n') {
            if raw.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(raw);
            let Some(line) = parse_line(&text) else {
                continue;
            };
            self.take(line);
        }
    }

    fn take(&mut self, line: CriLine) {
        let slot = &mut self.partial[line.stream as usize];
        if line.partial {
            match slot {
                Some((_, text)) => text.extend_from_slice(line.text.as_bytes()),
                None => *slot = Some((line.timestamp, line.text.into_bytes())),
            }
            return;
        }
        let (timestamp, text) = match slot.take() {
            Some((ts, mut text)) => {
                text.extend_from_slice(line.text.as_bytes());
                (ts, text)
            }
            None => (line.timestamp, line.text.into_bytes()),
        };
        self.queue(LogLine {
            timestamp,
            stream: line.stream,
            line: Bytes::from(text),
            complete: true,
        });
    }

    fn queue(&mut self, line: LogLine) {
        if self.since.is_some_and(|s| line.timestamp < s) {
            return;
        }
        self.pending.push_back(line);
    }

    /// Queues the fragments left unjoined at the end of the output.
    fn flush(&mut self) {
        for stream in [LogStreamKind::Stdout, LogStreamKind::Stderr] {
            if let Some((timestamp, text)) = self.partial[stream as usize].take() {
                self.queue(LogLine {
                    timestamp,
                    stream,
                    line: Bytes::from(text),
                    complete: false,
                });
            }
        }
    }

    /// An inotify watch on the log file (or, before it exists, its directory).
    fn watch(&mut self) {
        use rustix::fs::inotify;
        let Ok(fd) = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        else {
            return;
        };
        let flags = inotify::WatchFlags::MODIFY
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MOVE_SELF
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::CREATE;
        let watched = inotify::add_watch(&fd, &self.path, flags).is_ok()
            || self
                .path
                .parent()
                .is_some_and(|d| inotify::add_watch(&fd, d, flags).is_ok());
        if watched {
            // `AsyncFd::register_with_interest` is `unsafe` (this crate forbids it); the safe
            // constructor is sound for an `OwnedFd`, which keeps its descriptor until dropped.
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE);
            self.inotify = fd.ok();
        }
    }

    /// Waits for the file to change or the run to end; `true` once it ended.
    async fn wait(&mut self) -> bool {
        let Some(done) = self.done.as_mut() else {
            return true;
        };
        let Some(inotify) = self.inotify.as_ref() else {
            done.await;
            self.done = None;
            return true;
        };
        tokio::select! {
            _ = done => {
                self.done = None;
                true
            }
            guard = inotify.readable() => {
                if let Ok(mut guard) = guard {
                    let mut buf = [0u8; 4096];
                    while rustix::io::read(inotify.get_ref(), &mut buf).is_ok_and(|n| n > 0) {}
                    guard.clear_ready();
                }
                false
            }
        }
    }

    async fn next(&mut self) -> Option<LogLine> {
        loop {
            if let Some(l) = self.pending.pop_front() {
                return Some(l);
            }
            if self.finished {
                return None;
            }
            if !self.started {
                self.started = true;
                if self.follow {
                    self.watch();
                }
                self.read_new();
                if !self.follow {
                    self.flush();
                    self.finished = true;
                }
                if let Some(n) = self.tail {
                    let skip = self.pending.len().saturating_sub(n);
                    self.pending.drain(..skip);
                }
                continue;
            }
            if self.wait().await {
                // The run ended: whatever it wrote is in the file now.
                self.read_new();
                self.flush();
                self.finished = true;
            } else {
                if self.file.is_none() && self.inotify.is_some() {
                    // The file may have appeared: watch it rather than its directory.
                    self.inotify = None;
                    self.watch();
                }
                self.read_new();
            }
        }
    }
}

/// The lines of the CRI log at `path` as [`LogOptions`] ask (tail, since; `previous` is the
/// caller's choice of file). With `follow`, lines are yielded as they are written until `done`
/// resolves (the container exited) and the file is drained. `P` fragments are joined.
pub fn stream(
    path: &Path,
    opts: LogOptions,
    done: impl Future<Output = ()> + Send + 'static,
) -> LogStream {
    let reader = Reader {
        path: path.to_path_buf(),
        file: None,
        leftover: Vec::new(),
        partial: [None, None],
        pending: VecDeque::new(),
        since: opts.since,
        tail: opts.tail,
        follow: opts.follow,
        started: false,
        finished: false,
        inotify: None,
        done: Some(done.boxed()),
    };
    Box::pin(futures::stream::unfold(reader, |mut r| async move {
        r.next().await.map(|l| (l, r))
    }))
}

#[cfg(test)]
mod tests;
