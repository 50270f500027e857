//! The node's Service routing table: Services, EndpointSlices, scale-to-zero Deployments, Node
//! addresses and the pods of this node, compiled per Service into the ports and ready endpoints a
//! request is balanced over. Every watch event (and every readiness change of a local pod)
//! recompiles only the Services it touches, in place, and bumps a generation held requests wait on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_meta::names;
use tokio::sync::watch;

use super::bridge::WasmPods;

/// The EndpointSlice label naming its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent (Kubernetes' default, 3 hours).
pub(crate) const AFFINITY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10800);

/// How a request names a Service: `NAME` (the caller's namespace), `NAME.NS`, `NAME.NS.svc`,
/// `NAME.NS.svc.cluster.local` (a trailing dot allowed), or a ClusterIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceName<'a> {
    /// A bare name, in the caller's namespace.
    Bare(&'a str),
    /// A name and its namespace.
    Qualified(&'a str, &'a str),
    /// A virtual IP.
    Ip(IpAddr),
}

/// Parses a request's host as a Service name; `None` for a host that cannot be one (a name with
/// other domains, a label that is not a DNS label).
pub(crate) fn parse_host(host: &str) -> Option<ServiceName<'_>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ServiceName::Ip(ip));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .map(|h| (h, true))
        .unwrap_or((host, false));
    let mut labels = host.0.split('.');
    let name = labels.next().filter(|l| dns_label(l))?;
    match (labels.next(), labels.next()) {
        (None, None) if !host.1 => Some(ServiceName::Bare(name)),
        (Some(ns), None) if dns_label(ns) => Some(ServiceName::Qualified(name, ns)),
        _ => None,
    }
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// One endpoint (a pod address) of a Service.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) ip: IpAddr,
    /// The node it runs on (`None`: not said; served in-process if the pod is here).
    pub(crate) node: Option<String>,
    /// Gets new requests.
    pub(crate) ready: bool,
    /// Being deleted but still serving: used only when no endpoint is ready.
    pub(crate) serving_terminating: bool,
    /// Requests this node has outstanding on it (shared by every Service that lists the pod).
    pub(crate) load: Arc<AtomicU32>,
    /// Port name -> port.
    ports: Vec<(String, u16)>,
    /// The EndpointSlice's `hostname` (a StatefulSet pod's name under a headless Service), for
    /// the node's cluster DNS.
    pub(crate) hostname: Option<String>,
}

/// One endpoint port a Service port is served on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Index into [`Compiled::endpoints`].
    pub(crate) ep: usize,
    pub(crate) port: u16,
}

/// One `spec.ports[]` entry with where it goes.
#[derive(Debug)]
pub(crate) struct Port {
    pub(crate) name: String,
    pub(crate) port: u16,
    /// On ready endpoints.
    pub(crate) ready: Vec<Target>,
    /// On terminating endpoints still serving (Kubernetes' fallback when none is ready).
    pub(crate) fallback: Vec<Target>,
}

/// The scale-to-zero Deployment a Service fronts, with its annotations read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScaleTarget {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) deadline: Duration,
    pub(crate) max_held: usize,
    pub(crate) idle: Duration,
}

/// What a Service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// ClusterIP, NodePort, LoadBalancer or headless: routed to endpoints.
    Endpoints,
    /// `type: ExternalName`: an alias of `spec.externalName`.
    ExternalName(String),
}

/// A Service compiled for routing.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) cluster_ip: Option<IpAddr>,
    pub(crate) kind: Kind,
    pub(crate) ports: Vec<Port>,
    pub(crate) endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP` with its timeout.
    pub(crate) affinity: Option<Duration>,
    pub(crate) scale: Option<ScaleTarget>,
    /// Round-robin position for balancing ties.
    pub(crate) next: AtomicUsize,
}

impl Compiled {
    /// The port a request on `port` uses; `None` if the Service has no such port.
    pub(crate) fn port(&self, port: u16) -> Option<&Port> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The port named `name`.
    pub(crate) fn port_named(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Headless: no ClusterIP.
    pub(crate) fn headless(&self) -> bool {
        self.cluster_ip.is_none()
    }

    /// The ready endpoints when a headless Service is asked on a port it does not list: every
    /// ready endpoint on that very port.
    pub(crate) fn direct_targets(&self, port: u16) -> Vec<Target> {
        self.endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.ready)
            .map(|(ep, _)| Target { ep, port })
            .collect()
    }
}

/// A pod of this node as its worker last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalPod {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// Container port name -> number.
    pub(crate) ports: Vec<(String, u16)>,
    /// The pod's Ready condition (false from the moment it is terminating).
    pub(crate) ready: bool,
}

#[derive(Debug, Clone)]
struct DeploymentInfo {
    template_labels: BTreeMap<String, String>,
    target: ScaleTarget,
}

#[derive(Default)]
struct Inner {
    services: HashMap<String, HashMap<String, Arc<Compiled>>>,
    by_ip: HashMap<IpAddr, Arc<Compiled>>,
    raw: HashMap<(String, String), Service>,
    /// (namespace, Service name) -> slice name -> slice.
    slices: HashMap<(String, String), HashMap<String, EndpointSlice>>,
    /// (namespace, slice name) -> the Service it belongs to.
    slice_owner: HashMap<(String, String), String>,
    /// namespace -> name -> scale-to-zero Deployment.
    deployments: HashMap<String, HashMap<String, DeploymentInfo>>,
    local: HashMap<IpAddr, LocalPod>,
    loads: HashMap<IpAddr, Arc<AtomicU32>>,
    nodes: HashMap<String, SocketAddr>,
}

/// The routing table. Shared by the watches that feed it, the pod workers (local readiness) and
/// the router that reads it.
pub(crate) struct Table {
    node: String,
    inner: RwLock<Inner>,
    generation: watch::Sender<u64>,
    /// The local pods of the wasm backend with their container ports (the bridge serves them
    /// to Linux containers).
    wasm_pods: watch::Sender<WasmPods>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("node", &self.node).finish()
    }
}

fn deployment_info(d: &Deployment) -> Option<DeploymentInfo> {
    let ann = d.metadata.annotations.as_ref()?;
    if ann.get(names::SCALE_TO_ZERO).map(String::as_str) != Some("true") {
        return None;
    }
    let dur = |k: &str, default: Duration| {
        ann.get(k)
            .and_then(|v| skiff_meta::duration::parse_go_duration(v).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    Some(DeploymentInfo {
        template_labels: d
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        target: ScaleTarget {
            namespace: d.metadata.namespace.clone().unwrap_or_default(),
            name: d.metadata.name.clone()?,
            deadline: dur(names::HOLD_DEADLINE, names::HOLD_DEADLINE_DEFAULT),
            max_held: ann
                .get(names::MAX_HELD)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(names::MAX_HELD_DEFAULT),
            idle: dur(names::SCALE_TO_ZERO_IDLE, names::SCALE_TO_ZERO_IDLE_DEFAULT),
        },
    })
}

fn node_address(n: &Node) -> Option<SocketAddr> {
    let status = n.status.as_ref()?;
    let port = status
        .daemon_endpoints
        .as_ref()?
        .kubelet_endpoint
        .as_ref()?
        .port;
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    let addrs = status.addresses.as_ref()?;
    let ip = ["InternalIP", "ExternalIP"].iter().find_map(|t| {
        addrs
            .iter()
            .find(|a| a.type_ == *t)
            .and_then(|a| a.address.parse::<IpAddr>().ok())
    })?;
    Some(SocketAddr::new(ip, port))
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

impl Table {
    /// An empty table for node `node`.
    pub(crate) fn new(node: impl Into<String>) -> Table {
        Table {
            node: node.into(),
            inner: RwLock::new(Inner::default()),
            generation: watch::channel(0).0,
            wasm_pods: watch::channel(WasmPods::new()).0,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's name.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Wakes everyone waiting for a change.
    fn bump(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that sees every change of the table.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The Service `namespace/name`.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<Compiled>> {
        self.read().services.get(namespace)?.get(name).cloned()
    }

    /// The Service with this ClusterIP.
    pub(crate) fn by_ip(&self, ip: IpAddr) -> Option<Arc<Compiled>> {
        self.read().by_ip.get(&ip).cloned()
    }

    /// Service `name` in the namespace of the local pod with IP `ip`.
    pub(crate) fn get_in_namespace_of(&self, ip: IpAddr, name: &str) -> Option<Arc<Compiled>> {
        let inner = self.read();
        let ns = &inner.local.get(&ip)?.namespace;
        inner.services.get(ns)?.get(name).cloned()
    }

    /// Every Service, in no particular order (the node's cluster DNS and the bridge listeners
    /// read them).
    pub(crate) fn services(&self) -> Vec<Arc<Compiled>> {
        self.read()
            .services
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// True when namespace `ns` holds at least one Service.
    pub(crate) fn has_namespace(&self, ns: &str) -> bool {
        self.read().services.get(ns).is_some_and(|m| !m.is_empty())
    }

    /// The node endpoint of node `name`.
    pub(crate) fn node_endpoint(&self, name: &str) -> Option<SocketAddr> {
        self.read().nodes.get(name).copied()
    }

    // ---- updates -------------------------------------------------------------------------

    /// A Service was added or changed.
    pub(crate) fn apply_service(&self, svc: Service) {
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone())
        else {
            return;
        };
        let mut inner = self.write();
        inner.raw.insert((ns.clone(), name.clone()), svc);
        inner.rebuild(&self.node, &ns, &name);
        drop(inner);
        self.bump();
    }

    /// A Service was deleted.
    pub(crate) fn delete_service(&self, namespace: &str, name: &str) {
        let mut inner = self.write();
        inner.raw.remove(&(namespace.to_string(), name.to_string()));
        inner.rebuild(&self.node, namespace, name);
        drop(inner);
        self.bump();
    }

    /// An EndpointSlice was added or changed.
    pub(crate) fn apply_slice(&self, slice: EndpointSlice) {
        let (Some(ns), Some(slice_name)) = (
            slice.metadata.namespace.clone(),
            slice.metadata.name.clone(),
        ) else {
            return;
        };
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned();
        let mut inner = self.write();
        let old = inner.remove_slice(&ns, &slice_name);
        if let Some(owner) = &owner {
            inner
                .slice_owner
                .insert((ns.clone(), slice_name.clone()), owner.clone());
            inner
                .slices
                .entry((ns.clone(), owner.clone()))
                .or_default()
                .insert(slice_name, slice);
            inner.rebuild(&self.node, &ns, owner);
        }
        if let Some(old) = old
            && Some(&old) != owner.as_ref()
        {
            inner.rebuild(&self.node, &ns, &old);
        }
        drop(inner);
        self.bump();
    }

    /// An EndpointSlice was deleted.
    pub(crate) fn delete_slice(&self, namespace: &str, slice_name: &str) {
        let mut inner = self.write();
        if let Some(owner) = inner.remove_slice(namespace, slice_name) {
            inner.rebuild(&self.node, namespace, &owner);
        }
        drop(inner);
        self.bump();
    }

    /// A Deployment was added or changed (only scale-to-zero ones matter).
    pub(crate) fn apply_deployment(&self, d: &Deployment) {
        let (Some(ns), Some(name)) = (d.metadata.namespace.clone(), d.metadata.name.clone()) else {
            return;
        };
        let info = deployment_info(d);
        let mut inner = self.write();
        let old = inner
            .deployments
            .get(&ns)
            .and_then(|m| m.get(&name))
            .cloned();
        let changed = match (&old, &info) {
            (None, None) => false,
            (Some(a), Some(b)) => a.template_labels != b.template_labels || a.target != b.target,
            _ => true,
        };
        if !changed {
            return;
        }
        match info {
            Some(i) => {
                inner
                    .deployments
                    .entry(ns.clone())
                    .or_default()
                    .insert(name, i);
            }
            None => {
                if let Some(m) = inner.deployments.get_mut(&ns) {
                    m.remove(&name);
                }
            }
        }
        inner.rebuild_namespace(&self.node, &ns);
        drop(inner);
        self.bump();
    }

    /// A Deployment was deleted.
    pub(crate) fn delete_deployment(&self, namespace: &str, name: &str) {
        let mut inner = self.write();
        let removed = inner
            .deployments
            .get_mut(namespace)
            .and_then(|m| m.remove(name))
            .is_some();
        if removed {
            inner.rebuild_namespace(&self.node, namespace);
            drop(inner);
            self.bump();
        }
    }

    /// A Node was added or changed.
    pub(crate) fn apply_node(&self, n: &Node) {
        let Some(name) = n.metadata.name.clone() else {
            return;
        };
        let mut inner = self.write();
        match node_address(n) {
            Some(a) => inner.nodes.insert(name, a),
            None => inner.nodes.remove(&name),
        };
    }

    /// A Node was deleted.
    pub(crate) fn delete_node(&self, name: &str) {
        self.write().nodes.remove(name);
    }

    /// Forgets every object of a kind not in `keep` (after a watch's relist).
    pub(crate) fn retain_services(&self, keep: &HashSet<(String, String)>) {
        let gone: Vec<(String, String)> = self
            .read()
            .raw
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            self.delete_service(&ns, &name);
        }
    }

    /// Forgets every EndpointSlice not in `keep` (namespace, slice name).
    pub(crate) fn retain_slices(&self, keep: &HashSet<(String, String)>) {
        let gone: Vec<(String, String)> = self
            .read()
            .slice_owner
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            self.delete_slice(&ns, &name);
        }
    }

    /// Forgets every scale-to-zero Deployment not in `keep`.
    pub(crate) fn retain_deployments(&self, keep: &HashSet<(String, String)>) {
        let gone: Vec<(String, String)> = self
            .read()
            .deployments
            .iter()
            .flat_map(|(ns, m)| m.keys().map(|n| (ns.clone(), n.clone())))
            .filter(|k| !keep.contains(k))
            .collect();
        for (ns, name) in gone {
            self.delete_deployment(&ns, &name);
        }
    }

    /// Forgets every Node not in `keep`.
    pub(crate) fn retain_nodes(&self, keep: &HashSet<String>) {
        self.write().nodes.retain(|n, _| keep.contains(n));
    }

    /// A pod of this node as its worker sees it now (`ip` is its pod IP). A change (readiness,
    /// labels) recompiles the Services of its namespace at once: a held request is handed to it
    /// before the EndpointSlice round trip.
    pub(crate) fn set_local(&self, ip: IpAddr, pod: LocalPod) {
        // Workers report after every step: most reports change nothing, and routing goes on.
        if self.read().local.get(&ip) == Some(&pod) {
            return;
        }
        let mut inner = self.write();
        if inner.local.get(&ip) == Some(&pod) {
            return;
        }
        let ns = pod.namespace.clone();
        if let Some(old) = inner.local.insert(ip, pod)
            && old.namespace != ns
        {
            inner.rebuild_namespace(&self.node, &old.namespace);
        }
        inner.rebuild_namespace(&self.node, &ns);
        drop(inner);
        self.bump();
    }

    /// A local pod of the wasm backend with the TCP ports of its containers (the bridge gives
    /// Linux containers its IP). A pod of another backend is never reported here.
    pub(crate) fn set_wasm_pod(&self, ip: IpAddr, ports: BTreeSet<u16>) {
        let IpAddr::V4(ip) = ip else {
            return;
        };
        self.wasm_pods.send_if_modified(|pods| {
            if pods.get(&ip) == Some(&ports) {
                return false;
            }
            pods.insert(ip, ports);
            true
        });
    }

    /// The local wasm pods, as they change.
    pub(crate) fn wasm_pods(&self) -> watch::Receiver<WasmPods> {
        self.wasm_pods.subscribe()
    }

    /// A pod of this node is gone.
    pub(crate) fn remove_local(&self, ip: IpAddr) {
        if let IpAddr::V4(v4) = ip {
            self.wasm_pods
                .send_if_modified(|pods| pods.remove(&v4).is_some());
        }
        let mut inner = self.write();
        if let Some(p) = inner.local.remove(&ip) {
            inner.rebuild_namespace(&self.node, &p.namespace);
            drop(inner);
            self.bump();
        }
    }
}

impl Inner {
    fn remove_slice(&mut self, ns: &str, slice_name: &str) -> Option<String> {
        let owner = self
            .slice_owner
            .remove(&(ns.to_string(), slice_name.to_string()))?;
        let key = (ns.to_string(), owner.clone());
        if let Some(m) = self.slices.get_mut(&key) {
            m.remove(slice_name);
            if m.is_empty() {
                self.slices.remove(&key);
            }
        }
        Some(owner)
    }

    fn rebuild_namespace(&mut self, node: &str, ns: &str) {
        let names: Vec<String> = self
            .raw
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, name)| name.clone())
            .collect();
        for name in names {
            self.rebuild(node, ns, &name);
        }
    }

    fn load(&mut self, ip: IpAddr) -> Arc<AtomicU32> {
        self.loads.entry(ip).or_default().clone()
    }

    /// Recompiles Service `ns/name` from what the table holds, and swaps it in.
    fn rebuild(&mut self, node: &str, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(old) = self.services.get_mut(ns).and_then(|m| m.remove(name))
            && let Some(ip) = old.cluster_ip
            && self.by_ip.get(&ip).is_some_and(|s| Arc::ptr_eq(s, &old))
        {
            self.by_ip.remove(&ip);
        }
        let Some(svc) = self.raw.get(&key).cloned() else {
            self.prune_loads();
            return;
        };
        let compiled = Arc::new(self.compile(node, &svc, ns, name));
        if let Some(ip) = compiled.cluster_ip {
            self.by_ip.insert(ip, compiled.clone());
        }
        self.services
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), compiled);
        self.prune_loads();
    }

    fn prune_loads(&mut self) {
        if self.loads.len() > 64 {
            self.loads.retain(|_, l| Arc::strong_count(l) > 1);
        }
    }

    fn compile(&mut self, node: &str, svc: &Service, ns: &str, name: &str) -> Compiled {
        let spec = svc.spec.clone().unwrap_or_default();
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| *ip != "None" && !ip.is_empty())
            .and_then(|ip| ip.parse().ok());
        let kind = match (spec.type_.as_deref(), spec.external_name) {
            (Some("ExternalName"), Some(ext)) => Kind::ExternalName(ext),
            _ => Kind::Endpoints,
        };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds)
                .filter(|t| *t > 0)
                .map(|t| Duration::from_secs(t as u64))
                .unwrap_or(AFFINITY_TIMEOUT_DEFAULT)
        });
        let selector = spec.selector.unwrap_or_default();
        let scale = self
            .deployments
            .get(ns)
            .and_then(|m| {
                m.values()
                    .find(|d| selector_matches(&selector, &d.template_labels))
            })
            .map(|d| d.target.clone());

        // Endpoints from the slices, one per address.
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut seen: HashSet<IpAddr> = HashSet::new();
        let mut slices: Vec<EndpointSlice> = self
            .slices
            .get(&(ns.to_string(), name.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for slice in &slices {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            let ports: Vec<(String, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        u16::try_from(p.port?).ok()?,
                    ))
                })
                .collect();
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                    continue;
                };
                if !seen.insert(ip) {
                    continue;
                }
                let cond = ep.conditions.clone().unwrap_or_default();
                let mut ready = cond.ready.unwrap_or(true);
                let terminating = cond.terminating.unwrap_or(false);
                let serving = cond.serving.unwrap_or(ready);
                let here = ep.node_name.as_deref() == Some(node);
                // This node knows its own pods first-hand: a pod it does not run (gone) or that
                // is not Ready (starting, terminating) takes no new request.
                if here {
                    ready = ready && self.local.get(&ip).is_some_and(|p| p.ready);
                }
                endpoints.push(Endpoint {
                    ip,
                    node: ep.node_name.clone(),
                    ready: ready && !terminating,
                    serving_terminating: serving && terminating,
                    load: self.load(ip),
                    ports: ports.clone(),
                    hostname: ep.hostname.clone(),
                });
            }
        }
        // Ready pods of this node the slices do not list yet.
        if kind == Kind::Endpoints && !selector.is_empty() {
            let mut extra: Vec<(IpAddr, Vec<(String, u16)>)> = Vec::new();
            for (ip, pod) in &self.local {
                if pod.ready
                    && pod.namespace == ns
                    && !seen.contains(ip)
                    && selector_matches(&selector, &pod.labels)
                {
                    let ports = spec
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| {
                            let port = match &p.target_port {
                                None => u16::try_from(p.port).ok()?,
                                Some(IntOrString::Int(n)) => u16::try_from(*n).ok()?,
                                Some(IntOrString::String(n)) => pod
                                    .ports
                                    .iter()
                                    .find(|(pn, _)| pn == n)
                                    .map(|(_, num)| *num)?,
                            };
                            Some((p.name.clone().unwrap_or_default(), port))
                        })
                        .collect();
                    extra.push((*ip, ports));
                }
            }
            extra.sort_by_key(|(ip, _)| *ip);
            for (ip, ports) in extra {
                endpoints.push(Endpoint {
                    ip,
                    node: Some(node.to_string()),
                    ready: true,
                    serving_terminating: false,
                    load: self.load(ip),
                    ports,
                    hostname: None,
                });
            }
        }

        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| {
                let pname = p.name.clone().unwrap_or_default();
                let mut ready = Vec::new();
                let mut fallback = Vec::new();
                for (i, ep) in endpoints.iter().enumerate() {
                    let Some(port) = ep.ports.iter().find(|(n, _)| *n == pname).map(|(_, p)| *p)
                    else {
                        continue;
                    };
                    let t = Target { ep: i, port };
                    if ep.ready {
                        ready.push(t);
                    } else if ep.serving_terminating {
                        fallback.push(t);
                    }
                }
                Some(Port {
                    name: pname,
                    port: u16::try_from(p.port).ok()?,
                    ready,
                    fallback,
                })
            })
            .collect();
        Compiled {
            namespace: ns.to_string(),
            name: name.to_string(),
            cluster_ip,
            kind,
            ports,
            endpoints,
            affinity,
            scale,
            next: AtomicUsize::new(0),
        }
    }
}

#[cfg(test)]
mod tests;
