//! Defaulting: the values the Kubernetes API server fills in on create and update, so that stored
//! objects (and kubectl's output) look the same as on a real cluster.

use serde_json::{Map, Value, json};

use crate::Kind;

mod pod;

pub use pod::qos_class;
use pod::{pod, pod_spec};
pub use skiff_meta::pod::default_pull_policy as pull_policy;

/// Fills in defaults for `obj` of `kind`. Run it after the request's status has been reset (pods
/// get `status.phase: Pending`), after `metadata.name`/`uid` are set (Jobs derive their selector
/// from the uid), and before [`crate::validate::validate`].
pub fn apply(kind: &Kind, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    if kind.is_custom() {
        crate::crd::apply_schema(kind, obj);
        return;
    }
    if kind.group == "apiextensions.k8s.io" && kind.kind == "CustomResourceDefinition" {
        crate::crd::default_crd(obj);
    }
    match (kind.group, kind.kind) {
        ("", "Pod") => pod(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => secret(obj),
        ("", "PersistentVolumeClaim") => {
            set(obj, &["spec", "volumeMode"], json!("Filesystem"));
            set(obj, &["status", "phase"], json!("Pending"));
        }
        ("", "PersistentVolume") => {
            set(
                obj,
                &["spec", "persistentVolumeReclaimPolicy"],
                json!("Retain"),
            );
            set(obj, &["spec", "volumeMode"], json!("Filesystem"));
            set(obj, &["status", "phase"], json!("Pending"));
        }
        ("", "Endpoints") => {
            for subset in each_mut(obj, &["subsets"]) {
                for port in each_mut(subset, &["ports"]) {
                    set(port, &["protocol"], json!("TCP"));
                }
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            set(obj, &["reclaimPolicy"], json!("Delete"));
            set(obj, &["volumeBindingMode"], json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set(obj, &["preemptionPolicy"], json!("PreemptLowerPriority"));
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in each_mut(obj, &["ports"]) {
                set(port, &["protocol"], json!("TCP"));
            }
        }
        ("apps", "Deployment") => {
            set(obj, &["spec", "replicas"], json!(1));
            let strategy_type = str_at(obj, "/spec/strategy/type")
                .unwrap_or("RollingUpdate")
                .to_string();
            set(obj, &["spec", "strategy", "type"], json!(strategy_type));
            if strategy_type == "RollingUpdate" {
                set(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                    json!("25%"),
                );
                set(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxSurge"],
                    json!("25%"),
                );
            }
            set(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            template(obj, &["spec", "template"]);
        }
        ("", "PodTemplate") => template(obj, &["template"]),
        ("apps", "ReplicaSet") => {
            set(obj, &["spec", "replicas"], json!(1));
            template(obj, &["spec", "template"]);
        }
        ("", "ReplicationController") => replication_controller(obj),
        ("apps", "DaemonSet") => {
            let t = str_at(obj, "/spec/updateStrategy/type")
                .unwrap_or("RollingUpdate")
                .to_string();
            set(obj, &["spec", "updateStrategy", "type"], json!(t));
            if t == "RollingUpdate" {
                set(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
                    json!(1),
                );
                set(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
                    json!(0),
                );
            }
            set(obj, &["spec", "revisionHistoryLimit"], json!(10));
            template(obj, &["spec", "template"]);
        }
        ("apps", "StatefulSet") => {
            set(obj, &["spec", "replicas"], json!(1));
            set(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            let t = str_at(obj, "/spec/updateStrategy/type")
                .unwrap_or("RollingUpdate")
                .to_string();
            set(obj, &["spec", "updateStrategy", "type"], json!(t));
            if t == "RollingUpdate" {
                set(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "partition"],
                    json!(0),
                );
            }
            set(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set(
                obj,
                &[
                    "spec",
                    "persistentVolumeClaimRetentionPolicy",
                    "whenDeleted",
                ],
                json!("Retain"),
            );
            set(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"],
                json!("Retain"),
            );
            for pvc in each_mut(obj, &["spec", "volumeClaimTemplates"]) {
                set(pvc, &["spec", "volumeMode"], json!("Filesystem"));
                set(pvc, &["status", "phase"], json!("Pending"));
            }
            template(obj, &["spec", "template"]);
        }
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => {
            set(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
            set(obj, &["spec", "suspend"], json!(false));
            set(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
            set(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
            template(obj, &["spec", "jobTemplate", "spec", "template"]);
        }
        ("autoscaling", _) => hpa(kind, obj),
        ("networking.k8s.io", "NetworkPolicy") => {
            if obj.pointer("/spec/policyTypes").is_none_or(Value::is_null) {
                let mut types = vec![json!("Ingress")];
                if obj.pointer("/spec/egress").is_some_and(|e| !e.is_null()) {
                    types.push(json!("Egress"));
                }
                set(obj, &["spec", "policyTypes"], Value::Array(types));
            }
            for dir in ["ingress", "egress"] {
                for rule in each_mut(obj, &["spec", dir]) {
                    for port in each_mut(rule, &["ports"]) {
                        set(port, &["protocol"], json!("TCP"));
                    }
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            set(
                obj,
                &["roleRef", "apiGroup"],
                json!("rbac.authorization.k8s.io"),
            );
            for subject in each_mut(obj, &["subjects"]) {
                let group = match subject.get("kind").and_then(Value::as_str) {
                    Some("User" | "Group") => "rbac.authorization.k8s.io",
                    _ => "",
                };
                if subject
                    .get("apiGroup")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                    && !group.is_empty()
                    && let Some(m) = subject.as_object_mut()
                {
                    m.insert("apiGroup".into(), json!(group));
                }
            }
        }
        ("", "LimitRange") => {
            for item in each_mut(obj, &["spec", "limits"]) {
                if item.get("type").and_then(Value::as_str) != Some("Container") {
                    continue;
                }
                // Default limits come from max, default requests from the default limits, then
                // from min (Kubernetes' `SetDefaults_LimitRangeItem`).
                for (from, to) in [
                    ("max", "default"),
                    ("default", "defaultRequest"),
                    ("min", "defaultRequest"),
                ] {
                    if let Some(src) = item.get(from).and_then(Value::as_object).cloned() {
                        for (k, v) in src {
                            set(item, &[to, &k], v);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Defaults for an update: first carries over the values the server allocated on create that a
/// client may leave out of a full replacement (a Service's cluster IPs, node ports and IP
/// families; a Job's generated selector and template labels), then applies [`apply`].
pub fn apply_update(kind: &Kind, obj: &mut Value, old: &Value) {
    match (kind.group, kind.kind) {
        ("", "Service") => {
            drop_type_dependent_fields(obj, old);
            let same_type = str_at(obj, "/spec/type").unwrap_or("ClusterIP")
                == str_at(old, "/spec/type").unwrap_or("ClusterIP");
            let external_name = str_at(obj, "/spec/type") == Some("ExternalName");
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if !external_name
                    && (obj
                        .pointer(&format!("/spec/{f}"))
                        .is_none_or(Value::is_null)
                        || (f == "clusterIP" && str_at(obj, "/spec/clusterIP") == Some("")))
                    && let Some(v) = old.pointer(&format!("/spec/{f}")).cloned()
                    && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
                {
                    spec.insert(f.to_string(), v);
                }
            }
            if same_type {
                if let Some(v) = old.pointer("/spec/healthCheckNodePort").cloned() {
                    set(obj, &["spec", "healthCheckNodePort"], v);
                }
                let old_ports = old
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for p in each_mut(obj, &["spec", "ports"]) {
                    let matching = old_ports.iter().find(|o| {
                        o.get("port") == p.get("port")
                            && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    });
                    if let Some(np) = matching.and_then(|o| o.get("nodePort")).cloned() {
                        set(p, &["nodePort"], np);
                    }
                }
            }
        }
        ("batch", "Job") => {
            if obj.pointer("/spec/selector").is_none_or(Value::is_null)
                && let Some(sel) = old.pointer("/spec/selector").cloned()
            {
                set(obj, &["spec", "selector"], sel);
            }
            if let Some(labels) = old
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
            {
                for (k, v) in labels {
                    if k.contains("controller-uid") || k.ends_with("job-name") {
                        set(obj, &["spec", "template", "metadata", "labels", &k], v);
                    }
                }
            }
        }
        _ => {}
    }
    apply(kind, obj);
}

/// When a Service changes type, the values the old type needed and the client did not change are
/// dropped: node ports when leaving NodePort/LoadBalancer, cluster IPs when becoming ExternalName.
fn drop_type_dependent_fields(obj: &mut Value, old: &Value) {
    let new_type = str_at(obj, "/spec/type").unwrap_or("ClusterIP").to_string();
    let old_type = str_at(old, "/spec/type").unwrap_or("ClusterIP");
    let needs_node_port = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if needs_node_port(old_type) && !needs_node_port(&new_type) {
        let node_ports = |v: &Value| -> Vec<Option<Value>> {
            v.pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| ps.iter().map(|p| p.get("nodePort").cloned()).collect())
                .unwrap_or_default()
        };
        let new_ports = node_ports(obj);
        let old_ports = node_ports(old);
        let unchanged = new_ports
            .iter()
            .all(|np| np.is_none() || old_ports.contains(np));
        if unchanged {
            for p in each_mut(obj, &["spec", "ports"]) {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("externalTrafficPolicy");
            spec.remove("healthCheckNodePort");
        }
    }
    if new_type == "ExternalName" && old_type != "ExternalName" {
        let same = obj.pointer("/spec/clusterIP").is_none_or(Value::is_null)
            || obj.pointer("/spec/clusterIP") == old.pointer("/spec/clusterIP");
        if same && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            for f in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "internalTrafficPolicy",
            ] {
                spec.remove(f);
            }
        }
    }
}

/// Sets `value` at `path` (creating objects on the way) unless a non-null value is already there.
pub(crate) fn set(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(Map::new());
            } else {
                return;
            }
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i == path.len() - 1 {
            match map.get(*key) {
                Some(v) if !v.is_null() => {}
                _ => {
                    map.insert((*key).to_string(), value);
                }
            }
            return;
        }
        cur = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

pub(super) fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// The elements of the array at `path`, if any.
pub(super) fn each_mut<'a>(
    obj: &'a mut Value,
    path: &[&str],
) -> impl Iterator<Item = &'a mut Value> {
    let mut cur = Some(obj);
    for key in path {
        cur = cur.and_then(|c| c.get_mut(*key));
    }
    cur.and_then(Value::as_array_mut)
        .map(|a| a.iter_mut())
        .into_iter()
        .flatten()
}

fn template(obj: &mut Value, path: &[&str]) {
    let mut cur = Some(obj);
    for key in path {
        cur = cur.and_then(|c| c.get_mut(*key));
    }
    if let Some(spec) = cur.and_then(|t| t.get_mut("spec")) {
        pod_spec(spec);
    }
}

/// Kubernetes' `SetDefaults_ReplicationController`: the selector and the object's labels default
/// to the template's labels (when the template has any), replicas to 1.
fn replication_controller(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if empty(obj.pointer("/spec/selector"))
            && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("selector".into(), labels.clone());
        }
        if empty(obj.pointer("/metadata/labels"))
            && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("labels".into(), labels);
        }
    }
    set(obj, &["spec", "replicas"], json!(1));
    template(obj, &["spec", "template"]);
}

fn service(obj: &mut Value) {
    let ty = str_at(obj, "/spec/type").unwrap_or("ClusterIP").to_string();
    set(obj, &["spec", "type"], json!(ty));
    set(obj, &["spec", "sessionAffinity"], json!("None"));
    if str_at(obj, "/spec/sessionAffinity") == Some("ClientIP") {
        set(
            obj,
            &[
                "spec",
                "sessionAffinityConfig",
                "clientIP",
                "timeoutSeconds",
            ],
            json!(10800),
        );
    }
    if ty != "ExternalName" {
        set(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
        set(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
        set(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(obj, &["spec", "allocateLoadBalancerNodePorts"], json!(true));
    }
    if let Some(ip) = str_at(obj, "/spec/clusterIP").map(str::to_string)
        && !ip.is_empty()
    {
        set(obj, &["spec", "clusterIPs"], json!([ip]));
    }
    for p in each_mut(obj, &["spec", "ports"]) {
        set(p, &["protocol"], json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set(p, &["targetPort"], port);
        }
    }
    set(obj, &["status", "loadBalancer"], json!({}));
}

/// `type: Opaque`, and `stringData` merged into `data` (base64) as the API server stores it.
fn secret(obj: &mut Value) {
    use base64::Engine;
    set(obj, &["type"], json!("Opaque"));
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            data.insert(k, json!(encoded));
        }
    }
}

fn namespace(obj: &mut Value) {
    set(obj, &["spec", "finalizers"], json!(["kubernetes"]));
    set(obj, &["status", "phase"], json!("Active"));
    if let Some(name) = str_at(obj, "/metadata/name").map(str::to_string)
        && !name.is_empty()
    {
        // Always set to the name, as the API server does.
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if labels.is_null() {
                *labels = Value::Object(Map::new());
            }
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }
}

fn job(obj: &mut Value) {
    let has = |obj: &Value, p: &str| obj.pointer(p).is_some_and(|v| !v.is_null());
    if !has(obj, "/spec/completions") && !has(obj, "/spec/parallelism") {
        set(obj, &["spec", "completions"], json!(1));
    }
    set(obj, &["spec", "parallelism"], json!(1));
    if has(obj, "/spec/backoffLimitPerIndex") {
        set(obj, &["spec", "backoffLimit"], json!(i32::MAX));
    } else {
        set(obj, &["spec", "backoffLimit"], json!(6));
    }
    set(obj, &["spec", "completionMode"], json!("NonIndexed"));
    set(obj, &["spec", "suspend"], json!(false));
    let replacement = if has(obj, "/spec/podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set(obj, &["spec", "podReplacementPolicy"], json!(replacement));
    // The generated selector and labels tie the job's pods to this job's uid.
    let uid = str_at(obj, "/metadata/uid").unwrap_or_default().to_string();
    let name = str_at(obj, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_empty() && !has(obj, "/spec/selector") {
        set(
            obj,
            &[
                "spec",
                "selector",
                "matchLabels",
                "batch.kubernetes.io/controller-uid",
            ],
            json!(uid),
        );
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            set(
                obj,
                &["spec", "template", "metadata", "labels", k],
                json!(v),
            );
        }
    }
    if obj.pointer("/metadata/labels").is_none_or(Value::is_null)
        && let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned()
    {
        set(obj, &["metadata", "labels"], labels);
    }
    template(obj, &["spec", "template"]);
}

fn hpa(kind: &Kind, obj: &mut Value) {
    set(obj, &["spec", "minReplicas"], json!(1));
    if kind.version != "v2" {
        return;
    }
    if obj
        .pointer("/spec/metrics")
        .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
    }
    if obj.pointer("/spec/behavior").is_some_and(Value::is_object) {
        set(
            obj,
            &["spec", "behavior", "scaleUp", "stabilizationWindowSeconds"],
            json!(0),
        );
        set(
            obj,
            &["spec", "behavior", "scaleUp", "selectPolicy"],
            json!("Max"),
        );
        set(
            obj,
            &["spec", "behavior", "scaleUp", "policies"],
            json!([
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}
            ]),
        );
        set(
            obj,
            &["spec", "behavior", "scaleDown", "selectPolicy"],
            json!("Max"),
        );
        set(
            obj,
            &["spec", "behavior", "scaleDown", "policies"],
            json!([
                {"type": "Percent", "value": 100, "periodSeconds": 15}
            ]),
        );
    }
}

#[cfg(test)]
mod tests;
