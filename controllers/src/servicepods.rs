//! What the EndpointSlice and Endpoints controllers share: which pods a Service selects, a pod's
//! IPv4 address and its resolution of a Service port (`podutil.FindPort`), the labels Kubernetes
//! copies from the Service, and the pod → Service index that finds the Services a pod used to
//! belong to after its labels changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::util;

/// Label on Endpoints and EndpointSlices of a headless Service (`clusterIP: None`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation: when the last change that the object reflects happened (RFC 3339).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Whether the Service is the API server's own `default/kubernetes`, whose Endpoints and
/// EndpointSlice the API server keeps: the controllers never touch them.
pub fn is_apiserver_service(namespace: &str, name: &str) -> bool {
    namespace == "default" && name == "kubernetes"
}

/// The Service's selector when it has one the controllers act on (a non-empty selector on a
/// Service that is not `ExternalName`); `None` means its endpoints are someone else's.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the Service publishes not-ready addresses as ready.
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pods of the Service's namespace its selector matches (empty without a selector).
pub fn selected_pods(svc: &Service, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let ns = svc.namespace().unwrap_or_default();
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && matches(sel, p))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

fn matches(sel: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's IPv4 address (`status.podIPs`, else `status.podIP`).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Whether the pod can be an endpoint at all (`ShouldPodBeInEndpoints`): not finished, has an
/// IP, and — unless `include_terminating` — not being deleted.
pub fn may_be_endpoint(pod: &Pod, include_terminating: bool) -> bool {
    if util::pod_terminal(pod) || pod_ipv4(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The container port a Service port reaches on this pod (`podutil.FindPort`): a numeric
/// `targetPort` as is (the Service port when unset), a named one by the name and protocol of a
/// container port (regular containers, then restartable init containers); `None` if the pod has
/// no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The hostname the pod publishes under the Service (`ShouldSetHostname`): its `hostname` when
/// its `subdomain` is the Service's name.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace())
    .then(|| host.to_string())
}

/// When the newest change the endpoints reflect happened: the Service's creation, a selected
/// pod's Ready transition or the start of its deletion.
pub fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<jiff::Timestamp> {
    let ready = pods.iter().filter_map(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    });
    let deleting = pods
        .iter()
        .filter_map(|p| p.metadata.deletion_timestamp.as_ref().map(|t| t.0));
    svc.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .into_iter()
        .chain(ready)
        .chain(deleting)
        .max()
}

/// The labels Kubernetes gives a Service's Endpoints and EndpointSlices: the Service's own,
/// minus `drop`, plus the headless label for a headless Service.
pub fn copied_labels(svc: &Service, drop: &[&str]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()) && k.as_str() != HEADLESS_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// Which Services each pod was last put in, per namespace, so that a pod whose labels no
/// longer match still wakes the Services that list it.
#[derive(Default)]
pub struct Members {
    inner: Mutex<MembersInner>,
}

#[derive(Default)]
struct MembersInner {
    /// (namespace, pod) → Services.
    by_pod: HashMap<(String, String), BTreeSet<String>>,
    /// (namespace, Service) → pods.
    by_service: HashMap<(String, String), BTreeSet<String>>,
}

impl Members {
    /// Records that the Service `namespace/service` now lists exactly `pods`.
    pub fn set(&self, namespace: &str, service: &str, pods: BTreeSet<String>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), service.to_string());
        let old = m.by_service.remove(&key).unwrap_or_default();
        for p in old.difference(&pods) {
            let pk = (namespace.to_string(), p.clone());
            if let Some(set) = m.by_pod.get_mut(&pk) {
                set.remove(service);
                if set.is_empty() {
                    m.by_pod.remove(&pk);
                }
            }
        }
        for p in &pods {
            m.by_pod
                .entry((namespace.to_string(), p.clone()))
                .or_default()
                .insert(service.to_string());
        }
        if !pods.is_empty() {
            m.by_service.insert(key, pods);
        }
    }

    /// The Services that last listed the pod.
    pub fn services_of(&self, namespace: &str, pod: &str) -> BTreeSet<String> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.by_pod
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// The Services a pod event concerns: those whose selector matches the pod now, and those that
/// listed it before (per `members`).
pub fn services_for_pod(
    pod: &Pod,
    services: &Store<Service>,
    members: &[&Members],
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    let mut names: BTreeSet<String> = members
        .iter()
        .flat_map(|m| m.services_of(&ns, &pod.name_any()))
        .collect();
    for svc in services.state() {
        if svc.metadata.namespace.as_deref() == Some(ns.as_str())
            && selector(&svc).is_some_and(|sel| matches(sel, pod))
        {
            names.insert(svc.name_any());
        }
    }
    names
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(&ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let p = pod(json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            ]}], "initContainers": [{"name": "side", "restartPolicy": "Always",
                                     "ports": [{"name": "metrics", "containerPort": 9090}]}]},
        }));
        let port = |v: serde_json::Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": 81}))),
            Some(81)
        );
        assert_eq!(find_port(&p, &port(json!({"port": 80}))), Some(80));
        assert_eq!(
            find_port(
                &p,
                &port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))
            ),
            Some(53)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 53, "targetPort": "dns"}))),
            None
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 1, "targetPort": "metrics"}))),
            Some(9090)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 1, "targetPort": "nope"}))),
            None
        );
    }

    #[test]
    fn ipv4_and_eligibility() {
        let p = pod(json!({"metadata": {"name": "a"}, "status": {
            "phase": "Running", "podIPs": [{"ip": "fd00::1"}, {"ip": "10.244.1.5"}]}}));
        assert_eq!(pod_ipv4(&p).as_deref(), Some("10.244.1.5"));
        assert!(may_be_endpoint(&p, false));
        let done = pod(json!({"metadata": {"name": "a"}, "status": {
            "phase": "Succeeded", "podIP": "10.244.1.5"}}));
        assert!(!may_be_endpoint(&done, true));
        let no_ip = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        assert!(!may_be_endpoint(&no_ip, true));
        let deleting = pod(json!({"metadata": {"name": "a",
            "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "podIP": "10.244.1.5"}}));
        assert!(may_be_endpoint(&deleting, true));
        assert!(!may_be_endpoint(&deleting, false));
    }

    #[test]
    fn members_follow_the_last_listing() {
        let m = Members::default();
        m.set("ns", "web", ["a".into(), "b".into()].into());
        m.set("ns", "api", ["a".into()].into());
        assert_eq!(m.services_of("ns", "a").len(), 2);
        m.set("ns", "web", ["b".into()].into());
        assert_eq!(
            m.services_of("ns", "a").into_iter().collect::<Vec<_>>(),
            ["api"]
        );
        m.set("ns", "api", BTreeSet::new());
        assert!(m.services_of("ns", "a").is_empty());
        assert!(m.services_of("other", "b").is_empty());
    }
}
