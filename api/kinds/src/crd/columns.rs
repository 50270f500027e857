//! `as=Table` for custom resources: the `Name` column, then the version's
//! `additionalPrinterColumns` evaluated with the JSONPath subset kube-apiserver supports.

use serde_json::{Value, json};

use super::{CustomKind, PrinterColumn};
use crate::table::human_duration;

/// One step of a parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[3]`, `[-1]`.
    Index(i64),
    /// `[*]` or `.*`.
    All,
    /// `[?(@.a.b == "x")]` (`==` or `!=`; the right side a JSON literal).
    Filter(Vec<String>, bool, Value),
}

/// Parses the JSONPath kubectl and kube-apiserver accept for printer columns (with or without
/// surrounding `{}`); `None` when it is not in the supported subset.
fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let b = p.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                let start = i;
                let mut name = String::new();
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = p[i..].chars().next()?;
                    name.push(ch);
                    i += ch.len_utf8();
                }
                if i == start {
                    return None;
                }
                if name == "*" {
                    steps.push(Step::All);
                } else {
                    steps.push(Step::Field(name));
                }
            }
            b'[' => {
                let end = matching_bracket(p, i)?;
                let inner = p[i + 1..end].trim();
                steps.push(bracket(inner)?);
                i = end + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn matching_bracket(p: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, c) in p[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + j);
                }
            }
            _ => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Some(Step::Index(n));
    }
    if let Some(q) = inner
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
    {
        return Some(Step::Field(q.to_string()));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, eq, rhs) = if let Some((l, r)) = cond.split_once("==") {
        (l, true, r)
    } else {
        let (l, r) = cond.split_once("!=")?;
        (l, false, r)
    };
    let lhs = lhs.trim().strip_prefix('@')?;
    let fields: Vec<String> = lhs
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let literal = if let Some(s) = rhs.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        Value::String(s.to_string())
    } else {
        serde_json::from_str(rhs).ok()?
    };
    Some(Step::Filter(fields, eq, literal))
}

/// Every value `steps` selects in `root`, in order.
fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x);
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(fields, eq, literal) => {
                    if let Some(a) = v.as_array() {
                        for item in a {
                            let got = fields.iter().try_fold(item, |x, f| x.get(f.as_str()));
                            let matches = got.is_some_and(|g| g == literal);
                            if got.is_some() && matches == *eq {
                                next.push(item);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Whether `path` is in the JSONPath subset printer columns support.
pub fn valid_json_path(path: &str) -> bool {
    parse(path).is_some()
}

/// The first value `path` selects in `obj`, if the path is valid and selects anything.
pub fn json_path_value<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse(path)?;
    eval(&steps, obj).into_iter().next()
}

/// The text kubectl's JSONPath printer shows for a value (Go's `%v` of the decoded JSON).
fn print_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => super::object::go_number(n),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(print_value).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", print_value(&m[*k])))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

fn cell(col: &PrinterColumn, obj: &Value, now: jiff::Timestamp) -> Value {
    let Some(v) = json_path_value(obj, &col.json_path) else {
        return Value::Null;
    };
    if v.is_null() {
        return Value::Null;
    }
    match col.type_.as_str() {
        "string" => json!(print_value(v)),
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(|i| json!(i))
                .or_else(|| n.as_f64().map(|f| json!(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(n) => n.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => json!(b),
            _ => Value::Null,
        },
        "date" => match v {
            Value::String(s) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => json!(human_duration(now.as_second() - t.as_second())),
                Err(_) => json!("<invalid>"),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The Table column definitions of a custom kind.
pub fn column_definitions(ck: &CustomKind) -> Vec<Value> {
    let mut defs = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": crate::table::NAME_DESC,
        "priority": 0,
    })];
    for c in &ck.printer_columns {
        let description = if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        };
        defs.push(json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format,
            "description": description,
            "priority": c.priority,
        }));
    }
    defs
}

/// The cells of one custom resource's row.
pub fn cells(ck: &CustomKind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = vec![name];
    out.extend(ck.printer_columns.iter().map(|c| cell(c, obj, now)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_select_like_kubectl() {
        let obj = json!({"spec": {"replicas": 3, "list": ["a", "b"]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False"}]}});
        let get = |p: &str| json_path_value(&obj, p).cloned();
        assert_eq!(get(".spec.replicas"), Some(json!(3)));
        assert_eq!(get("{.spec.list[1]}"), Some(json!("b")));
        assert_eq!(get(".spec.list[-1]"), Some(json!("b")));
        assert_eq!(
            get(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("False"))
        );
        assert_eq!(
            get(".metadata.labels.app\\.kubernetes\\.io/name"),
            Some(json!("web"))
        );
        assert_eq!(
            get(".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("web"))
        );
        assert_eq!(get(".spec.missing"), None);
        assert!(!valid_json_path("spec.replicas"));
        assert!(!valid_json_path(".spec[?(@.a)]"));
    }
}
