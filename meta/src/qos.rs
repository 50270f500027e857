//! A pod's quality-of-service class, as Kubernetes' `ComputePodQOS`.
//!
//! Only `cpu` and `memory` count; a zero quantity counts as unset; init containers count as
//! containers. The API server computes it once at create (`status.qosClass`); the node keeps it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use crate::quantity::Quantity;

/// `Guaranteed`, `Burstable` or `BestEffort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One container's requests and limits, by resource name, as written.
#[derive(Default)]
struct Resources<'a> {
    requests: Vec<(&'a str, &'a str)>,
    limits: Vec<(&'a str, &'a str)>,
}

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

fn compute<'a>(containers: impl IntoIterator<Item = Resources<'a>>) -> QosClass {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    // A quantity that does not parse was refused at validation; here it counts as unset.
    let positive = |q: &str| Quantity::parse(q).ok().filter(|q| q.milli() > 0);
    for c in containers {
        for (name, q) in c.requests {
            if let Some(q) = QOS_RESOURCES.contains(&name).then(|| positive(q)).flatten() {
                let sum = requests.entry(name).or_default();
                *sum = *sum + q;
            }
        }
        let mut found = Vec::new();
        for (name, q) in c.limits {
            if let Some(q) = QOS_RESOURCES.contains(&name).then(|| positive(q)).flatten() {
                found.push(name);
                let sum = limits.entry(name).or_default();
                *sum = *sum + q;
            }
        }
        if !QOS_RESOURCES.iter().all(|r| found.contains(r)) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.iter().all(|(name, r)| limits.get(name) == Some(r))
        && requests.len() == limits.len()
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

/// The QoS class of a typed pod spec.
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    compute(all.map(|c| {
        let res = c.resources.as_ref();
        Resources {
            requests: pairs(res.and_then(|r| r.requests.as_ref())),
            limits: pairs(res.and_then(|r| r.limits.as_ref())),
        }
    }))
}

type ResourceList = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn pairs(list: Option<&ResourceList>) -> Vec<(&str, &str)> {
    list.into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
        .collect()
}

/// The QoS class of a pod spec given as JSON (`spec` of a Pod).
pub fn qos_class_json(spec: &Value) -> QosClass {
    let lists = ["containers", "initContainers"];
    let all = lists
        .iter()
        .filter_map(|l| spec.get(l).and_then(Value::as_array))
        .flatten();
    compute(all.map(|c| {
        let list = |ptr: &str| {
            c.pointer(ptr)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        };
        Resources {
            requests: list("/resources/requests"),
            limits: list("/resources/limits"),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(containers: Value, init: Value) -> QosClass {
        let spec = json!({"containers": containers, "initContainers": init});
        let json_class = qos_class_json(&spec);
        let typed: PodSpec = serde_json::from_value(json!({
            "containers": spec["containers"].as_array().unwrap().iter().enumerate()
                .map(|(i, c)| { let mut c = c.clone(); c["name"] = json!(format!("c{i}")); c }).collect::<Vec<_>>(),
            "initContainers": spec["initContainers"].as_array().unwrap().iter().enumerate()
                .map(|(i, c)| { let mut c = c.clone(); c["name"] = json!(format!("i{i}")); c }).collect::<Vec<_>>(),
        }))
        .unwrap();
        assert_eq!(qos_class(&typed), json_class, "typed and JSON disagree");
        json_class
    }

    fn res(requests: Value, limits: Value) -> Value {
        json!({"resources": {"requests": requests, "limits": limits}})
    }

    #[test]
    fn classes_follow_compute_pod_qos() {
        use QosClass::*;
        let cases = [
            ("no resources", json!([{}]), json!([]), BestEffort),
            // The QoS flip: a zero request is no request.
            (
                "zero cpu request",
                json!([res(json!({"cpu": "0"}), json!({}))]),
                json!([]),
                BestEffort,
            ),
            (
                "zero limits",
                json!([res(json!({}), json!({"cpu": "0", "memory": "0"}))]),
                json!([]),
                BestEffort,
            ),
            (
                "other resources only",
                json!([res(json!({"ephemeral-storage": "1Gi"}), json!({}))]),
                json!([]),
                BestEffort,
            ),
            (
                "cpu request",
                json!([res(json!({"cpu": "100m"}), json!({}))]),
                json!([]),
                Burstable,
            ),
            (
                "equal requests and limits",
                json!([res(
                    json!({"cpu": "1", "memory": "1Gi"}),
                    json!({"cpu": "1000m", "memory": "1024Mi"})
                )]),
                json!([]),
                Guaranteed,
            ),
            (
                "limits only, before defaulting copies them to requests",
                json!([res(json!({}), json!({"cpu": "1", "memory": "1Gi"}))]),
                json!([]),
                Burstable,
            ),
            (
                "request below limit",
                json!([res(
                    json!({"cpu": "500m", "memory": "1Gi"}),
                    json!({"cpu": "1", "memory": "1Gi"})
                )]),
                json!([]),
                Burstable,
            ),
            (
                "memory limit missing",
                json!([res(json!({"cpu": "1"}), json!({"cpu": "1"}))]),
                json!([]),
                Burstable,
            ),
            (
                "one container best effort among guaranteed",
                json!([
                    res(
                        json!({"cpu": "1", "memory": "1Gi"}),
                        json!({"cpu": "1", "memory": "1Gi"})
                    ),
                    {}
                ]),
                json!([]),
                Burstable,
            ),
            (
                "init container counts",
                json!([res(
                    json!({"cpu": "1", "memory": "1Gi"}),
                    json!({"cpu": "1", "memory": "1Gi"})
                )]),
                json!([res(json!({"cpu": "1"}), json!({}))]),
                Burstable,
            ),
        ];
        for (name, containers, init, want) in cases {
            assert_eq!(class(containers, init), want, "{name}");
        }
    }
}
