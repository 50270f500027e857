//! `skiff.toml`: reading it into an [`App`], with errors that name the file, the line and the
//! field (`skiff.toml:7: component "backend": replicas: expected an integer`).
//!
//! Syntax and type errors come from the `toml` crate with a byte span; rule violations from
//! [`App::check`] with a component and field. Either way the position is found in the document
//! parsed once more as spanned tables ([`toml::de::DeTable`]), which keeps every key's and
//! value's span.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::model::{App, Invalid, describe};

/// The manifest's file name, looked for in the current directory.
pub const MANIFEST_FILE: &str = "skiff.toml";

/// An invalid manifest: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The component and field (`component "backend": replicas`), when known.
    pub at: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Reads and validates the manifest at `path`; relative sources are taken from its directory.
pub fn load(path: &Path) -> crate::Result<App> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })?;
    let mut app = parse(&text, path)?;
    app.base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(app)
}

/// Parses and validates manifest text; `file` names it in errors (and is not read).
pub fn parse(text: &str, file: &Path) -> Result<App, ManifestError> {
    let app: App = match toml::from_str(text) {
        Ok(app) => app,
        Err(e) => {
            let span = e.span();
            let (line, at) = match &span {
                Some(span) => (Some(line_of(text, span.start)), locate(text, span)),
                None => (None, None),
            };
            return Err(ManifestError {
                file: file.to_path_buf(),
                line,
                at,
                message: friendly(e.message()),
            });
        }
    };
    if let Some(invalid) = app.check().into_iter().next() {
        let line = line_of_field(text, &invalid).map(|start| line_of(text, start));
        return Err(ManifestError {
            file: file.to_path_buf(),
            line,
            at: Some(describe(&app, &invalid)),
            message: invalid.message,
        });
    }
    Ok(app)
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Rewrites serde's messages about Rust types into the manifest's words.
fn friendly(message: &str) -> String {
    let message = message.trim_end();
    let mut m = message.to_string();
    for (rust, ours) in [
        ("expected i32", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
    ] {
        m = m.replace(rust, ours);
    }
    if m.contains("untagged enum ConfigValue") {
        return "expected a string, { secret = \"NAME\", key = \"KEY\" } or \
                { config_map = \"NAME\", key = \"KEY\" }"
            .into();
    }
    if m.contains("untagged enum Route") {
        return "expected a path such as \"/\" or { host = \"HOST\", path = \"/\" }".into();
    }
    if m.contains("untagged enum ScaleToZero") {
        return "expected true, false or { idle = \"5m\" }".into();
    }
    m
}

/// `component "NAME": a.b` (or `app: a.b`) for the innermost key whose key or value holds
/// `span`.
fn locate(text: &str, span: &Range<usize>) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path: Vec<String> = Vec::new();
    let mut component: Option<String> = None;
    let mut table = doc.get_ref();
    'outer: loop {
        for (k, v) in table.iter() {
            let on_key = inside(&k.span(), span);
            if !on_key && !holds(v, span) {
                continue;
            }
            let key = k.get_ref().to_string();
            match v.get_ref() {
                DeValue::Array(items) if key == "component" && path.is_empty() && !on_key => {
                    for item in items.iter() {
                        if holds(item, span)
                            && let DeValue::Table(t) = item.get_ref()
                        {
                            component = Some(
                                t.get("name")
                                    .and_then(|n| n.get_ref().as_str().map(str::to_string))
                                    .unwrap_or_else(|| "?".into()),
                            );
                            table = t;
                            continue 'outer;
                        }
                    }
                    path.push(key);
                    break 'outer;
                }
                DeValue::Table(t) if !on_key => {
                    path.push(key);
                    table = t;
                    continue 'outer;
                }
                _ => {
                    path.push(key);
                    break 'outer;
                }
            }
        }
        break;
    }
    if path.first().map(String::as_str) == Some("app") && component.is_none() {
        path.remove(0);
        if path.is_empty() {
            return Some("app".into());
        }
        return Some(format!("app: {}", path.join(".")));
    }
    match (component, path.is_empty()) {
        (Some(c), true) => Some(format!("component {c:?}")),
        (Some(c), false) => Some(format!("component {c:?}: {}", path.join("."))),
        (None, false) => Some(path.join(".")),
        (None, true) => None,
    }
}

/// Whether `outer` holds `span` (an empty span counts at its start).
fn inside(outer: &Range<usize>, span: &Range<usize>) -> bool {
    outer.start <= span.start && span.end <= outer.end.max(outer.start + 1)
}

/// Whether a value holds `span`: its own span (for a table, its header), or any of its keys
/// and values (a table's entries may lie after other tables' headers).
fn holds(v: &Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    if inside(&v.span(), span) {
        return true;
    }
    match v.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .any(|(k, v)| inside(&k.span(), span) || holds(v, span)),
        DeValue::Array(items) => items.iter().any(|i| holds(i, span)),
        _ => false,
    }
}

/// The byte offset of the field an [`Invalid`] names (its key, else its table).
fn line_of_field(text: &str, invalid: &Invalid) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let root = doc.get_ref();
    let (mut table, mut fallback) = match invalid.component {
        None => {
            let (k, v) = root.get_key_value("app")?;
            let DeValue::Table(t) = v.get_ref() else {
                return Some(k.span().start);
            };
            (t, k.span().start)
        }
        Some(n) => {
            let (k, v) = root.get_key_value("component")?;
            let DeValue::Array(items) = v.get_ref() else {
                return Some(k.span().start);
            };
            let item = items.get(n)?;
            let DeValue::Table(t) = item.get_ref() else {
                return Some(item.span().start);
            };
            (t, item.span().start)
        }
    };
    for part in split_field(&invalid.field) {
        let Some((k, v)) = table.get_key_value(part.as_str()) else {
            return Some(fallback);
        };
        fallback = key_start(k);
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return Some(fallback),
        }
    }
    Some(fallback)
}

fn key_start(k: &Spanned<toml::de::DeString<'_>>) -> usize {
    k.span().start
}

/// `config.a.b` → `config`, `a.b` (config and env keys may hold dots; fields do not).
fn split_field(field: &str) -> Vec<String> {
    match field.split_once('.') {
        Some((head @ ("config" | "env"), rest)) => {
            let (key, sub) = match rest.rsplit_once(".key") {
                Some((k, "")) => (k, Some("key")),
                _ => (rest, None),
            };
            let mut v = vec![head.to_string(), key.to_string()];
            v.extend(sub.map(str::to_string));
            v
        }
        _ => field.split('.').map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests;
