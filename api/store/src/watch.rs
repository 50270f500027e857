//! The watch stream shared by the store implementations: replay from the event log, then follow
//! the live broadcast with no gap and no duplicate, falling back to the log when it lags.
//!
//! The handoff works because the receiver subscribes before the first log read: every batch
//! published after the subscription arrives on the receiver, and every batch published before it
//! was committed before the log read, so the read sees it. Live events at or below the last
//! revision already delivered are skipped. A watcher that falls behind the bounded broadcast
//! buffer (`Lagged`) never blocks the writer: it goes back to reading the log from the last
//! revision it delivered, and only if that revision has been compacted meanwhile does its stream
//! end with `Error::Compacted`.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::{Error, Event, Progress, Result, Revision, WatchStream};

/// How many log entries one replay read scans at most.
pub(crate) const REPLAY_CHUNK: usize = 512;

/// The events of one commit, in revision order, as published to watchers.
pub(crate) type Batch = Arc<[Event]>;

/// Part of the event log read for a watch.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Events under the prefix, in revision order.
    pub(crate) events: Vec<Event>,
    /// The highest revision scanned (whatever its key), or the `after` asked for if none.
    pub(crate) scanned_to: Revision,
    /// Whether the scan reached the end of the committed log.
    pub(crate) done: bool,
}

/// A store's event log as the watch stream reads it.
pub(crate) trait EventLog: Send + Sync + 'static {
    /// Events under `prefix` with revision greater than `after`, scanning at most `max` log
    /// entries. Fails with `Compacted` if `after` is older than the oldest retained revision.
    fn read_after(&self, prefix: &str, after: Revision, max: usize)
    -> BoxFuture<'_, Result<Chunk>>;
}

struct State<L> {
    log: Arc<L>,
    rx: broadcast::Receiver<Batch>,
    prefix: String,
    last: Revision,
    buffer: VecDeque<Event>,
    replaying: bool,
    finished: bool,
    progress: Progress,
}

impl<L> State<L> {
    /// Every event under the prefix before the first buffered one has been yielded; with none
    /// buffered, every one up to the last revision read.
    fn note_progress(&self) {
        match self.buffer.front() {
            Some(first) => self.progress.advance(first.revision().saturating_sub(1)),
            None => self.progress.advance(self.last),
        }
    }
}

/// Starts a watch: `rx` must have been subscribed before this call. Reads the first log chunk
/// right away so that a compacted `after` fails the call rather than the stream.
/// The stream comes with its progress, which follows the log and the broadcast past events
/// under other prefixes too.
pub(crate) async fn start<L: EventLog>(
    log: Arc<L>,
    rx: broadcast::Receiver<Batch>,
    prefix: &str,
    after: Revision,
) -> Result<(WatchStream, Progress)> {
    let first = log.read_after(prefix, after, REPLAY_CHUNK).await?;
    let progress = Progress::new(after);
    let state = State {
        log,
        rx,
        prefix: prefix.to_owned(),
        last: first.scanned_to.max(after),
        buffer: first.events.into(),
        replaying: !first.done,
        finished: false,
        progress: progress.clone(),
    };
    state.note_progress();
    Ok((Box::pin(futures::stream::unfold(state, next)), progress))
}

async fn next<L: EventLog>(mut st: State<L>) -> Option<(Result<Event>, State<L>)> {
    loop {
        if let Some(event) = st.buffer.pop_front() {
            st.note_progress();
            return Some((Ok(event), st));
        }
        st.note_progress();
        if st.finished {
            return None;
        }
        if st.replaying {
            match st.log.read_after(&st.prefix, st.last, REPLAY_CHUNK).await {
                Ok(chunk) => {
                    st.last = st.last.max(chunk.scanned_to);
                    st.buffer.extend(chunk.events);
                    st.replaying = !chunk.done;
                }
                Err(err) => {
                    st.finished = true;
                    return Some((Err(err), st));
                }
            }
            continue;
        }
        match st.rx.recv().await {
            Ok(batch) => {
                for event in batch.iter() {
                    let revision = event.revision();
                    if revision <= st.last {
                        continue;
                    }
                    if revision != st.last + 1 {
                        // Revisions are dense (one event each), so a hole means something was
                        // missed: deliver what is contiguous, then re-read the rest from the log.
                        st.replaying = true;
                        break;
                    }
                    st.last = revision;
                    if event.kv.key.starts_with(st.prefix.as_str()) {
                        st.buffer.push_back(event.clone());
                    }
                }
            }
            Err(RecvError::Lagged(skipped)) => {
                tracing::debug!(
                    skipped,
                    last = st.last,
                    "watcher lagged; re-reading the event log"
                );
                st.replaying = true;
            }
            Err(RecvError::Closed) => {
                st.finished = true;
                return Some((Err(Error::Closed), st));
            }
        }
    }
}
