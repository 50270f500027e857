//! Kubernetes' `ResourceQuota` admission plugin: a create (or an update that raises usage) in a
//! namespace is checked against each of its ResourceQuotas that covers the object, and the usage
//! is charged to the quota's `status.used` with a resourceVersion precondition
//! (`registry::guaranteed_update`) before the object is stored, so two concurrent writes can never
//! both take the last unit. The quota controller recomputes `status.used` from the objects, which
//! releases what deleted objects and failed writes held.
//!
//! As Kubernetes, a quota is enforced from `status.hard` (the controller copies `spec.hard` there):
//! a quota the controller has not seen yet limits nothing, and one whose `status.used` lacks a
//! limited resource refuses writes ("status unknown").
//!
//! Unlike Kubernetes (kubernetes/kubernetes#123434), a controller's count taken while a charged
//! object was not yet stored cannot release that object's charge: a charging write holds its
//! namespace's `ChargeGate` shared until the object is stored, and a status write that lowers
//! `used` takes it exclusively and counts the lowered resources again from the store, keeping
//! what the objects really use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_meta::quantity::Quantity;
use skiff_meta::quota::{self, ResourceList};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::{forbidden, list};
use crate::error::ApiError;
use crate::objects::meta_str;
use crate::registry::{self, Change, Operation, Write};
use crate::state::AppState;

/// What a charging write holds until its object is stored: the namespace's gate, shared.
pub(crate) type Held = Option<OwnedRwLockReadGuard<()>>;

/// One gate per namespace: charging writes hold it shared from their charge until their object
/// is stored; a status write releasing usage holds it exclusively while it counts.
#[derive(Default)]
pub(crate) struct ChargeGate {
    namespaces: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl ChargeGate {
    /// Namespaces kept before the gates nobody holds are dropped.
    const KEPT: usize = 1024;

    fn gate(&self, namespace: &str) -> Arc<RwLock<()>> {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if namespaces.len() >= Self::KEPT {
            namespaces.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        namespaces.entry(namespace.to_string()).or_default().clone()
    }

    async fn charging(&self, namespace: &str) -> OwnedRwLockReadGuard<()> {
        self.gate(namespace).read_owned().await
    }

    async fn releasing(&self, namespace: &str) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate(namespace).write_owned().await
    }
}

fn is_quota(kind: &skiff_kinds::Kind) -> bool {
    kind.group.is_empty() && kind.plural == "resourcequotas"
}

fn quotas_kind() -> &'static skiff_kinds::Kind {
    skiff_kinds::find("", "v1", "resourcequotas").expect("resourcequotas are a known kind")
}

/// What the write adds: the new object's usage, less the old one's (never below zero).
fn delta(group: &str, plural: &str, obj: &Value, old: Option<&Value>) -> ResourceList {
    let mut usage = quota::usage(group, plural, obj);
    if let Some(old) = old {
        let before = quota::usage(group, plural, old);
        for (name, q) in usage.iter_mut() {
            let prev = before.get(name).copied().unwrap_or(Quantity::ZERO);
            *q = if *q > prev { *q - prev } else { Quantity::ZERO };
        }
    }
    usage
}

/// The resources of `quota`'s `status.hard` the object's kind is charged for, if the quota's
/// scopes select the object.
fn covered(quota: &Value, group: &str, plural: &str, obj: &Value) -> Vec<String> {
    if !quota::scopes_match(quota, group, plural, obj) {
        return Vec::new();
    }
    quota::parse_list(quota.pointer("/status/hard"))
        .into_keys()
        .filter(|name| quota::tracks(group, plural, name))
        .collect()
}

/// Kubernetes' `checkRequest` for one quota: `Ok(Some(new used))` to charge, `Ok(None)` when
/// the quota does not cover the write, or the refusal.
fn check(
    write: &Write<'_>,
    quota_obj: &Value,
    obj: &Value,
    op: Operation,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, ApiError> {
    let (group, plural) = (write.kind.group, write.kind.plural);
    let name = meta_str(quota_obj, "name").unwrap_or_default();
    let restricted = covered(quota_obj, group, plural, obj);
    if restricted.is_empty() {
        return Ok(None);
    }
    if op == Operation::Create
        && group.is_empty()
        && plural == "pods"
        && let Err(e) = quota::pod_constraints(restricted.iter().map(String::as_str), obj)
    {
        return Err(forbidden(write, format_args!("failed quota: {name}: {e}")));
    }
    let used = quota::parse_list(quota_obj.pointer("/status/used"));
    let unknown: Vec<&str> = restricted
        .iter()
        .filter(|r| !used.contains_key(*r))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(forbidden(
            write,
            format_args!(
                "status unknown for quota: {name}, resources: {}",
                unknown.join(",")
            ),
        ));
    }
    if delta.values().all(|q| q.is_zero()) {
        return Ok(None);
    }
    let hard = quota::parse_list(quota_obj.pointer("/status/hard"));
    let requested: ResourceList = delta
        .iter()
        .filter(|(k, _)| hard.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let mut new_used = used.clone();
    for (k, v) in &requested {
        let e = new_used.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = *e + *v;
    }
    let exceeded: Vec<&String> = requested
        .keys()
        .filter(|k| new_used[*k] > hard[*k])
        .collect();
    if !exceeded.is_empty() {
        let mask = |list: &ResourceList| -> ResourceList {
            exceeded
                .iter()
                .map(|k| {
                    (
                        (*k).clone(),
                        list.get(*k).copied().unwrap_or(Quantity::ZERO),
                    )
                })
                .collect()
        };
        return Err(forbidden(
            write,
            format_args!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                quota::pretty(&mask(&requested)),
                quota::pretty(&mask(&used)),
                quota::pretty(&mask(&hard)),
            ),
        ));
    }
    Ok(Some(new_used))
}

/// The plugin: refuses a write over a quota or charges it, holding what it charged until the
/// write is stored; corrects a quota status write that would release usage objects still hold.
pub(crate) async fn admit(
    state: &AppState,
    op: Operation,
    write: &Write<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Held, ApiError> {
    let (Some(namespace), false) = (write.namespace, op == Operation::Delete) else {
        return Ok(None);
    };
    // Events are never quota'd (Kubernetes' `DefaultIgnoredResources`; events.k8s.io Events are
    // the same objects).
    let event = write.kind.plural == "events" && matches!(write.kind.group, "" | "events.k8s.io");
    if !write.kind.namespaced || event {
        return Ok(None);
    }
    if op == Operation::Update && is_quota(write.kind) {
        if let Some(old) = old {
            keep_what_is_used(state, namespace, obj, old).await?;
        }
        return Ok(None);
    }
    charge(state, op, write, namespace, obj, old).await
}

/// A quota status write that lowers `used` (the controller's recount) is counted again from the
/// store for the lowered resources, with no charge in flight in the namespace, and never goes
/// below that: a charge taken before the object it was for was stored stays charged.
async fn keep_what_is_used(
    state: &AppState,
    namespace: &str,
    obj: &mut Value,
    old: &Value,
) -> Result<(), ApiError> {
    let before = quota::parse_list(old.pointer("/status/used"));
    let mut after = quota::parse_list(obj.pointer("/status/used"));
    let lowered: Vec<String> = after
        .iter()
        .filter(|(name, q)| before.get(*name).is_some_and(|b| *q < b))
        .map(|(name, _)| name.clone())
        .collect();
    if lowered.is_empty() {
        return Ok(());
    }
    let _counting = state.quota_gate.releasing(namespace).await;
    let counted = count(state, obj, namespace, &lowered).await?;
    let mut raised = false;
    for (name, q) in counted {
        if let Some(used) = after.get_mut(&name)
            && q > *used
        {
            *used = q;
            raised = true;
        }
    }
    if raised && let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("used".into(), quota::to_json(&after));
    }
    Ok(())
}

/// What the namespace's stored objects use of `names` under `quota_obj`'s scopes; resources of
/// kinds the server does not know are left out.
async fn count(
    state: &AppState,
    quota_obj: &Value,
    namespace: &str,
    names: &[String],
) -> Result<ResourceList, ApiError> {
    let mut by_kind: HashMap<(String, String), Vec<&String>> = HashMap::new();
    for name in names {
        if let Some(kind) = quota::kind_of(name) {
            by_kind.entry(kind).or_default().push(name);
        }
    }
    let mut used = ResourceList::new();
    for ((group, plural), names) in by_kind {
        let Some(kind) = skiff_kinds::find_by_plural(&group, &plural)
            .or_else(|| state.crds.find_by_plural(&group, &plural))
            .filter(|k| k.plural == plural && k.namespaced)
        else {
            continue;
        };
        for name in &names {
            used.insert((*name).clone(), Quantity::ZERO);
        }
        for obj in list(state, kind, Some(namespace)).await? {
            if !quota::scopes_match(quota_obj, &group, &plural, &obj) {
                continue;
            }
            let u = quota::usage(&group, &plural, &obj);
            for name in &names {
                if let (Some(q), Some(total)) = (u.get(*name), used.get_mut(*name)) {
                    *total = *total + *q;
                }
            }
        }
    }
    Ok(used)
}

async fn charge(
    state: &AppState,
    op: Operation,
    write: &Write<'_>,
    namespace: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Held, ApiError> {
    let (group, plural) = (write.kind.group, write.kind.plural);
    let delta = delta(group, plural, obj, old);
    // An update that adds nothing (most updates) needs no quota at all.
    if op == Operation::Update && delta.values().all(|q| q.is_zero()) {
        return Ok(None);
    }
    let quotas = list(state, quotas_kind(), Some(namespace)).await?;
    // Refuse before charging anything, so a refusal by one quota leaves the others as they are.
    let mut charged = Vec::new();
    for q in &quotas {
        if check(write, q, obj, op, &delta)?.is_some() {
            charged.push(meta_str(q, "name").unwrap_or_default().to_string());
        }
    }
    if write.dry_run || charged.is_empty() {
        return Ok(None);
    }
    let held = state.quota_gate.charging(namespace).await;
    let user = crate::bootstrap::server_user();
    for name in &charged {
        let quota_write = Write {
            kind: quotas_kind(),
            namespace: Some(namespace),
            name,
            user: &user,
            dry_run: false,
            subresource: Some("status"),
        };
        registry::guaranteed_update(state, &quota_write, |current| {
            let Some((current, _)) = current else {
                // Deleted meanwhile: it limits nothing any more.
                return Ok(Change::Keep(Value::Null));
            };
            match check(write, current, obj, op, &delta)? {
                None => Ok(Change::Keep(current.clone())),
                Some(used) => {
                    let mut next = current.clone();
                    if let Some(status) = next.get_mut("status").and_then(Value::as_object_mut) {
                        status.insert("used".into(), quota::to_json(&used));
                    }
                    Ok(Change::Store(next))
                }
            }
        })
        .await?;
    }
    Ok(Some(held))
}
