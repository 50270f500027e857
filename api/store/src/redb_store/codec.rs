//! Byte layouts of the redb store's records: a key's state and an event-log entry.
//!
//! State (table `kv`, keyed by the key): `create_revision u64 LE | mod_revision u64 LE | value`.
//! Event (table `log`, keyed by its revision): `type u8 | key_len u32 LE | key | has_prev u8`,
//! then for a put `create_revision u64 | value_len u32 | value`, then if `has_prev`
//! `prev_create u64 | prev_mod u64 | prev_len u32 | prev_value`. A delete stores no value of its
//! own: its `kv` is the previous state with the delete's revision.

use crate::{Error, Event, EventType, KeyValue, Result, Revision};

const PUT: u8 = 0;
const DELETE: u8 = 1;

fn corrupt(what: &str) -> Error {
    Error::Backend(format!("corrupt {what} record in the database"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt(self.what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize> {
        let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt(self.what))?;
        usize::try_from(u32::from_le_bytes(bytes)).map_err(|_| corrupt(self.what))
    }

    fn u64(&mut self) -> Result<u64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| corrupt(self.what))?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| corrupt(self.what))
    }
}

fn len32(len: usize) -> Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| Error::Backend(format!("record of {len} bytes is too large")))
}

pub(super) fn encode_state(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(super) fn decode_state(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut reader = Reader {
        bytes,
        what: "state",
    };
    let create_revision = reader.u64()?;
    let mod_revision = reader.u64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: reader.bytes.to_vec(),
        create_revision,
        mod_revision,
    })
}

pub(super) fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let prev_len = event.prev.as_ref().map_or(0, |prev| prev.value.len() + 20);
    let mut out = Vec::with_capacity(32 + event.kv.key.len() + event.kv.value.len() + prev_len);
    out.push(match event.event_type {
        EventType::Put => PUT,
        EventType::Delete => DELETE,
    });
    out.extend_from_slice(&len32(event.kv.key.len())?);
    out.extend_from_slice(event.kv.key.as_bytes());
    out.push(u8::from(event.prev.is_some()));
    if event.event_type == EventType::Put {
        out.extend_from_slice(&event.kv.create_revision.to_le_bytes());
        out.extend_from_slice(&len32(event.kv.value.len())?);
        out.extend_from_slice(&event.kv.value);
    }
    if let Some(prev) = &event.prev {
        out.extend_from_slice(&prev.create_revision.to_le_bytes());
        out.extend_from_slice(&prev.mod_revision.to_le_bytes());
        out.extend_from_slice(&len32(prev.value.len())?);
        out.extend_from_slice(&prev.value);
    }
    Ok(out)
}

/// The key of an encoded event, without decoding the rest.
pub(super) fn event_key(bytes: &[u8]) -> Result<&str> {
    let mut reader = Reader {
        bytes,
        what: "event",
    };
    reader.u8()?;
    reader.str()
}

pub(super) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<Event> {
    let mut reader = Reader {
        bytes,
        what: "event",
    };
    let kind = reader.u8()?;
    let key = reader.str()?;
    let has_prev = reader.u8()? != 0;
    let put = match kind {
        PUT => {
            let create_revision = reader.u64()?;
            let value = reader.bytes()?.to_vec();
            Some((create_revision, value))
        }
        DELETE => None,
        _ => return Err(corrupt("event")),
    };
    let prev = if has_prev {
        let create_revision = reader.u64()?;
        let mod_revision = reader.u64()?;
        let value = reader.bytes()?.to_vec();
        Some(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision,
        })
    } else {
        None
    };
    let (event_type, kv) = match (put, &prev) {
        (Some((create_revision, value)), _) => (
            EventType::Put,
            KeyValue {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision: revision,
            },
        ),
        (None, Some(prev)) => (
            EventType::Delete,
            KeyValue {
                mod_revision: revision,
                ..prev.clone()
            },
        ),
        (None, None) => return Err(corrupt("event")),
    };
    Ok(Event {
        event_type,
        kv,
        prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, create_revision: u64, mod_revision: u64) -> KeyValue {
        KeyValue {
            key: "/v1/pods/ns/a".to_owned(),
            value: value.as_bytes().to_vec(),
            create_revision,
            mod_revision,
        }
    }

    #[test]
    fn state_round_trips() {
        let state = kv("{\"a\":1}", 3, 9);
        assert_eq!(
            decode_state(&state.key, &encode_state(&state)).unwrap(),
            state
        );
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event {
                event_type: EventType::Put,
                kv: kv("one", 4, 4),
                prev: None,
            },
            Event {
                event_type: EventType::Put,
                kv: kv("two", 4, 7),
                prev: Some(kv("one", 4, 4)),
            },
            Event {
                event_type: EventType::Delete,
                kv: kv("two", 4, 8),
                prev: Some(kv("two", 4, 7)),
            },
        ];
        for event in events {
            let bytes = encode_event(&event).unwrap();
            assert_eq!(event_key(&bytes).unwrap(), event.kv.key);
            assert_eq!(decode_event(event.revision(), &bytes).unwrap(), event);
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        let event = Event {
            event_type: EventType::Put,
            kv: kv("one", 4, 4),
            prev: None,
        };
        let bytes = encode_event(&event).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode_event(4, &bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        assert!(decode_state("k", &[1, 2, 3]).is_err());
    }
}
