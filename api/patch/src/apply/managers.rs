//! Reading and writing `metadata.managedFields` entries.

use serde_json::{Map, Value};

use crate::fieldpath::{self, Set};

/// One manager's entry with its parsed field set.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) operation: String,
    pub(super) api_version: String,
    pub(super) time: Option<Value>,
    pub(super) subresource: Option<String>,
    pub(super) set: Set,
}

/// The managed fields of an object. Entries that cannot be parsed (another fieldsType, malformed
/// FieldsV1) are carried over untouched.
#[derive(Debug, Default)]
pub(super) struct Managers {
    entries: Vec<Entry>,
    opaque: Vec<Value>,
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

impl Managers {
    fn from_list(list: &[Value]) -> Managers {
        let mut out = Managers::default();
        for raw in list {
            match Self::parse_entry(raw) {
                Some(entry) => match out.position(
                    &entry.manager,
                    &entry.operation,
                    entry.subresource.as_deref(),
                ) {
                    // Duplicates of one manager are folded together.
                    Some(i) => out.entries[i].set.extend(entry.set),
                    None => out.entries.push(entry),
                },
                None => out.opaque.push(raw.clone()),
            }
        }
        out
    }

    fn parse_entry(raw: &Value) -> Option<Entry> {
        let m = raw.as_object()?;
        if m.get("fieldsType")
            .and_then(Value::as_str)
            .unwrap_or("FieldsV1")
            != "FieldsV1"
        {
            return None;
        }
        let set = match m.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(v) => fieldpath::from_fields_v1(v).ok()?,
        };
        Some(Entry {
            manager: str_field(m, "manager").unwrap_or_default(),
            operation: str_field(m, "operation").unwrap_or_default(),
            api_version: str_field(m, "apiVersion").unwrap_or_default(),
            time: m.get("time").filter(|t| !t.is_null()).cloned(),
            subresource: str_field(m, "subresource").filter(|s| !s.is_empty()),
            set,
        })
    }

    fn list_of(obj: &Value) -> Option<&Vec<Value>> {
        obj.get("metadata")?.get("managedFields")?.as_array()
    }

    /// The managed fields stored in an object.
    pub(super) fn from_object(obj: &Value) -> Managers {
        Self::list_of(obj)
            .map(|l| Self::from_list(l))
            .unwrap_or_default()
    }

    /// The base for an update: managed fields sent in `new` win when they differ from the live
    /// ones (a list of only empty entries clears them), otherwise the live ones are kept.
    pub(super) fn for_update(old: Option<&Value>, new: &Value) -> Managers {
        let old_list = old.and_then(Self::list_of);
        match Self::list_of(new) {
            Some(list) if !list.is_empty() && Some(list) != old_list => {
                if list
                    .iter()
                    .all(|e| e.as_object().is_some_and(Map::is_empty))
                {
                    Managers::default()
                } else {
                    Self::from_list(list)
                }
            }
            _ => old_list.map(|l| Self::from_list(l)).unwrap_or_default(),
        }
    }

    fn position(&self, manager: &str, operation: &str, subresource: Option<&str>) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.manager == manager
                && e.operation == operation
                && e.subresource.as_deref() == subresource
        })
    }

    /// Removes and returns the entry of one manager and operation.
    pub(super) fn take(
        &mut self,
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
    ) -> Option<Entry> {
        self.position(manager, operation, subresource)
            .map(|i| self.entries.remove(i))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.opaque.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.entries.iter_mut()
    }

    pub(super) fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Keeps at most `max` Update entries, as the API server does: the oldest are merged, per API
    /// version, into an "ancient-changes" entry.
    pub(super) fn cap_updates(&mut self, max: usize) {
        let time = |e: &Entry| {
            e.time
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut updaters: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].operation == "Update")
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|&a, &b| {
            let (ea, eb) = (&self.entries[a], &self.entries[b]);
            (time(ea), &ea.manager).cmp(&(time(eb), &eb.manager))
        });
        let mut remaining = updaters.len();
        let mut first_of_version: Vec<(String, usize)> = Vec::new();
        let mut removed: Vec<usize> = Vec::new();
        for &i in &updaters {
            if remaining <= max {
                break;
            }
            let version = self.entries[i].api_version.clone();
            match first_of_version.iter().find(|(v, _)| *v == version) {
                Some(&(_, bucket)) => {
                    let merged = std::mem::take(&mut self.entries[i].set);
                    let merged_time = self.entries[i].time.clone();
                    let bucket = &mut self.entries[bucket];
                    bucket.manager = "ancient-changes".to_string();
                    bucket.subresource = None;
                    bucket.set.extend(merged);
                    bucket.time = merged_time;
                    removed.push(i);
                    remaining -= 1;
                }
                None => first_of_version.push((version, i)),
            }
        }
        let mut index = 0;
        self.entries.retain(|_| {
            let keep = !removed.contains(&index);
            index += 1;
            keep
        });
    }

    pub(super) fn retain_non_empty(&mut self) {
        self.entries.retain(|e| !e.set.is_empty());
    }

    /// Writes the entries into `metadata.managedFields`, ordered as the API server orders them
    /// (by operation, time, manager, apiVersion, subresource); removes the field if none is left.
    pub(super) fn write_to(self, obj: &mut Value) {
        let Value::Object(root) = obj else {
            return;
        };
        let mut entries = self.entries;
        entries.sort_by(|a, b| {
            let time = |e: &Entry| {
                e.time
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (
                &a.operation,
                time(a),
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    &b.operation,
                    time(b),
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let mut list: Vec<Value> = entries.into_iter().map(encode_entry).collect();
        list.extend(self.opaque);
        if list.is_empty() {
            if let Some(Value::Object(meta)) = root.get_mut("metadata") {
                meta.shift_remove("managedFields");
            }
            return;
        }
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            meta.insert("managedFields".to_string(), Value::Array(list));
        }
    }
}

fn encode_entry(e: Entry) -> Value {
    let mut m = Map::new();
    m.insert("manager".into(), Value::String(e.manager));
    m.insert("operation".into(), Value::String(e.operation));
    m.insert("apiVersion".into(), Value::String(e.api_version));
    if let Some(t) = e.time {
        m.insert("time".into(), t);
    }
    m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
    m.insert("fieldsV1".into(), fieldpath::to_fields_v1(&e.set));
    if let Some(s) = e.subresource {
        m.insert("subresource".into(), Value::String(s));
    }
    Value::Object(m)
}
