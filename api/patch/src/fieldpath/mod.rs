//! Field paths and field sets of server-side apply, with their FieldsV1 encoding
//! (`{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{}}}}}`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// A struct field or map key: `f:name`.
    Field(String),
    /// An element of an associative list, by its key fields as canonical JSON with sorted
    /// field names: `k:{"name":"app"}`.
    Key(String),
    /// An element of a set, by its value as canonical JSON: `v:"finalizer"`.
    Value(String),
    /// An element of a positional list: `i:0`.
    Index(usize),
}

pub(crate) type Path = Vec<PathElement>;

/// A set of paths.
pub(crate) type Set = BTreeSet<Path>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("invalid managed fields entry: {0}")]
    Invalid(String),
}

/// Serialises a value as canonical JSON: object fields sorted by name.
pub(crate) fn canonical_json(v: &Value) -> String {
    serde_json::to_string(&canonicalize(v)).unwrap_or_default()
}

fn canonicalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonicalize(&m[k.as_str()]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonicalize).collect()),
        other => other.clone(),
    }
}

impl PathElement {
    /// The FieldsV1 key of this element.
    pub(crate) fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<PathElement, Error> {
        let bad = || Error::Invalid(format!("bad path element {s:?}"));
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                if !v.is_object() {
                    return Err(bad());
                }
                PathElement::Key(canonical_json(&v))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                PathElement::Value(canonical_json(&v))
            }
            "i" => PathElement::Index(rest.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for PathElement {
    /// The path notation of Kubernetes conflict messages: `.spec`, `[name="app"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let parsed: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
                let parts: Vec<String> = parsed
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path like Kubernetes does in conflict messages: `.spec.containers[name="app"].image`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<PathElement, Node>,
}

/// Encodes a set as FieldsV1.
pub(crate) fn to_fields_v1(set: &Set) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }
    encode_node(&root)
}

fn encode_node(node: &Node) -> Value {
    let mut out = Map::new();
    if node.member && !node.children.is_empty() {
        out.insert(".".to_string(), Value::Object(Map::new()));
    }
    for (pe, child) in &node.children {
        out.insert(pe.encode(), encode_node(child));
    }
    Value::Object(out)
}

/// Decodes FieldsV1 into a set.
pub(crate) fn from_fields_v1(v: &Value) -> Result<Set, Error> {
    let mut set = Set::new();
    let Value::Object(m) = v else {
        return Err(Error::Invalid("fieldsV1 must be an object".into()));
    };
    decode_into(m, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn decode_into(m: &Map<String, Value>, path: &mut Path, set: &mut Set) -> Result<(), Error> {
    for (k, v) in m {
        if k == "." {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            continue;
        }
        let pe = PathElement::decode(k)?;
        let Value::Object(child) = v else {
            return Err(Error::Invalid(format!("value of {k:?} must be an object")));
        };
        path.push(pe);
        if child.is_empty() {
            set.insert(path.clone());
        } else {
            decode_into(child, path, set)?;
        }
        path.pop();
    }
    Ok(())
}

/// Whether `set` holds `prefix` or any path below it.
pub(crate) fn has_prefix(set: &Set, prefix: &[PathElement]) -> bool {
    set.range(prefix.to_vec()..)
        .next()
        .is_some_and(|p| p.starts_with(prefix))
}

#[cfg(test)]
mod tests;
