//! Service validation: type, ports, cluster IPs, and what may change on update.

use std::collections::HashSet;

use serde_json::Value;

use super::names;
use super::{Errs, arr, go_str, s};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub(super) fn service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = s(spec, "/type");
    if !ty.is_empty() && !TYPES.contains(&ty) {
        errs.not_supported("spec.type", ty, TYPES);
    }
    let cluster_ip = s(spec, "/clusterIP");
    let headless = cluster_ip == "None";
    let ports = arr(spec, "/ports");
    if ty == "ExternalName" {
        let en = s(spec, "/externalName");
        if en.is_empty() {
            errs.required("spec.externalName", "");
        } else {
            errs.each(
                "spec.externalName",
                en,
                names::dns1123_subdomain(en.trim_end_matches('.')),
            );
        }
    } else if ports.is_empty() && !headless {
        errs.required("spec.ports", "");
    }
    if !cluster_ip.is_empty() && !headless {
        for m in names::ip(cluster_ip) {
            errs.invalid("spec.clusterIPs[0]", &go_str(cluster_ip), &m);
        }
    }
    if headless && (ty == "NodePort" || ty == "LoadBalancer") {
        errs.invalid(
            "spec.clusterIPs[0]",
            &go_str(cluster_ip),
            &format!("may not be set to 'None' for {ty} services"),
        );
    }
    let mut seen_names = HashSet::new();
    let mut seen_ports = HashSet::new();
    let mut seen_node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let name = s(p, "/name");
        if ports.len() > 1 && name.is_empty() {
            errs.required(&format!("{f}.name"), "");
        } else if !name.is_empty() {
            errs.each(&format!("{f}.name"), name, names::dns1123_label(name));
            if !seen_names.insert(name) {
                errs.duplicate(&format!("{f}.name"), &go_str(name));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.invalid(
                &format!("{f}.port"),
                &port.to_string(),
                "must be between 1 and 65535, inclusive",
            );
        }
        let proto = s(p, "/protocol");
        if proto.is_empty() {
            errs.required(&format!("{f}.protocol"), "");
        } else if !PROTOCOLS.contains(&proto) {
            errs.not_supported(&format!("{f}.protocol"), proto, PROTOCOLS);
        }
        if !seen_ports.insert((port, proto)) {
            // Kubernetes keys ports by (protocol, port) and prints the key with Go's `%#v`.
            errs.duplicate(
                &format!("spec.ports[{i}]"),
                &format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go_str(proto)
                ),
            );
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    errs.invalid(
                        &format!("{f}.targetPort"),
                        &n.to_string(),
                        "must be between 1 and 65535, inclusive",
                    );
                }
            }
            Some(Value::String(t)) => errs.each(&format!("{f}.targetPort"), t, names::port_name(t)),
            _ => {}
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
            && np != 0
            && !seen_node_ports.insert((np, proto))
        {
            errs.duplicate(&format!("{f}.nodePort"), &np.to_string());
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            if ty != "NodePort" && ty != "LoadBalancer" && np != 0 {
                errs.forbidden(
                    &format!("{f}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            } else if !(0..=65535).contains(&np) {
                errs.invalid(
                    &format!("{f}.nodePort"),
                    &np.to_string(),
                    "must be between 1 and 65535, inclusive",
                );
            }
        }
    }
    let sa = s(spec, "/sessionAffinity");
    if !sa.is_empty() && sa != "ClientIP" && sa != "None" {
        errs.not_supported("spec.sessionAffinity", sa, &["ClientIP", "None"]);
    }
    let affinity_config = spec
        .get("sessionAffinityConfig")
        .is_some_and(|c| !c.is_null());
    if sa == "ClientIP" {
        let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
        match timeout.and_then(Value::as_i64) {
            Some(t) if (1..=86400).contains(&t) => {}
            Some(t) => errs.invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                &t.to_string(),
                "must be greater than 0 and less than 86400",
            ),
            None => errs.required("spec.sessionAffinityConfig.clientIP.timeoutSeconds", ""),
        }
    } else if sa == "None" && affinity_config {
        errs.forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        );
    }
    // The cluster serves IPv4 only.
    for (i, family) in arr(spec, "/ipFamilies").iter().enumerate() {
        let family = family.as_str().unwrap_or_default();
        match family {
            "IPv4" => {}
            "IPv6" => errs.invalid(
                &format!("spec.ipFamilies[{i}]"),
                &go_str(family),
                "not configured on this cluster",
            ),
            other => errs.not_supported(&format!("spec.ipFamilies[{i}]"), other, &["IPv4", "IPv6"]),
        }
    }
    if s(spec, "/ipFamilyPolicy") == "RequireDualStack" {
        errs.invalid(
            "spec.ipFamilyPolicy",
            &go_str("RequireDualStack"),
            "this cluster is not configured for dual-stack services",
        );
    }
    if let Some(sel) = spec.get("selector") {
        super::meta::labels(Some(sel), "spec.selector", errs);
    }
    for (i, ip) in arr(spec, "/externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or_default();
        for m in names::ip(ip) {
            errs.invalid(&format!("spec.externalIPs[{i}]"), &go_str(ip), &m);
        }
    }
    if let Some(old) = old {
        let old_ip = s(old, "/spec/clusterIP");
        let old_ty = s(old, "/spec/type");
        if !old_ip.is_empty()
            && old_ty != "ExternalName"
            && ty != "ExternalName"
            && old_ip != cluster_ip
        {
            errs.invalid(
                "spec.clusterIPs[0]",
                &format!("[]string{{{}}}", go_str(cluster_ip)),
                "may not change once set",
            );
        }
    }
}
