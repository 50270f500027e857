//! Privilege escalation prevention, as Kubernetes' RBAC REST storage (`registry/rbac/*/
//! policybased`) and `registry/rbac/validation`: a Role or ClusterRole is written only with
//! rules its writer holds (or may `escalate`), a binding only to a role whose rules its writer
//! holds in the binding's namespace (or may `bind`). `system:masters` passes; so does a write
//! that changes only what the garbage collector changes (owner references, finalizers).

use serde_json::Value;

use super::cache::{self, RoleRef};
use super::rules::{self, PolicyRule};
use crate::error::ApiError;
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::{AppState, Attributes, Decision, MASTERS, UserInfo};

/// The admission step.
pub(crate) struct Escalation;

impl Admission for Escalation {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            if write.kind.group != cache::GROUP
                || op == Operation::Delete
                || write.user.in_group(MASTERS)
                || old.is_some_and(|old| only_gc_fields_change(obj, old))
            {
                return Ok(());
            }
            match write.kind.plural {
                "roles" | "clusterroles" => check_role(state, op, write, obj, old),
                "rolebindings" | "clusterrolebindings" => check_binding(state, write, obj),
                _ => Ok(()),
            }
        })
    }
}

/// `roles.rbac.authorization.k8s.io "x" is forbidden: …` (without the name when empty).
fn forbidden(write: &Write<'_>, obj: &Value, message: &str) -> ApiError {
    let name = objects::meta_str(obj, "name").unwrap_or(write.name);
    let resource = format!("{}.{}", write.kind.plural, cache::GROUP);
    let text = if name.is_empty() {
        format!("{resource} is forbidden: {message}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {message}")
    };
    ApiError::forbidden(text).with_details(cache::GROUP, write.kind.plural, name)
}

/// Whether the authorizer lets the writer use `verb` on a role (`escalate`, `bind`).
fn authorized(
    state: &AppState,
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let attributes = Attributes {
        user,
        verb,
        group: cache::GROUP,
        resource,
        subresource: None,
        namespace,
        name,
        path: None,
        field_selector: None,
    };
    state.authorizer.authorize(&attributes) == Decision::Allow
}

/// Kubernetes' `IsOnlyMutatingGCFields`: the new object is the old one with other owner
/// references or finalizers (server-set metadata aside).
fn only_gc_fields_change(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        v
    };
    strip(new) == strip(old)
}

fn check_role(
    state: &AppState,
    op: Operation,
    write: &Write<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = (op == Operation::Update).then_some(write.name);
    if authorized(
        state,
        write.user,
        "escalate",
        write.kind.plural,
        write.namespace,
        name,
    ) {
        return Ok(());
    }
    let namespace = write.namespace.unwrap_or_default();
    confirm_no_escalation(state, write.user, namespace, &rules::rules_of(obj))
        .map_err(|m| forbidden(write, obj, &m))?;
    let aggregation = obj.get("aggregationRule").filter(|a| !a.is_null());
    let old_aggregation = old.and_then(|o| o.get("aggregationRule").filter(|a| !a.is_null()));
    if write.kind.plural == "clusterroles"
        && aggregation.is_some()
        && aggregation != old_aggregation
    {
        let full = [
            PolicyRule::verbs(&["*"]).groups(&["*"]).resources(&["*"]),
            PolicyRule::verbs(&["*"]).urls(&["*"]),
        ];
        confirm_no_escalation(state, write.user, "", &full).map_err(|_| {
            forbidden(
                write,
                obj,
                "must have cluster-admin privileges to use the aggregationRule",
            )
        })?;
    }
    Ok(())
}

fn check_binding(state: &AppState, write: &Write<'_>, obj: &Value) -> Result<(), ApiError> {
    let Some(role) = cache::binding_role(obj) else {
        // Validation refuses a binding without a valid roleRef.
        return Ok(());
    };
    let (resource, role_name) = match &role {
        RoleRef::Role(name) => ("roles", name.as_str()),
        RoleRef::ClusterRole(name) => ("clusterroles", name.as_str()),
    };
    if authorized(
        state,
        write.user,
        "bind",
        resource,
        write.namespace,
        Some(role_name),
    ) {
        return Ok(());
    }
    let namespace = write.namespace.unwrap_or_default();
    let rules = state
        .rbac
        .role_rules(&role, namespace)
        .map_err(|m| forbidden(write, obj, &m))?;
    confirm_no_escalation(state, write.user, namespace, &rules)
        .map_err(|m| forbidden(write, obj, &m))
}

/// Kubernetes' `ConfirmNoEscalation`: every rule wanted is covered by the rules the user holds
/// in `namespace`; otherwise the text naming the rules it lacks, compacted and sorted.
pub(crate) fn confirm_no_escalation(
    state: &AppState,
    user: &UserInfo,
    namespace: &str,
    wanted: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = state.rbac.rules_for(&user.name, &user.groups, namespace);
    let missing = rules::uncovered(&owned, wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = rules::compact(missing)
        .iter()
        .map(rules::compact_string)
        .collect();
    lines.sort();
    lines.dedup();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        serde_json::to_string(&user.name).unwrap_or_default(),
        rules::go_quoted(&user.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        message.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(message)
}
