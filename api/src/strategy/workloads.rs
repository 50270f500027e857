//! Workload rules: as Kubernetes' Deployment and StatefulSet status strategies, a status write
//! keeps the stored labels; a ReplicationController's scale selector is its plain label map.

use serde_json::Value;

use super::{Strategy, keep_stored_meta, reset_spec};

pub(crate) struct KeepLabelsOnStatus;

impl Strategy for KeepLabelsOnStatus {
    fn prepare_for_status_update(&self, old: &Value, new: Value) -> Value {
        let mut merged = reset_spec(old, new);
        keep_stored_meta(old, &mut merged, &["labels"]);
        merged
    }
}

/// ReplicationController: its selector is a plain label map (equality only).
pub(crate) struct ReplicationController;

impl Strategy for ReplicationController {
    /// `labels.SelectorFromSet(spec.selector).String()`, as Kubernetes' RC scale subresource.
    fn scale_selector(&self, obj: &Value) -> String {
        let mut pairs: Vec<String> = obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        pairs.join(",")
    }
}
