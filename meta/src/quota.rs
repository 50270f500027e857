//! ResourceQuota evaluation, as Kubernetes' quota evaluators: what an object charges against a
//! quota (`usage`), which quotas it falls under (`matches`), and which resources a pod must state
//! (`pod_constraints`). Both quota admission in the API server and the quota controller use it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::Quantity;

/// Resource name → amount, in name order (Kubernetes' `ResourceList`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// The suffix of per-StorageClass PersistentVolumeClaim resources.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Core kinds whose object count has a name of its own besides `count/<plural>`.
const LEGACY_COUNTS: [&str; 4] = [
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// The object-count resource of a kind: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The kind (`(group, plural)`) whose objects a quota resource counts: `pods` for `limits.cpu`,
/// `("apps", "deployments")` for `count/deployments.apps`; `None` for a name no evaluator knows.
pub fn kind_of(name: &str) -> Option<(String, String)> {
    let core = |plural: &str| Some((String::new(), plural.to_string()));
    if let Some(rest) = name.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((plural, group)) => Some((group.to_string(), plural.to_string())),
            None => core(rest),
        };
    }
    let tracked_by = |plural: &str| tracks("", plural, name);
    ["pods", "services", "persistentvolumeclaims"]
        .into_iter()
        .chain(LEGACY_COUNTS)
        .find(|p| tracked_by(p))
        .and_then(core)
}

/// Parses a JSON `ResourceList`; entries that are not quantities are left out.
pub fn parse_list(list: Option<&Value>) -> ResourceList {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
        .collect()
}

/// A `ResourceList` as JSON, quantities in canonical form.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

/// Kubernetes' `prettyPrint`: `name=value` pairs in name order, joined by commas.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the evaluator of kind `group`/`plural` tracks resource `name`.
pub fn tracks(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            matches!(
                name,
                "pods"
                    | "cpu"
                    | "memory"
                    | "ephemeral-storage"
                    | "requests.cpu"
                    | "requests.memory"
                    | "requests.ephemeral-storage"
                    | "limits.cpu"
                    | "limits.memory"
                    | "limits.ephemeral-storage"
            ) || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                // Extended resources: `requests.example.com/gpu`.
                || name.strip_prefix("requests.").is_some_and(|r| r.contains('/'))
        }
        "services" => matches!(
            name,
            "services" | "services.nodeports" | "services.loadbalancers"
        ),
        "persistentvolumeclaims" => {
            name == "persistentvolumeclaims"
                || name == "requests.storage"
                || name.contains(STORAGE_CLASS_SUFFIX)
        }
        p => LEGACY_COUNTS.contains(&p) && name == p,
    }
}

/// What one object of kind `group`/`plural` charges (Kubernetes' evaluators' `Usage`).
pub fn usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_name(group, plural), Quantity::from_value(1));
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" => pod_usage(obj, &mut out),
        "services" => service_usage(obj, &mut out),
        "persistentvolumeclaims" => pvc_usage(obj, &mut out),
        p if LEGACY_COUNTS.contains(&p) => {
            out.insert(p.to_string(), Quantity::from_value(1));
        }
        _ => {}
    }
    out
}

/// Whether a pod still counts against compute quota: not Succeeded or Failed.
pub fn pod_counts(pod: &Value) -> bool {
    !matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn pod_usage(pod: &Value, out: &mut ResourceList) {
    if !pod_counts(pod) {
        return;
    }
    out.insert("pods".into(), Quantity::from_value(1));
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let requests = pod_resources(spec, "requests");
    let limits = pod_resources(spec, "limits");
    for (name, q) in &requests {
        match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                out.insert(name.clone(), *q);
                out.insert(format!("requests.{name}"), *q);
            }
            n if n.starts_with("hugepages-") => {
                out.insert(name.clone(), *q);
                out.insert(format!("requests.{name}"), *q);
            }
            // Extended resources (`example.com/gpu`) are quota'd as `requests.NAME` only.
            n if n.contains('/') => {
                out.insert(format!("requests.{name}"), *q);
            }
            _ => {}
        }
    }
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = limits.get(name) {
            out.insert(format!("limits.{name}"), *q);
        }
    }
}

/// One container's `resources.<part>`; requests fall back to limits, as defaulting does.
fn container_list(c: &Value, part: &str) -> ResourceList {
    let mut list = parse_list(c.pointer(&format!("/resources/{part}")));
    if part == "requests" {
        for (k, v) in parse_list(c.pointer("/resources/limits")) {
            list.entry(k).or_insert(v);
        }
    }
    list
}

fn add(into: &mut ResourceList, from: &ResourceList) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = *e + *v;
    }
}

fn max_into(into: &mut ResourceList, from: &ResourceList) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(*v);
        if *v > *e {
            *e = *v;
        }
    }
}

/// Kubernetes' `PodRequests`/`PodLimits`: the containers' sum, sidecar init containers added,
/// at least the largest init container (with the sidecars started before it), the pod-level
/// resources where stated, plus the overhead.
fn pod_resources(spec: &Value, part: &str) -> ResourceList {
    let list = |name: &str| {
        spec.get(name)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let mut total = ResourceList::new();
    for c in list("containers") {
        add(&mut total, &container_list(c, part));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in list("initContainers") {
        let own = container_list(c, part);
        let step = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with = own;
            add(&mut with, &sidecars);
            with
        };
        max_into(&mut init_max, &step);
    }
    max_into(&mut total, &init_max);
    for (k, v) in parse_list(spec.pointer(&format!("/resources/{part}"))) {
        if matches!(k.as_str(), "cpu" | "memory") {
            total.insert(k, v);
        }
    }
    add(&mut total, &parse_list(spec.get("overhead")));
    total
}

fn service_usage(svc: &Value, out: &mut ResourceList) {
    out.insert("services".into(), Quantity::from_value(1));
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (mut node_ports, mut lbs) = (0, 0);
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => node_ports = ports.len(),
        Some("LoadBalancer") => {
            lbs = 1;
            node_ports = if svc.pointer("/spec/allocateLoadBalancerNodePorts")
                == Some(&Value::Bool(false))
            {
                ports
                    .iter()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                    .count()
            } else {
                ports.len()
            };
        }
        _ => {}
    }
    out.insert(
        "services.nodeports".into(),
        Quantity::from_value(node_ports as i128),
    );
    out.insert(
        "services.loadbalancers".into(),
        Quantity::from_value(lbs as i128),
    );
}

fn pvc_usage(pvc: &Value, out: &mut ResourceList) {
    out.insert("persistentvolumeclaims".into(), Quantity::from_value(1));
    let class = pvc
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| pvc.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !class.is_empty() {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Quantity::from_value(1),
        );
    }
    let requested = parse_list(pvc.pointer("/spec/resources/requests"))
        .get("storage")
        .copied();
    let allocated = parse_list(pvc.pointer("/status/allocatedResources"))
        .get("storage")
        .copied();
    if let Some(storage) = requested.max(allocated) {
        out.insert("requests.storage".into(), storage);
        if !class.is_empty() {
            out.insert(
                format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage,
            );
        }
    }
}

/// One scope requirement of a quota: `spec.scopes` entries (operator `Exists`) and
/// `spec.scopeSelector.matchExpressions`.
struct Scope<'a> {
    name: &'a str,
    operator: &'a str,
    values: Vec<&'a str>,
}

fn scopes(quota: &Value) -> Vec<Scope<'_>> {
    let mut out: Vec<Scope<'_>> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|name| Scope {
            name,
            operator: "Exists",
            values: Vec::new(),
        })
        .collect();
    let exprs = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array);
    for e in exprs.into_iter().flatten() {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        out.push(Scope {
            name: s("scopeName"),
            operator: s("operator"),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        });
    }
    out
}

/// Whether the quota's scopes select `obj` (of kind `group`/`plural`). Only pods have scopes:
/// a quota with any scope selects no other kind, as Kubernetes' `MatchesNoScopeFunc`.
pub fn scopes_match(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let scopes = scopes(quota);
    if scopes.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let terminating = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    let best_effort = crate::qos::qos_class_json(spec) == crate::qos::QosClass::BestEffort;
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    scopes.iter().all(|s| match s.name {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        // The pod's class is always known (maybe empty), so DoesNotExist never matches.
        "PriorityClass" => match s.operator {
            "Exists" => !class.is_empty(),
            "In" => s.values.contains(&class),
            "NotIn" => !s.values.contains(&class),
            _ => false,
        },
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        _ => false,
    })
}

/// Kubernetes' `usesCrossNamespacePodAffinity`: a pod (anti-)affinity term, required or
/// preferred, that names namespaces or has a namespace selector.
fn cross_namespace_affinity(spec: &Value) -> bool {
    let crosses = |term: &Value| {
        term.get("namespaces")
            .and_then(Value::as_array)
            .is_some_and(|n| !n.is_empty())
            || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(affinity) = spec.pointer(&format!("/affinity/{kind}")) else {
            return false;
        };
        let terms = |field: &str| {
            affinity
                .get(field)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        terms("requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .any(crosses)
            || terms("preferredDuringSchedulingIgnoredDuringExecution")
                .iter()
                .filter_map(|w| w.get("podAffinityTerm"))
                .any(crosses)
    })
}

/// The resources a pod's containers must each state when a quota limits them (Kubernetes'
/// backward-compatible rule for cpu and memory): `Err("must specify limits.cpu for: c1")`.
pub fn pod_constraints<'a>(
    required: impl IntoIterator<Item = &'a str>,
    pod: &Value,
) -> Result<(), String> {
    const CHECKED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&str> = required
        .into_iter()
        .filter(|r| CHECKED.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(l).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let requests = container_list(c, "requests");
        let limits = parse_list(c.pointer("/resources/limits"));
        let has = |r: &str| match r {
            "cpu" | "requests.cpu" => requests.contains_key("cpu"),
            "memory" | "requests.memory" => requests.contains_key("memory"),
            "limits.cpu" => limits.contains_key("cpu"),
            "limits.memory" => limits.contains_key("memory"),
            _ => true,
        };
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        for r in &required {
            if !has(r) {
                missing.entry(r).or_default().push(name.to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(r, mut names)| {
            names.sort();
            names.dedup();
            format!("{r} for: {}", names.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests;
