//! NetworkPolicy (`networking.k8s.io/v1`) as the node's router enforces it: the cluster's
//! policies, namespaces and pods (labels, IPs, named ports) kept from watch events, and the
//! decision whether a connection from one address to a pod or address and port may be made.
//!
//! Semantics are Kubernetes': a pod is isolated for ingress (egress) when a policy of its
//! namespace selects it with `Ingress` (`Egress`) in its `policyTypes` (defaulted to `Ingress`,
//! plus `Egress` when the policy has egress rules); an isolated pod accepts (makes) only the
//! connections some selecting policy's rules allow. Traffic from the node itself is always
//! allowed. With no policy in the cluster a decision is one atomic load.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use skiff_meta::selector::LabelSelector;

/// The label every namespace carries with its own name (set by the API server; assumed here
/// too, so a namespace not yet seen still matches by name).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A connection the policies do not allow, with why (for logs; the caller sees a refused
/// connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denied(pub(crate) String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IP range (`ipBlock.cidr`, `ipBlock.except`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `A.B.C.D/N` or `X::Y/N` (a bare address is a single-address range).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range (an IPv4 range holds no IPv6 address and back).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A port a pod's container declares (`containerPorts[]`), for named ports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NamedPort {
    name: String,
    port: u16,
    protocol: String,
}

/// What the policies need of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodInfo {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    ports: Vec<NamedPort>,
}

impl PodInfo {
    /// A pod with an IP of its own (not host-network, not finished), else `None`.
    fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
        if ips.is_empty() {
            return None;
        }
        let ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone()?,
                    port: u16::try_from(p.container_port).ok()?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                })
            })
            .collect();
        Some(PodInfo {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            labels: pod.labels().clone(),
            ips,
            ports,
        })
    }

    /// The port number of the container port named `name` for `protocol`.
    fn named_port(&self, name: &str, protocol: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol.eq_ignore_ascii_case(protocol))
            .map(|p| p.port)
    }
}

/// A rule's peer (`from[]`/`to[]`).
#[derive(Clone, Debug)]
enum Peer {
    /// Pods: `podSelector` alone (the policy's namespace), `namespaceSelector` alone (every pod
    /// of the matching namespaces), or both (matching pods of matching namespaces).
    Pods {
        pods: Option<LabelSelector>,
        namespaces: Option<LabelSelector>,
    },
    /// `ipBlock`: addresses in `cidr` but in none of `except`.
    Block { cidr: Cidr, except: Vec<Cidr> },
    /// A peer that could not be compiled: matches nothing.
    Nothing,
}

/// A rule's port (`ports[]`).
#[derive(Clone, Debug)]
struct PortRule {
    protocol: String,
    port: Option<IntOrString>,
    end_port: Option<u16>,
}

/// One ingress or egress rule: empty `peers`/`ports` allow every peer/port.
#[derive(Clone, Debug, Default)]
struct Rule {
    peers: Vec<Peer>,
    ports: Vec<PortRule>,
}

/// A compiled NetworkPolicy.
#[derive(Clone, Debug)]
struct Policy {
    name: String,
    /// `None`: the selector could not be compiled, and the policy selects every pod of its
    /// namespace (fail closed).
    pod_selector: Option<LabelSelector>,
    /// `Some` when `policyTypes` has `Ingress`.
    ingress: Option<Vec<Rule>>,
    /// `Some` when `policyTypes` has `Egress`.
    egress: Option<Vec<Rule>>,
}

fn selector(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<LabelSelector> {
    LabelSelector::from_k8s(sel).ok()
}

fn compile_peer(p: &NetworkPolicyPeer) -> Peer {
    if let Some(block) = &p.ip_block {
        let Some(cidr) = Cidr::parse(&block.cidr) else {
            return Peer::Nothing;
        };
        let mut except = Vec::new();
        for e in block.except.iter().flatten() {
            match Cidr::parse(e) {
                Some(c) => except.push(c),
                None => return Peer::Nothing,
            }
        }
        return Peer::Block { cidr, except };
    }
    if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        return Peer::Nothing;
    }
    let pods = match &p.pod_selector {
        Some(s) => match selector(s) {
            Some(s) => Some(s),
            None => return Peer::Nothing,
        },
        None => None,
    };
    let namespaces = match &p.namespace_selector {
        Some(s) => match selector(s) {
            Some(s) => Some(s),
            None => return Peer::Nothing,
        },
        None => None,
    };
    Peer::Pods { pods, namespaces }
}

fn compile_port(p: &NetworkPolicyPort) -> PortRule {
    PortRule {
        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        port: p.port.clone(),
        // An endPort that is not a port number makes the range empty.
        end_port: p.end_port.map(|e| u16::try_from(e).unwrap_or(0)),
    }
}

fn compile_rule<'a>(
    peers: Option<&'a Vec<NetworkPolicyPeer>>,
    ports: Option<&'a Vec<NetworkPolicyPort>>,
) -> Rule {
    Rule {
        peers: peers.into_iter().flatten().map(compile_peer).collect(),
        ports: ports.into_iter().flatten().map(compile_port).collect(),
    }
}

impl Policy {
    fn compile(np: &NetworkPolicy) -> Policy {
        let name = np.name_any();
        let Some(spec) = np.spec.as_ref() else {
            // No spec: selects every pod for ingress with no rule (Kubernetes requires a spec).
            return Policy {
                name,
                pod_selector: Some(LabelSelector::everything()),
                ingress: Some(Vec::new()),
                egress: None,
            };
        };
        let pod_selector = match &spec.pod_selector {
            Some(s) => selector(s),
            None => Some(LabelSelector::everything()),
        };
        let egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        let (has_ingress, has_egress) = match &spec.policy_types {
            Some(types) if !types.is_empty() => (
                types.iter().any(|t| t == "Ingress"),
                types.iter().any(|t| t == "Egress"),
            ),
            _ => (true, egress_rules),
        };
        let ingress = has_ingress.then(|| {
            spec.ingress
                .iter()
                .flatten()
                .map(|r| compile_rule(r.from.as_ref(), r.ports.as_ref()))
                .collect()
        });
        let egress = has_egress.then(|| {
            spec.egress
                .iter()
                .flatten()
                .map(|r| compile_rule(r.to.as_ref(), r.ports.as_ref()))
                .collect()
        });
        Policy {
            name,
            pod_selector,
            ingress,
            egress,
        }
    }

    fn selects(&self, pod: &PodInfo) -> bool {
        match &self.pod_selector {
            Some(s) => s.matches(&pod.labels),
            None => true,
        }
    }
}

/// Which side of a connection a policy is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The other end of a connection, as a rule's peers see it.
struct Remote<'a> {
    /// `None`: only a DNS name is known (an egress to outside the cluster).
    ip: Option<IpAddr>,
    pod: Option<&'a PodInfo>,
}

/// The policies of one namespace: by name, and (in name order) those of each direction, so a
/// decision looks only at the policies that can isolate for it.
#[derive(Default)]
struct NamespacePolicies {
    by_name: BTreeMap<String, Arc<Policy>>,
    ingress: Vec<Arc<Policy>>,
    egress: Vec<Arc<Policy>>,
}

impl NamespacePolicies {
    fn index(&mut self) {
        let of = |f: fn(&Policy) -> bool| -> Vec<Arc<Policy>> {
            self.by_name.values().filter(|p| f(p)).cloned().collect()
        };
        let (ingress, egress) = (of(|p| p.ingress.is_some()), of(|p| p.egress.is_some()));
        self.ingress = ingress;
        self.egress = egress;
    }
}

#[derive(Default)]
struct State {
    /// Namespace -> its policies.
    policies: HashMap<String, NamespacePolicies>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    pods: HashMap<(String, String), Arc<PodInfo>>,
    by_ip: HashMap<IpAddr, Arc<PodInfo>>,
}

impl State {
    fn count(&self) -> usize {
        self.policies.values().map(|n| n.by_name.len()).sum()
    }

    fn namespace_matches(&self, sel: &LabelSelector, ns: &str) -> bool {
        let labels = self.namespaces.get(ns);
        sel.matches_with(|k| {
            if k == NAMESPACE_NAME_LABEL {
                Some(ns)
            } else {
                labels.and_then(|l| l.get(k)).map(String::as_str)
            }
        })
    }

    fn peer_matches(&self, peer: &Peer, policy_ns: &str, remote: &Remote<'_>) -> bool {
        match peer {
            Peer::Nothing => false,
            Peer::Block { cidr, except } => remote
                .ip
                .is_some_and(|ip| cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))),
            Peer::Pods { pods, namespaces } => {
                let Some(pod) = remote.pod else {
                    return false;
                };
                let ns_ok = match namespaces {
                    Some(sel) => self.namespace_matches(sel, &pod.namespace),
                    None => pod.namespace == policy_ns,
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
        }
    }

    /// Whether `rule` allows `port`/TCP; named ports resolve on `target` (the destination pod).
    fn port_matches(rule: &PortRule, port: u16, target: Option<&PodInfo>) -> bool {
        const PROTOCOL: &str = "TCP";
        if !rule.protocol.eq_ignore_ascii_case(PROTOCOL) {
            return false;
        }
        match &rule.port {
            None => true,
            Some(IntOrString::Int(n)) => match rule.end_port {
                Some(end) => i64::from(*n) <= i64::from(port) && port <= end,
                None => i64::from(*n) == i64::from(port),
            },
            Some(IntOrString::String(name)) => match name.parse::<u16>() {
                // A number written as a string (lenient clients).
                Ok(n) => n == port,
                Err(_) => target.and_then(|t| t.named_port(name, PROTOCOL)) == Some(port),
            },
        }
    }

    /// Whether `pod`, isolated or not for `dir`, may have this connection: `None` when no
    /// policy isolates it, else whether some selecting policy's rule allows it.
    fn decide(
        &self,
        dir: Direction,
        pod: &PodInfo,
        remote: &Remote<'_>,
        port: u16,
        target: Option<&PodInfo>,
    ) -> Option<bool> {
        let policies = self.policies.get(&pod.namespace)?;
        let candidates = match dir {
            Direction::Ingress => &policies.ingress,
            Direction::Egress => &policies.egress,
        };
        let mut isolated = false;
        for p in candidates {
            if !p.selects(pod) {
                continue;
            }
            let rules = match dir {
                Direction::Ingress => &p.ingress,
                Direction::Egress => &p.egress,
            };
            let Some(rules) = rules else { continue };
            isolated = true;
            let allowed = rules.iter().any(|r| {
                (r.peers.is_empty()
                    || r.peers
                        .iter()
                        .any(|peer| self.peer_matches(peer, &pod.namespace, remote)))
                    && (r.ports.is_empty()
                        || r.ports
                            .iter()
                            .any(|pr| Self::port_matches(pr, port, target)))
            });
            if allowed {
                return Some(true);
            }
        }
        isolated.then_some(false)
    }
}

/// `IP[:PORT][ (pod NS/NAME)]`.
fn describe(ip: IpAddr, port: Option<u16>, pod: Option<&PodInfo>) -> String {
    let addr = match port {
        Some(port) => std::net::SocketAddr::new(ip, port).to_string(),
        None => ip.to_string(),
    };
    match pod {
        Some(p) => format!("{addr} (pod {}/{})", p.namespace, p.name),
        None => addr,
    }
}

/// The cluster's NetworkPolicies, namespaces and pods, and the decisions made from them.
#[derive(Default)]
pub(crate) struct Policies {
    /// Some policy exists: false means every decision is "allowed" without a lock.
    active: AtomicBool,
    state: RwLock<State>,
    /// The bridge gap was logged.
    logged: AtomicBool,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("policies", &self.read().count())
            .finish_non_exhaustive()
    }
}

impl Policies {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any NetworkPolicy exists (else nothing is ever denied).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn set_active(&self, st: &State) {
        let active = st.count() > 0;
        self.active.store(active, Ordering::Release);
        if active && !self.logged.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "NetworkPolicies are enforced on every request through this node's router (wasm \
                 pods, Services, /endpoints, ingress, NodePorts); direct traffic between Linux \
                 containers on the node bridge does not go through it and is not filtered"
            );
        }
    }

    /// Adds or replaces a policy.
    pub(crate) fn apply_policy(&self, np: &NetworkPolicy) {
        let ns = np.namespace().unwrap_or_default();
        let p = Arc::new(Policy::compile(np));
        let mut st = self.write();
        let n = st.policies.entry(ns).or_default();
        n.by_name.insert(p.name.clone(), p);
        n.index();
        self.set_active(&st);
    }

    /// Removes a policy.
    pub(crate) fn delete_policy(&self, namespace: &str, name: &str) {
        let mut st = self.write();
        if let Some(n) = st.policies.get_mut(namespace) {
            n.by_name.remove(name);
            n.index();
            if n.by_name.is_empty() {
                st.policies.remove(namespace);
            }
        }
        self.set_active(&st);
    }

    /// Keeps only the listed policies (after a relist).
    pub(crate) fn retain_policies(&self, keep: &HashSet<(String, String)>) {
        let mut st = self.write();
        st.policies.retain(|ns, n| {
            n.by_name
                .retain(|name, _| keep.contains(&(ns.clone(), name.clone())));
            n.index();
            !n.by_name.is_empty()
        });
        self.set_active(&st);
    }

    /// Adds or updates a namespace's labels.
    pub(crate) fn apply_namespace(&self, ns: &Namespace) {
        let labels = ns.labels().clone();
        self.write().namespaces.insert(ns.name_any(), labels);
    }

    /// Forgets a namespace.
    pub(crate) fn delete_namespace(&self, name: &str) {
        self.write().namespaces.remove(name);
    }

    /// Keeps only the listed namespaces.
    pub(crate) fn retain_namespaces(&self, keep: &HashSet<String>) {
        self.write().namespaces.retain(|n, _| keep.contains(n));
    }

    /// Adds or updates a pod (its labels, IPs and named ports); a pod without an IP of its
    /// own is forgotten.
    pub(crate) fn apply_pod(&self, pod: &Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let info = PodInfo::from_pod(pod).map(Arc::new);
        let mut st = self.write();
        if let Some(old) = st.pods.get(&key)
            && info.as_ref() == Some(old)
        {
            return;
        }
        remove_pod(&mut st, &key);
        if let Some(info) = info {
            for ip in &info.ips {
                st.by_ip.insert(*ip, info.clone());
            }
            st.pods.insert(key, info);
        }
    }

    /// Forgets a pod.
    pub(crate) fn delete_pod(&self, namespace: &str, name: &str) {
        remove_pod(&mut self.write(), &(namespace.into(), name.into()));
    }

    /// Keeps only the listed pods.
    pub(crate) fn retain_pods(&self, keep: &HashSet<(String, String)>) {
        let mut st = self.write();
        let gone: Vec<_> = st
            .pods
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            remove_pod(&mut st, &k);
        }
    }

    /// A connection from `src` (`None`: the node itself) to `dst`:`port` over TCP, checked
    /// for egress at the source pod and ingress at the destination pod, whichever are pods
    /// the policies know.
    pub(crate) fn check(&self, src: Option<IpAddr>, dst: IpAddr, port: u16) -> Result<(), Denied> {
        if !self.is_active() {
            return Ok(());
        }
        let Some(src) = src else { return Ok(()) };
        let st = self.read();
        let from = st.by_ip.get(&src).map(Arc::as_ref);
        let to = st.by_ip.get(&dst).map(Arc::as_ref);
        if let Some(from) = from {
            let remote = Remote {
                ip: Some(dst),
                pod: to,
            };
            if st.decide(Direction::Egress, from, &remote, port, to) == Some(false) {
                return Err(Denied(format!(
                    "network policy: egress from {} to {} is not allowed",
                    describe(src, None, Some(from)),
                    describe(dst, Some(port), to)
                )));
            }
        }
        Self::ingress(&st, src, from, dst, to, port)
    }

    /// Ingress only: a connection from `src` (`None`: a node) to pod `dst`:`port`, as the
    /// destination's node checks it for a request another node forwarded.
    pub(crate) fn check_ingress(
        &self,
        src: Option<IpAddr>,
        dst: IpAddr,
        port: u16,
    ) -> Result<(), Denied> {
        if !self.is_active() {
            return Ok(());
        }
        let Some(src) = src else { return Ok(()) };
        let st = self.read();
        let from = st.by_ip.get(&src).map(Arc::as_ref);
        let to = st.by_ip.get(&dst).map(Arc::as_ref);
        Self::ingress(&st, src, from, dst, to, port)
    }

    fn ingress(
        st: &State,
        src: IpAddr,
        from: Option<&PodInfo>,
        dst: IpAddr,
        to: Option<&PodInfo>,
        port: u16,
    ) -> Result<(), Denied> {
        let Some(to) = to else { return Ok(()) };
        let remote = Remote {
            ip: Some(src),
            pod: from,
        };
        if st.decide(Direction::Ingress, to, &remote, port, Some(to)) == Some(false) {
            return Err(Denied(format!(
                "network policy: ingress to {} from {} is not allowed",
                describe(dst, Some(port), Some(to)),
                describe(src, None, from)
            )));
        }
        Ok(())
    }

    /// Egress from `src` to a destination outside the cluster known only by name (its
    /// address unknown until it is resolved): allowed unless the source pod is isolated for
    /// egress and no rule allows every destination on `port`.
    pub(crate) fn check_named(
        &self,
        src: Option<IpAddr>,
        host: &str,
        port: u16,
    ) -> Result<(), Denied> {
        if !self.is_active() {
            return Ok(());
        }
        let Some(src) = src else { return Ok(()) };
        let st = self.read();
        let Some(from) = st.by_ip.get(&src).map(Arc::as_ref) else {
            return Ok(());
        };
        let remote = Remote {
            ip: None,
            pod: None,
        };
        if st.decide(Direction::Egress, from, &remote, port, None) == Some(false) {
            return Err(Denied(format!(
                "network policy: egress from {} to {host}:{port} is not allowed",
                describe(src, None, Some(from)),
            )));
        }
        Ok(())
    }
}

fn remove_pod(st: &mut State, key: &(String, String)) {
    if let Some(old) = st.pods.remove(key) {
        for ip in &old.ips {
            if st.by_ip.get(ip).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                st.by_ip.remove(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests;
