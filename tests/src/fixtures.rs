//! Objects and manifests the end-to-end tests share, and small readers of what they return.

use k8s_openapi::api::core::v1::Pod;

/// A Deployment `name` of `replicas` pods labelled `app: NAME`, one container `app` running
/// `example.com/hello:v1` (a simulated node runs any image).
pub fn deployment(name: &str, replicas: i32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: example.com/hello:v1
"#
    )
}

/// The node a pod is bound to (empty while unscheduled).
pub fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// The image of a pod's first container.
pub fn image_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The pod's phase, if it has a status.
pub fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

/// Whether the pod's Ready condition is True.
pub use skiff_meta::pod::is_pod_ready as is_ready;
