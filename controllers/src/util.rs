//! Shared helpers for the controllers: quantities and label selectors (through skiff-meta), pod state and owner references.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::ResourceExt;
use skiff_meta::quantity::{Quantity, QuantityError};

/// Millicores of a CPU quantity ("100m", "1", "0.5", "2k"), rounded up.
pub fn cpu_millis(q: &str) -> Result<i64, QuantityError> {
    Ok(Quantity::parse(q)?.milli_i64())
}

/// Whole units of a quantity (bytes of memory, a pod count), rounded up.
pub fn whole_units(q: &str) -> Result<i64, QuantityError> {
    Ok(Quantity::parse(q)?.value_i64())
}

/// Whether `labels` satisfy a LabelSelector (matchLabels and matchExpressions).
/// A missing or invalid selector matches nothing; an empty one matches everything.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.and_then(|s| skiff_meta::selector::LabelSelector::from_k8s(s).ok())
        .is_some_and(|s| s.matches(labels))
}

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// An ownerReference with controller=true and blockOwnerDeletion=true pointing at `owner`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the object is owned (as controller) by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == uid)
}

/// Pod phase, "Pending" when unset.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod finished (Succeeded or Failed).
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod is active: not finished and not being deleted.
pub fn pod_active(pod: &Pod) -> bool {
    !pod_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition: whether it is True and since when.
pub fn pod_ready(pod: &Pod) -> Option<jiff::Timestamp> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`.
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    if !pod_active(pod) {
        return false;
    }
    match pod_ready(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => now.as_second() - since.as_second() >= i64::from(min_ready_seconds),
    }
}

/// A pod built from a template, owned by `owner`, named `generateName`-style or explicitly.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    generate_name: Option<String>,
    name: Option<String>,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Current time as a Kubernetes Time.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// `namespace/name` of an object.
pub fn key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// A stable FNV-1a hash of a JSON value, rendered like Kubernetes' pod-template-hash.
pub fn template_hash(value: &serde_json::Value) -> String {
    let s = value.to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    // Kubernetes renders the hash with a "safe" alphabet (no vowels), 10 characters or so.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut x = (h as u32) ^ ((h >> 32) as u32);
    for _ in 0..10 {
        out.push(ALPHABET[(x % ALPHABET.len() as u32) as usize] as char);
        x /= ALPHABET.len() as u32;
        if x == 0 {
            break;
        }
    }
    out
}

/// Writes `status` to the status subresource as a merge patch, unless merging it into `current`
/// (the object's status as last seen) changes nothing. A vanished object is not an error.
pub async fn patch_status_if_changed<K>(
    api: &kube::Api<K>,
    name: &str,
    current: serde_json::Value,
    status: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut merged = current.clone();
    if let (Some(m), Some(s)) = (merged.as_object_mut(), status.as_object()) {
        for (k, v) in s {
            if v.is_null() {
                m.remove(k);
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    if merged == current {
        return Ok(());
    }
    match api
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("100m"), Ok(100));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("1n"), Ok(1));
        assert_eq!(whole_units("128Mi"), Ok(128 * 1024 * 1024));
        assert_eq!(whole_units("1G"), Ok(1_000_000_000));
        assert_eq!(whole_units("1e3"), Ok(1000));
        assert_eq!(whole_units("110"), Ok(110));
        assert!(whole_units("junk").is_err());
        assert!(cpu_millis("").is_err());
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: None,
        };
        assert!(selector_matches(Some(&sel), &labels));
        assert!(!selector_matches(None, &labels));
        assert!(selector_matches(Some(&LabelSelector::default()), &labels));
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Bogus".into(),
                    values: None,
                },
            ]),
        };
        assert!(!selector_matches(Some(&bad), &labels));
    }
}
