//! `as=Table` output (meta.k8s.io/v1 Table) with the columns and cell values kubectl's printers
//! produce on a real API server.

mod columns;
mod pod;
mod printers;
mod time;

use serde_json::{Map, Value, json};

use crate::Kind;

pub use time::{human_duration, short_human_duration};

/// A column definition: name, type, format, description, priority.
pub(crate) struct Col(
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) i64,
);

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A meta.k8s.io/v1 Table for `objects` of one kind. `include_object`: `"None"`, `"Metadata"`
/// (the default: rows carry a PartialObjectMetadata) or `"Object"`. `now` is used for ages.
pub fn table(kind: &Kind, objects: &[Value], include_object: &str, now: jiff::Timestamp) -> Value {
    let column_definitions: Vec<Value> = match kind.custom {
        Some(custom) => crate::crd::column_definitions(custom),
        None => columns::columns(kind)
            .iter()
            .map(|c| {
                json!({"name": c.0, "type": c.1, "format": c.2, "description": c.3, "priority": c.4})
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells = match kind.custom {
                Some(custom) => crate::crd::cells(custom, obj, now),
                None => printers::cells(kind, obj, now),
            };
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(conds) = printers::row_conditions(kind, obj) {
                row.insert("conditions".into(), conds);
            }
            match include_object {
                "None" => {}
                "Object" => {
                    row.insert("object".into(), obj.clone());
                }
                _ => {
                    row.insert("object".into(), partial_metadata(kind, obj));
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// A `Table` with list metadata (resourceVersion, continue) set, as a list response carries it.
pub fn table_with_list_meta(
    kind: &Kind,
    objects: &[Value],
    include_object: &str,
    now: jiff::Timestamp,
    list_meta: Value,
) -> Value {
    let mut t = table(kind, objects, include_object, now);
    t["metadata"] = list_meta;
    t
}

/// A meta.k8s.io/v1 PartialObjectMetadata for `obj` (of any kind).
pub fn partial_metadata(_kind: &Kind, obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests;
