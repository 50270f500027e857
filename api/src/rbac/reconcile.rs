//! The default policy written at every start, as kube-apiserver's RBAC post-start hook and
//! `kubectl auth reconcile`: missing roles and bindings are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get the rules, subjects, labels and
//! annotations they lack (nothing is removed); `"false"` leaves an object alone. Then the
//! aggregated ClusterRoles (`admin`, `edit`, `view`, and any other with an `aggregationRule`)
//! get the union of the rules of the roles they select, as the aggregation controller would,
//! so they are complete before any controller runs.

use serde_json::{Map, Value};
use skiff_kinds::validate::FieldValidation;
use skiff_meta::selector::LabelSelector;

use super::policy::{self, AUTOUPDATE};
use super::rules::{self, PolicyRule};
use crate::error::ApiError;
use crate::objects;
use crate::registry::{self, Change, Write};
use crate::state::{AppState, UserInfo};

const MANAGER: &str = "kube-apiserver";

/// Everything of the default policy, the components' included (theirs win on a name both
/// define).
pub(crate) fn default_objects() -> Vec<Value> {
    let mut all: Vec<Value> = policy::cluster_roles();
    all.extend(policy::cluster_role_bindings());
    all.extend(super::namespaced::namespaced_policy());
    for obj in super::components::component_policy() {
        let same = |o: &Value| {
            o.get("kind") == obj.get("kind")
                && o.pointer("/metadata/name") == obj.pointer("/metadata/name")
                && o.pointer("/metadata/namespace") == obj.pointer("/metadata/namespace")
        };
        all.retain(|o| !same(o));
        all.push(obj);
    }
    all
}

/// Reconciles the default policy, then the aggregated ClusterRoles.
pub(crate) async fn run(state: &AppState) -> Result<(), ApiError> {
    let user = crate::bootstrap::server_user();
    for obj in default_objects() {
        // The namespaced Roles live in the system namespaces, which the server's bootstrap
        // makes; a state reconciled on its own (tests) makes them here.
        if let Some(namespace) = objects::meta_str(&obj, "namespace") {
            registry::ensure_namespace(state, &user, namespace).await?;
        }
        reconcile(state, &user, obj).await?;
    }
    aggregate_all(state, &user).await
}

fn plural_of(obj: &Value) -> Option<&'static str> {
    match obj.get("kind").and_then(Value::as_str)? {
        "Role" => Some("roles"),
        "ClusterRole" => Some("clusterroles"),
        "RoleBinding" => Some("rolebindings"),
        "ClusterRoleBinding" => Some("clusterrolebindings"),
        _ => None,
    }
}

/// Creates `desired`, or adds to the stored object what it lacks (`kubectl auth reconcile`
/// without `--remove-extra-permissions`/`--remove-extra-subjects`).
pub(crate) async fn reconcile(
    state: &AppState,
    user: &UserInfo,
    desired: Value,
) -> Result<(), ApiError> {
    let plural = plural_of(&desired)
        .ok_or_else(|| ApiError::internal("the default policy holds only RBAC kinds"))?;
    let kind = skiff_kinds::find(super::cache::GROUP, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("unknown RBAC kind {plural}")))?;
    let namespace = objects::meta_str(&desired, "namespace").map(str::to_string);
    let name = objects::meta_str(&desired, "name")
        .unwrap_or_default()
        .to_string();
    let prepared = registry::prepare_create(
        kind,
        namespace.as_deref(),
        desired.clone(),
        FieldValidation::Strict,
        MANAGER,
        false,
    )?;
    let write = Write {
        kind,
        namespace: namespace.as_deref(),
        name: &name,
        user,
        dry_run: false,
        subresource: None,
    };
    let is_binding = plural.ends_with("bindings");
    let mut recreate = false;
    registry::guaranteed_update(state, &write, |current| {
        Ok(match current {
            None => Change::Create(prepared.obj.clone()),
            Some((existing, _)) => {
                if existing
                    .pointer(&format!("/metadata/annotations/{}", escape(AUTOUPDATE)))
                    .and_then(Value::as_str)
                    == Some("false")
                {
                    return Ok(Change::Keep(existing.clone()));
                }
                if is_binding && existing.get("roleRef") != desired.get("roleRef") {
                    recreate = true;
                    return Ok(Change::Keep(existing.clone()));
                }
                let merged = if is_binding {
                    merge_binding(existing, &desired)
                } else {
                    merge_role(existing, &desired)
                };
                if merged == *existing {
                    Change::Keep(existing.clone())
                } else {
                    Change::Update(merged)
                }
            }
        })
    })
    .await?;
    if recreate {
        // A binding's roleRef cannot change: delete it and create the default one.
        registry::guaranteed_update(state, &write, |current| {
            Ok(match current {
                Some(_) => Change::Delete,
                None => Change::Keep(Value::Null),
            })
        })
        .await?;
        let prepared = registry::prepare_create(
            kind,
            namespace.as_deref(),
            desired,
            FieldValidation::Strict,
            MANAGER,
            false,
        )?;
        registry::create(state, &write, prepared.obj).await?;
    }
    Ok(())
}

/// A JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Labels and annotations of `desired` the existing object lacks (its own values win).
fn merge_metadata(merged: &mut Value, desired: &Value) {
    for field in ["labels", "annotations"] {
        let Some(want) = desired
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let meta = objects::meta_mut(merged);
        let have = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !have.is_object() {
            *have = Value::Object(Map::new());
        }
        if let Some(have) = have.as_object_mut() {
            for (k, v) in want {
                have.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

fn merge_role(existing: &Value, desired: &Value) -> Value {
    let mut merged = existing.clone();
    merge_metadata(&mut merged, desired);
    let have = rules::rules_of(existing);
    let missing = rules::uncovered(&have, &rules::rules_of(desired));
    if !missing.is_empty() {
        let mut all: Vec<Value> = existing
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        all.extend(missing.iter().map(PolicyRule::to_json));
        merged["rules"] = Value::Array(all);
    }
    match (
        desired.get("aggregationRule"),
        existing.get("aggregationRule"),
    ) {
        (None, Some(_)) => {
            if let Some(m) = merged.as_object_mut() {
                m.remove("aggregationRule");
            }
        }
        (Some(want), have) => {
            let mut selectors: Vec<Value> = have
                .and_then(|h| h.get("clusterRoleSelectors"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for s in want
                .get("clusterRoleSelectors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !selectors.contains(s) {
                    selectors.push(s.clone());
                }
            }
            merged["aggregationRule"] = serde_json::json!({"clusterRoleSelectors": selectors});
        }
        (None, None) => {}
    }
    merged
}

fn merge_binding(existing: &Value, desired: &Value) -> Value {
    let mut merged = existing.clone();
    merge_metadata(&mut merged, desired);
    let mut subjects: Vec<Value> = existing
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let before = subjects.len();
    for s in desired
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    if subjects.len() != before {
        merged["subjects"] = Value::Array(subjects);
    }
    merged
}

/// The rules an aggregated ClusterRole gets: those of the ClusterRoles its selectors match
/// (itself excluded), by name, each rule once, as Kubernetes' aggregation controller computes.
/// `None` when the role has no `aggregationRule`.
pub(crate) fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)?;
    let name = objects::meta_str(role, "name");
    let mut sorted: Vec<&Value> = all.iter().collect();
    sorted.sort_by_key(|r| objects::meta_str(r, "name").map(str::to_string));
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        let Ok(selector) = LabelSelector::from_json(selector) else {
            continue;
        };
        for other in &sorted {
            if objects::meta_str(other, "name") == name || !selector.matches_object(other) {
                continue;
            }
            for rule in rules::rules_of(other) {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    Some(out)
}

/// Gives every aggregated ClusterRole its rules, repeating until nothing changes (an
/// aggregated role may select another: `edit` is part of `admin`).
async fn aggregate_all(state: &AppState, user: &UserInfo) -> Result<(), ApiError> {
    let kind = skiff_kinds::find(super::cache::GROUP, "v1", "clusterroles")
        .ok_or_else(|| ApiError::internal("ClusterRole is a built-in kind"))?;
    let list = state
        .store
        .list(skiff_store::ListOptions {
            prefix: kind.storage_prefix(),
            ..Default::default()
        })
        .await?;
    let mut roles: Vec<Value> = list
        .items
        .iter()
        .filter_map(|kv| objects::from_kv(kind, kv).ok())
        .collect();
    let mut changed: Vec<String> = Vec::new();
    for _ in 0..roles.len().max(1) {
        let mut any = false;
        for i in 0..roles.len() {
            let Some(rules) = aggregated_rules(&roles[i], &roles) else {
                continue;
            };
            if rules::rules_of(&roles[i]) != rules {
                roles[i]["rules"] = Value::Array(rules.iter().map(PolicyRule::to_json).collect());
                if let Some(name) = objects::meta_str(&roles[i], "name") {
                    changed.push(name.to_string());
                }
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    changed.sort();
    changed.dedup();
    for name in changed {
        let Some(role) = roles
            .iter()
            .find(|r| objects::meta_str(r, "name") == Some(name.as_str()))
        else {
            continue;
        };
        let rules = role
            .get("rules")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let write = Write {
            kind,
            namespace: None,
            name: &name,
            user,
            dry_run: false,
            subresource: None,
        };
        registry::guaranteed_update(state, &write, |current| {
            Ok(match current {
                None => Change::Keep(Value::Null),
                Some((existing, _)) => {
                    let mut new = existing.clone();
                    new["rules"] = rules.clone();
                    if new == *existing {
                        Change::Keep(new)
                    } else {
                        Change::Update(new)
                    }
                }
            })
        })
        .await?;
    }
    Ok(())
}
