//! Pod and pod template defaults: restart and DNS policy, container pull policy and termination
//! message, admission's service account and tolerations, and the QoS class.

use serde_json::{Map, Value, json};

use super::{each_mut, set, str_at};

pub(super) fn pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        pod_spec(spec);
        set(spec, &["serviceAccountName"], json!("default"));
        let sa = str_at(spec, "/serviceAccountName")
            .unwrap_or("default")
            .to_string();
        set(spec, &["serviceAccount"], json!(sa));
        set(spec, &["priority"], json!(0));
        set(spec, &["preemptionPolicy"], json!("PreemptLowerPriority"));
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
    set(c, &["imagePullPolicy"], json!(pull_policy(&image)));
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

/// `Always` for images tagged `:latest` or untagged (and not pinned by digest), else `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The pod's quality-of-service class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let mut containers: Vec<&Value> = Vec::new();
    for list in ["/spec/containers", "/spec/initContainers"] {
        if let Some(cs) = pod.pointer(list).and_then(Value::as_array) {
            containers.extend(cs);
        }
    }
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let get = |m: Option<&Map<String, Value>>, k: &str| {
            m.and_then(|m| m.get(k)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        for res in ["cpu", "memory"] {
            let (r, l) = (get(requests, res), get(limits, res));
            if r.as_deref().is_some_and(|q| !is_zero_quantity(q)) || l.is_some() {
                any = true;
            }
            let differ = match (r.as_deref(), l.as_deref()) {
                (Some(r), Some(l)) => {
                    quantity_value(r) != quantity_value(l) || quantity_value(r).is_none()
                }
                _ => false,
            };
            if l.is_none() || differ {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The numeric value of a resource quantity (`500m`, `1Gi`, `1e3`), for comparisons.
pub fn quantity_value(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

fn is_zero_quantity(q: &str) -> bool {
    q.trim_start_matches(['+', '-'])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .all(|c| c == '0' || c == '.')
}
