//! Object metadata validation (names, labels, annotations) and the checks of small core kinds.

use serde_json::Value;

use super::names;
use super::{Errs, go_str, s};
use crate::Kind;

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Which syntax the kind's names follow.
fn name_check(kind: &Kind) -> fn(&str) -> Vec<String> {
    match (kind.group, kind.kind) {
        ("", "Namespace") => names::dns1123_label,
        ("", "Service") => names::dns1035_label,
        ("rbac.authorization.k8s.io", _) => names::path_segment,
        _ => names::dns1123_subdomain,
    }
}

pub(super) fn object_meta(kind: &Kind, obj: &Value, errs: &mut Errs) {
    let name = s(obj, "/metadata/name");
    if name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    } else {
        errs.each("metadata.name", name, name_check(kind)(name));
    }
    if kind.namespaced {
        let ns = s(obj, "/metadata/namespace");
        if ns.is_empty() {
            errs.required("metadata.namespace", "");
        } else {
            errs.each("metadata.namespace", ns, names::dns1123_label(ns));
        }
    } else if obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        errs.forbidden("metadata.namespace", "not allowed on this type");
    }
    labels(obj.pointer("/metadata/labels"), "metadata.labels", errs);
    annotations(
        obj.pointer("/metadata/annotations"),
        "metadata.annotations",
        errs,
    );
    owner_references(obj, errs);
    for (i, f) in super::arr(obj, "/metadata/finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        errs.each(
            &format!("metadata.finalizers[{i}]"),
            f,
            names::qualified_name(f),
        );
    }
}

fn owner_references(obj: &Value, errs: &mut Errs) {
    let refs = super::arr(obj, "/metadata/ownerReferences");
    let mut controllers = Vec::new();
    for r in refs {
        let version = s(r, "/apiVersion").rsplit('/').next().unwrap_or_default();
        for (field, value, what) in [
            ("apiVersion", version, "version"),
            ("kind", s(r, "/kind"), "kind"),
            ("name", s(r, "/name"), "name"),
            ("uid", s(r, "/uid"), "uid"),
        ] {
            if value.is_empty() {
                errs.invalid(
                    &format!("metadata.ownerReferences.{field}"),
                    "\"\"",
                    &format!("{what} must not be empty"),
                );
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(s(r, "/name").to_string());
        }
    }
    if controllers.len() > 1 {
        errs.invalid(
            "metadata.ownerReferences",
            &serde_json::to_string(refs).unwrap_or_default(),
            &format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        );
    }
}

/// Label keys must be qualified names, values valid label values.
pub(super) fn labels(labels: Option<&Value>, field: &str, errs: &mut Errs) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        errs.each(field, k, names::qualified_name(k));
        let v = v.as_str().unwrap_or_default();
        errs.each(field, v, names::label_value(v));
    }
}

fn annotations(annotations: Option<&Value>, field: &str, errs: &mut Errs) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        errs.each(field, k, names::qualified_name(&k.to_ascii_lowercase()));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

pub(super) fn namespace(obj: &Value, errs: &mut Errs) {
    for (i, f) in super::arr(obj, "/spec/finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        let msgs = names::qualified_name(f);
        errs.each(&format!("spec.finalizers[{i}]"), f, msgs);
    }
}

pub(super) fn node(obj: &Value, errs: &mut Errs) {
    for (i, t) in super::arr(obj, "/spec/taints").iter().enumerate() {
        let key = s(t, "/key");
        let field = format!("spec.taints[{i}]");
        if key.is_empty() {
            errs.required(&format!("{field}.key"), "");
        } else {
            errs.each(&format!("{field}.key"), key, names::qualified_name(key));
        }
        let value = s(t, "/value");
        errs.each(&format!("{field}.value"), value, names::label_value(value));
        let effect = s(t, "/effect");
        if effect.is_empty() {
            errs.required(&format!("{field}.effect"), "");
        } else if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            errs.not_supported(
                &format!("{field}.effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            );
        }
    }
    let cidr = s(obj, "/spec/podCIDR");
    if !cidr.is_empty() && !is_cidr(cidr) {
        errs.invalid(
            "spec.podCIDR",
            &go_str(cidr),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        );
    }
}

pub(crate) fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// ConfigMap and Secret data keys, sizes and immutability.
pub(super) fn config_data(kind: &Kind, obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let binary_field = if kind.kind == "Secret" {
        "stringData"
    } else {
        "binaryData"
    };
    let mut total = 0;
    for field in ["data", binary_field] {
        let Some(map) = obj.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            errs.each(&format!("{field}[{k}]"), k, names::config_key(k));
            total += v.as_str().map_or(0, str::len);
            if field == "binaryData" && obj.get("data").and_then(|d| d.get(k)).is_some() {
                errs.invalid(
                    &format!("data[{k}]"),
                    &go_str(k),
                    "duplicate of key present in binaryData",
                );
            }
        }
    }
    if kind.kind == "Secret" {
        if total > MAX_SECRET_SIZE {
            errs.too_long("data", MAX_SECRET_SIZE);
        }
        let t = s(obj, "/type");
        match t {
            "kubernetes.io/service-account-token"
                if s(
                    obj,
                    "/metadata/annotations/kubernetes.io~1service-account.name",
                )
                .is_empty() =>
            {
                errs.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
            "kubernetes.io/dockerconfigjson"
                if obj.pointer("/data/.dockerconfigjson").is_none() =>
            {
                errs.required("data[.dockerconfigjson]", "");
            }
            "kubernetes.io/tls" => {
                for key in ["tls.crt", "tls.key"] {
                    if obj.get("data").and_then(|d| d.get(key)).is_none() {
                        errs.required(&format!("data[{key}]"), "");
                    }
                }
            }
            _ => {}
        }
    } else if total > MAX_SECRET_SIZE {
        errs.too_long("", MAX_SECRET_SIZE);
    }
    let Some(old) = old else {
        return;
    };
    if kind.kind == "Secret" {
        let (ot, nt) = (s(old, "/type"), s(obj, "/type"));
        if !ot.is_empty() && ot != nt {
            errs.invalid("type", &go_str(nt), "field is immutable");
        }
    }
    if old.get("immutable").and_then(Value::as_bool) == Some(true) {
        let detail = "field is immutable when `immutable` is set";
        if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
            errs.forbidden("immutable", detail);
        }
        for field in [
            "data",
            if kind.kind == "Secret" {
                "type"
            } else {
                "binaryData"
            },
        ] {
            if kind.kind == "Secret" && field == "type" {
                continue;
            }
            if old.get(field) != obj.get(field) {
                errs.forbidden(field, detail);
            }
        }
    }
}
