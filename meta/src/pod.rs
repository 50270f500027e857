//! Pod rules shared by the API server, the controllers and the node: readiness and the default
//! image pull policy.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// Kubernetes' default `imagePullPolicy`: `Always` for images tagged `:latest` or untagged (and
/// not pinned by digest), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None | Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Whether a pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// [`is_pod_ready`] for a pod given as JSON.
pub fn is_pod_ready_json(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_policy_defaults() {
        for (image, want) in [
            ("hello", "Always"),
            ("hello:latest", "Always"),
            ("hello:1.0", "IfNotPresent"),
            ("127.0.0.1:5000/demo/hello", "Always"),
            ("127.0.0.1:5000/demo/hello:1.0", "IfNotPresent"),
            ("hello@sha256:abcd", "IfNotPresent"),
            ("hello:latest@sha256:abcd", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn readiness_reads_the_ready_condition() {
        for (conditions, want) in [
            (json!([{"type": "Ready", "status": "True"}]), true),
            (json!([{"type": "Ready", "status": "False"}]), false),
            (json!([{"type": "Ready", "status": "Unknown"}]), false),
            (
                json!([{"type": "ContainersReady", "status": "True"}]),
                false,
            ),
            (json!([]), false),
        ] {
            let pod = json!({"metadata": {"name": "p"}, "status": {"conditions": conditions}});
            assert_eq!(is_pod_ready_json(&pod), want, "{conditions}");
            let typed: Pod = serde_json::from_value(pod).unwrap();
            assert_eq!(is_pod_ready(&typed), want, "{conditions}");
        }
        assert!(!is_pod_ready_json(&json!({})));
    }
}
