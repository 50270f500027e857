//! Row cells per kind, following kubectl's internal-version printers.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::time::{human_duration, parse, seconds_between, since};
use crate::Kind;

pub(super) const NONE: &str = "<none>";

pub(super) fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}
pub(super) fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}
pub(super) fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}
pub(super) fn or_none(v: &str) -> String {
    if v.is_empty() { NONE.into() } else { v.into() }
}
pub(super) fn age(obj: &Value, now: jiff::Timestamp) -> Value {
    json!(since(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now
    ))
}
pub(super) fn name(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

pub(super) fn row_conditions(kind: &Kind, obj: &Value) -> Option<Value> {
    if kind.kind == "Pod" && kind.group.is_empty() {
        let phase = s(obj, "/status/phase");
        if phase == "Succeeded" || phase == "Failed" {
            return Some(
                json!([{"type": "Completed", "status": "True", "reason": phase, "message": "The pod has completed successfully."}]),
            );
        }
    }
    None
}

pub(super) fn cells(kind: &Kind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    match (kind.group, kind.kind) {
        ("", "Pod") => super::pod::pod(obj, now),
        ("apps", "Deployment") => {
            let mut v = vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("apps", "ReplicaSet") => {
            let mut v = vec![
                name(obj),
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("", "ReplicationController") => {
            let mut v = vec![
                name(obj),
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", false));
            v.push(json!(set_selector(obj.pointer("/spec/selector"))));
            v
        }
        ("apps", "DaemonSet") => {
            let mut v = vec![
                name(obj),
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(set_selector(
                    obj.pointer("/spec/template/spec/nodeSelector")
                )),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("apps", "StatefulSet") => {
            let mut v = vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", false));
            v
        }
        ("apps", "ControllerRevision") => {
            let owner = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|o| {
                    let gv = s(o, "/apiVersion");
                    let group = gv.split_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = s(o, "/kind").to_ascii_lowercase();
                    let k = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{k}/{}", s(o, "/name"))
                })
                .unwrap_or_else(|| NONE.into());
            vec![
                name(obj),
                json!(owner),
                json!(i(obj, "/revision")),
                age(obj, now),
            ]
        }
        ("batch", "Job") => job(obj, now),
        ("batch", "CronJob") => {
            let last = obj
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
                .map(|t| since(Some(t), now))
                .unwrap_or_else(|| NONE.into());
            let tz = s(obj, "/spec/timeZone");
            let mut v = vec![
                name(obj),
                json!(s(obj, "/spec/schedule")),
                json!(or_none(tz)),
                json!(
                    obj.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                json!(arr(obj, "/status/active").len()),
                json!(last),
                age(obj, now),
            ];
            v.extend(template_cols(
                obj,
                "/spec/jobTemplate/spec/template/spec",
                false,
            ));
            v.push(json!(label_selector(
                obj.pointer("/spec/jobTemplate/spec/selector")
            )));
            v
        }
        ("", "Service") => service(obj, now),
        ("", "Node") => node(obj, now),
        ("", "Namespace") => vec![name(obj), json!(s(obj, "/status/phase")), age(obj, now)],
        ("", "ConfigMap") => {
            let n = count_keys(obj, "/data") + count_keys(obj, "/binaryData");
            vec![name(obj), json!(n), age(obj, now)]
        }
        ("", "Secret") => {
            let n = count_keys(obj, "/data") + count_keys(obj, "/stringData");
            vec![name(obj), json!(s(obj, "/type")), json!(n), age(obj, now)]
        }
        ("", "ServiceAccount") => vec![name(obj), json!(arr(obj, "/secrets").len()), age(obj, now)],
        ("", "Event") => event(obj, now, false),
        ("events.k8s.io", "Event") => event(obj, now, true),
        ("", "Endpoints") => vec![name(obj), json!(endpoints(obj)), age(obj, now)],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .map(|p| {
                    p.get("port")
                        .and_then(Value::as_i64)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "<unset>".into())
                })
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_string()
            } else {
                ports.join(",")
            };
            let mut addrs = Vec::new();
            for e in arr(obj, "/endpoints") {
                for a in arr(e, "/addresses") {
                    addrs.push(a.as_str().unwrap_or_default().to_string());
                }
            }
            vec![
                name(obj),
                json!(s(obj, "/addressType")),
                json!(ports),
                json!(truncate_list(&addrs, 3, "<unset>")),
                age(obj, now),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let mut phase = s(obj, "/status/phase").to_string();
            if obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                phase = "Terminating".into();
            }
            let bound = !s(obj, "/spec/volumeName").is_empty();
            let (cap, modes) = if bound {
                (
                    s(obj, "/status/capacity/storage").to_string(),
                    access_modes(arr(obj, "/status/accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                name(obj),
                json!(phase),
                json!(s(obj, "/spec/volumeName")),
                json!(cap),
                json!(modes),
                json!(storage_class(obj)),
                json!(unset(s(obj, "/spec/volumeAttributesClassName"))),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolume") => {
            let claim = obj
                .pointer("/spec/claimRef")
                .filter(|c| c.is_object())
                .map(|c| format!("{}/{}", s(c, "/namespace"), s(c, "/name")))
                .unwrap_or_default();
            let mut phase = s(obj, "/status/phase").to_string();
            if obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                phase = "Terminating".into();
            }
            vec![
                name(obj),
                json!(s(obj, "/spec/capacity/storage")),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(storage_class(obj)),
                json!(unset(s(obj, "/spec/volumeAttributesClassName"))),
                json!(s(obj, "/status/reason")),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name(obj),
            json!(s(obj, "/spec/holderIdentity")),
            age(obj, now),
        ],
        ("networking.k8s.io", "Ingress") => ingress(obj, now),
        ("networking.k8s.io", "IngressClass") => {
            let params = obj
                .pointer("/spec/parameters")
                .filter(|p| p.is_object())
                .map(|p| {
                    let g = s(p, "/apiGroup");
                    let k = s(p, "/kind");
                    let kk = if g.is_empty() {
                        k.to_string()
                    } else {
                        format!("{k}.{g}")
                    };
                    format!("{kk}/{}", s(p, "/name"))
                })
                .unwrap_or_else(|| NONE.into());
            vec![
                name(obj),
                json!(s(obj, "/spec/controller")),
                json!(params),
                age(obj, now),
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let default = |key: &str| {
                obj.pointer("/metadata/annotations")
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    == Some("true")
            };
            let mut shown = s(obj, "/metadata/name").to_string();
            if default(skiff_meta::names::DEFAULT_STORAGE_CLASS)
                || default("storageclass.beta.kubernetes.io/is-default-class")
            {
                shown.push_str(" (default)");
            }
            let or = |ptr: &str, dflt: &'static str| match s(obj, ptr) {
                "" => dflt.to_string(),
                v => v.to_string(),
            };
            vec![
                json!(shown),
                json!(s(obj, "/provisioner")),
                json!(or("/reclaimPolicy", "Delete")),
                json!(or("/volumeBindingMode", "Immediate")),
                json!(
                    obj.get("allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                age(obj, now),
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => vec![
            name(obj),
            json!(label_selector(obj.pointer("/spec/podSelector"))),
            age(obj, now),
        ],
        ("autoscaling", _) => hpa(kind, obj, now),
        ("policy", "PodDisruptionBudget") => {
            let show = |p: &str| match obj.pointer(p) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                name(obj),
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                json!(i(obj, "/status/disruptionsAllowed")),
                age(obj, now),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name(obj),
            obj.get("value").cloned().unwrap_or(json!(0)),
            json!(
                obj.get("globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age(obj, now),
            json!(s(obj, "/preemptionPolicy")),
        ],
        ("node.k8s.io", "RuntimeClass") => {
            vec![name(obj), json!(s(obj, "/handler")), age(obj, now)]
        }
        ("", "ResourceQuota") => {
            let mut req = Vec::new();
            let mut lim = Vec::new();
            if let Some(hard) = obj.pointer("/status/hard").and_then(Value::as_object) {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                for k in keys {
                    let used = obj
                        .pointer(&format!(
                            "/status/used/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ))
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    let entry = format!("{k}: {used}/{}", hard[k].as_str().unwrap_or_default());
                    if k.starts_with("limits.") {
                        lim.push(entry);
                    } else {
                        req.push(entry);
                    }
                }
            }
            vec![
                name(obj),
                age(obj, now),
                json!(req.join(", ")),
                json!(lim.join(", ")),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in arr(obj, "/subjects") {
                match s(sub, "/kind") {
                    "User" => users.push(s(sub, "/name").to_string()),
                    "Group" => groups.push(s(sub, "/name").to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, "/namespace"), s(sub, "/name")))
                    }
                    _ => {}
                }
            }
            vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                age(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("rbac.authorization.k8s.io", _) => {
            vec![name(obj), json!(s(obj, "/metadata/creationTimestamp"))]
        }
        ("", "PodTemplate") => {
            let mut v = vec![name(obj)];
            v.extend(template_cols(obj, "/template/spec", false));
            let labels = obj
                .pointer("/template/metadata/labels")
                .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()));
            v.push(json!(set_selector(labels)));
            v
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            let duration = match obj
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
            {
                Some(secs) => human_duration(secs),
                None => NONE.into(),
            };
            vec![
                name(obj),
                age(obj, now),
                json!(or_none(s(obj, "/spec/signerName"))),
                json!(s(obj, "/spec/username")),
                json!(duration),
                json!(csr_condition(obj)),
            ]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            vec![name(obj), json!(s(obj, "/metadata/creationTimestamp"))]
        }
        _ => vec![name(obj), age(obj, now)],
    }
}

fn unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.into()
    }
}

fn storage_class(obj: &Value) -> String {
    let sc = s(obj, "/spec/storageClassName");
    if !sc.is_empty() {
        return sc.into();
    }
    s(
        obj,
        "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
    )
    .to_string()
}

fn access_modes(modes: &[Value]) -> String {
    let mut out = Vec::new();
    for (m, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|v| v.as_str() == Some(m)) {
            out.push(short);
        }
    }
    out.join(",")
}

fn count_keys(obj: &Value, ptr: &str) -> usize {
    obj.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn truncate_list(items: &[String], max: usize, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let mut out = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > max {
        out.push_str(&format!(" + {} more...", items.len() - max));
    }
    out
}

/// kubectl's CertificateSigningRequest condition: `Denied`, else `Approved`, else `Pending`;
/// then `,Failed` and `,Issued`.
fn csr_condition(obj: &Value) -> String {
    let has = |t: &str| {
        arr(obj, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t)
    };
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !s(obj, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

/// Containers, Images (and Selector) cells from a pod template.
fn template_cols(obj: &Value, spec_ptr: &str, with_selector: bool) -> Vec<Value> {
    let containers = arr(obj, &format!("{spec_ptr}/containers"));
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    let mut v = vec![json!(names.join(",")), json!(images.join(","))];
    if with_selector {
        v.push(json!(label_selector(obj.pointer("/spec/selector"))));
    }
    v
}

/// A label selector formatted like `metav1.FormatLabelSelector`.
pub(crate) fn label_selector(sel: Option<&Value>) -> String {
    skiff_meta::selector::format_label_selector_json(sel)
}

/// A plain label map formatted like `labels.SelectorFromSet(...).String()`.
fn set_selector(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object) else {
        return NONE.into();
    };
    let mut items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    items.sort();
    if items.is_empty() {
        NONE.into()
    } else {
        items.join(",")
    }
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
}

fn job(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let succeeded = i(obj, "/status/succeeded");
    let completions = obj.pointer("/spec/completions").and_then(Value::as_i64);
    let parallelism = obj.pointer("/spec/parallelism").and_then(Value::as_i64);
    let comp = match (completions, parallelism) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let start = obj
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse);
    let end = obj
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(parse);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(seconds_between(s, now)),
        (Some(s), Some(e)) => human_duration(seconds_between(s, e)),
    };
    let status = if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let mut v = vec![
        name(obj),
        json!(status),
        json!(comp),
        json!(duration),
        age(obj, now),
    ];
    v.extend(template_cols(obj, "/spec/template/spec", true));
    v
}

fn service(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ty = s(obj, "/spec/type");
    let cluster_ip = arr(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(obj, "/spec/clusterIP"));
    let cluster_ip = or_none(cluster_ip);
    let external: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                NONE.to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    let ip = s(i, "/ip");
                    if ip.is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let proto = s(p, "/protocol");
            let np = i(p, "/nodePort");
            if np > 0 {
                format!("{port}:{np}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        NONE.to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(obj),
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        age(obj, now),
        json!(set_selector(obj.pointer("/spec/selector"))),
    ]
}

fn node(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut status = Vec::new();
    let ready = arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready");
    // As Kubernetes' printer: `Not<Type>` for any status but True; `Unknown` only without one.
    match ready.map(|c| s(c, "/status")) {
        Some("True") => status.push("Ready"),
        Some(_) => status.push("NotReady"),
        None => status.push("Unknown"),
    }
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
    }
    let roles = if roles.is_empty() {
        NONE.to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let addr = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| NONE.into())
    };
    let info = |f: &str| {
        let v = s(obj, &format!("/status/nodeInfo/{f}"));
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(obj),
        json!(status.join(",")),
        json!(roles),
        age(obj, now),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn event(obj: &Value, now: jiff::Timestamp, v1: bool) -> Vec<Value> {
    let ts = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (first_p, last_p, regarding, message, count_p) = if v1 {
        (
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "regarding",
            "/note",
            "/deprecatedCount",
        )
    } else {
        (
            "/firstTimestamp",
            "/lastTimestamp",
            "involvedObject",
            "/message",
            "/count",
        )
    };
    let first = match ts(first_p) {
        Some(t) => since(Some(t), now),
        None => since(ts("/eventTime"), now),
    };
    let mut last = match ts(last_p) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = i(obj, count_p);
    if obj.get("series").is_some_and(Value::is_object) {
        last = since(ts("/series/lastObservedTime"), now);
        count = i(obj, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let inv = obj.get(regarding).unwrap_or(&Value::Null);
    let kind = s(inv, "/kind").to_ascii_lowercase();
    let target = if s(inv, "/name").is_empty() {
        kind
    } else {
        format!("{kind}/{}", s(inv, "/name"))
    };
    let src = if v1 {
        let c = s(obj, "/reportingController");
        let i = s(obj, "/reportingInstance");
        format_source(c, i)
    } else {
        let comp = s(obj, "/source/component");
        let host = s(obj, "/source/host");
        if comp.is_empty() && host.is_empty() {
            format_source(s(obj, "/reportingComponent"), s(obj, "/reportingInstance"))
        } else {
            format_source(comp, host)
        }
    };
    vec![
        json!(last),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(inv, "/fieldPath")),
        json!(src),
        json!(s(obj, message).trim()),
        json!(first),
        json!(count),
        name(obj),
    ]
}

fn format_source(component: &str, host: &str) -> String {
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

fn endpoints(obj: &Value) -> String {
    let mut list = Vec::new();
    let mut more = 0;
    for subset in arr(obj, "/subsets") {
        let ports = arr(subset, "/ports");
        for addr in arr(subset, "/addresses") {
            let ip = s(addr, "/ip");
            if ports.is_empty() {
                if list.len() < 3 {
                    list.push(ip.to_string())
                } else {
                    more += 1
                }
            } else {
                for p in ports {
                    if list.len() < 3 {
                        list.push(format!("{ip}:{}", i(p, "/port")));
                    } else {
                        more += 1;
                    }
                }
            }
        }
    }
    if list.is_empty() {
        return NONE.into();
    }
    let mut out = list.join(",");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

fn ingress(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let class = s(obj, "/spec/ingressClassName");
    let class = if class.is_empty() {
        NONE.to_string()
    } else {
        class.to_string()
    };
    let mut hosts: Vec<String> = arr(obj, "/spec/rules")
        .iter()
        .map(|r| s(r, "/host").to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let hosts_str = if hosts.is_empty() {
        "*".to_string()
    } else {
        let extra = hosts.len().saturating_sub(4);
        hosts.truncate(4);
        let mut h = hosts.join(",");
        if extra > 0 {
            h.push_str(&format!(" + {extra} more..."));
        }
        h
    };
    let addrs: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| {
            let ip = s(i, "/ip");
            if ip.is_empty() {
                s(i, "/hostname").to_string()
            } else {
                ip.to_string()
            }
        })
        .collect();
    let ports = if arr(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        json!(class),
        json!(hosts_str),
        json!(addrs.join(",")),
        json!(ports),
        age(obj, now),
    ]
}

fn hpa(kind: &Kind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        s(obj, "/spec/scaleTargetRef/kind"),
        s(obj, "/spec/scaleTargetRef/name")
    );
    let min = obj
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_else(|| "<unset>".into());
    let targets = if kind.version == "v1" {
        let target = obj
            .pointer("/spec/targetCPUUtilizationPercentage")
            .and_then(Value::as_i64);
        let current = obj
            .pointer("/status/currentCPUUtilizationPercentage")
            .and_then(Value::as_i64);
        match target {
            None => "<none>".to_string(),
            Some(t) => format!(
                "cpu: {}/{t}%",
                current
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into())
            ),
        }
    } else {
        let metrics = arr(obj, "/spec/metrics");
        let current = arr(obj, "/status/currentMetrics");
        if metrics.is_empty() {
            "<none>".to_string()
        } else {
            let mut parts = Vec::new();
            for (idx, m) in metrics.iter().enumerate() {
                let cur = current.get(idx);
                parts.push(format_metric(m, cur));
            }
            let extra = parts.len().saturating_sub(2);
            parts.truncate(2);
            let mut out = parts.join(", ");
            if extra > 0 {
                out.push_str(&format!(" + {extra} more..."));
            }
            out
        }
    };
    vec![
        name(obj),
        json!(reference),
        json!(targets),
        json!(min),
        json!(i(obj, "/spec/maxReplicas")),
        json!(i(obj, "/status/currentReplicas")),
        age(obj, now),
    ]
}

fn format_metric(m: &Value, cur: Option<&Value>) -> String {
    let ty = s(m, "/type");
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let res = s(m, &format!("/{key}/name"));
            let target = m.pointer(&format!("/{key}/target")).unwrap_or(&Value::Null);
            let cur_v = cur.and_then(|c| c.pointer(&format!("/{key}/current")));
            if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64) {
                let current = cur_v
                    .and_then(|c| c.get("averageUtilization"))
                    .and_then(Value::as_i64)
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{res}: {current}/{u}%")
            } else {
                let t = s(target, "/averageValue");
                let current = cur_v
                    .and_then(|c| c.get("averageValue"))
                    .and_then(Value::as_str)
                    .unwrap_or("<unknown>");
                format!("{res}: {current}/{t}")
            }
        }
        _ => "<unknown>/<unknown>".to_string(),
    }
}
