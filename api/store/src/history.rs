//! Helpers shared by the store implementations: list ranges, pagination, and the state of a
//! prefix as of an older revision rebuilt from the current state and the event log.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::{Event, KeyValue, ListOptions, Result};

/// The first key a list may return, as a range bound: the prefix itself, or strictly after
/// `start_after` when that lies at or past the prefix.
pub(crate) fn lower_bound(opts: &ListOptions) -> Bound<&str> {
    match opts.start_after.as_deref() {
        Some(after) if after >= opts.prefix.as_str() => Bound::Excluded(after),
        _ => Bound::Included(opts.prefix.as_str()),
    }
}

/// Whether `key` belongs in the list described by `opts` (ignoring the limit).
pub(crate) fn in_range(opts: &ListOptions, key: &str) -> bool {
    key.starts_with(opts.prefix.as_str())
        && opts.start_after.as_deref().is_none_or(|after| key > after)
}

/// One page of a list being filled: stops at the limit and notes whether more items follow.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) items: Vec<KeyValue>,
    limit: Option<usize>,
    pub(crate) more: bool,
}

impl Page {
    pub(crate) fn new(opts: &ListOptions) -> Self {
        Self {
            items: Vec::new(),
            limit: opts.limit.filter(|limit| *limit > 0),
            more: false,
        }
    }

    /// Adds `kv`; returns `false` once the page is full (and marks that more items follow).
    pub(crate) fn push(&mut self, kv: KeyValue) -> bool {
        if self.limit.is_some_and(|limit| self.items.len() >= limit) {
            self.more = true;
            return false;
        }
        self.items.push(kv);
        true
    }
}

/// Keys whose state at an old revision differs from now, with that state (`None`: absent then).
///
/// Built from the events after the old revision in increasing order: the first event of a key
/// after that revision carries, as `prev`, the key's state at it.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    map: BTreeMap<String, Option<KeyValue>>,
}

impl Overrides {
    /// Records the state of `key` before `event`, unless an earlier event already did.
    pub(crate) fn note(&mut self, opts: &ListOptions, event: &Event) {
        if in_range(opts, &event.kv.key) && !self.map.contains_key(&event.kv.key) {
            self.map.insert(event.kv.key.clone(), event.prev.clone());
        }
    }

    /// Whether an earlier event already recorded `key` (so later events of it can be skipped).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn insert(&mut self, key: String, state: Option<KeyValue>) {
        self.map.entry(key).or_insert(state);
    }

    /// Fills `page` with the merge of the current items (in key order, already limited to the
    /// list's range) and these overrides: the state as of the old revision.
    pub(crate) fn merge_into(
        self,
        current: impl Iterator<Item = Result<KeyValue>>,
        page: &mut Page,
    ) -> Result<()> {
        let mut overrides = self.map.into_iter().peekable();
        for kv in current {
            let kv = kv?;
            // Keys that existed at the old revision but are gone (or moved) now, before this one.
            while let Some((key, _)) = overrides.peek() {
                if key.as_str() >= kv.key.as_str() {
                    break;
                }
                if let Some((_, Some(old))) = overrides.next()
                    && !page.push(old)
                {
                    return Ok(());
                }
            }
            let replaced = overrides.peek().is_some_and(|(key, _)| *key == kv.key);
            let item = if replaced {
                overrides.next().and_then(|(_, old)| old)
            } else {
                Some(kv)
            };
            if let Some(item) = item
                && !page.push(item)
            {
                return Ok(());
            }
        }
        for (_, old) in overrides {
            if let Some(old) = old
                && !page.push(old)
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventType;

    fn kv(key: &str, value: &str, rev: u64) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    fn opts(prefix: &str, start_after: Option<&str>, limit: Option<usize>) -> ListOptions {
        ListOptions {
            prefix: prefix.to_owned(),
            start_after: start_after.map(str::to_owned),
            limit,
            revision: None,
        }
    }

    #[test]
    fn lower_bound_uses_start_after_only_past_the_prefix() {
        assert_eq!(
            lower_bound(&opts("/b/", Some("/a/z"), None)),
            Bound::Included("/b/")
        );
        assert_eq!(
            lower_bound(&opts("/b/", Some("/b/x"), None)),
            Bound::Excluded("/b/x")
        );
        assert_eq!(
            lower_bound(&opts("/b/", None, None)),
            Bound::Included("/b/")
        );
    }

    #[test]
    fn page_stops_at_limit_and_sets_more() {
        let mut page = Page::new(&opts("", None, Some(2)));
        assert!(page.push(kv("a", "1", 1)));
        assert!(page.push(kv("b", "1", 2)));
        assert!(!page.more);
        assert!(!page.push(kv("c", "1", 3)));
        assert!(page.more);
        assert_eq!(page.items.len(), 2);
    }

    #[test]
    fn merge_restores_old_state() {
        // Now: a (updated at 5), c (created at 4). At revision 3: a (v1), b (deleted at 6).
        let list = opts("", None, None);
        let mut overrides = Overrides::default();
        let events = [
            Event {
                event_type: EventType::Put,
                kv: kv("c", "new", 4),
                prev: None,
            },
            Event {
                event_type: EventType::Put,
                kv: kv("a", "v2", 5),
                prev: Some(kv("a", "v1", 1)),
            },
            Event {
                event_type: EventType::Delete,
                kv: kv("b", "x", 6),
                prev: Some(kv("b", "x", 2)),
            },
            Event {
                event_type: EventType::Put,
                kv: kv("a", "v3", 7),
                prev: Some(kv("a", "v2", 5)),
            },
        ];
        for event in &events {
            overrides.note(&list, event);
        }
        let current = vec![Ok(kv("a", "v3", 7)), Ok(kv("c", "new", 4))];
        let mut page = Page::new(&list);
        overrides
            .merge_into(current.into_iter(), &mut page)
            .unwrap();
        assert_eq!(page.items, vec![kv("a", "v1", 1), kv("b", "x", 2)]);
        assert!(!page.more);
    }
}
