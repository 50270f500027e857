//! Kubernetes' `priority` admission plugin: a new pod's `spec.priorityClassName` (or the global
//! default class) becomes its `spec.priority` and `spec.preemptionPolicy`; at most one class is
//! the global default; and, as Kubernetes' PriorityClass storage, the system classes cannot be
//! deleted.
//!
//! Pods of any namespace may use the `system-*` classes, as in Kubernetes since 1.17 (its plugin
//! no longer limits them to kube-system; operators limit them with a ResourceQuota scoped by
//! PriorityClass).

use serde_json::{Value, json};
use skiff_kinds::validate::SYSTEM_PRIORITY_CLASSES;

use super::{forbidden, list};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// The priority of a pod when no class names it and no class is the global default.
const DEFAULT_PRIORITY: i64 = 0;

/// The preemption policy of a pod whose class does not state one.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The plugin.
pub(crate) struct Priority;

impl Admission for Priority {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            match (write.kind.group, write.kind.plural, op) {
                ("", "pods", Operation::Create) => admit_pod(state, write, obj).await,
                ("", "pods", Operation::Update) => {
                    keep_pod_priority(obj, old);
                    Ok(())
                }
                ("scheduling.k8s.io", "priorityclasses", Operation::Delete) => {
                    refuse_system_delete(write)
                }
                ("scheduling.k8s.io", "priorityclasses", Operation::Update)
                    if objects::is_deleting(obj) && !old.is_some_and(objects::is_deleting) =>
                {
                    refuse_system_delete(write)
                }
                ("scheduling.k8s.io", "priorityclasses", Operation::Create | Operation::Update) => {
                    one_global_default(state, op, write, obj).await
                }
                _ => Ok(()),
            }
        })
    }
}

/// Kubernetes' `admitPod` on create.
async fn admit_pod(state: &AppState, write: &Write<'_>, pod: &mut Value) -> Result<(), ApiError> {
    let spec_str = |pod: &Value, field: &str| {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let class_name = spec_str(pod, "priorityClassName");
    let classes = list(state, priority_classes(), None).await?;
    let (name, priority, policy) = if class_name.is_empty() {
        match global_default(&classes) {
            Some(pc) => (
                meta_str(pc, "name").unwrap_or_default().to_string(),
                value(pc),
                policy(pc),
            ),
            None => (
                String::new(),
                DEFAULT_PRIORITY,
                Some(DEFAULT_PREEMPTION_POLICY.to_string()),
            ),
        }
    } else {
        let Some(pc) = classes
            .iter()
            .find(|pc| meta_str(pc, "name") == Some(class_name.as_str()))
        else {
            return Err(forbidden(
                write,
                format_args!("no PriorityClass with name {class_name} was found"),
            ));
        };
        (class_name.clone(), value(pc), policy(pc))
    };
    if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(
            write,
            format_args!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    let given_policy = spec_str(pod, "preemptionPolicy");
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        if !given_policy.is_empty() && given_policy != policy {
            return Err(forbidden(
                write,
                format_args!(
                    "the string value of PreemptionPolicy ({given_policy}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// An update keeps the priority admission gave the pod at create.
fn keep_pod_priority(pod: &mut Value, old: Option<&Value>) {
    let (Some(old), Some(spec)) = (old, pod.get_mut("spec").and_then(Value::as_object_mut)) else {
        return;
    };
    for field in ["priority", "preemptionPolicy"] {
        if spec.get(field).is_none_or(Value::is_null)
            && let Some(v) = old.pointer(&format!("/spec/{field}"))
        {
            spec.insert(field.into(), v.clone());
        }
    }
}

/// Kubernetes' `validatePriorityClass`: a second global default is refused.
async fn one_global_default(
    state: &AppState,
    op: Operation,
    write: &Write<'_>,
    pc: &Value,
) -> Result<(), ApiError> {
    if pc.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let classes = list(state, priority_classes(), None).await?;
    let Some(existing) = global_default(&classes) else {
        return Ok(());
    };
    let existing = meta_str(existing, "name").unwrap_or_default();
    if op == Operation::Create || existing != write.name {
        return Err(forbidden(
            write,
            format_args!(
                "PriorityClass {existing} is already marked as default. Only one default can exist"
            ),
        ));
    }
    Ok(())
}

/// As Kubernetes' PriorityClass storage: the system classes are never deleted.
fn refuse_system_delete(write: &Write<'_>) -> Result<(), ApiError> {
    if SYSTEM_PRIORITY_CLASSES
        .iter()
        .any(|(name, ..)| *name == write.name)
    {
        return Err(forbidden(
            write,
            "this is a system priority class and cannot be deleted",
        ));
    }
    Ok(())
}

fn priority_classes() -> &'static skiff_kinds::Kind {
    skiff_kinds::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are a known kind")
}

/// The global default class; the lowest value wins if several claim it (Kubernetes' rule).
fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|pc| value(pc))
}

fn value(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn policy(pc: &Value) -> Option<String> {
    pc.get("preemptionPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
}
