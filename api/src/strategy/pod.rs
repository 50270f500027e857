//! Pod rules: a pod on a node is deleted gracefully (the node finishes the delete), and a status
//! write keeps the stored owner references.

use serde_json::Value;

use super::{DeleteRule, Strategy, keep_stored_meta, reset_spec};

pub(crate) struct PodStrategy;

impl Strategy for PodStrategy {
    /// As Kubernetes' `podStatusStrategy`: the spec and the owner references stay as stored.
    fn prepare_for_status_update(&self, old: &Value, new: Value) -> Value {
        let mut merged = reset_spec(old, new);
        keep_stored_meta(old, &mut merged, &["ownerReferences"]);
        merged
    }

    /// As Kubernetes' `CheckGracefulDelete` for pods: a pod bound to a node that has not finished
    /// waits for the node, for the requested grace period or its own (30 s by default); an
    /// unscheduled or finished pod goes at once.
    fn before_delete(&self, pod: &Value, grace_seconds: Option<i64>) -> DeleteRule {
        let on_node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !on_node || finished {
            return DeleteRule::default();
        }
        let grace = grace_seconds
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        DeleteRule {
            mark: grace > 0,
            grace_seconds: (grace > 0).then_some(grace),
        }
    }
}
