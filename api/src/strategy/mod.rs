//! Per-kind rules of the write path, as Kubernetes' registry strategies: what a status write
//! keeps, when an update completes a deletion, and what a delete does before it removes the object.
//! The generic verbs and `registry` ask `for_kind(kind)` and never compare kind names themselves.

mod csr;
mod namespace;
mod pod;
mod workloads;

use serde_json::Value;
use skiff_kinds::Kind;

use crate::objects::{self, meta_mut};
use crate::state::UserInfo;

/// How a delete proceeds, as decided by `Strategy::before_delete`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DeleteRule {
    /// The object must be marked for deletion even without finalizers (a namespace, a pod on a
    /// node): it is stored with a deletion timestamp instead of being removed.
    pub(crate) mark: bool,
    /// The grace period to record, if the deletion waits for one (a pod on its node).
    pub(crate) grace_seconds: Option<i64>,
}

/// The rules of one kind. Defaults are Kubernetes' generic behaviour.
pub(crate) trait Strategy: Sync {
    /// Kubernetes' `PrepareForCreate` beyond the generic rules: fields the server sets from the
    /// requesting user (a CertificateSigningRequest's requestor).
    fn prepare_for_create(&self, _obj: &mut Value, _user: &UserInfo) {}

    /// Kubernetes' `PrepareForUpdate` of the object itself, after the status was kept as stored:
    /// fields an update may not change are put back (a CertificateSigningRequest's spec).
    fn prepare_for_update(&self, _old: &Value, new: Value) -> Value {
        new
    }

    /// The object a write to the `approval` subresource stores (CertificateSigningRequests).
    fn prepare_for_approval_update(&self, old: &Value, new: Value) -> Value {
        reset_spec(old, new)
    }

    /// Kubernetes' status strategy `PrepareForUpdate`: the object a write to the `status`
    /// subresource stores, from the stored object and the request's. By default the spec (every
    /// top-level field but `metadata` and `status`) stays as stored; `status` and the metadata
    /// come from the request.
    fn prepare_for_status_update(&self, old: &Value, new: Value) -> Value {
        reset_spec(old, new)
    }

    /// Kubernetes' `ShouldDeleteDuringUpdate`: whether an update that leaves the object being
    /// deleted, with no finalizers and no grace period left, removes it.
    fn should_delete_during_update(&self, obj: &Value) -> bool {
        let grace_left = objects::meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        objects::is_deleting(obj) && objects::finalizers(obj).is_empty() && !grace_left
    }

    /// Kubernetes' `BeforeDelete`: whether the object is marked rather than removed, and with
    /// what grace period. `grace_seconds` is the one the client asked for.
    fn before_delete(&self, _obj: &Value, _grace_seconds: Option<i64>) -> DeleteRule {
        DeleteRule::default()
    }

    /// Changes an object gets when it is marked for deletion, beyond its deletion timestamp.
    fn mark_for_delete(&self, _obj: &mut Value) {}

    /// The `status.selector` of the object's `scale` subresource: its `spec.selector` (a
    /// `metav1.LabelSelector`) in the query syntax, `""` if it has none.
    fn scale_selector(&self, obj: &Value) -> String {
        obj.pointer("/spec/selector")
            .and_then(|s| skiff_meta::selector::LabelSelector::from_json(s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}

/// Kinds without rules of their own.
struct Generic;

impl Strategy for Generic {}

/// The strategy of a kind.
pub(crate) fn for_kind(kind: &Kind) -> &'static dyn Strategy {
    match (kind.group, kind.kind) {
        ("", "Pod") => &pod::PodStrategy,
        ("", "Namespace") => &namespace::NamespaceStrategy,
        ("apps", "Deployment" | "StatefulSet") => &workloads::KeepLabelsOnStatus,
        ("", "ReplicationController") => &workloads::ReplicationController,
        ("certificates.k8s.io", "CertificateSigningRequest") => &csr::CsrStrategy,
        _ => &Generic,
    }
}

/// The stored spec with the request's `status` and metadata: what every status strategy starts from.
pub(crate) fn reset_spec(old: &Value, new: Value) -> Value {
    let mut merged = new;
    let Some(m) = merged.as_object_mut() else {
        return old.clone();
    };
    let kept = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    m.retain(|k, v| kept(k) && !v.is_null());
    if let Some(o) = old.as_object() {
        for (k, v) in o {
            if !kept(k) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    merged
}

/// Keeps metadata fields as stored, whatever the request sent (absent if absent there).
pub(crate) fn keep_stored_meta(old: &Value, new: &mut Value, fields: &[&str]) {
    for field in fields {
        match objects::meta(old).and_then(|m| m.get(*field)).cloned() {
            Some(v) => {
                meta_mut(new).insert((*field).into(), v);
            }
            None => {
                meta_mut(new).remove(*field);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kind(group: &str, version: &str, plural: &str) -> &'static Kind {
        skiff_kinds::find(group, version, plural).unwrap()
    }

    #[test]
    fn a_pod_on_a_node_is_deleted_gracefully() {
        let pods = for_kind(kind("", "v1", "pods"));
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}});
        let rule = |pod: &Value, grace| pods.before_delete(pod, grace);
        assert_eq!(rule(&bound, None).grace_seconds, Some(5));
        assert_eq!(rule(&bound, Some(2)).grace_seconds, Some(2));
        assert_eq!(rule(&bound, Some(0)), DeleteRule::default());
        assert_eq!(rule(&json!({"spec": {}}), None), DeleteRule::default());
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(rule(&done, None), DeleteRule::default());
        assert_eq!(
            rule(&json!({"spec": {"nodeName": "n1"}}), None).grace_seconds,
            Some(30)
        );
    }

    #[test]
    fn a_namespace_is_marked_terminating_and_waits_for_its_spec_finalizers() {
        let namespaces = for_kind(kind("", "v1", "namespaces"));
        assert!(namespaces.before_delete(&json!({}), None).mark);
        let mut ns = json!({"status": {"phase": "Active"}});
        namespaces.mark_for_delete(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        let deleting = |spec_finalizers: Value| {
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"finalizers": spec_finalizers}})
        };
        assert!(!namespaces.should_delete_during_update(&deleting(json!(["kubernetes"]))));
        assert!(namespaces.should_delete_during_update(&deleting(json!([]))));
        // Other kinds have no spec finalizers to wait for.
        let maps = for_kind(kind("", "v1", "configmaps"));
        assert!(maps.should_delete_during_update(&deleting(json!(["kubernetes"]))));
    }

    #[test]
    fn status_writes_keep_the_stored_spec_and_per_kind_metadata() {
        let old = json!({"metadata": {"labels": {"a": "1"}, "ownerReferences": [{"uid": "u"}]},
            "spec": {"replicas": 1}, "status": {}});
        let new = json!({"metadata": {"labels": {"a": "2"}, "annotations": {"x": "y"}},
            "spec": {"replicas": 5}, "status": {"ready": 1}});
        let generic = for_kind(kind("networking.k8s.io", "v1", "ingresses"))
            .prepare_for_status_update(&old, new.clone());
        assert_eq!(generic["spec"]["replicas"], 1);
        assert_eq!(generic["metadata"]["labels"]["a"], "2");
        assert_eq!(generic["metadata"]["annotations"]["x"], "y");
        assert_eq!(generic["status"]["ready"], 1);
        let deployment = for_kind(kind("apps", "v1", "deployments"))
            .prepare_for_status_update(&old, new.clone());
        assert_eq!(deployment["metadata"]["labels"]["a"], "1");
        assert_eq!(deployment["metadata"]["annotations"]["x"], "y");
        let pod = for_kind(kind("", "v1", "pods")).prepare_for_status_update(&old, new);
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u");
        assert_eq!(pod["metadata"]["labels"]["a"], "2");
    }

    #[test]
    fn scale_selectors_follow_the_kinds_selector_type() {
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web", "a": "b"}}}});
        assert_eq!(
            for_kind(kind("apps", "v1", "replicasets")).scale_selector(&rs),
            "a=b,app=web"
        );
        let rc = json!({"spec": {"selector": {"tier": "fe", "app": "web"}}});
        assert_eq!(
            for_kind(kind("", "v1", "replicationcontrollers")).scale_selector(&rc),
            "app=web,tier=fe"
        );
        assert_eq!(
            for_kind(kind("", "v1", "replicationcontrollers")).scale_selector(&json!({})),
            ""
        );
    }
}
