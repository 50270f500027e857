//! Server-side apply and managed fields: who owns which field, conflicts between managers, and
//! the `metadata.managedFields` bookkeeping of every write.

mod fields;
mod managers;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Map, Value};

use crate::fieldpath::{self, Path, PathElement, Set};
use crate::schema::Ctx;
use crate::{Error, Result};

use fields::{compare, field_set, merge_applied, null_paths, remove_path};
use managers::{Entry, Managers};

/// A field that another manager owns with a different value than the one applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// Its operation, "Apply" or "Update".
    pub operation: String,
    /// The API version it used.
    pub api_version: String,
    /// Its subresource, if it wrote through one (e.g. "status").
    pub subresource: Option<String>,
    /// The field, as Kubernetes prints it: `.spec.replicas`, `.spec.containers[name="app"].image`.
    /// This is `Status.details.causes[].field`.
    pub field: String,
    /// The cause message without the field, as in `Status.details.causes[].message` (cause type
    /// `FieldManagerConflict`): `conflict with "kubectl-client-side-apply" using apps/v1`.
    pub message: String,
}

impl FieldConflict {
    fn new(entry: &Entry, path: &[PathElement]) -> FieldConflict {
        let mut conflict = FieldConflict {
            manager: entry.manager.clone(),
            operation: entry.operation.clone(),
            api_version: entry.api_version.clone(),
            subresource: entry.subresource.clone(),
            field: fieldpath::path_string(path),
            message: String::new(),
        };
        conflict.message = format!("conflict with {}", conflict.manager_description());
        conflict
    }

    fn manager_description(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

impl fmt::Display for FieldConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.field)
    }
}

/// The message of a 409 apply conflict, worded as the API server words it.
pub(crate) fn conflicts_message(conflicts: &[FieldConflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {only}");
    }
    let mut lines = Vec::new();
    let mut by_manager: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let who = c.manager_description();
        match by_manager.iter_mut().find(|(m, _)| *m == who) {
            Some((_, fields)) => fields.push(&c.field),
            None => by_manager.push((who, vec![&c.field])),
        }
    }
    by_manager.sort_by(|a, b| a.0.cmp(&b.0));
    for (who, fields) in by_manager {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The API server keeps at most this many Update entries.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Paths the API server never tracks in managed fields.
fn is_ignored(path: &[PathElement]) -> bool {
    const META: &[&str] = &[
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "resourceVersion",
    ];
    match path {
        [PathElement::Field(f)] => f == "apiVersion" || f == "kind" || f == "metadata",
        [PathElement::Field(m), PathElement::Field(f)] if m == "metadata" => {
            META.contains(&f.as_str())
        }
        [PathElement::Field(m), PathElement::Field(f), ..] => {
            m == "metadata" && f == "managedFields"
        }
        _ => false,
    }
}

fn without_ignored(set: Set) -> Set {
    set.into_iter().filter(|p| !is_ignored(p)).collect()
}

/// The object without `metadata.managedFields`.
fn strip_managed_fields(obj: &Value) -> Map<String, Value> {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    m
}

fn api_version_of(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("apiVersion").and_then(Value::as_str)
}

/// Server-side apply: merges `applied` (a partial object as sent with application/apply-patch+yaml)
/// into `live` (None when creating), maintaining metadata.managedFields (FieldsV1 format,
/// operation "Apply" for manager `manager`), returning the new object, or Error::Conflict with
/// one cause per conflicting field unless `force`.
///
/// `status` in the applied object is ignored, as the API server does for the main resource.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    type_name: &str,
    now_rfc3339: &str,
) -> Result<Value> {
    apply_subresource(live, applied, manager, force, type_name, now_rfc3339, None)
}

/// [`apply`] through a subresource. With `Some("status")` only `status` is taken from the applied
/// object (as the API server resets everything else on the status subresource) and the entry is
/// recorded with `subresource: status`; with None, `status` is ignored instead.
pub fn apply_subresource(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    type_name: &str,
    now_rfc3339: &str,
    subresource: Option<&str>,
) -> Result<Value> {
    let Value::Object(applied_map) = applied else {
        return Err(Error::InvalidPatch(
            "apply patch must be a JSON object".into(),
        ));
    };
    let mut config = applied_map.clone();
    if subresource == Some("status") {
        config.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(Value::Object(meta)) = config.get_mut("metadata") {
            meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "managedFields"));
        }
    } else {
        config.shift_remove("status");
    }
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        match meta.shift_remove("managedFields") {
            None => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => {
                return Err(Error::InvalidPatch(
                    "metadata.managedFields must be nil in an apply patch".into(),
                ));
            }
        }
    }
    if live.is_some_and(|l| !l.is_object()) {
        return Err(Error::Invalid(
            "the live object is not a JSON object".into(),
        ));
    }

    let ctx = Ctx::for_object(type_name);
    let live_map = live.map(strip_managed_fields).unwrap_or_default();
    let mut managers = live.map(Managers::from_object).unwrap_or_default();
    let api_version = api_version_of(&config)
        .or_else(|| api_version_of(&live_map))
        .unwrap_or_default()
        .to_string();
    if live.is_some() && managers.is_empty() {
        // An object written without managed fields: as in Kubernetes, everything it holds is
        // owned by "before-first-apply", so that the first apply neither silently overwrites
        // nor prunes it.
        let diff = compare(&Map::new(), &live_map, ctx);
        let set = without_ignored(diff.added);
        if !set.is_empty() {
            managers.push(Entry {
                manager: "before-first-apply".to_string(),
                operation: "Update".to_string(),
                api_version: api_version_of(&live_map).unwrap_or_default().to_string(),
                time: Some(Value::String(now_rfc3339.to_string())),
                subresource: None,
                set,
            });
        }
    }

    let merged = merge_applied(
        Some(Value::Object(live_map.clone())),
        Value::Object(config.clone()),
        ctx,
    );
    let Value::Object(mut merged) = merged else {
        return Err(Error::Invalid("apply produced a non-object".into()));
    };

    let new_set = without_ignored(field_set(&config, ctx));
    let previous = managers.take(manager, "Apply", subresource);
    let last_set = previous.as_ref().map(|e| e.set.clone()).unwrap_or_default();

    // Fields the applier owned before and omits now are removed unless someone still owns them.
    let owned_elsewhere = |p: &[PathElement]| {
        fieldpath::has_prefix(&new_set, p)
            || managers.iter().any(|e| fieldpath::has_prefix(&e.set, p))
    };
    let dropped: Vec<&Path> = last_set.difference(&new_set).collect();
    for path in dropped {
        if !owned_elsewhere(path) {
            remove_path(&mut merged, ctx, path, &owned_elsewhere);
        }
    }

    // Fields applied as null are owned and change the value (so they can conflict), then removed.
    let diff = compare(&live_map, &merged, ctx);
    for path in null_paths(&config, ctx) {
        remove_path(&mut merged, ctx, &path, &owned_elsewhere);
    }
    let changed: Set = without_ignored(diff.added.union(&diff.modified).cloned().collect());
    let removed: Set = without_ignored(diff.removed);

    let mut conflicts = Vec::new();
    for entry in managers.iter_mut() {
        let taken: Set = entry.set.intersection(&changed).cloned().collect();
        if taken.is_empty() {
            continue;
        }
        if force {
            entry.set = entry.set.difference(&taken).cloned().collect();
        } else {
            conflicts.extend(taken.iter().map(|p| FieldConflict::new(entry, p)));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.operation).cmp(&(&b.manager, &b.operation)));
        return Err(Error::Conflict(conflicts));
    }
    for entry in managers.iter_mut() {
        entry.set = entry.set.difference(&removed).cloned().collect();
    }
    managers.retain_non_empty();

    // As in the API server, the time moves only when the object changes.
    let object_changed = Value::Object(live_map) != Value::Object(merged.clone());
    let time = match previous {
        Some(prev) if !object_changed && prev.time.is_some() => prev.time,
        _ => Some(Value::String(now_rfc3339.to_string())),
    };
    if !new_set.is_empty() {
        managers.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".to_string(),
            api_version,
            time,
            subresource: subresource.map(str::to_string),
            set: new_set,
        });
    }
    let mut out = Value::Object(merged);
    managers.cap_updates(MAX_UPDATE_MANAGERS);
    managers.write_to(&mut out);
    Ok(out)
}

/// After a non-apply write (create/update/patch) by `manager`, records the fields it changed in
/// managedFields with operation "Update" (and removes them from other managers' sets), as the
/// API server does.
///
/// Managed fields sent in `new` replace the live ones when they differ (`[{}]` clears them);
/// otherwise the entries of `old` are carried over.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    type_name: &str,
    now_rfc3339: &str,
) {
    record_update_subresource(old, new, manager, type_name, now_rfc3339, None);
}

/// [`record_update`] for a write through a subresource (e.g. `status`): the entry is recorded
/// with that subresource.
pub fn record_update_subresource(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    type_name: &str,
    now_rfc3339: &str,
    subresource: Option<&str>,
) {
    if !new.is_object() {
        return;
    }
    let ctx = Ctx::for_object(type_name);
    let old_map = old.map(strip_managed_fields).unwrap_or_default();
    let new_map = strip_managed_fields(new);
    let mut managers = Managers::for_update(old, new);

    let diff = compare(&old_map, &new_map, ctx);
    let changed: Set = without_ignored(diff.added.union(&diff.modified).cloned().collect());
    let removed: Set = without_ignored(diff.removed);

    let previous = managers.take(manager, "Update", subresource);
    for entry in managers.iter_mut() {
        entry.set = entry
            .set
            .iter()
            .filter(|p| !changed.contains(*p) && !removed.contains(*p))
            .cloned()
            .collect();
    }
    managers.retain_non_empty();

    let api_version = api_version_of(&new_map).unwrap_or_default().to_string();
    let mut set: Set = previous
        .as_ref()
        .map(|e| e.set.difference(&removed).cloned().collect())
        .unwrap_or_default();
    set.extend(changed.iter().cloned());
    if !set.is_empty() {
        let (time, api_version) = match &previous {
            Some(prev) if changed.is_empty() => (prev.time.clone(), prev.api_version.clone()),
            _ => (Some(Value::String(now_rfc3339.to_string())), api_version),
        };
        managers.push(Entry {
            manager: manager.to_string(),
            operation: "Update".to_string(),
            api_version,
            time,
            subresource: subresource.map(str::to_string),
            set,
        });
    }
    managers.cap_updates(MAX_UPDATE_MANAGERS);
    managers.write_to(new);
}
