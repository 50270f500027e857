//! Conversion between a kind's served version and its storage version, for resources served in
//! two versions over one storage: autoscaling v1/v2 HorizontalPodAutoscaler (stored as v2) and
//! core/v1 / events.k8s.io/v1 Event (stored as core/v1); custom resources change `apiVersion`
//! only (the CRD's `None` conversion) and get their schema applied on read.

use serde_json::{Map, Value, json};

use crate::Kind;

/// Converts an object of `kind` (as a client sent it) to the storage version. Objects of kinds
/// stored in their own version are returned unchanged.
pub fn to_storage(kind: &Kind, obj: &Value) -> Value {
    if let Some(c) = kind.custom {
        return with_api_version(obj, &format!("{}/{}", c.group, c.storage_version));
    }
    match (kind.group, kind.version, kind.kind) {
        ("autoscaling", "v1", _) => hpa_v1_to_v2(obj),
        ("events.k8s.io", _, "Event") => event_v1_to_core(obj),
        _ => obj.clone(),
    }
}

/// Converts a stored object to the version `kind` serves.
pub fn from_storage(kind: &Kind, stored: &Value) -> Value {
    if kind.is_custom() {
        let mut obj = with_api_version(stored, &kind.api_version());
        crate::crd::default_on_read(kind, &mut obj);
        return obj;
    }
    match (kind.group, kind.version, kind.kind) {
        ("autoscaling", "v1", _) => hpa_v2_to_v1(stored),
        ("events.k8s.io", _, "Event") => event_core_to_v1(stored),
        _ => stored.clone(),
    }
}

/// A custom resource in another version of its CRD: only `apiVersion` changes (the `None`
/// conversion strategy).
fn with_api_version(obj: &Value, api_version: &str) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
    out
}

fn obj_map(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = m.remove(from) {
        m.insert(to.to_string(), v);
    }
}

const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// Removes an annotation holding JSON and returns its value.
fn take_annotation(out: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let annotations = out
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)?;
    let raw = annotations.remove(key)?;
    serde_json::from_str(raw.as_str()?).ok()
}

/// Stores `value` as a JSON annotation.
fn put_annotation(out: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(key.to_string(), json!(value.to_string()));
    }
}

fn drop_empty_annotations(out: &mut Map<String, Value>) {
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization")
}

fn hpa_v1_to_v2(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    let extra_metrics = take_annotation(&mut out, METRICS_ANNOTATION);
    let extra_current = take_annotation(&mut out, CURRENT_METRICS_ANNOTATION);
    let conditions = take_annotation(&mut out, CONDITIONS_ANNOTATION);
    let behavior = take_annotation(&mut out, BEHAVIOR_ANNOTATION);
    drop_empty_annotations(&mut out);
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        let mut metrics = Vec::new();
        if let Some(t) = spec.remove("targetCPUUtilizationPercentage") {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
        }
        if let Some(Value::Array(extra)) = extra_metrics {
            metrics.extend(extra);
        }
        if !metrics.is_empty() {
            spec.insert("metrics".into(), Value::Array(metrics));
        }
        if let Some(b) = behavior {
            spec.insert("behavior".into(), b);
        }
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        let mut current = Vec::new();
        if let Some(c) = status.remove("currentCPUUtilizationPercentage") {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}));
        }
        if let Some(Value::Array(extra)) = extra_current {
            current.extend(extra);
        }
        if !current.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = conditions {
            status.insert("conditions".into(), c);
        }
    }
    Value::Object(out)
}

fn hpa_v2_to_v1(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    let mut annotations = Vec::new();
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        let metrics = match spec.remove("metrics") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        let (cpu, rest): (Vec<Value>, Vec<Value>) =
            metrics.into_iter().partition(is_cpu_utilization);
        if let Some(t) = cpu
            .first()
            .and_then(|m| m.pointer("/resource/target/averageUtilization"))
        {
            spec.insert("targetCPUUtilizationPercentage".into(), t.clone());
        }
        if !rest.is_empty() {
            annotations.push((METRICS_ANNOTATION, Value::Array(rest)));
        }
        if let Some(b) = spec.remove("behavior") {
            annotations.push((BEHAVIOR_ANNOTATION, b));
        }
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        let current = match status.remove("currentMetrics") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        let (cpu, rest): (Vec<Value>, Vec<Value>) = current.into_iter().partition(|m| {
            m.get("type").and_then(Value::as_str) == Some("Resource")
                && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
                && m.pointer("/resource/current/averageUtilization").is_some()
        });
        if let Some(c) = cpu
            .first()
            .and_then(|m| m.pointer("/resource/current/averageUtilization"))
        {
            status.insert("currentCPUUtilizationPercentage".into(), c.clone());
        }
        if !rest.is_empty() {
            annotations.push((CURRENT_METRICS_ANNOTATION, Value::Array(rest)));
        }
        if let Some(c) = status.remove("conditions") {
            annotations.push((CONDITIONS_ANNOTATION, c));
        }
        status.entry("desiredReplicas").or_insert(json!(0));
    }
    for (key, value) in annotations {
        put_annotation(&mut out, key, &value);
    }
    Value::Object(out)
}

const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn event_v1_to_core(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("v1"));
    for (v1, core) in EVENT_RENAMES {
        rename(&mut out, v1, core);
    }
    Value::Object(out)
}

fn event_core_to_v1(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for (v1, core) in EVENT_RENAMES {
        rename(&mut out, core, v1);
    }
    if out.get("eventTime").is_none_or(Value::is_null) {
        // events.k8s.io/v1 requires eventTime; fall back to the legacy timestamps.
        let t = out
            .get("deprecatedFirstTimestamp")
            .or_else(|| out.get("deprecatedLastTimestamp"))
            .or_else(|| obj.pointer("/metadata/creationTimestamp"))
            .and_then(Value::as_str)
            .map(|t| t.trim_end_matches('Z').to_string() + ".000000Z");
        if let Some(t) = t {
            out.insert("eventTime".into(), json!(t));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::find_by_kind;

    #[test]
    fn hpa_v1_round_trips_through_v2_storage() {
        let v1 = find_by_kind("autoscaling/v1", "HorizontalPodAutoscaler").expect("v1");
        let obj = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40}
        });
        let stored = to_storage(v1, &obj);
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 50})
        );
        assert_eq!(
            stored["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        assert_eq!(from_storage(v1, &stored), obj);
        let v2 = find_by_kind("autoscaling/v2", "HorizontalPodAutoscaler").expect("v2");
        assert_eq!(from_storage(v2, &stored), stored);

        // What v1 cannot express rides in annotations and comes back on the way in.
        let rich = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                     "metrics": [
                         {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                         {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
                     ],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "conditions": [{"type": "AbleToScale", "status": "True"}]}
        });
        let as_v1 = from_storage(v1, &rich);
        assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(as_v1["spec"].get("metrics").is_none());
        assert!(
            as_v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"].is_string()
        );
        assert_eq!(to_storage(v1, &as_v1), rich);
    }

    #[test]
    fn events_convert_between_core_and_events_v1() {
        let ev = find_by_kind("events.k8s.io/v1", "Event").expect("events v1");
        let core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Pulled", "message": "done",
            "source": {"component": "kubelet"}, "firstTimestamp": "2026-01-01T00:00:00Z", "count": 2,
            "reportingComponent": "kubelet", "type": "Normal"
        });
        let v1 = from_storage(ev, &core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "done");
        assert_eq!(v1["deprecatedCount"], 2);
        assert_eq!(v1["eventTime"], "2026-01-01T00:00:00.000000Z");
        let back = to_storage(ev, &v1);
        assert_eq!(back["involvedObject"], core["involvedObject"]);
        assert_eq!(back["message"], "done");
        assert_eq!(back["reportingComponent"], "kubelet");
    }
}
