//! Conversion between a kind's served version and its storage version, for resources served in
//! two versions over one storage: autoscaling v1/v2 HorizontalPodAutoscaler (stored as v2) and
//! core/v1 / events.k8s.io/v1 Event (stored as core/v1).

use serde_json::{Map, Value, json};

use crate::Kind;

/// Converts an object of `kind` (as a client sent it) to the storage version. Objects of kinds
/// stored in their own version are returned unchanged.
pub fn to_storage(kind: &Kind, obj: &Value) -> Value {
    match (kind.group, kind.version, kind.kind) {
        ("autoscaling", "v1", _) => hpa_v1_to_v2(obj),
        ("events.k8s.io", _, "Event") => event_v1_to_core(obj),
        _ => obj.clone(),
    }
}

/// Converts a stored object to the version `kind` serves.
pub fn from_storage(kind: &Kind, stored: &Value) -> Value {
    match (kind.group, kind.version, kind.kind) {
        ("autoscaling", "v1", _) => hpa_v2_to_v1(stored),
        ("events.k8s.io", _, "Event") => event_core_to_v1(stored),
        _ => stored.clone(),
    }
}

fn obj_map(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = m.remove(from) {
        m.insert(to.to_string(), v);
    }
}

fn hpa_v1_to_v2(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(t) = spec.remove("targetCPUUtilizationPercentage")
    {
        spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}]),
            );
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut)
        && let Some(c) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
            );
    }
    Value::Object(out)
}

fn hpa_v2_to_v1(obj: &Value) -> Value {
    let mut out = obj_map(obj);
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        let metrics = spec.remove("metrics");
        spec.remove("behavior");
        let cpu = metrics
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
                        && m.pointer("/resource/target/type").and_then(Value::as_str)
                            == Some("Utilization")
                })
            })
            .and_then(|m| m.pointer("/resource/target/averageUtilization").cloned());
        if let Some(cpu) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), cpu);
        }
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        let current = status.remove("currentMetrics");
        status.remove("conditions");
        let cpu = current
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
            })
            .and_then(|m| m.pointer("/resource/current/averageUtilization").cloned());
        if let Some(cpu) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), cpu);
        }
        status.entry("desiredReplicas").or_insert(json!(0));
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
