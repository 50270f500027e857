//! Validation of a custom resource against its structural schema, with the field paths and the
//! messages kube-apiserver's OpenAPI schema validator produces (`spec.replicas in body must be of
//! type integer: "string"`, `should be greater than or equal to 1`, ...).

use serde_json::{Map, Number, Value};

use super::formats;
use super::schema::Schema;
use crate::validate::{Cause, go_str, names};

/// Field errors of one validation run.
#[derive(Debug, Default)]
pub(crate) struct Found(pub(crate) Vec<Cause>);

impl Found {
    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(Cause {
            reason: reason.to_string(),
            message,
            field: field.to_string(),
        });
    }
    fn invalid(&mut self, field: &str, value: &str, detail: &str) {
        self.push(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {value}: {detail}"),
        );
    }
    fn type_invalid(&mut self, field: &str, value: &str, detail: &str) {
        self.push(
            "FieldValueTypeInvalid",
            field,
            format!("Invalid value: {value}: {detail}"),
        );
    }
    fn required(&mut self, field: &str, detail: &str) {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push("FieldValueRequired", field, msg);
    }
    fn too_many(&mut self, field: &str, actual: usize, max: u64) {
        self.push(
            "FieldValueTooMany",
            field,
            format!(
                "Too many: {actual}: must have at most {max} {}",
                if max == 1 { "item" } else { "items" }
            ),
        );
    }
}

/// A JSON value's type as the schema validator names it (`integer` for whole-number literals).
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a float is a whole number within the integers JSON represents exactly.
fn json_integer(f: f64) -> bool {
    f.is_finite() && f == f.trunc() && f.abs() < 9_007_199_254_740_992.0
}

/// A number the way Go's `%v` prints it (`1`, `0.5`, `1e+21`).
pub(crate) fn go_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or_default();
    go_float(f)
}

fn go_float(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e21 {
        format!("{}", f as i128)
    } else if f.abs() >= 1e21 {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// A value rendered as an `Invalid value:` (Go's `%#v` of the decoded JSON): strings quoted,
/// numbers and booleans plain, `null`, objects and arrays as Go maps and slices.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_str(s),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_value).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(m) => go_map(m),
    }
}

fn go_map(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let inner: Vec<String> = keys
        .iter()
        .map(|k| format!("{}:{}", go_str(k), go_value(&m[*k])))
        .collect();
    format!("map[string]interface {{}}{{{}}}", inner.join(", "))
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn f64_of(n: &Number) -> f64 {
    n.as_f64().unwrap_or_default()
}

/// Whether two JSON values are equal, numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => f64_of(x) == f64_of(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Validates `obj` (a whole custom resource, already pruned and defaulted) against `schema`.
pub fn validate_object(schema: &Schema, obj: &Value) -> Vec<Cause> {
    let mut found = Found::default();
    value(schema, obj, "", &mut found);
    found.0
}

/// Validates `obj` on update: like [`validate_object`], but a value equal to the old object's
/// value at the same place (object fields by key, `map` list items by their keys, `set` items by
/// value) is not validated again — Kubernetes' validation ratcheting, so an object stored before
/// a schema tightened can still be changed elsewhere.
pub fn validate_object_update(schema: &Schema, obj: &Value, old: &Value) -> Vec<Cause> {
    let mut found = Found::default();
    ratcheted(schema, obj, Some(old), "", &mut found);
    found.0
}

/// Validates `v` at `path` (`""` for the root) against `s`.
pub(crate) fn value(s: &Schema, v: &Value, path: &str, out: &mut Found) {
    ratcheted(s, v, None, path, out);
}

/// Validates `v` against `s` unless it equals `old`, its correlated old value.
fn ratcheted(s: &Schema, v: &Value, old: Option<&Value>, path: &str, out: &mut Found) {
    if old.is_some_and(|o| json_equal(o, v)) {
        return;
    }
    // the `name in body` of the validator's messages; the root is unnamed
    let name = path;
    if v.is_null() {
        if s.nullable || (s.type_.is_empty() && !s.int_or_string) {
            return;
        }
        let want = if s.int_or_string {
            "integer,string"
        } else {
            s.type_.as_str()
        };
        out.type_invalid(
            path,
            "\"null\"",
            &format!("{name} in body must be of type {want}: \"null\""),
        );
        return;
    }
    let actual = json_type(v);
    let type_ok = if s.int_or_string {
        matches!(actual, "integer" | "string")
    } else {
        match s.type_.as_str() {
            "" => true,
            "number" => matches!(actual, "number" | "integer"),
            // as kube-openapi: a float with an integral value (`1.0`) is an integer
            "integer" => actual == "integer" || v.as_f64().is_some_and(json_integer),
            t => t == actual,
        }
    };
    if !type_ok {
        let want = if s.int_or_string {
            "integer,string"
        } else {
            s.type_.as_str()
        };
        out.type_invalid(
            path,
            &go_str(actual),
            &format!("{name} in body must be of type {want}: {}", go_str(actual)),
        );
        return;
    }
    if !s.enum_.is_empty() && !s.enum_.iter().any(|e| json_equal(e, v)) {
        let supported: Vec<String> = s
            .enum_
            .iter()
            .map(|e| match e {
                Value::String(x) => go_str(x),
                other => go_str(&other.to_string()),
            })
            .collect();
        out.push(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(v),
                supported.join(", ")
            ),
        );
    }
    match v {
        Value::String(text) => string(s, text, path, out),
        Value::Number(n) => number(s, n, path, out),
        Value::Array(items) => array(s, items, old, path, out),
        Value::Object(map) => object(s, map, old, path, out),
        _ => {}
    }
    junctors(s, v, old, path, out);
}

fn string(s: &Schema, text: &str, path: &str, out: &mut Found) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.max_length
        && len > max
    {
        out.push(
            "FieldValueTooLong",
            path,
            format!("Too long: must have at most {max} bytes"),
        );
    }
    if let Some(min) = s.min_length
        && len < min
    {
        out.invalid(
            path,
            &go_str(text),
            &format!("{path} in body should be at least {min} chars long"),
        );
    }
    if let Some(p) = &s.pattern
        && !pattern_matches(p, text)
    {
        out.invalid(
            path,
            &go_str(text),
            &format!("{path} in body should match '{p}'"),
        );
    }
    if !s.format.is_empty() && !formats::valid(&s.format, text) {
        out.type_invalid(
            path,
            &go_str(text),
            &format!(
                "{path} in body must be of type {}: {}",
                s.format,
                go_str(text)
            ),
        );
    }
}

thread_local! {
    /// Compiled schema patterns (a pattern that does not compile matches nothing); cleared when
    /// it grows past [`PATTERN_CACHE_SIZE`] entries.
    static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
        std::cell::RefCell::default();
}

const PATTERN_CACHE_SIZE: usize = 512;

/// Whether `text` contains a match of the schema pattern `p` (unanchored, as Go's
/// `regexp.MatchString`).
fn pattern_matches(p: &str, text: &str) -> bool {
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(p) {
            if cache.len() >= PATTERN_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(p.to_string(), regex::Regex::new(p).ok());
        }
        cache
            .get(p)
            .and_then(Option::as_ref)
            .is_some_and(|re| re.is_match(text))
    })
}

fn number(s: &Schema, n: &Number, path: &str, out: &mut Found) {
    let x = f64_of(n);
    let shown = go_number(n);
    if let Some(max) = &s.maximum {
        let m = f64_of(max);
        if s.exclusive_maximum && x >= m {
            out.invalid(
                path,
                &shown,
                &format!("{path} in body should be less than {}", go_number(max)),
            );
        } else if x > m {
            out.invalid(
                path,
                &shown,
                &format!(
                    "{path} in body should be less than or equal to {}",
                    go_number(max)
                ),
            );
        }
    }
    if let Some(min) = &s.minimum {
        let m = f64_of(min);
        if s.exclusive_minimum && x <= m {
            out.invalid(
                path,
                &shown,
                &format!("{path} in body should be greater than {}", go_number(min)),
            );
        } else if x < m {
            out.invalid(
                path,
                &shown,
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    go_number(min)
                ),
            );
        }
    }
    if let Some(mult) = &s.multiple_of {
        let m = f64_of(mult);
        if m > 0.0 {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                out.invalid(
                    path,
                    &shown,
                    &format!("{path} in body should be a multiple of {}", go_number(mult)),
                );
            }
        }
    }
}

/// The old item a new list item correlates with: by key in a `map` list, by value in a `set`.
fn correlated<'a>(s: &Schema, item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    let olds = old?.as_array()?;
    match s.list_type.as_deref() {
        Some("map") => olds.iter().find(|o| {
            s.list_map_keys
                .iter()
                .all(|k| match (o.get(k), item.get(k)) {
                    (Some(a), Some(b)) => json_equal(a, b),
                    (None, None) => true,
                    _ => false,
                })
        }),
        Some("set") => olds.iter().find(|o| json_equal(o, item)),
        _ => None,
    }
}

fn array(s: &Schema, items: &[Value], old: Option<&Value>, path: &str, out: &mut Found) {
    if let Some(max) = s.max_items
        && items.len() as u64 > max
    {
        out.too_many(path, items.len(), max);
    }
    if let Some(min) = s.min_items
        && (items.len() as u64) < min
    {
        out.invalid(
            path,
            &items.len().to_string(),
            &format!("{path} in body should have at least {min} items"),
        );
    }
    if let Some(item) = &s.items {
        for (i, v) in items.iter().enumerate() {
            ratcheted(item, v, correlated(s, v, old), &format!("{path}[{i}]"), out);
        }
    }
    match s.list_type.as_deref() {
        Some("set") => {
            for (i, v) in items.iter().enumerate() {
                if items[..i].iter().any(|w| json_equal(v, w)) {
                    out.push(
                        "FieldValueDuplicate",
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_value(v)),
                    );
                }
            }
        }
        Some("map") => {
            let key = |v: &Value| -> Map<String, Value> {
                s.list_map_keys
                    .iter()
                    .filter_map(|k| v.get(k).map(|x| (k.clone(), x.clone())))
                    .collect()
            };
            for (i, v) in items.iter().enumerate() {
                let k = key(v);
                if items[..i]
                    .iter()
                    .any(|w| json_equal(&Value::Object(key(w)), &Value::Object(k.clone())))
                {
                    out.push(
                        "FieldValueDuplicate",
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_map(&k)),
                    );
                }
            }
        }
        _ => {}
    }
}

fn object(s: &Schema, map: &Map<String, Value>, old: Option<&Value>, path: &str, out: &mut Found) {
    if let Some(max) = s.max_properties
        && map.len() as u64 > max
    {
        out.too_many(path, map.len(), max);
    }
    if let Some(min) = s.min_properties
        && (map.len() as u64) < min
    {
        out.invalid(
            path,
            &map.len().to_string(),
            &format!("{path} in body should have at least {min} properties"),
        );
    }
    for r in &s.required {
        if !map.contains_key(r) {
            out.required(&child(path, r), "");
        }
    }
    for (k, v) in map {
        if let Some(p) = s.property(k) {
            ratcheted(p, v, old.and_then(|o| o.get(k)), &child(path, k), out);
        }
    }
    if s.embedded_resource {
        embedded(map, path, out);
    }
}

/// The checks Kubernetes makes of an embedded object (`x-kubernetes-embedded-resource`):
/// `apiVersion` and `kind` present and well-formed, `metadata.name` a path segment name.
fn embedded(map: &Map<String, Value>, path: &str, out: &mut Found) {
    for field in ["apiVersion", "kind"] {
        let p = child(path, field);
        match map.get(field) {
            None => out.required(&p, "must not be empty"),
            Some(Value::String(s)) if s.is_empty() => out.invalid(&p, "\"\"", "must not be empty"),
            Some(Value::String(s)) if field == "kind" => {
                let msgs = names::dns1035_label(&s.to_ascii_lowercase());
                if !msgs.is_empty() {
                    out.invalid(
                        &p,
                        &go_str(s),
                        &format!(
                            "may have mixed case, but should otherwise match: {}",
                            msgs.join(",")
                        ),
                    );
                }
            }
            Some(Value::String(s)) => {
                if s.split('/').count() > 2 || s.starts_with('/') || s.ends_with('/') {
                    out.invalid(
                        &p,
                        &go_str(s),
                        &format!("unexpected GroupVersion string: {s}"),
                    );
                }
            }
            Some(other) => out.invalid(&p, &go_value(other), "must be a string"),
        }
    }
    if let Some(Value::String(name)) = map.get("metadata").and_then(|m| m.get("name"))
        && !name.is_empty()
    {
        for m in names::path_segment(name) {
            out.invalid(&child(path, "metadata.name"), &go_str(name), &m);
        }
    }
}

fn junctors(s: &Schema, v: &Value, old: Option<&Value>, path: &str, out: &mut Found) {
    let run = |sub: &Schema| {
        let mut f = Found::default();
        ratcheted(sub, v, old, path, &mut f);
        f.0
    };
    let quoted = go_str(path);
    for sub in &s.all_of {
        let errs = run(sub);
        if !errs.is_empty() {
            out.0.extend(errs);
        }
    }
    if !s.any_of.is_empty() {
        let results: Vec<Vec<Cause>> = s.any_of.iter().map(run).collect();
        if results.iter().all(|r| !r.is_empty()) {
            out.invalid(
                path,
                "\"\"",
                &format!("{quoted} must validate at least one schema (anyOf)"),
            );
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                out.0.extend(best);
            }
        }
    }
    if !s.one_of.is_empty() {
        let valid = s.one_of.iter().filter(|sub| run(sub).is_empty()).count();
        if valid != 1 {
            let detail = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.invalid(
                path,
                "\"\"",
                &format!("{quoted} must validate one and only one schema (oneOf). {detail}"),
            );
        }
    }
    if let Some(not) = &s.not
        && run(not).is_empty()
    {
        out.invalid(
            path,
            "\"\"",
            &format!("{quoted} must not validate the schema (not)"),
        );
    }
}
