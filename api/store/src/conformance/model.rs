//! The model-based conformance case: random operations applied to the store and to a `BTreeMap`
//! model, comparing every answer, the final state, old-revision lists and the event sequence.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{expect_err, next_events, same_error};
use crate::{Error, Event, EventType, KeyValue, ListOptions, Result, Revision, Store};

/// A small seeded generator (SplitMix64): reproducible runs without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const PREFIXES: &[&str] = &["/m/a/", "/m/ab/", "/m/b/"];
const LIST_PREFIXES: &[&str] = &["/m/", "/m/a", "/m/a/", "/m/ab/", "/m/b/", "/m/c/"];

#[derive(Debug, Default)]
struct Model {
    objects: BTreeMap<String, KeyValue>,
    events: Vec<Event>,
    revision: Revision,
    /// The state after each revision (and at the start).
    snapshots: BTreeMap<Revision, BTreeMap<String, KeyValue>>,
}

impl Model {
    fn new(revision: Revision) -> Self {
        let mut snapshots = BTreeMap::new();
        snapshots.insert(revision, BTreeMap::new());
        Self {
            revision,
            snapshots,
            ..Self::default()
        }
    }

    fn commit(&mut self, event: Event) -> KeyValue {
        self.revision = event.kv.mod_revision;
        match event.event_type {
            EventType::Put => {
                self.objects.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventType::Delete => {
                self.objects.remove(&event.kv.key);
            }
        }
        let kv = event.kv.clone();
        self.events.push(event);
        self.snapshots.insert(self.revision, self.objects.clone());
        kv
    }

    fn existing(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let current = self
            .objects
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        match expected {
            Some(expected) if expected != current.mod_revision => Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            }),
            _ => Ok(current.clone()),
        }
    }

    fn create(&mut self, key: &str, value: &[u8]) -> Result<KeyValue> {
        if self.objects.contains_key(key) {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = self.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: revision,
            mod_revision: revision,
        };
        Ok(self.commit(Event {
            event_type: EventType::Put,
            kv,
            prev: None,
        }))
    }

    fn update(&mut self, key: &str, value: &[u8], expected: Option<Revision>) -> Result<KeyValue> {
        let prev = self.existing(key, expected)?;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: prev.create_revision,
            mod_revision: self.revision + 1,
        };
        Ok(self.commit(Event {
            event_type: EventType::Put,
            kv,
            prev: Some(prev),
        }))
    }

    fn delete(&mut self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let prev = self.existing(key, expected)?;
        let kv = KeyValue {
            mod_revision: self.revision + 1,
            ..prev.clone()
        };
        Ok(self.commit(Event {
            event_type: EventType::Delete,
            kv,
            prev: Some(prev),
        }))
    }

    fn list(&self, prefix: &str, revision: Revision) -> Vec<KeyValue> {
        let (_, state) = self
            .snapshots
            .range(..=revision)
            .next_back()
            .expect("a snapshot");
        state
            .values()
            .filter(|kv| kv.key.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[track_caller]
fn same(store: Result<KeyValue>, model: Result<KeyValue>, what: &str) {
    match (&store, &model) {
        (Ok(a), Ok(b)) if a == b => {}
        (Err(a), Err(b)) if same_error(a, b) => {}
        _ => panic!("{what}: store answered {store:?}, model {model:?}"),
    }
}

/// The model-based case with a fixed seed and length.
pub async fn model_based(store: Arc<dyn Store>) {
    model_based_seeded(store, 0x5eed_1234, 400).await;
}

/// Runs `ops` random operations from `seed` against the store and the model.
pub async fn model_based_seeded(store: Arc<dyn Store>, seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let base = store.current_revision().await.unwrap();
    let mut model = Model::new(base);
    let mut live = store.watch("/m/", base).await.unwrap();

    for step in 0..ops {
        let key = format!("{}{}", rng.pick(PREFIXES), rng.below(6));
        let value = format!("value {step} {}", "x".repeat(rng.below(64) as usize)).into_bytes();
        let current_mod = model.objects.get(&key).map(|kv| kv.mod_revision);
        let expected = match rng.below(10) {
            0..=2 => None,
            3..=7 => Some(current_mod.unwrap_or(base + 1)),
            _ => Some(rng.below(model.revision + 2)),
        };
        match rng.below(100) {
            0..=29 => {
                let what = format!("step {step}: create {key}");
                same(
                    store.create(&key, value.clone()).await,
                    model.create(&key, &value),
                    &what,
                );
            }
            30..=54 => {
                let what = format!("step {step}: update {key} expecting {expected:?}");
                same(
                    store.update(&key, value.clone(), expected).await,
                    model.update(&key, &value, expected),
                    &what,
                );
            }
            55..=69 => {
                let what = format!("step {step}: delete {key} expecting {expected:?}");
                same(
                    store.delete(&key, expected).await,
                    model.delete(&key, expected),
                    &what,
                );
            }
            70..=79 => {
                let got = store.get(&key).await.unwrap();
                assert_eq!(
                    got.as_ref(),
                    model.objects.get(&key),
                    "step {step}: get {key}"
                );
            }
            _ => {
                let prefix = *rng.pick(LIST_PREFIXES);
                let limit = rng.below(5) as usize;
                let revision = match rng.below(3) {
                    0 => None,
                    _ => Some(base + rng.below(model.revision - base + 1)),
                };
                check_list(&*store, &model, prefix, limit, revision, step).await;
            }
        }
        assert_eq!(
            store.current_revision().await.unwrap(),
            model.revision,
            "step {step}: revision"
        );
    }

    assert_eq!(
        super::list_all(&*store, "/m/", None).await,
        model.list("/m/", model.revision)
    );
    let future = model.revision + 1;
    expect_err(
        store
            .list(ListOptions {
                revision: Some(future),
                ..ListOptions::default()
            })
            .await,
        &Error::FutureRevision {
            requested: future,
            current: model.revision,
        },
    );

    let n = model.events.len();
    assert_eq!(
        next_events(&mut live, n).await,
        model.events,
        "live watch from the start"
    );
    let mut replay = store.watch("/m/", base).await.unwrap();
    assert_eq!(
        next_events(&mut replay, n).await,
        model.events,
        "watch replayed from the start"
    );
    for prefix in PREFIXES {
        let expected: Vec<_> = model
            .events
            .iter()
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let mut watch = store.watch(prefix, base).await.unwrap();
        let got = next_events(&mut watch, expected.len()).await;
        assert_eq!(got, expected, "watch of {prefix}");
    }
}

async fn check_list(
    store: &dyn Store,
    model: &Model,
    prefix: &str,
    limit: usize,
    revision: Option<Revision>,
    step: usize,
) {
    let expected = model.list(prefix, revision.unwrap_or(model.revision));
    let mut got = Vec::new();
    let mut start_after = None;
    let mut at = revision;
    loop {
        let opts = ListOptions {
            prefix: prefix.to_owned(),
            start_after: start_after.clone(),
            limit: Some(limit),
            revision: at,
        };
        let page = store.list(opts).await.unwrap();
        assert_eq!(
            page.revision,
            at.unwrap_or(model.revision),
            "step {step}: list revision"
        );
        if limit > 0 {
            assert!(
                page.items.len() <= limit,
                "step {step}: page over the limit"
            );
        }
        at = Some(page.revision);
        got.extend(page.items);
        start_after = got.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
        assert!(
            start_after.is_some(),
            "step {step}: an empty page with more"
        );
    }
    assert_eq!(
        got, expected,
        "step {step}: list {prefix} limit {limit} at {revision:?}"
    );
}
