//! Namespace rules: a delete marks the namespace Terminating (the namespace controller empties
//! it), and it is removed only once its spec finalizers are gone too.

use serde_json::{Value, json};

use super::{DeleteRule, Strategy};

pub(crate) struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn should_delete_during_update(&self, obj: &Value) -> bool {
        let spec_finalizers_left = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        !spec_finalizers_left && super::Generic.should_delete_during_update(obj)
    }

    fn before_delete(&self, _obj: &Value, _grace_seconds: Option<i64>) -> DeleteRule {
        DeleteRule {
            mark: true,
            grace_seconds: None,
        }
    }

    /// A namespace being deleted reports `status.phase` Terminating.
    fn mark_for_delete(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Terminating"}));
        }
    }
}
