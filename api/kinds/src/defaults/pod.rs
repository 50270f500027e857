//! Pod and pod template defaults: restart and DNS policy, container pull policy and termination
//! message, admission's service account and tolerations, and the QoS class (priority comes from
//! the API server's priority admission).

use serde_json::{Value, json};

use super::{each_mut, set, str_at};

pub(super) fn pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        pod_spec(spec);
        set(spec, &["serviceAccountName"], json!("default"));
        let sa = str_at(spec, "/serviceAccountName")
            .unwrap_or("default")
            .to_string();
        set(spec, &["serviceAccount"], json!(sa));
        default_tolerations(spec);
    }
    set(obj, &["status", "phase"], json!("Pending"));
    let qos = qos_class(obj);
    set(obj, &["status", "qosClass"], json!(qos));
}

/// The not-ready/unreachable NoExecute tolerations of 300s that admission adds to every pod.
fn default_tolerations(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    let tols = map
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if tols.is_null() {
        *tols = Value::Array(Vec::new());
    }
    let Some(list) = tols.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str);
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == Some(key)
                || (k.is_none() && t.get("operator").and_then(Value::as_str) == Some("Exists")))
                && (e.is_empty() || e == "NoExecute")
        });
        if !present {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// The pod spec defaults (also applied to templates).
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set(spec, &["restartPolicy"], json!("Always"));
    set(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set(spec, &["terminationGracePeriodSeconds"], json!(30));
    set(spec, &["securityContext"], json!({}));
    set(spec, &["schedulerName"], json!("default-scheduler"));
    set(spec, &["enableServiceLinks"], json!(true));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_mut(spec, &[list]) {
            container(c);
        }
    }
    for v in each_mut(spec, &["volumes"]) {
        for src in ["configMap", "secret", "projected", "downwardAPI"] {
            if v.get(src).is_some_and(Value::is_object) {
                set(v, &[src, "defaultMode"], json!(420));
            }
        }
        if v.get("hostPath").is_some_and(Value::is_object) {
            set(v, &["hostPath", "type"], json!(""));
        }
    }
}

fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    set(
        c,
        &["terminationMessagePath"],
        json!("/dev/termination-log"),
    );
    set(c, &["terminationMessagePolicy"], json!("File"));
    let image = str_at(c, "/image").unwrap_or_default().to_string();
    set(
        c,
        &["imagePullPolicy"],
        json!(skiff_meta::pod::default_pull_policy(&image)),
    );
    set(c, &["resources"], json!({}));
    // Quantities written as YAML numbers are stored as strings, as the API server serializes them.
    for part in ["limits", "requests"] {
        if let Some(m) = c
            .pointer_mut(&format!("/resources/{part}"))
            .and_then(Value::as_object_mut)
        {
            for v in m.values_mut() {
                if let Value::Number(n) = v {
                    *v = Value::String(n.to_string());
                }
            }
        }
    }
    // Requests default to limits for resources that only have a limit.
    if let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    {
        for (k, v) in limits {
            set(c, &["resources", "requests", &k], v);
        }
    }
    for p in each_mut(c, &["ports"]) {
        set(p, &["protocol"], json!("TCP"));
    }
    for e in each_mut(c, &["env"]) {
        if e.pointer("/valueFrom/fieldRef")
            .is_some_and(Value::is_object)
        {
            set(e, &["valueFrom", "fieldRef", "apiVersion"], json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if c.get(probe).is_some_and(Value::is_object) {
            set(c, &[probe, "timeoutSeconds"], json!(1));
            set(c, &[probe, "periodSeconds"], json!(10));
            set(c, &[probe, "successThreshold"], json!(1));
            set(c, &[probe, "failureThreshold"], json!(3));
            if c.pointer(&format!("/{probe}/httpGet"))
                .is_some_and(Value::is_object)
            {
                set(c, &[probe, "httpGet", "scheme"], json!("HTTP"));
            }
        }
    }
}

/// The pod's quality-of-service class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    skiff_meta::qos::qos_class_json(pod.get("spec").unwrap_or(&Value::Null)).as_str()
}
