//! Selectable fields for `fieldSelector`, per kind, with the values the API server compares.

use serde_json::Value;

use crate::Kind;

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// The fields beyond `metadata.name`/`metadata.namespace` that a kind lets clients select on.
pub fn selectable(kind: &Kind) -> &'static [&'static str] {
    match (kind.group, kind.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Event") | ("events.k8s.io", "Event") => EVENT_FIELDS,
        ("", "Namespace") => &["status.phase"],
        ("", "Secret") => &["type"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("apps", "ReplicaSet") | ("", "ReplicationController") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", _) => &["spec.signerName"],
        _ => &[],
    }
}

/// Whether `path` may appear in a field selector for `kind`.
pub fn is_selectable(kind: &Kind, path: &str) -> bool {
    path == "metadata.name"
        || (kind.namespaced && path == "metadata.namespace")
        || selectable(kind).contains(&path)
}

/// The value of a selectable field of `obj` (absent fields are `""`; booleans `"true"`/`"false"`),
/// or `None` if `path` is not selectable for `kind`.
pub fn value(kind: &Kind, obj: &Value, path: &str) -> Option<String> {
    if !is_selectable(kind, path) {
        return None;
    }
    let get = |p: &str| -> Option<&Value> {
        let ptr = format!("/{}", p.replace('.', "/"));
        obj.pointer(&ptr)
    };
    let render = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    let events_v1 = kind.group == "events.k8s.io";
    Some(match path {
        "metadata.namespace" if !kind.namespaced => String::new(),
        "spec.unschedulable" | "spec.hostNetwork" => get(path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        "status.replicas" | "status.successful" => {
            get(path).and_then(Value::as_i64).unwrap_or(0).to_string()
        }
        "status.podIPs" => obj
            .pointer("/status/podIPs")
            .and_then(Value::as_array)
            .map(|ips| {
                ips.iter()
                    .filter_map(|i| i.get("ip").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        p if events_v1 && p.starts_with("involvedObject.") => {
            let rest = &p["involvedObject.".len()..];
            render(obj.get("regarding").and_then(|r| r.get(rest)))
        }
        // As Kubernetes' ToSelectableFields: `source` is the source component, or the reporting
        // controller when the event has none (events written through events.k8s.io/v1).
        "source" if events_v1 => first_non_empty(
            render(obj.pointer("/deprecatedSource/component")),
            render(obj.get("reportingController")),
        ),
        "reportingComponent" if events_v1 => render(obj.get("reportingController")),
        "source" => first_non_empty(
            render(obj.pointer("/source/component")),
            render(obj.get("reportingComponent")),
        ),
        "reportingComponent" => render(obj.get("reportingComponent")),
        p => render(get(p)),
    })
}

fn first_non_empty(a: String, b: String) -> String {
    if a.is_empty() { b } else { a }
}

#[cfg(test)]
mod tests;
