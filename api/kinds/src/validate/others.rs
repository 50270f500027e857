//! Validation of the smaller kinds: RBAC bindings, PodDisruptionBudgets, HorizontalPodAutoscalers,
//! Ingresses, RuntimeClasses, EndpointSlices, Leases and Events.

use serde_json::Value;

use super::names;
use super::{Errs, arr, go_str, s};

pub(super) fn role_binding(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let rr = obj.get("roleRef").unwrap_or(&Value::Null);
    let kind = s(rr, "/kind");
    let api_group = s(rr, "/apiGroup");
    let cluster = s(obj, "/kind") == "ClusterRoleBinding";
    if api_group != "rbac.authorization.k8s.io" {
        errs.not_supported(
            "roleRef.apiGroup",
            api_group,
            &["rbac.authorization.k8s.io"],
        );
    }
    let supported: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["ClusterRole", "Role"]
    };
    if !supported.contains(&kind) {
        errs.not_supported("roleRef.kind", kind, supported);
    }
    let name = s(rr, "/name");
    if name.is_empty() {
        errs.required("roleRef.name", "");
    } else {
        errs.each("roleRef.name", name, names::path_segment(name));
    }
    for (i, sub) in arr(obj, "/subjects").iter().enumerate() {
        let f = format!("subjects[{i}]");
        if s(sub, "/name").is_empty() {
            errs.required(&format!("{f}.name"), "");
        }
        match s(sub, "/kind") {
            "ServiceAccount" => {
                if cluster && s(sub, "/namespace").is_empty() {
                    errs.required(&format!("{f}.namespace"), "");
                }
            }
            "User" | "Group" => {}
            other => errs.not_supported(
                &format!("{f}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
    if let Some(old) = old
        && old.get("roleRef") != obj.get("roleRef")
    {
        errs.invalid(
            "roleRef",
            &serde_json::to_string(rr).unwrap_or_default(),
            "cannot change roleRef",
        );
    }
}

pub(super) fn role(obj: &Value, errs: &mut Errs) {
    for (i, r) in arr(obj, "/rules").iter().enumerate() {
        if arr(r, "/verbs").is_empty() {
            errs.required(
                &format!("rules[{i}].verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = !arr(r, "/nonResourceURLs").is_empty();
        if !urls && arr(r, "/resources").is_empty() && s(obj, "/kind") == "Role" {
            errs.required(
                &format!("rules[{i}].resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

pub(super) fn pdb(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        errs.invalid(
            "spec",
            &serde_json::to_string(spec).unwrap_or_default(),
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for (field, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        match v {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
                errs.invalid(
                    &format!("spec.{field}"),
                    &n.to_string(),
                    "must be greater than or equal to 0",
                );
            }
            Some(Value::String(p)) => {
                let pct = p.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
                match pct {
                    None => errs.invalid(&format!("spec.{field}"), &go_str(p), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
                    Some(n) if n > 100 => errs.invalid(&format!("spec.{field}"), &go_str(p), "must not be greater than 100%"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let policy = s(spec, "/unhealthyPodEvictionPolicy");
    if !policy.is_empty() && policy != "IfHealthyBudget" && policy != "AlwaysAllow" {
        errs.not_supported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        );
    }
}

pub(super) fn hpa(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minReplicas").and_then(Value::as_i64).unwrap_or(1);
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if min < 1 {
        errs.invalid(
            "spec.minReplicas",
            &min.to_string(),
            "must be greater than or equal to 1",
        );
    }
    if max < min {
        errs.invalid(
            "spec.maxReplicas",
            &max.to_string(),
            "must be greater than or equal to `minReplicas`",
        );
    }
    if s(spec, "/scaleTargetRef/kind").is_empty() {
        errs.required("spec.scaleTargetRef.kind", "");
    }
    let name = s(spec, "/scaleTargetRef/name");
    if name.is_empty() {
        errs.required("spec.scaleTargetRef.name", "");
    } else {
        errs.each("spec.scaleTargetRef.name", name, names::path_segment(name));
    }
    if let Some(t) = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        && t < 1
    {
        errs.invalid(
            "spec.targetCPUUtilizationPercentage",
            &t.to_string(),
            "must be greater than or equal to 1",
        );
    }
    for (i, m) in arr(spec, "/metrics").iter().enumerate() {
        hpa_metric(m, &format!("spec.metrics[{i}]"), errs);
    }
    for dir in ["scaleUp", "scaleDown"] {
        if let Some(rules) = spec.pointer(&format!("/behavior/{dir}"))
            && rules.is_object()
        {
            hpa_scaling_rules(rules, &format!("spec.behavior.{dir}"), errs);
        }
    }
}

/// Kubernetes' `validateMetricSpec` for the metric sources the API accepts.
fn hpa_metric(m: &Value, f: &str, errs: &mut Errs) {
    const TYPES: &[&str] = &[
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    let ty = s(m, "/type");
    if ty.is_empty() {
        errs.required(&format!("{f}.type"), "must specify a metric source type");
        return;
    }
    if !TYPES.contains(&ty) {
        errs.not_supported(&format!("{f}.type"), ty, TYPES);
        return;
    }
    let key = match ty {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        _ => "external",
    };
    let Some(src) = m.get(key).filter(|v| v.is_object()) else {
        errs.required(
            &format!("{f}.{key}"),
            "must populate information for the given metric source",
        );
        return;
    };
    let f = format!("{f}.{key}");
    if matches!(key, "resource" | "containerResource") {
        if s(src, "/name").is_empty() {
            errs.required(&format!("{f}.name"), "must specify a resource name");
        }
        if key == "containerResource" && s(src, "/container").is_empty() {
            errs.required(&format!("{f}.container"), "must specify a container");
        }
        let target = src.get("target").unwrap_or(&Value::Null);
        let utilization = target.get("averageUtilization").filter(|v| !v.is_null());
        let average = target.get("averageValue").filter(|v| !v.is_null());
        if utilization.is_none() && average.is_none() {
            errs.required(
                &format!("{f}.target.averageUtilization"),
                "must set either a target raw value or a target utilization",
            );
        }
        if utilization.is_some() && average.is_some() {
            errs.forbidden(
                &format!("{f}.target.averageValue"),
                "may not set both a target raw value and a target utilization",
            );
        }
    }
    if let Some(target) = src.get("target").filter(|v| v.is_object()) {
        hpa_metric_target(target, &format!("{f}.target"), errs);
    }
}

/// Kubernetes' `validateMetricTarget`.
fn hpa_metric_target(t: &Value, f: &str, errs: &mut Errs) {
    let ty = s(t, "/type");
    if ty.is_empty() {
        errs.required(&format!("{f}.type"), "must specify a metric target type");
    }
    if !["Utilization", "Value", "AverageValue"].contains(&ty) {
        errs.invalid(
            &format!("{f}.type"),
            ty,
            "must be either Utilization, Value, or AverageValue",
        );
    }
    for field in ["value", "averageValue"] {
        let Some(q) = t.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let text = q
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| q.to_string());
        let positive = skiff_meta::quantity::Quantity::parse(&text)
            .map(|q| q.milli() > 0)
            .unwrap_or(false);
        if !positive {
            errs.invalid(&format!("{f}.{field}"), &text, "must be positive");
        }
    }
    if let Some(u) = t.get("averageUtilization").and_then(Value::as_i64)
        && u < 1
    {
        errs.invalid(
            &format!("{f}.averageUtilization"),
            &u.to_string(),
            "must be greater than 0",
        );
    }
}

/// Kubernetes' `validateScalingRules`.
fn hpa_scaling_rules(r: &Value, f: &str, errs: &mut Errs) {
    if let Some(w) = r.get("stabilizationWindowSeconds").and_then(Value::as_i64) {
        if w < 0 {
            errs.invalid(
                &format!("{f}.stabilizationWindowSeconds"),
                &w.to_string(),
                "must be greater than or equal to zero",
            );
        } else if w > 3600 {
            errs.invalid(
                &format!("{f}.stabilizationWindowSeconds"),
                &w.to_string(),
                "must be less than or equal to 3600",
            );
        }
    }
    if let Some(p) = r.get("selectPolicy").and_then(Value::as_str)
        && !["Disabled", "Max", "Min"].contains(&p)
    {
        errs.not_supported(&format!("{f}.selectPolicy"), p, &["Disabled", "Max", "Min"]);
    }
    let policies = r.get("policies");
    if policies.is_some_and(|p| p.as_array().is_some_and(Vec::is_empty)) {
        errs.required(&format!("{f}.policies"), "must specify at least one Policy");
    }
    for (i, p) in arr(r, "/policies").iter().enumerate() {
        let pf = format!("{f}.policies[{i}]");
        let ty = s(p, "/type");
        if !["Percent", "Pods"].contains(&ty) {
            errs.not_supported(&format!("{pf}.type"), ty, &["Percent", "Pods"]);
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            errs.invalid(
                &format!("{pf}.value"),
                &value.to_string(),
                "must be greater than zero",
            );
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if period <= 0 {
            errs.invalid(
                &format!("{pf}.periodSeconds"),
                &period.to_string(),
                "must be greater than zero",
            );
        } else if period > 1800 {
            errs.invalid(
                &format!("{pf}.periodSeconds"),
                &period.to_string(),
                "must be less than or equal to 1800",
            );
        }
    }
}

pub(super) fn ingress(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let rules = arr(spec, "/rules");
    if rules.is_empty() && spec.get("defaultBackend").is_none_or(Value::is_null) {
        errs.invalid(
            "spec",
            "{}",
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    for (i, r) in rules.iter().enumerate() {
        let host = s(r, "/host");
        if !host.is_empty() {
            let h = host.strip_prefix("*.").unwrap_or(host);
            errs.each(
                &format!("spec.rules[{i}].host"),
                host,
                names::dns1123_subdomain(h),
            );
        }
        for (j, p) in arr(r, "/http/paths").iter().enumerate() {
            let f = format!("spec.rules[{i}].http.paths[{j}]");
            let pt = s(p, "/pathType");
            if pt.is_empty() {
                errs.required(&format!("{f}.pathType"), "pathType must be specified");
            } else if !["Exact", "ImplementationSpecific", "Prefix"].contains(&pt) {
                errs.not_supported(
                    &format!("{f}.pathType"),
                    pt,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                );
            }
            let path = s(p, "/path");
            if (pt == "Exact" || pt == "Prefix") && !path.starts_with('/') {
                errs.invalid(
                    &format!("{f}.path"),
                    &go_str(path),
                    "must be an absolute path",
                );
            }
            let svc = p.pointer("/backend/service").filter(|v| !v.is_null());
            let res = p.pointer("/backend/resource").filter(|v| !v.is_null());
            match (svc, res) {
                (None, None) => errs.invalid(
                    &format!("{f}.backend"),
                    "{}",
                    "one backend must be specified",
                ),
                (Some(_), Some(_)) => errs.invalid(
                    &format!("{f}.backend"),
                    "{}",
                    "cannot set both resource and service backends",
                ),
                (Some(svc), None) => {
                    let n = s(svc, "/name");
                    errs.each(
                        &format!("{f}.backend.service.name"),
                        n,
                        names::dns1035_label(n),
                    );
                    let has_num = svc
                        .pointer("/port/number")
                        .and_then(Value::as_i64)
                        .is_some_and(|n| n != 0);
                    let has_name = !s(svc, "/port/name").is_empty();
                    if has_num == has_name {
                        errs.required(
                            &format!("{f}.backend.service.port"),
                            "port name or number is required",
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

pub(super) fn runtime_class(obj: &Value, errs: &mut Errs) {
    let handler = s(obj, "/handler");
    if handler.is_empty() {
        errs.required("handler", "");
    } else {
        errs.each("handler", handler, names::dns1123_label(handler));
    }
}

pub(super) fn endpoint_slice(obj: &Value, errs: &mut Errs) {
    let t = s(obj, "/addressType");
    if !["IPv4", "IPv6", "FQDN"].contains(&t) {
        if t.is_empty() {
            errs.required("addressType", "");
        } else {
            errs.not_supported("addressType", t, &["FQDN", "IPv4", "IPv6"]);
        }
    }
    for (i, e) in arr(obj, "/endpoints").iter().enumerate() {
        let addrs = arr(e, "/addresses");
        if addrs.is_empty() || addrs.len() > 100 {
            errs.required(
                &format!("endpoints[{i}].addresses"),
                "must contain at least 1 address but no more than 100 addresses",
            );
        }
        if t == "IPv4" || t == "IPv6" {
            for (j, a) in addrs.iter().enumerate() {
                let a = a.as_str().unwrap_or_default();
                for m in names::ip(a) {
                    errs.invalid(&format!("endpoints[{i}].addresses[{j}]"), &go_str(a), &m);
                }
            }
        }
    }
}

pub(super) fn lease(obj: &Value, errs: &mut Errs) {
    for f in ["leaseDurationSeconds", "leaseTransitions"] {
        if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) {
            let bad = if f == "leaseDurationSeconds" {
                n <= 0
            } else {
                n < 0
            };
            if bad {
                let msg = if f == "leaseDurationSeconds" {
                    "must be greater than 0"
                } else {
                    "must be greater than or equal to 0"
                };
                errs.invalid(&format!("spec.{f}"), &n.to_string(), msg);
            }
        }
    }
}

pub(super) fn event(obj: &Value, errs: &mut Errs) {
    let ns = s(obj, "/metadata/namespace");
    let io_ns = s(obj, "/involvedObject/namespace");
    if !io_ns.is_empty() && !ns.is_empty() && io_ns != ns && ns != "default" {
        errs.invalid(
            "involvedObject.namespace",
            &go_str(io_ns),
            "does not match event.namespace",
        );
    }
}

/// events.k8s.io/v1 Events, which must carry the fields of the new API.
pub(super) fn event_v1(obj: &Value, errs: &mut Errs) {
    if obj.get("eventTime").is_none_or(Value::is_null) {
        errs.required("eventTime", "");
    }
    let ty = s(obj, "/type");
    if ty != "Normal" && ty != "Warning" {
        errs.invalid("type", "\"\"", &format!("has invalid value: {ty}"));
    }
    let controller = s(obj, "/reportingController");
    if controller.is_empty() {
        errs.required("reportingController", "");
    } else {
        errs.each(
            "reportingController",
            controller,
            names::qualified_name(controller),
        );
    }
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = s(obj, &format!("/{field}"));
        if v.is_empty() {
            errs.required(field, "");
        } else if v.len() > limit {
            errs.invalid(
                field,
                "\"\"",
                &format!("can have at most {limit} characters"),
            );
        }
    }
    if s(obj, "/note").len() > 1024 {
        errs.invalid("note", "\"\"", "can have at most 1024 characters");
    }
}

/// The highest `value` a PriorityClass not made by the system may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The PriorityClasses the system owns: name, value and description, as Kubernetes makes them.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2 * HIGHEST_USER_DEFINABLE_PRIORITY + 1000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2 * HIGHEST_USER_DEFINABLE_PRIORITY,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Kubernetes' `ValidatePriorityClass` and `ValidatePriorityClassUpdate`; the system classes'
/// rules are checked on updates too, so they keep their value and stay non-default.
pub(super) fn priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let name = s(obj, "/metadata/name");
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global_default = obj
        .get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if name.starts_with("system-") {
        let known = match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, ..)| *n == name) {
            None => Err(format!("{name} is not a known system priority class")),
            Some((n, v, _)) if *v != value => {
                Err(format!("value of {n} PriorityClass must be {v}"))
            }
            Some((n, ..)) if global_default => {
                Err(format!("globalDefault of {n} PriorityClass must be false"))
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = known {
            errs.forbidden(
                "metadata.name",
                &format!(
                    "priority class names with 'system-' prefix are reserved for system use only. error: {e}"
                ),
            );
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        );
    }
    match obj.get("preemptionPolicy") {
        None | Some(Value::Null) => {}
        Some(p) => match p.as_str().unwrap_or_default() {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.required("preemptionPolicy", ""),
            other => errs.not_supported(
                "preemptionPolicy",
                other,
                &["PreemptLowerPriority", "Never"],
            ),
        },
    }
    let Some(old) = old else {
        return;
    };
    if obj.get("value") != old.get("value") {
        errs.forbidden("value", "may not be changed in an update.");
    }
    let policy = |o: &Value| o.get("preemptionPolicy").cloned().unwrap_or(Value::Null);
    if policy(obj) != policy(old) {
        errs.invalid(
            "preemptionPolicy",
            &super::go_value(&policy(obj)),
            "field is immutable",
        );
    }
}

/// Resource names a quota may limit without a `/` (Kubernetes' `standardQuotaResources`), besides
/// `hugepages-*` and `requests.hugepages-*`.
const STANDARD_QUOTA_RESOURCES: [&str; 19] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Quota resources counted as whole objects, which take integer quantities only.
fn is_integer_quota_resource(name: &str) -> bool {
    name.starts_with("count/")
        || matches!(
            name,
            "pods"
                | "resourcequotas"
                | "services"
                | "replicationcontrollers"
                | "secrets"
                | "persistentvolumeclaims"
                | "configmaps"
                | "services.nodeports"
                | "services.loadbalancers"
        )
}

fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

const QUOTA_SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// Kubernetes' `IsResourceQuotaScopeValidForResource`.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    let pod_compute = [
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    match scope {
        "BestEffort" => resource == "pods",
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => resource == "pods" || pod_compute.contains(&resource),
        _ => true,
    }
}

/// Kubernetes' `ValidateResourceQuotaSpec`: limited resource names and amounts, and scopes
/// (`spec.scopes` and `spec.scopeSelector`) that exist, fit the limited resources and do not
/// contradict each other.
pub(super) fn resource_quota(obj: &Value, errs: &mut Errs) {
    let hard: Vec<(&String, &Value)> = obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    for (name, v) in &hard {
        let field = format!("spec.hard[{name}]");
        if !name.contains('/') && !is_standard_quota_resource(name) {
            errs.invalid(
                &field,
                &go_str(name),
                "must be a standard resource for quota",
            );
        }
        let Some(q) = v
            .as_str()
            .and_then(|s| skiff_meta::quantity::Quantity::parse(s).ok())
        else {
            continue;
        };
        let shown = v.as_str().unwrap_or_default();
        if q < skiff_meta::quantity::Quantity::ZERO {
            errs.invalid(&field, &go_str(shown), "must be greater than or equal to 0");
        }
        if is_integer_quota_resource(name) && q.milli() % 1000 != 0 {
            errs.invalid(&field, &go_str(shown), "must be an integer");
        }
    }
    let standard_hard: Vec<&str> = hard
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| is_standard_quota_resource(k))
        .collect();
    let conflicting = |set: &[&str]| {
        [
            ("BestEffort", "NotBestEffort"),
            ("Terminating", "NotTerminating"),
        ]
        .iter()
        .any(|(a, b)| set.contains(a) && set.contains(b))
    };
    let scopes: Vec<&str> = arr(obj, "/spec/scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let shown_scopes = || {
        let quoted: Vec<String> = scopes.iter().map(|s| go_str(s)).collect();
        format!("[]core.ResourceQuotaScope{{{}}}", quoted.join(", "))
    };
    for scope in &scopes {
        if !QUOTA_SCOPES.contains(scope) {
            errs.invalid("spec.scopes", &shown_scopes(), "unsupported scope");
        }
        for resource in &standard_hard {
            if !scope_valid_for(scope, resource) {
                errs.invalid(
                    "spec.scopes",
                    &shown_scopes(),
                    "unsupported scope applied to resource",
                );
            }
        }
    }
    if conflicting(&scopes) {
        errs.invalid("spec.scopes", &shown_scopes(), "conflicting scopes");
    }
    let exprs = arr(obj, "/spec/scopeSelector/matchExpressions");
    let path = "spec.scopeSelector.matchExpressions";
    let mut selected = Vec::new();
    for e in exprs {
        let scope = s(e, "/scopeName");
        let op = s(e, "/operator");
        let values = arr(e, "/values");
        if !QUOTA_SCOPES.contains(&scope) {
            errs.invalid(
                &format!("{path}.scopeName"),
                &go_str(scope),
                "unsupported scope",
            );
        }
        for resource in &standard_hard {
            if !scope_valid_for(scope, resource) {
                errs.invalid(
                    path,
                    &super::go_value(obj.pointer("/spec/scopeSelector").unwrap_or(&Value::Null)),
                    "unsupported scope applied to resource",
                );
            }
        }
        if scope != "PriorityClass" && QUOTA_SCOPES.contains(&scope) && op != "Exists" {
            errs.invalid(
                &format!("{path}.operator"),
                &go_str(op),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            );
        }
        match op {
            "In" | "NotIn" if values.is_empty() => errs.required(
                &format!("{path}.values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.invalid(
                &format!("{path}.values"),
                &super::go_value(&Value::Array(values.to_vec())),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.invalid(
                &format!("{path}.operator"),
                &go_str(other),
                "not a valid selector operator",
            ),
        }
        selected.push(scope);
    }
    if conflicting(&selected) {
        errs.invalid(
            path,
            &super::go_value(obj.pointer("/spec/scopeSelector").unwrap_or(&Value::Null)),
            "conflicting scopes",
        );
    }
}
