//! Per-container log capture: timestamped lines in a bounded buffer, an optional CRI-format file,
//! and readers with follow, tail, since and previous.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use jiff::Timestamp;
use tokio::sync::watch;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStreamKind {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStreamKind::Stdout => "stdout",
            LogStreamKind::Stderr => "stderr",
        }
    }
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was written.
    pub timestamp: Timestamp,
    /// Which stream.
    pub stream: LogStreamKind,
    /// The line without its trailing newline.
    pub line: Bytes,
    /// False for a fragment: a line longer than the fragment limit, or the unterminated end
    /// of the output.
    pub complete: bool,
}

/// What to read from a container's log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep the stream open and yield new lines until the run ends.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines written at or after this instant.
    pub since: Option<Timestamp>,
    /// Read the previous (terminated) run instead of the current one.
    pub previous: bool,
}

/// A stream of log lines.
pub type LogStream = BoxStream<'static, LogLine>;

/// Longest line kept in one piece; longer lines are split into fragments.
const MAX_LINE: usize = 16 * 1024;

/// The log of one run of a container.
pub(crate) struct RunLog {
    inner: Mutex<Inner>,
    /// Publishes the next sequence number and whether the run ended.
    notify: watch::Sender<(u64, bool)>,
    file: Option<(PathBuf, LogFiles)>,
}

struct Inner {
    lines: VecDeque<LogLine>,
    /// Sequence number of `lines[0]`.
    first_seq: u64,
    bytes: usize,
    max_bytes: usize,
    partial: [Vec<u8>; 2],
    closed: bool,
}

impl Inner {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.lines.len() as u64
    }
}

impl RunLog {
    pub(crate) fn new(max_bytes: usize, file: Option<(PathBuf, LogFiles)>) -> Arc<Self> {
        Arc::new(RunLog {
            inner: Mutex::new(Inner {
                lines: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                max_bytes: max_bytes.max(MAX_LINE),
                partial: [Vec::new(), Vec::new()],
                closed: false,
            }),
            notify: watch::channel((0, false)).0,
            file,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned log is still a valid log: every mutation leaves it consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends raw output bytes of one stream, splitting them into lines.
    pub(crate) fn write(&self, stream: LogStreamKind, mut bytes: &[u8]) {
        let idx = stream as usize;
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            while !bytes.is_empty() {
                let partial = &mut inner.partial[idx];
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(pos) => {
                        partial.extend_from_slice(&bytes[..pos]);
                        bytes = &bytes[pos + 1..];
                        let line = std::mem::take(partial);
                        out.push((line, true));
                    }
                    None => {
                        partial.extend_from_slice(bytes);
                        bytes = &[];
                    }
                }
                let partial = &mut inner.partial[idx];
                while partial.len() >= MAX_LINE {
                    let rest = partial.split_off(MAX_LINE);
                    let line = std::mem::replace(partial, rest);
                    out.push((line, false));
                }
            }
            let now = Timestamp::now();
            for (line, complete) in out.iter_mut() {
                let line = LogLine {
                    timestamp: now,
                    stream,
                    line: Bytes::from(std::mem::take(line)),
                    complete: *complete,
                };
                self.push(&mut inner, line);
            }
            let next = inner.next_seq();
            self.notify.send_replace((next, false));
        }
    }

    fn push(&self, inner: &mut Inner, line: LogLine) {
        if let Some((path, files)) = &self.file {
            files.append(path, &line);
        }
        inner.bytes += line.line.len() + 32;
        inner.lines.push_back(line);
        while inner.bytes > inner.max_bytes {
            match inner.lines.pop_front() {
                Some(old) => {
                    inner.bytes -= old.line.len() + 32;
                    inner.first_seq += 1;
                }
                None => break,
            }
        }
    }

    /// Flushes unterminated output and marks the run as ended (followers finish).
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let now = Timestamp::now();
        for stream in [LogStreamKind::Stdout, LogStreamKind::Stderr] {
            let partial = std::mem::take(&mut inner.partial[stream as usize]);
            if !partial.is_empty() {
                let line = LogLine {
                    timestamp: now,
                    stream,
                    line: Bytes::from(partial),
                    complete: false,
                };
                self.push(&mut inner, line);
            }
        }
        inner.closed = true;
        let next = inner.next_seq();
        self.notify.send_replace((next, true));
        if let Some((path, files)) = &self.file {
            files.close(path);
        }
    }

    /// All lines currently buffered.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<LogLine> {
        self.lock().lines.iter().cloned().collect()
    }

    /// A reader according to `opts` (`previous` is resolved by the caller).
    pub(crate) fn reader(self: &Arc<Self>, opts: &LogOptions) -> LogStream {
        let (start, closed) = {
            let inner = self.lock();
            let next = inner.next_seq();
            let start = match opts.tail {
                Some(n) => next.saturating_sub(n as u64).max(inner.first_seq),
                None => inner.first_seq,
            };
            (start, inner.closed)
        };
        Box::pin(LogReader {
            log: self.clone(),
            cursor: start,
            follow: opts.follow && !closed,
            since: opts.since,
            rx: self.notify.subscribe(),
            changed: None,
        })
    }
}

type ChangedFuture =
    Pin<Box<dyn std::future::Future<Output = Option<watch::Receiver<(u64, bool)>>> + Send>>;

struct LogReader {
    log: Arc<RunLog>,
    cursor: u64,
    follow: bool,
    since: Option<Timestamp>,
    rx: watch::Receiver<(u64, bool)>,
    changed: Option<ChangedFuture>,
}

impl Stream for LogReader {
    type Item = LogLine;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LogLine>> {
        loop {
            if let Some(fut) = self.changed.as_mut() {
                match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(rx)) => {
                        self.rx = rx;
                        self.changed = None;
                    }
                    Poll::Ready(None) => {
                        self.changed = None;
                        self.follow = false;
                    }
                }
            }
            let (line, closed, cursor) = {
                let inner = self.log.lock();
                // Lines evicted while we were behind: continue from the oldest kept.
                let cursor = self.cursor.max(inner.first_seq);
                let idx = (cursor - inner.first_seq) as usize;
                (inner.lines.get(idx).cloned(), inner.closed, cursor)
            };
            self.cursor = cursor;
            if let Some(line) = line {
                self.cursor += 1;
                if self.since.is_some_and(|since| line.timestamp < since) {
                    continue;
                }
                return Poll::Ready(Some(line));
            }
            if !self.follow || closed {
                return Poll::Ready(None);
            }
            // Wait for more lines (or the end of the run).
            let mut rx = self.rx.clone();
            rx.mark_unchanged();
            let cursor = self.cursor;
            let wait: ChangedFuture = Box::pin(async move {
                loop {
                    let (next, closed) = *rx.borrow_and_update();
                    if next > cursor || closed {
                        return Some(rx);
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            });
            self.changed = Some(wait);
        }
    }
}

/// Appends log lines to files in the CRI log format (`<time> <stream> <F|P> <line>`) on one
/// dedicated thread, so that guests never block a tokio worker on disk I/O.
#[derive(Clone)]
pub(crate) struct LogFiles {
    tx: std::sync::mpsc::Sender<FileMsg>,
}

enum FileMsg {
    Append(PathBuf, Vec<u8>),
    Close(PathBuf),
}

impl LogFiles {
    /// Starts the writer thread; it ends when every handle is dropped.
    pub(crate) fn start() -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel::<FileMsg>();
        let handle = std::thread::Builder::new()
            .name("skiff-log-files".into())
            .spawn(move || {
                let mut open: HashMap<PathBuf, File> = HashMap::new();
                while let Ok(msg) = rx.recv() {
                    match msg {
                        FileMsg::Append(path, bytes) => {
                            if !open.contains_key(&path) {
                                if let Some(dir) = path.parent() {
                                    let _ = std::fs::create_dir_all(dir);
                                }
                                match File::options().create(true).append(true).open(&path) {
                                    Ok(f) => {
                                        open.insert(path.clone(), f);
                                    }
                                    Err(e) => {
                                        tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
                                        continue;
                                    }
                                }
                            }
                            if let Some(f) = open.get_mut(&path)
                                && let Err(e) = f.write_all(&bytes)
                            {
                                tracing::warn!(path = %path.display(), error = %e, "cannot write log file");
                            }
                        }
                        FileMsg::Close(path) => {
                            open.remove(&path);
                        }
                    }
                }
            })?;
        Ok((LogFiles { tx }, handle))
    }

    fn append(&self, path: &Path, line: &LogLine) {
        let mut buf = Vec::with_capacity(line.line.len() + 48);
        let _ = write!(
            buf,
            "{} {} {} ",
            line.timestamp,
            line.stream.as_str(),
            if line.complete { "F" } else { "P" }
        );
        buf.extend_from_slice(&line.line);
        buf.push(b'\n');
        let _ = self.tx.send(FileMsg::Append(path.to_path_buf(), buf));
    }

    fn close(&self, path: &Path) {
        let _ = self.tx.send(FileMsg::Close(path.to_path_buf()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn text(lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.line).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn splits_lines_tails_and_follows() {
        let log = RunLog::new(1 << 20, None);
        log.write(LogStreamKind::Stdout, b"one\ntw");
        log.write(LogStreamKind::Stdout, b"o\nthree\n");
        assert_eq!(text(&log.snapshot()), ["one", "two", "three"]);

        let tail: Vec<_> = log
            .reader(&LogOptions {
                tail: Some(2),
                ..Default::default()
            })
            .collect()
            .await;
        assert_eq!(text(&tail), ["two", "three"]);

        let mut follow = log.reader(&LogOptions {
            follow: true,
            tail: Some(0),
            ..Default::default()
        });
        let writer = log.clone();
        let h = tokio::spawn(async move {
            writer.write(LogStreamKind::Stderr, b"four\nfive");
            writer.close();
        });
        let got: Vec<_> = (&mut follow).collect().await;
        h.await.unwrap();
        assert_eq!(text(&got), ["four", "five"]);
        assert!(got[0].complete && !got[1].complete);
        assert_eq!(got[0].stream, LogStreamKind::Stderr);
    }

    #[test]
    fn bounded_buffer_drops_oldest() {
        let log = RunLog::new(MAX_LINE, None);
        for i in 0..10_000 {
            log.write(LogStreamKind::Stdout, format!("line {i}\n").as_bytes());
        }
        let lines = log.snapshot();
        assert!(lines.len() < 10_000);
        assert_eq!(text(&lines).last().unwrap(), "line 9999");
    }
}
