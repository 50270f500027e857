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

/// A Deployment `name` of `replicas` pods labelled `app: NAME` running the HTTP component
/// `image` on port 8080 (`POD_NAME` from the downward API, readiness `httpGet /` every second,
/// rolling updates that never drop below the wanted count), with `annotations` (YAML flow map
/// entries, may be empty) and, when `spread`, at most one pod more in any zone than in another;
/// and a Service `name` (port 80, named `http`, to 8080) selecting them.
pub fn http_app(name: &str, image: &str, replicas: i32, annotations: &str, spread: bool) -> String {
    let spread = if spread {
        format!(
            "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: topology.kubernetes.io/zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector: {{matchLabels: {{app: {name}}}}}\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{spread}      containers:
      - name: app
        image: {image}
        ports: [{{name: http, containerPort: 8080}}]
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
"#
    )
}

/// An Ingress `name` of class `skiff` sending every path of `host` to Service `service` port 80.
pub fn host_ingress(name: &str, host: &str, service: &str) -> String {
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
spec:
  ingressClassName: skiff
  rules:
  - host: "{host}"
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {service}, port: {{number: 80}}}}}}
"#
    )
}

/// Percent-encodes `s` for a query parameter.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The pod that answered, from the frontend sample's answer `POD PATH`.
pub fn answering_pod(body: &str) -> &str {
    body.split_whitespace().next().unwrap_or("")
}
