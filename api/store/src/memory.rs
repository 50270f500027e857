//! `MemoryStore`: an in-memory `Store` (a `BTreeMap`, an event list and a broadcast), for unit
//! tests elsewhere and as the reference model of the trait's behaviour.
//!
//! History is kept until `compact` is called; nothing is persisted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::broadcast;

use crate::history::{self, Overrides, Page};
use crate::watch::{self, Batch, Chunk, EventLog};
use crate::{
    Error, Event, EventType, KeyValue, ListOptions, ListResult, Progress, Result, Revision, Store,
    WatchStream,
};

/// How many published batches a watcher may fall behind before it re-reads the event list.
const WATCH_BUFFER: usize = 1024;

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, KeyValue>,
    /// Events with revisions `compacted + 1 ..= revision`, in order (one per revision).
    events: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl State {
    fn events_after(&self, after: Revision) -> impl Iterator<Item = &Event> {
        let skip = usize::try_from(after.saturating_sub(self.compacted)).unwrap_or(usize::MAX);
        self.events.iter().skip(skip)
    }

    fn check_history(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Backend("memory store lock poisoned".to_owned()))
    }
}

impl EventLog for Shared {
    fn read_after(
        &self,
        prefix: &str,
        after: Revision,
        max: usize,
    ) -> BoxFuture<'_, Result<Chunk>> {
        let chunk = self.lock().and_then(|state| {
            state.check_history(after)?;
            let mut chunk = Chunk {
                scanned_to: after,
                ..Chunk::default()
            };
            let mut scanned = 0;
            for event in state.events_after(after).take(max) {
                scanned += 1;
                chunk.scanned_to = event.revision();
                if event.kv.key.starts_with(prefix) {
                    chunk.events.push(event.clone());
                }
            }
            chunk.done = scanned < max;
            Ok(chunk)
        });
        Box::pin(std::future::ready(chunk))
    }
}

/// An in-memory `Store`. Dropping it ends every watch with `Error::Closed`.
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    events: broadcast::Sender<Batch>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            shared: Arc::default(),
            events: broadcast::channel(WATCH_BUFFER).0,
        }
    }

    /// Applies one change under the lock: records the event and publishes it.
    fn commit(
        &self,
        state: &mut State,
        event_type: EventType,
        kv: KeyValue,
        prev: Option<KeyValue>,
    ) {
        state.revision = kv.mod_revision;
        match event_type {
            EventType::Put => {
                state.objects.insert(kv.key.clone(), kv.clone());
            }
            EventType::Delete => {
                state.objects.remove(&kv.key);
            }
        }
        let event = Event {
            event_type,
            kv,
            prev,
        };
        state.events.push_back(event.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(Arc::from([event]));
    }

    fn existing(state: &State, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let current = state
            .objects
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        if let Some(expected) = expected
            && expected != current.mod_revision
        {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            });
        }
        Ok(current.clone())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.lock()?.objects.get(key).cloned())
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        let state = self.shared.lock()?;
        let at = opts.revision.unwrap_or(state.revision);
        if at > state.revision {
            return Err(Error::FutureRevision {
                requested: at,
                current: state.revision,
            });
        }
        state.check_history(at)?;
        let mut page = Page::new(&opts);
        let range = (history::lower_bound(&opts), Bound::Unbounded);
        let current = state
            .objects
            .range::<str, _>(range)
            .take_while(|(key, _)| key.starts_with(opts.prefix.as_str()))
            .map(|(_, kv)| Ok(kv.clone()));
        if at == state.revision {
            for kv in current {
                if !page.push(kv?) {
                    break;
                }
            }
        } else {
            let mut overrides = Overrides::default();
            for event in state.events_after(at) {
                overrides.note(&opts, event);
            }
            overrides.merge_into(current, &mut page)?;
        }
        Ok(ListResult {
            items: page.items,
            revision: at,
            more: page.more,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut state = self.shared.lock()?;
        if state.objects.contains_key(key) {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = state.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        self.commit(&mut state, EventType::Put, kv.clone(), None);
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let mut state = self.shared.lock()?;
        let prev = Self::existing(&state, key, expected)?;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.create_revision,
            mod_revision: state.revision + 1,
        };
        self.commit(&mut state, EventType::Put, kv.clone(), Some(prev));
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.shared.lock()?;
        let prev = Self::existing(&state, key, expected)?;
        let kv = KeyValue {
            mod_revision: state.revision + 1,
            ..prev.clone()
        };
        self.commit(&mut state, EventType::Delete, kv.clone(), Some(prev));
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        Ok(self.watch_with_progress(prefix, after).await?.0)
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<(WatchStream, Progress)> {
        let rx = self.events.subscribe();
        watch::start(self.shared.clone(), rx, prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.shared.lock()?;
        if revision > state.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        while state
            .events
            .front()
            .is_some_and(|event| event.revision() <= revision)
        {
            state.events.pop_front();
        }
        state.compacted = state.compacted.max(revision);
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.lock()?.revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.lock()?.compacted)
    }
}
