//! Pod and pod template validation, and the rules for which pod fields may change on update.

use std::collections::HashSet;

use serde_json::Value;

use super::names;
use super::{Errs, arr, go_str, s};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub(super) fn pod(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    pod_spec(spec, "spec", errs);
    if let Some(old) = old {
        pod_update(obj, old, errs);
    }
}

/// Validates a pod template (`spec.template` of workloads) at `path`.
pub(super) fn template(template: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(t) = template else {
        errs.required(path, "");
        return;
    };
    super::meta::labels(
        t.pointer("/metadata/labels"),
        &format!("{path}.metadata.labels"),
        errs,
    );
    pod_spec(
        t.get("spec").unwrap_or(&Value::Null),
        &format!("{path}.spec"),
        errs,
    );
}

/// Validates a pod spec whose field path is `path` (e.g. `spec` or `spec.template.spec`).
pub(super) fn pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    let containers = arr(spec, "/containers");
    let mut seen = HashSet::new();
    if containers.is_empty() {
        errs.required(&format!("{path}.containers"), "");
    }
    let volumes: HashSet<&str> = arr(spec, "/volumes")
        .iter()
        .map(|v| s(v, "/name"))
        .collect();
    for (list, field) in [
        ("initContainers", "initContainers"),
        ("containers", "containers"),
    ] {
        for (i, c) in arr(spec, &format!("/{list}")).iter().enumerate() {
            container(
                c,
                &format!("{path}.{field}[{i}]"),
                &mut seen,
                &volumes,
                field == "initContainers",
                errs,
            );
        }
    }
    let mut vol_seen = HashSet::new();
    for (i, v) in arr(spec, "/volumes").iter().enumerate() {
        let name = s(v, "/name");
        let f = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            errs.required(&f, "");
        } else {
            errs.each(&f, name, names::dns1123_label(name));
            if !vol_seen.insert(name) {
                errs.duplicate(&f, &go_str(name));
            }
        }
    }
    let rp = s(spec, "/restartPolicy");
    if rp.is_empty() {
        errs.required(&format!("{path}.restartPolicy"), "");
    } else if !RESTART_POLICIES.contains(&rp) {
        errs.not_supported(&format!("{path}.restartPolicy"), rp, RESTART_POLICIES);
    }
    let dp = s(spec, "/dnsPolicy");
    if !dp.is_empty() && !DNS_POLICIES.contains(&dp) {
        errs.not_supported(&format!("{path}.dnsPolicy"), dp, DNS_POLICIES);
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && n <= 0
    {
        errs.invalid(
            &format!("{path}.activeDeadlineSeconds"),
            &n.to_string(),
            "must be between 1 and 2147483647, inclusive",
        );
    }
    if let Some(n) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && n < 0
    {
        errs.invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            &n.to_string(),
            "must be greater than or equal to 0",
        );
    }
    let node = s(spec, "/nodeName");
    if !node.is_empty() {
        errs.each(
            &format!("{path}.nodeName"),
            node,
            names::dns1123_subdomain(node),
        );
    }
    let sa = s(spec, "/serviceAccountName");
    if !sa.is_empty() {
        errs.each(
            &format!("{path}.serviceAccountName"),
            sa,
            names::dns1123_subdomain(sa),
        );
    }
    let host = s(spec, "/hostname");
    if !host.is_empty() {
        errs.each(
            &format!("{path}.hostname"),
            host,
            names::dns1123_label(host),
        );
    }
    if let Some(sel) = spec.get("nodeSelector") {
        super::meta::labels(Some(sel), &format!("{path}.nodeSelector"), errs);
    }
    for (i, t) in arr(spec, "/tolerations").iter().enumerate() {
        let op = s(t, "/operator");
        let f = format!("{path}.tolerations[{i}]");
        if !op.is_empty() && op != "Equal" && op != "Exists" {
            errs.not_supported(&format!("{f}.operator"), op, &["Equal", "Exists"]);
        }
        if op == "Exists" && !s(t, "/value").is_empty() {
            errs.invalid(
                &format!("{f}.operator"),
                &go_str(s(t, "/value")),
                "value must be empty when `operator` is 'Exists'",
            );
        }
        let effect = s(t, "/effect");
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.not_supported(
                &format!("{f}.effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            );
        }
    }
}

fn container(
    c: &Value,
    path: &str,
    seen: &mut HashSet<String>,
    volumes: &HashSet<&str>,
    init: bool,
    errs: &mut Errs,
) {
    let name = s(c, "/name");
    if name.is_empty() {
        errs.required(&format!("{path}.name"), "");
    } else {
        errs.each(&format!("{path}.name"), name, names::dns1123_label(name));
        if !seen.insert(name.to_string()) {
            errs.duplicate(&format!("{path}.name"), &go_str(name));
        }
    }
    if s(c, "/image").trim().is_empty() {
        errs.required(&format!("{path}.image"), "");
    }
    let pp = s(c, "/imagePullPolicy");
    if !pp.is_empty() && !PULL_POLICIES.contains(&pp) {
        errs.not_supported(&format!("{path}.imagePullPolicy"), pp, PULL_POLICIES);
    }
    let tmp = s(c, "/terminationMessagePolicy");
    if !tmp.is_empty() && tmp != "File" && tmp != "FallbackToLogsOnError" {
        errs.not_supported(
            &format!("{path}.terminationMessagePolicy"),
            tmp,
            &["File", "FallbackToLogsOnError"],
        );
    }
    let rp = s(c, "/restartPolicy");
    if !rp.is_empty() {
        if !init {
            errs.forbidden(
                &format!("{path}.restartPolicy"),
                "may not be set for non-init containers without restartPolicyRules",
            );
        } else if rp != "Always" {
            errs.not_supported(&format!("{path}.restartPolicy"), rp, &["Always"]);
        }
    }
    resources(c, path, errs);
    let mut port_names = HashSet::new();
    for (i, p) in arr(c, "/ports").iter().enumerate() {
        let f = format!("{path}.ports[{i}]");
        let pname = s(p, "/name");
        if !pname.is_empty() {
            errs.each(&format!("{f}.name"), pname, names::port_name(pname));
            if !port_names.insert(pname) {
                errs.duplicate(&format!("{f}.name"), &go_str(pname));
            }
        }
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => errs.required(&format!("{f}.containerPort"), ""),
            Some(n) if !(1..=65535).contains(&n) => errs.invalid(
                &format!("{f}.containerPort"),
                &n.to_string(),
                "must be between 1 and 65535, inclusive",
            ),
            _ => {}
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64)
            && n != 0
            && !(1..=65535).contains(&n)
        {
            errs.invalid(
                &format!("{f}.hostPort"),
                &n.to_string(),
                "must be between 1 and 65535, inclusive",
            );
        }
        let proto = s(p, "/protocol");
        if proto.is_empty() {
            errs.required(&format!("{f}.protocol"), "");
        } else if !PROTOCOLS.contains(&proto) {
            errs.not_supported(&format!("{f}.protocol"), proto, PROTOCOLS);
        }
    }
    let mut env_seen = HashSet::new();
    for (i, e) in arr(c, "/env").iter().enumerate() {
        let n = s(e, "/name");
        if n.is_empty() {
            errs.required(&format!("{path}.env[{i}].name"), "");
        }
        let _ = env_seen.insert(n);
    }
    for (i, m) in arr(c, "/volumeMounts").iter().enumerate() {
        let f = format!("{path}.volumeMounts[{i}]");
        let n = s(m, "/name");
        if n.is_empty() {
            errs.required(&format!("{f}.name"), "");
        } else if !volumes.contains(n) {
            errs.not_found(&format!("{f}.name"), &go_str(n));
        }
        if s(m, "/mountPath").is_empty() {
            errs.required(&format!("{f}.mountPath"), "");
        }
    }
}

/// Container resource quantities: well-formed, non-negative, requests within limits.
fn resources(c: &Value, path: &str, errs: &mut Errs) {
    let quantity = |v: &Value| match v {
        Value::String(s) => (s.clone(), skiff_meta::quantity::Quantity::parse(s).ok()),
        Value::Number(n) => (n.to_string(), n.to_string().parse().ok()),
        other => (other.to_string(), None),
    };
    for part in ["limits", "requests"] {
        let Some(map) = c
            .pointer(&format!("/resources/{part}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, v) in map {
            let field = format!("{path}.resources.{part}[{name}]");
            match quantity(v) {
                (text, None) => errs.invalid(
                    &field,
                    &go_str(&text),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ),
                (text, Some(n)) if n.milli() < 0 => {
                    errs.invalid(&field, &go_str(&text), "must be greater than or equal to 0")
                }
                _ => {}
            }
        }
    }
    let (Some(req), Some(lim)) = (
        c.pointer("/resources/requests").and_then(Value::as_object),
        c.pointer("/resources/limits").and_then(Value::as_object),
    ) else {
        return;
    };
    for (name, r) in req {
        let Some(l) = lim.get(name) else { continue };
        if let ((rt, Some(rv)), (lt, Some(lv))) = (quantity(r), quantity(l))
            && rv > lv
        {
            errs.invalid(
                &format!("{path}.resources.requests"),
                &go_str(&rt),
                &format!("must be less than or equal to {name} limit of {lt}"),
            );
        }
    }
}

/// Fields a pod update may change: container images, activeDeadlineSeconds, added tolerations,
/// terminationGracePeriodSeconds (only from negative to 1), plus the scheduling gates that may be
/// removed. Everything else in the spec is fixed at creation.
fn pod_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let (Some(new_spec), Some(old_spec)) = (obj.get("spec"), old.get("spec")) else {
        return;
    };
    let mut a = new_spec.clone();
    let mut b = old_spec.clone();
    for spec in [&mut a, &mut b] {
        if let Some(m) = spec.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("schedulingGates");
            m.remove("terminationGracePeriodSeconds");
            m.remove("ephemeralContainers");
            for list in ["containers", "initContainers"] {
                if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                            c.remove("resources");
                        }
                    }
                }
            }
        }
    }
    // nodeName may be set once (binding).
    if s(old_spec, "/nodeName").is_empty() {
        for spec in [&mut a, &mut b] {
            if let Some(m) = spec.as_object_mut() {
                m.remove("nodeName");
            }
        }
    }
    if a != b {
        errs.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        );
    }
    let old_tol = arr(old_spec, "/tolerations");
    let new_tol = arr(new_spec, "/tolerations");
    if old_tol.iter().any(|t| !new_tol.contains(t)) {
        errs.forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        );
    }
    if let Some(old_ads) = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        match new_spec
            .get("activeDeadlineSeconds")
            .and_then(Value::as_i64)
        {
            None => errs.invalid(
                "spec.activeDeadlineSeconds",
                "0",
                "must not update from a positive integer to nil value",
            ),
            Some(n) if n > old_ads => errs.invalid(
                "spec.activeDeadlineSeconds",
                &n.to_string(),
                "must be less than or equal to previous value",
            ),
            _ => {}
        }
    }
}
