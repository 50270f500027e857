//! What the server writes into a CustomResourceDefinition on each write, as Kubernetes' naming
//! and establishing controllers (here synchronously, so the create's response already shows it):
//! the cleanup finalizer on create, `status.acceptedNames` and the `NamesAccepted` condition
//! (False with `NameConflict` when another CRD of the group already accepted a name),
//! `Established` (True once the names were accepted; it stays True), `Terminating` while the CRD
//! is being deleted, and `status.storedVersions` (the storage version added).

use serde_json::{Map, Value, json};

use super::CLEANUP_FINALIZER;
use crate::objects::{self, meta_mut};
use crate::state::AppState;

/// The names a CRD asks for, with Kubernetes' defaults for `singular` and `listKind`.
fn requested_names(crd: &Value) -> Map<String, Value> {
    let mut names = crd
        .pointer("/spec/names")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if names
        .get("singular")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        names.insert("singular".into(), json!(kind.to_ascii_lowercase()));
    }
    if names
        .get("listKind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        names.insert("listKind".into(), json!(format!("{kind}List")));
    }
    names
}

fn str_of<'a>(names: &'a Map<String, Value>, field: &str) -> &'a str {
    names.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn strs_of<'a>(names: &'a Map<String, Value>, field: &str) -> Vec<&'a str> {
    names
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The first name of `wanted` another CRD of the group already accepted, as Kubernetes reports it.
fn conflict(wanted: &Map<String, Value>, others: &[Map<String, Value>]) -> Option<String> {
    let in_use = |n: &str| Some(format!("{n:?} is already in use"));
    for other in others {
        let plural = str_of(wanted, "plural");
        let other_resources = [str_of(other, "plural"), str_of(other, "singular")];
        let mut other_short = strs_of(other, "shortNames");
        other_short.extend(other_resources);
        if other_resources.contains(&plural) {
            return in_use(plural);
        }
        let singular = str_of(wanted, "singular");
        if other_resources.contains(&singular) {
            return in_use(singular);
        }
        for short in strs_of(wanted, "shortNames") {
            if other_short.contains(&short) {
                return in_use(short);
            }
        }
        let other_kinds = [str_of(other, "kind"), str_of(other, "listKind")];
        for kind in [str_of(wanted, "kind"), str_of(wanted, "listKind")] {
            if other_kinds.contains(&kind) {
                return in_use(kind);
            }
        }
    }
    None
}

/// A condition, keeping the stored transition time when its status did not change.
fn condition(old: &[Value], type_: &str, status: bool, reason: &str, message: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let time = old
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some(type_)
                && c.get("status").and_then(Value::as_str) == Some(status)
        })
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(objects::now_rfc3339()));
    json!({
        "type": type_,
        "status": status,
        "lastTransitionTime": time,
        "reason": reason,
        "message": message,
    })
}

/// After a CRD of a group is removed, the group's CRDs whose names were refused are written
/// again (as Kubernetes' naming controller requeues them), so names it freed are accepted and
/// the CRD becomes established.
pub(super) fn recheck_group(state: &AppState, removed: &Value) {
    let group = removed
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let waiting: Vec<String> = state
        .crds
        .others("")
        .iter()
        .filter(|c| c.pointer("/spec/group").and_then(Value::as_str) == Some(group))
        .filter(|c| !super::registry::condition_true(c, "NamesAccepted"))
        .filter_map(|c| objects::meta_str(c, "name").map(str::to_string))
        .collect();
    let Some(weak) = state.crds.state.get().cloned() else {
        return;
    };
    if waiting.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for name in waiting {
            let Some(state) = weak.upgrade() else {
                return;
            };
            if let Err(e) = rewrite(&state, &name).await {
                tracing::warn!(crd = %name, error = %e.message, "accepting a CustomResourceDefinition's names");
            }
        }
    });
}

/// Stores a CRD again if the names it would get now differ from its status.
async fn rewrite(state: &AppState, name: &str) -> Result<(), crate::error::ApiError> {
    let user = crate::state::UserInfo::admin("system:apiserver");
    let write = crate::registry::Write {
        kind: super::crd_kind(),
        namespace: None,
        name,
        user: &user,
        dry_run: false,
        subresource: None,
    };
    crate::registry::guaranteed_update(state, &write, |current| {
        let Some((obj, _)) = current else {
            return Ok(crate::registry::Change::Keep(Value::Null));
        };
        let mut new = obj.clone();
        prepare(state, &mut new, false);
        let same = |v: &Value| {
            let mut s = v.get("status").cloned().unwrap_or(Value::Null);
            if let Some(cs) = s.get_mut("conditions").and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("lastTransitionTime");
                    }
                }
            }
            s
        };
        Ok(if same(&new) == same(obj) {
            crate::registry::Change::Keep(new)
        } else {
            crate::registry::Change::Store(new)
        })
    })
    .await
    .map(|_| ())
}

/// Sets the server-owned parts of a CRD about to be stored.
pub(super) fn prepare(state: &AppState, crd: &mut Value, creating: bool) {
    let deleting = objects::is_deleting(crd);
    if creating && !deleting {
        let finalizers = meta_mut(crd)
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == CLEANUP_FINALIZER)
        {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }
    let name = objects::meta_str(crd, "name")
        .unwrap_or_default()
        .to_string();
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let wanted = requested_names(crd);
    let others: Vec<Map<String, Value>> = state
        .crds
        .others(&name)
        .iter()
        .filter(|o| o.pointer("/spec/group").and_then(Value::as_str) == Some(group.as_str()))
        .filter_map(|o| {
            o.pointer("/status/acceptedNames")
                .and_then(Value::as_object)
        })
        .cloned()
        .collect();
    let clash = conflict(&wanted, &others);

    let Some(top) = crd.as_object_mut() else {
        return;
    };
    let status = top.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let old_conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let was_established = old_conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Established")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    let accepted = clash.is_none();
    if accepted {
        status.insert("acceptedNames".into(), Value::Object(wanted));
    } else if !status.contains_key("acceptedNames") {
        status.insert("acceptedNames".into(), json!({"plural": "", "kind": ""}));
    }
    let mut conditions = vec![match &clash {
        None => condition(
            &old_conditions,
            "NamesAccepted",
            true,
            "NoConflicts",
            "no conflicts found",
        ),
        Some(message) => condition(
            &old_conditions,
            "NamesAccepted",
            false,
            "NameConflict",
            message,
        ),
    }];
    conditions.push(if accepted || was_established {
        condition(
            &old_conditions,
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
    } else {
        condition(
            &old_conditions,
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
        )
    });
    if deleting {
        conditions.push(condition(
            &old_conditions,
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    status.insert("conditions".into(), Value::Array(conditions));

    let storage = top
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(status) = top.get_mut("status").and_then(Value::as_object_mut) {
        let stored = status.entry("storedVersions").or_insert_with(|| json!([]));
        if !stored.is_array() {
            *stored = json!([]);
        }
        if let (Some(list), Some(storage)) = (stored.as_array_mut(), storage)
            && !list.iter().any(|v| v == storage.as_str())
        {
            list.push(json!(storage));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_name_another_crd_of_the_group_accepted_conflicts() {
        let taken = names(
            json!({"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
            "listKind": "CronTabList", "shortNames": ["ct"]}),
        );
        let want = |v: Value| conflict(&names(v), std::slice::from_ref(&taken));
        assert_eq!(
            want(json!({"plural": "crontabs", "singular": "x", "kind": "X", "listKind": "XList"})),
            Some("\"crontabs\" is already in use".into())
        );
        assert_eq!(
            want(
                json!({"plural": "xs", "singular": "x", "kind": "X", "listKind": "XList",
                "shortNames": ["ct"]})
            ),
            Some("\"ct\" is already in use".into())
        );
        assert_eq!(
            want(json!({"plural": "xs", "singular": "x", "kind": "CronTab", "listKind": "XList"})),
            Some("\"CronTab\" is already in use".into())
        );
        assert_eq!(
            want(json!({"plural": "xs", "singular": "x", "kind": "X", "listKind": "XList"})),
            None
        );
    }
}
