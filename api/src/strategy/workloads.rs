//! Workload rules: as Kubernetes' Deployment and StatefulSet status strategies, a status write
//! keeps the stored labels.

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
