//! The scheduler: keeps nodes and pods in memory from watches, filters and scores nodes for each
//! pending pod, binds through `pods/binding` concurrently, and reports `FailedScheduling` Events.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Event, EventSource, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    Pod, Taint, Toleration,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event as WEvent};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use crate::util;
use skiff_meta::wit;

mod volumes;

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Label a node uses to advertise the runtime handlers it supports (dot separated).
pub use skiff_meta::names::RUNTIME_LABEL;
/// The zone label used for spreading.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A watch failed.
    #[error("watch failed: {0}")]
    Watch(#[from] watcher::Error),
}

/// Tuning of the scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Pods taken from the queue per scheduling round.
    pub batch: usize,
    /// Retry interval for unschedulable pods even without cluster changes.
    pub retry_interval: Duration,
    /// Percentage of nodes to find feasible before scoring, as kube-scheduler's
    /// `percentageOfNodesToScore`; 0 adapts to the cluster size (50% at 100 nodes down to 5%,
    /// never fewer than 100 nodes), 100 tries every node.
    pub percentage_of_nodes_to_score: u32,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            bind_concurrency: 64,
            batch: 512,
            retry_interval: Duration::from_secs(30),
            percentage_of_nodes_to_score: 0,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Request {
    cpu: i64,
    mem: i64,
    ports: Vec<(String, i32)>,
}

/// A quantity in the unit `parse` gives; a malformed one (the API server refuses them on write)
/// is logged and counts as absent.
fn quantity(
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    parse: fn(&str) -> Result<i64, skiff_meta::quantity::QuantityError>,
) -> Option<i64> {
    parse(&q.0)
        .inspect_err(|e| tracing::warn!(quantity = %q.0, error = %e, "malformed quantity"))
        .ok()
}

fn pod_request(pod: &Pod) -> Request {
    let mut r = Request::default();
    let Some(spec) = &pod.spec else { return r };
    for c in &spec.containers {
        if let Some(req) = c.resources.as_ref().and_then(|x| x.requests.as_ref()) {
            r.cpu += req
                .get("cpu")
                .and_then(|q| quantity(q, util::cpu_millis))
                .unwrap_or(0);
            r.mem += req
                .get("memory")
                .and_then(|q| quantity(q, util::whole_units))
                .unwrap_or(0);
        }
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                r.ports
                    .push((p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp));
            }
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(req) = c.resources.as_ref().and_then(|x| x.requests.as_ref()) {
            r.cpu = r.cpu.max(
                req.get("cpu")
                    .and_then(|q| quantity(q, util::cpu_millis))
                    .unwrap_or(0),
            );
            r.mem = r.mem.max(
                req.get("memory")
                    .and_then(|q| quantity(q, util::whole_units))
                    .unwrap_or(0),
            );
        }
    }
    if let Some(o) = &spec.overhead {
        r.cpu += o
            .get("cpu")
            .and_then(|q| quantity(q, util::cpu_millis))
            .unwrap_or(0);
        r.mem += o
            .get("memory")
            .and_then(|q| quantity(q, util::whole_units))
            .unwrap_or(0);
    }
    r
}

#[derive(Debug)]
struct NodeInfo {
    node: Arc<Node>,
    unschedulable: bool,
    alloc_cpu: i64,
    alloc_mem: i64,
    alloc_pods: i64,
    used_cpu: i64,
    used_mem: i64,
    used_pods: i64,
    ports: HashSet<(String, i32)>,
    /// The WIT interfaces the node advertises (`skiff.dev/interfaces`); `None` when it does
    /// not say, and then it is not filtered by interface.
    interfaces: Option<Vec<String>>,
}

impl NodeInfo {
    fn new(node: Arc<Node>) -> NodeInfo {
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone().or_else(|| s.capacity.clone()))
            .unwrap_or_default();
        NodeInfo {
            alloc_cpu: alloc
                .get("cpu")
                .and_then(|q| quantity(q, util::cpu_millis))
                .unwrap_or(i64::MAX / 4),
            alloc_mem: alloc
                .get("memory")
                .and_then(|q| quantity(q, util::whole_units))
                .unwrap_or(i64::MAX / 4),
            alloc_pods: alloc
                .get("pods")
                .and_then(|q| quantity(q, util::whole_units))
                .unwrap_or(110),
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            interfaces: node_interfaces(&node),
            node,
            used_cpu: 0,
            used_mem: 0,
            used_pods: 0,
            ports: HashSet::new(),
        }
    }

    fn add(&mut self, req: &Request) {
        self.used_cpu += req.cpu;
        self.used_mem += req.mem;
        self.used_pods += 1;
        self.ports.extend(req.ports.iter().cloned());
    }

    fn remove(&mut self, req: &Request) {
        self.used_cpu -= req.cpu;
        self.used_mem -= req.mem;
        self.used_pods -= 1;
        for port in &req.ports {
            self.ports.remove(port);
        }
    }

    fn zone(&self) -> Option<&str> {
        self.labels().get(ZONE_LABEL).map(String::as_str)
    }

    fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        node_labels(&self.node)
    }

    fn taints(&self) -> impl Iterator<Item = &Taint> {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
    }
}

/// What a bound (or assumed) pod uses on its node.
#[derive(Clone, Debug)]
struct Placed {
    node: String,
    req: Request,
    owner: Option<String>,
    namespace: String,
    labels: BTreeMap<String, String>,
    /// The zone its owner's count was given to (its node's zone when placed or last re-zoned;
    /// `None` while the node is unknown or has no zone label).
    zone: Option<String>,
}

/// One controller's placed pods per node and per zone, kept up to date as pods are placed and
/// removed, so that spreading a pod costs no pass over its siblings (a Deployment of 30,000
/// replicas over 5,000 nodes would otherwise be summed for every pod).
#[derive(Debug, Default)]
struct OwnerCounts {
    per_node: HashMap<String, i64>,
    per_zone: HashMap<String, i64>,
    /// How many nodes hold each (positive) count of the owner's pods: the last key is the most
    /// any node holds.
    nodes_by_count: BTreeMap<i64, usize>,
}

impl OwnerCounts {
    /// Adds `by` (1 or -1) pods on `node`.
    fn add_node(&mut self, node: &str, by: i64) {
        let old = self.per_node.get(node).copied().unwrap_or(0);
        let new = old + by;
        if old > 0
            && let Some(n) = self.nodes_by_count.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.nodes_by_count.remove(&old);
            }
        }
        if new > 0 {
            *self.nodes_by_count.entry(new).or_default() += 1;
            self.per_node.insert(node.to_string(), new);
        } else {
            self.per_node.remove(node);
        }
    }

    /// Adds `by` pods in `zone` (none: not counted in any zone).
    fn add_zone(&mut self, zone: Option<&str>, by: i64) {
        let Some(zone) = zone else { return };
        let count = self.per_zone.entry(zone.to_string()).or_default();
        *count += by;
        if *count <= 0 {
            self.per_zone.remove(zone);
        }
    }

    /// The most pods of the owner on one node.
    fn node_max(&self) -> i64 {
        self.nodes_by_count.keys().next_back().copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.per_node.is_empty() && self.per_zone.is_empty()
    }
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    /// Bound or assumed pods by uid.
    placed: HashMap<String, Placed>,
    /// Owner uid -> its placed pods per node and zone.
    owners: HashMap<String, OwnerCounts>,
    /// Pending pods by uid.
    pending: HashMap<String, Arc<Pod>>,
    /// The active queue, in kube-scheduler's PrioritySort order: higher `spec.priority` first,
    /// then the order pods entered the queue. Lower-priority pods are never preempted (no
    /// preemption is built): a high-priority pod only goes first when capacity frees.
    queue: BTreeSet<(Reverse<i32>, u64, String)>,
    queued: HashSet<String>,
    /// Entries ever queued: each entry's place among pods of equal priority.
    queue_seq: u64,
    /// Uids currently being bound.
    in_flight: HashSet<String>,
    /// Uids that did not fit; retried when the cluster changes.
    unschedulable: HashMap<String, String>,
    runtime_classes: HashMap<String, Arc<RuntimeClass>>,
    /// Claims, volumes and StorageClasses, for the volume rules.
    volumes: volumes::Volumes,
    /// Name of the node the next pod's search starts at (nodes are tried round the ring).
    next_start: String,
    /// `percentageOfNodesToScore`; 0 is adaptive.
    percentage_of_nodes_to_score: u32,
    /// Objects of a node or pod re-list in progress.
    node_relist: Vec<Node>,
    pod_relist: Vec<Pod>,
    /// The watches (bit `1 << i` for the i-th in `run_with`) that have delivered their first
    /// complete list. Nothing is scheduled before all have, as kube-scheduler waits for its
    /// informers' caches: a pod decided against a node list not yet read would be reported
    /// "0/0 nodes are available" (an Event and a status write each) and bound late.
    synced: u8,
}

/// `State::synced` once every watch of `run_with` has listed.
const ALL_SYNCED: u8 = (1 << 6) - 1;

impl State {
    fn place(&mut self, uid: &str, mut p: Placed) {
        self.unplace(uid);
        p.zone = None;
        if let Some(n) = self.nodes.get_mut(&p.node) {
            n.add(&p.req);
            p.zone = n.zone().map(str::to_string);
        }
        if let Some(o) = &p.owner {
            let counts = self.owners.entry(o.clone()).or_default();
            counts.add_node(&p.node, 1);
            counts.add_zone(p.zone.as_deref(), 1);
        }
        self.placed.insert(uid.to_string(), p);
    }

    fn unplace(&mut self, uid: &str) {
        let Some(p) = self.placed.remove(uid) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&p.node) {
            n.remove(&p.req);
        }
        if let Some(o) = &p.owner
            && let Some(counts) = self.owners.get_mut(o)
        {
            counts.add_node(&p.node, -1);
            counts.add_zone(p.zone.as_deref(), -1);
            if counts.is_empty() {
                self.owners.remove(o);
            }
        }
    }

    /// Brings the pods placed on the nodes `which` selects in line with those nodes, in one pass:
    /// with `add_requests` their requests are added to the nodes' counts (which start from zero:
    /// the nodes are new), and their owners' zone counts move to the nodes' current zones (after
    /// a node appears, goes, or changes its zone label).
    fn sync_placed(&mut self, which: impl Fn(&str) -> bool, add_requests: bool) {
        for p in self.placed.values_mut() {
            if !which(&p.node) {
                continue;
            }
            let node = self.nodes.get_mut(&p.node);
            let zone = node.as_ref().and_then(|n| n.zone()).map(str::to_string);
            if add_requests && let Some(n) = node {
                n.add(&p.req);
            }
            if zone == p.zone {
                continue;
            }
            if let Some(counts) = p.owner.as_ref().and_then(|o| self.owners.get_mut(o)) {
                counts.add_zone(p.zone.as_deref(), -1);
                counts.add_zone(zone.as_deref(), 1);
            }
            p.zone = zone;
        }
    }

    fn enqueue(&mut self, uid: &str) {
        if !self.in_flight.contains(uid) && self.queued.insert(uid.to_string()) {
            let priority = self
                .pending
                .get(uid)
                .and_then(|p| p.spec.as_ref()?.priority)
                .unwrap_or(0);
            self.queue_seq += 1;
            self.queue
                .insert((Reverse(priority), self.queue_seq, uid.to_string()));
        }
    }

    /// Moves every unschedulable pod back to the active queue.
    fn retry_unschedulable(&mut self) {
        let uids: Vec<String> = self.unschedulable.keys().cloned().collect();
        for uid in uids {
            self.enqueue(&uid);
        }
    }

    /// Adds or replaces a node. A node seen before keeps what is placed on it; a new one counts
    /// the pods already placed on it.
    /// Returns whether anything the filters look at changed (labels, spec, allocatable), as
    /// kube-scheduler only retries unschedulable pods on such node updates.
    fn apply_node(&mut self, node: Node) -> bool {
        let name = node.name_any();
        let mut info = NodeInfo::new(Arc::new(node));
        match self.nodes.get_mut(&name) {
            Some(old) => {
                let rezone = old.zone() != info.zone();
                let changed = old.node.metadata.labels != info.node.metadata.labels
                    || old.node.spec != info.node.spec
                    || old.interfaces != info.interfaces
                    || (old.alloc_cpu, old.alloc_mem, old.alloc_pods)
                        != (info.alloc_cpu, info.alloc_mem, info.alloc_pods);
                info.used_cpu = old.used_cpu;
                info.used_mem = old.used_mem;
                info.used_pods = old.used_pods;
                info.ports = std::mem::take(&mut old.ports);
                *old = info;
                if rezone {
                    self.sync_placed(|n| n == name, false);
                }
                changed
            }
            None => {
                self.nodes.insert(name.clone(), info);
                self.sync_placed(|n| n == name, true);
                true
            }
        }
    }

    /// Replaces every node with `nodes` (a re-list), then counts the placed pods in one pass.
    fn replace_nodes(&mut self, nodes: Vec<Node>) {
        self.nodes = nodes
            .into_iter()
            .map(|n| (n.name_any(), NodeInfo::new(Arc::new(n))))
            .collect();
        self.sync_placed(|_| true, true);
    }

    /// A node watch event (a re-list is gathered in `node_relist`, then replaces the nodes).
    fn node_event(&mut self, ev: WEvent<Node>) {
        match ev {
            WEvent::Init => self.node_relist.clear(),
            WEvent::InitApply(n) => self.node_relist.push(n),
            WEvent::InitDone => {
                let nodes = std::mem::take(&mut self.node_relist);
                self.replace_nodes(nodes);
                self.retry_unschedulable();
            }
            WEvent::Apply(n) => {
                if self.apply_node(n) {
                    self.retry_unschedulable();
                }
            }
            WEvent::Delete(n) => {
                let name = n.name_any();
                self.nodes.remove(&name);
                self.sync_placed(|n| n == name, false);
            }
        }
    }

    /// A pod watch event (a re-list is gathered in `pod_relist`; pods missing from it are
    /// forgotten unless a bind is in flight).
    fn pod_event(&mut self, ev: WEvent<Pod>) {
        match ev {
            WEvent::Init => self.pod_relist.clear(),
            WEvent::InitApply(p) => self.pod_relist.push(p),
            WEvent::InitDone => {
                let pods = std::mem::take(&mut self.pod_relist);
                let uids: HashSet<&str> = pods
                    .iter()
                    .filter_map(|p| p.metadata.uid.as_deref())
                    .collect();
                let stale: Vec<String> = self
                    .placed
                    .keys()
                    .chain(self.pending.keys())
                    .filter(|u| !uids.contains(u.as_str()) && !self.in_flight.contains(*u))
                    .cloned()
                    .collect();
                for u in stale {
                    self.forget(&u);
                }
                for p in pods {
                    self.apply_pod(Arc::new(p));
                }
            }
            WEvent::Apply(p) => self.apply_pod(Arc::new(p)),
            WEvent::Delete(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    self.forget(uid);
                }
            }
        }
    }

    fn runtime_class_event(&mut self, ev: WEvent<RuntimeClass>) {
        match ev {
            WEvent::Init => self.runtime_classes.clear(),
            WEvent::InitApply(rc) | WEvent::Apply(rc) => {
                self.runtime_classes.insert(rc.name_any(), Arc::new(rc));
                self.retry_unschedulable();
            }
            WEvent::Delete(rc) => {
                self.runtime_classes.remove(&rc.name_any());
            }
            WEvent::InitDone => self.retry_unschedulable(),
        }
    }

    fn claim_event(&mut self, ev: WEvent<PersistentVolumeClaim>) {
        if self.volumes.claims.apply(ev) {
            self.retry_unschedulable();
        }
    }

    fn volume_event(&mut self, ev: WEvent<PersistentVolume>) {
        if self.volumes.volumes.apply(ev) {
            self.retry_unschedulable();
        }
    }

    fn storage_class_event(&mut self, ev: WEvent<StorageClass>) {
        if self.volumes.classes.apply(ev) {
            self.retry_unschedulable();
        }
    }

    fn apply_pod(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        match node {
            Some(node) if !node.is_empty() => {
                self.pending.remove(&uid);
                self.unschedulable.remove(&uid);
                if util::pod_terminal(&pod) {
                    self.forget(&uid);
                } else {
                    self.place(&uid, placed_of(&pod, node));
                }
            }
            _ => {
                if pod.metadata.deletion_timestamp.is_some() || util::pod_terminal(&pod) {
                    self.forget(&uid);
                    return;
                }
                let scheduler = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or(DEFAULT_SCHEDULER);
                if scheduler != DEFAULT_SCHEDULER {
                    return;
                }
                if self.in_flight.contains(&uid) {
                    self.pending.insert(uid, pod);
                    return;
                }
                let changed = self
                    .pending
                    .get(&uid)
                    .is_none_or(|old| old.spec != pod.spec);
                self.pending.insert(uid.clone(), pod);
                if changed || !self.unschedulable.contains_key(&uid) {
                    self.enqueue(&uid);
                }
            }
        }
    }

    fn forget(&mut self, uid: &str) {
        let was_placed = self.placed.contains_key(uid);
        self.unplace(uid);
        self.pending.remove(uid);
        self.unschedulable.remove(uid);
        if was_placed {
            self.retry_unschedulable();
        }
    }
}

fn placed_of(pod: &Pod, node: String) -> Placed {
    Placed {
        node,
        req: pod_request(pod),
        owner: util::controller_of(&pod.metadata).map(|o| o.uid.clone()),
        namespace: pod.namespace().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        zone: None,
    }
}

/// The interfaces a Node advertises in `skiff.dev/interfaces`; an unreadable value advertises
/// nothing (and is logged), so such a node gets no pod that imports anything.
fn node_interfaces(node: &Node) -> Option<Vec<String>> {
    let value = node
        .metadata
        .annotations
        .as_ref()?
        .get(wit::NODE_INTERFACES)?;
    Some(wit::parse_list(value).unwrap_or_else(|e| {
        tracing::warn!(node = node.metadata.name.as_deref().unwrap_or(""), error = %e, "unreadable {} annotation", wit::NODE_INTERFACES);
        Vec::new()
    }))
}

/// The WIT imports of every container of the pod, as the API server recorded them in
/// `skiff.dev/imports` at create; none when it did not (an image it could not inspect).
fn pod_imports(pod: &Pod) -> Vec<String> {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(wit::POD_IMPORTS))
    else {
        return Vec::new();
    };
    let mut imports: Vec<String> = wit::parse_pod_imports(value)
        .unwrap_or_default()
        .into_values()
        .flatten()
        .collect();
    imports.sort();
    imports.dedup();
    imports
}

/// Why a node was rejected, worded as kube-scheduler does; mostly static text.
type Reason = Cow<'static, str>;

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What a pod asks for, worked out once per scheduling attempt and shared by every node's
/// filters and scores (kube-scheduler's PreFilter/PreScore state).
struct PodCtx<'a> {
    pod: &'a Pod,
    req: Request,
    rc: Option<&'a RuntimeClass>,
    /// Tolerations of the pod and of its RuntimeClass.
    tolerations: Vec<&'a Toleration>,
    tolerates_unschedulable: bool,
    /// Pods of the same controller per node and per zone, for spreading.
    owner: Option<OwnerSpread<'a>>,
    /// For each topology spread constraint, matching pods per topology value.
    spread: Vec<SpreadCounts<'a>>,
    /// What the pod's claims ask of a node.
    volumes: volumes::PodVolumes<'a>,
    /// The WIT interfaces its containers import.
    imports: Vec<String>,
}

struct OwnerSpread<'a> {
    per_node: &'a HashMap<String, i64>,
    node_max: i64,
    per_zone: &'a HashMap<String, i64>,
    zone_max: i64,
}

struct SpreadCounts<'a> {
    key: &'a str,
    hard: bool,
    max_skew: i64,
    counts: HashMap<&'a str, i64>,
    min: i64,
    max: i64,
}

impl<'a> PodCtx<'a> {
    /// The context for `pod`, or the FailedScheduling message when it cannot be scheduled
    /// anywhere (its RuntimeClass does not exist).
    fn new(st: &'a State, pod: &'a Pod) -> Result<PodCtx<'a>, String> {
        let spec = pod.spec.as_ref();
        let rc = match spec.and_then(|s| s.runtime_class_name.as_ref()) {
            Some(name) => match st.runtime_classes.get(name) {
                Some(rc) => Some(rc.as_ref()),
                None => {
                    return Err(format!(
                        "0/{} nodes are available: runtimeclass.node.k8s.io \"{name}\" not found. preemption: not supported.",
                        st.nodes.len()
                    ));
                }
            },
            None => None,
        };
        let volumes = st.volumes.for_pod(pod).map_err(|reason| {
            format!(
                "0/{} nodes are available: {reason}. preemption: not supported.",
                st.nodes.len()
            )
        })?;
        let imports = pod_imports(pod);
        // An interface no node provides: no node can ever run the pod until one does.
        let unknown: Vec<&str> = imports
            .iter()
            .filter(|i| {
                st.nodes.values().all(|n| {
                    n.interfaces
                        .as_ref()
                        .is_some_and(|have| !wit::provides(have, i))
                })
            })
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "0/{} nodes provide {}. preemption: not supported.",
                st.nodes.len(),
                unknown.join(", ")
            ));
        }
        let tolerations: Vec<&Toleration> = spec
            .and_then(|s| s.tolerations.as_ref())
            .into_iter()
            .flatten()
            .chain(
                rc.and_then(|rc| rc.scheduling.as_ref())
                    .and_then(|s| s.tolerations.as_ref())
                    .into_iter()
                    .flatten(),
            )
            .collect();
        let unschedulable_taint = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        // Only the pod's own tolerations count for `spec.unschedulable`, as before.
        let tolerates_unschedulable = spec
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| tolerates(t, &unschedulable_taint)));
        let namespace = pod.namespace().unwrap_or_default();
        let owner = util::controller_of(&pod.metadata)
            .and_then(|o| st.owners.get(&o.uid))
            .map(owner_spread);
        let spread = spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| {
                matches!(
                    c.when_unsatisfiable.as_str(),
                    "DoNotSchedule" | "ScheduleAnyway"
                )
            })
            .map(|c| {
                let counts =
                    spread_counts(st, &namespace, &c.topology_key, c.label_selector.as_ref());
                SpreadCounts {
                    key: &c.topology_key,
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    max_skew: i64::from(c.max_skew),
                    min: counts.values().copied().min().unwrap_or(0),
                    max: counts.values().copied().max().unwrap_or(0),
                    counts,
                }
            })
            .collect();
        Ok(PodCtx {
            pod,
            req: pod_request(pod),
            rc,
            tolerations,
            tolerates_unschedulable,
            owner,
            spread,
            volumes,
            imports,
        })
    }
}

fn owner_spread(counts: &OwnerCounts) -> OwnerSpread<'_> {
    OwnerSpread {
        per_node: &counts.per_node,
        node_max: counts.node_max().max(1),
        // A handful of zones: their maximum is cheap to take.
        zone_max: counts.per_zone.values().copied().max().unwrap_or(0).max(1),
        per_zone: &counts.per_zone,
    }
}

/// Whether `node` passes every filter for the pod; the first failing filter gives the reason.
/// Filters run cheapest first among those kube-scheduler runs in this order.
fn node_fit(info: &NodeInfo, ctx: &PodCtx<'_>) -> Result<(), Reason> {
    if info.unschedulable && !ctx.tolerates_unschedulable {
        return Err("node(s) were unschedulable".into());
    }
    let labels = info.labels();
    if !node_selector_matches(ctx.pod, labels, info.name()) {
        return Err(AFFINITY_MISMATCH.into());
    }
    if let Some(rc) = ctx.rc {
        let supported = labels
            .get(RUNTIME_LABEL)
            .map(|v| v.as_str())
            .unwrap_or("wasm");
        if !supported.split(['.', ',']).any(|h| h.trim() == rc.handler) {
            return Err(format!(
                "node(s) didn't support the pod's runtime class \"{}\" (handler \"{}\")",
                rc.metadata.name.as_deref().unwrap_or_default(),
                rc.handler
            )
            .into());
        }
        if let Some(sel) = rc
            .scheduling
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
        {
            return Err(AFFINITY_MISMATCH.into());
        }
    }
    if let Some(have) = &info.interfaces {
        let missing = wit::missing(have, &ctx.imports);
        if !missing.is_empty() {
            return Err(format!("node(s) didn't provide {}", missing.join(", ")).into());
        }
    }
    if let Some(taint) = info.taints().find(|t| {
        t.effect != "PreferNoSchedule" && !ctx.tolerations.iter().any(|tol| tolerates(tol, t))
    }) {
        return Err(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )
        .into());
    }
    if ctx.req.ports.iter().any(|p| info.ports.contains(p)) {
        return Err("node(s) didn't have free ports for the requested pod ports".into());
    }
    // Resources (kube-scheduler reports them together; the first failing one wins here).
    if info.used_pods + 1 > info.alloc_pods {
        return Err("Too many pods".into());
    }
    if ctx.req.cpu > 0 && info.used_cpu + ctx.req.cpu > info.alloc_cpu {
        return Err("Insufficient cpu".into());
    }
    if ctx.req.mem > 0 && info.used_mem + ctx.req.mem > info.alloc_mem {
        return Err("Insufficient memory".into());
    }
    ctx.volumes.fit(&info.node)?;
    for c in ctx.spread.iter().filter(|c| c.hard) {
        let Some(value) = labels.get(c.key) else {
            return Err(
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into(),
            );
        };
        let here = c.counts.get(value.as_str()).copied().unwrap_or(0);
        if here + 1 - c.min > c.max_skew {
            return Err("node(s) didn't match pod topology spread constraints".into());
        }
    }
    Ok(())
}

const AFFINITY_MISMATCH: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether a toleration tolerates a taint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != taint.effect
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// Whether one node selector requirement holds for the value `have` of its key.
fn requirement_matches(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let listed = || have.is_some_and(|v| values.iter().any(|x| x == v));
    match r.operator.as_str() {
        "In" => listed(),
        "NotIn" => !listed(),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" { h > v } else { h < v }
        }
        _ => false,
    }
}

pub(crate) fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs_ok = term
        .match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)));
    // `metadata.name` is the only field a node selector term may match.
    let fields_ok = term
        .match_fields
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name)));
    let empty = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty);
    !empty && exprs_ok && fields_ok
}

fn node_selector_matches(pod: &Pod, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    if let Some(req) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name))
    {
        return false;
    }
    true
}

/// Whether a node satisfies a pod's nodeSelector and required node affinity.
pub fn node_matches_affinity(pod: &Pod, node: &Node) -> bool {
    node_selector_matches(
        pod,
        node_labels(node),
        node.metadata.name.as_deref().unwrap_or(""),
    )
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// Counts the pods of `namespace` matching a spread constraint's selector per topology value;
/// every value some node carries is present, with zero pods if none match there.
fn spread_counts<'a>(
    st: &'a State,
    namespace: &str,
    key: &str,
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> HashMap<&'a str, i64> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for info in st.nodes.values() {
        if let Some(v) = info.labels().get(key) {
            counts.entry(v.as_str()).or_default();
        }
    }
    let sel = sel.and_then(|s| skiff_meta::selector::LabelSelector::from_k8s(s).ok());
    for p in st.placed.values() {
        if p.namespace != namespace || !sel.as_ref().is_some_and(|s| s.matches(&p.labels)) {
            continue;
        }
        if let Some(v) = st.nodes.get(&p.node).and_then(|n| n.labels().get(key)) {
            *counts.entry(v.as_str()).or_default() += 1;
        }
    }
    counts
}

/// A node's score for the pod: higher is better.
fn score(info: &NodeInfo, ctx: &PodCtx<'_>) -> i64 {
    // Balanced allocation and least allocated, each 0..100.
    let frac = |used: i64, alloc: i64| {
        if alloc <= 0 || alloc >= i64::MAX / 8 {
            0.0
        } else {
            (used as f64 / alloc as f64).min(1.0)
        }
    };
    let req = &ctx.req;
    let cpu = frac(info.used_cpu + req.cpu, info.alloc_cpu);
    let mem = frac(info.used_mem + req.mem, info.alloc_mem);
    let pods = frac(info.used_pods + 1, info.alloc_pods);
    let balanced = (100.0 * (1.0 - (cpu - mem).abs())) as i64;
    let least = (100.0 * (1.0 - (cpu + mem + pods) / 3.0)) as i64;
    let mut total = balanced + least;
    // Spread replicas of one owner across nodes and zones (weight 2 each, like SelectorSpread).
    if let Some(o) = &ctx.owner {
        let here = o.per_node.get(info.name()).copied().unwrap_or(0);
        total += 200 * (o.node_max - here) / o.node_max;
        if let Some(zone) = info.zone() {
            let here = o.per_zone.get(zone).copied().unwrap_or(0);
            total += 200 * (o.zone_max - here) / o.zone_max;
        }
    }
    let labels = info.labels();
    // Preferred node affinity.
    if let Some(prefs) = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        let max: i64 = prefs
            .iter()
            .map(|p| i64::from(p.weight))
            .sum::<i64>()
            .max(1);
        let got: i64 = prefs
            .iter()
            .filter(|p| term_matches(&p.preference, labels, info.name()))
            .map(|p| i64::from(p.weight))
            .sum();
        total += 200 * got / max;
    }
    // Soft topology spread.
    for c in ctx.spread.iter().filter(|c| !c.hard) {
        let Some(value) = labels.get(c.key) else {
            continue;
        };
        let max = c.max.max(1);
        let here = c.counts.get(value.as_str()).copied().unwrap_or(0);
        total += 200 * (max - here) / max;
    }
    // PreferNoSchedule taints cost a little.
    let soft = info
        .taints()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !ctx.pod
                .spec
                .iter()
                .flat_map(|s| s.tolerations.iter().flatten())
                .any(|tol| tolerates(tol, t))
        })
        .count() as i64;
    total - 50 * soft
}

/// How many feasible nodes to find before scoring, as kube-scheduler's
/// `percentageOfNodesToScore`: every node below 100 nodes; otherwise `percentage` of them
/// (adaptive when 0: 50% less 1% per 125 nodes, at least 5%), and never fewer than 100.
fn feasible_nodes_to_find(nodes: usize, percentage: u32) -> usize {
    const MIN_NODES: usize = 100;
    const MIN_PERCENTAGE: usize = 5;
    if nodes < MIN_NODES || percentage >= 100 {
        return nodes;
    }
    let percentage = if percentage == 0 {
        50usize.saturating_sub(nodes / 125).max(MIN_PERCENTAGE)
    } else {
        percentage as usize
    };
    (nodes * percentage / 100).max(MIN_NODES)
}

enum Decision {
    Bind(String),
    /// The pod goes to this node once its `WaitForFirstConsumer` claims are bound there: these
    /// claims (namespace, name) are to be annotated with it first.
    SelectNode(String, Vec<(String, String)>),
    Unschedulable(String),
}

/// Filters nodes for the pod, starting where the previous pod stopped, until enough feasible
/// ones are found (or every node was tried), and picks the best scored of those.
fn decide(st: &mut State, pod: &Pod) -> Decision {
    let n = st.nodes.len();
    let want = feasible_nodes_to_find(n, st.percentage_of_nodes_to_score);
    let (chosen, next_start, reasons) = {
        let ctx = match PodCtx::new(st, pod) {
            Ok(ctx) => ctx,
            Err(message) => return Decision::Unschedulable(message),
        };
        let start = st.next_start.as_str();
        let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut best: Option<(i64, &str)> = None;
        let mut feasible = 0;
        let mut next_start = None;
        let order = st
            .nodes
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .chain(
                st.nodes
                    .range::<str, _>((Bound::Unbounded, Bound::Excluded(start))),
            );
        for (name, info) in order {
            if feasible >= want {
                next_start = Some(name.clone());
                break;
            }
            match node_fit(info, &ctx) {
                Ok(()) => {
                    feasible += 1;
                    let s = score(info, &ctx);
                    if best.is_none_or(|(b, _)| s > b) {
                        best = Some((s, name.as_str()));
                    }
                }
                Err(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        let chosen = best.map(|(_, name)| {
            let select = ctx.volumes.to_select(name);
            (name.to_string(), select)
        });
        (chosen, next_start, reasons)
    };
    if let Some(next) = next_start {
        st.next_start = next;
    }
    match chosen {
        Some((name, select)) if select.is_empty() => Decision::Bind(name),
        Some((name, select)) => Decision::SelectNode(
            name,
            select
                .into_iter()
                .filter(|(_, _, done)| !done)
                .map(|(ns, claim, _)| (ns, claim))
                .collect(),
        ),
        None => {
            let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
            parts.sort();
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" {}", parts.join(", "))
            };
            Decision::Unschedulable(format!(
                "0/{n} nodes are available:{detail}. preemption: not supported."
            ))
        }
    }
}

/// The scheduler, running until its task is dropped or aborted.
pub struct Scheduler {
    client: Client,
    opts: SchedulerOptions,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl Scheduler {
    /// A scheduler over `client`.
    pub fn new(client: Client, opts: SchedulerOptions) -> Scheduler {
        let state = State {
            percentage_of_nodes_to_score: opts.percentage_of_nodes_to_score,
            ..State::default()
        };
        Scheduler {
            client,
            opts,
            state: Arc::new(Mutex::new(state)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Runs its own watches and the scheduling loop until an unrecoverable error.
    pub async fn run(self) -> Result<(), Error> {
        let mut informers = crate::informer::Informers::new(self.client.clone());
        let nodes = informers.all::<Node>().events();
        let pods = informers.all::<Pod>().events();
        let classes = informers.all::<RuntimeClass>().events();
        let volumes = VolumeEvents::from_informers(&mut informers);
        let _watches = crate::AbortOnDrop(informers.start());
        self.run_with(nodes, pods, classes, volumes).await
    }

    /// Runs the scheduling loop over the events of shared Node, Pod and RuntimeClass informers
    /// until an unrecoverable error.
    pub async fn run_with(
        self,
        nodes: impl Stream<Item = WEvent<Node>> + Send + 'static,
        pods: impl Stream<Item = WEvent<Pod>> + Send + 'static,
        runtime_classes: impl Stream<Item = WEvent<RuntimeClass>> + Send + 'static,
        volumes: VolumeEvents,
    ) -> Result<(), Error> {
        // Owned by this future: dropping it (the task running it aborted) aborts them too.
        let mut background = tokio::task::JoinSet::new();
        let (state, wake) = (&self.state, &self.wake);
        background.spawn(apply_events(
            nodes,
            state.clone(),
            wake.clone(),
            (0, State::node_event),
        ));
        background.spawn(apply_events(
            pods,
            state.clone(),
            wake.clone(),
            (1, State::pod_event),
        ));
        background.spawn(apply_events(
            runtime_classes,
            state.clone(),
            wake.clone(),
            (2, State::runtime_class_event),
        ));
        background.spawn(apply_events(
            volumes.claims,
            state.clone(),
            wake.clone(),
            (3, State::claim_event),
        ));
        background.spawn(apply_events(
            volumes.volumes,
            state.clone(),
            wake.clone(),
            (4, State::volume_event),
        ));
        background.spawn(apply_events(
            volumes.classes,
            state.clone(),
            wake.clone(),
            (5, State::storage_class_event),
        ));
        {
            let state = self.state.clone();
            let wake = self.wake.clone();
            let every = self.opts.retry_interval;
            background.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    lock(&state).retry_unschedulable();
                    wake.notify_one();
                }
            });
        }
        let result = self.schedule_loop().await;
        background.shutdown().await;
        result
    }

    async fn schedule_loop(&self) -> Result<(), Error> {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let sem = Arc::new(tokio::sync::Semaphore::new(self.opts.bind_concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            // Reap finished binds.
            while tasks.try_join_next().is_some() {}
            let work: Vec<(Arc<Pod>, Decision)> = {
                let mut st = lock(&self.state);
                let mut out = Vec::new();
                while st.synced == ALL_SYNCED && out.len() < self.opts.batch {
                    let Some((_, _, uid)) = st.queue.pop_first() else {
                        break;
                    };
                    st.queued.remove(&uid);
                    let Some(pod) = st.pending.get(&uid).cloned() else {
                        continue;
                    };
                    let d = decide(&mut st, &pod);
                    match &d {
                        Decision::Bind(node) => {
                            st.in_flight.insert(uid.clone());
                            st.unschedulable.remove(&uid);
                            st.place(&uid, placed_of(&pod, node.clone()));
                        }
                        Decision::Unschedulable(msg) => {
                            let old = st.unschedulable.insert(uid.clone(), msg.clone());
                            if old.as_deref() == Some(msg.as_str()) {
                                continue;
                            }
                        }
                        Decision::SelectNode(node, claims) => {
                            // Retried when a claim or volume changes, like an unschedulable pod.
                            let msg = format!("waiting for the volumes of node {node} to be bound");
                            let old = st.unschedulable.insert(uid.clone(), msg.clone());
                            if old.as_deref() == Some(msg.as_str()) && claims.is_empty() {
                                continue;
                            }
                        }
                    }
                    out.push((pod, d));
                }
                out
            };
            if work.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = done_rx.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            for (pod, d) in work {
                let permit = sem.clone().acquire_owned().await;
                let client = self.client.clone();
                let state = self.state.clone();
                let wake = self.wake.clone();
                let done = done_tx.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    match d {
                        Decision::Bind(node) => bind(client, state, wake, pod, node).await,
                        Decision::SelectNode(node, claims) => {
                            select_node(client, state, wake, pod, node, claims).await
                        }
                        Decision::Unschedulable(msg) => {
                            report_unschedulable(client, pod, msg).await
                        }
                    }
                    let _ = done.send(());
                });
            }
        }
    }
}

/// The claim, volume and StorageClass events the scheduler's volume rules need.
pub struct VolumeEvents {
    /// PersistentVolumeClaim events.
    pub claims: std::pin::Pin<Box<dyn Stream<Item = WEvent<PersistentVolumeClaim>> + Send>>,
    /// PersistentVolume events.
    pub volumes: std::pin::Pin<Box<dyn Stream<Item = WEvent<PersistentVolume>> + Send>>,
    /// StorageClass events.
    pub classes: std::pin::Pin<Box<dyn Stream<Item = WEvent<StorageClass>> + Send>>,
}

impl VolumeEvents {
    /// Subscribes to the shared informers of the three kinds.
    pub fn from_informers(informers: &mut crate::informer::Informers) -> VolumeEvents {
        VolumeEvents {
            claims: Box::pin(informers.all::<PersistentVolumeClaim>().events()),
            volumes: Box::pin(informers.all::<PersistentVolume>().events()),
            classes: Box::pin(informers.all::<StorageClass>().events()),
        }
    }
}

/// Annotates the pod's unbound `WaitForFirstConsumer` claims with the chosen node; the pod stays
/// pending and is tried again when the claims change (bound by then, or not yet).
async fn select_node(
    client: Client,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    pod: Arc<Pod>,
    node: String,
    claims: Vec<(String, String)>,
) {
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({"metadata": {"annotations": {
            skiff_meta::names::SELECTED_NODE: node,
        }}});
        if let Err(e) = api
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
        {
            tracing::warn!(claim = %format!("{ns}/{name}"), error = %e, "selecting a node for a claim");
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut st = lock(&state);
            st.unschedulable.remove(&uid);
            st.enqueue(&uid);
            drop(st);
            wake.notify_one();
            return;
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn bind(
    client: Client,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    pod: Arc<Pod>,
    node: String,
) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    let res: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    let mut st = lock(&state);
    st.in_flight.remove(&uid);
    match res {
        Ok(_) => {
            tracing::debug!(pod = %format!("{ns}/{name}"), node = %node, "bound");
            st.pending.remove(&uid);
        }
        Err(e) => {
            st.unplace(&uid);
            match &e {
                kube::Error::Api(s) if s.code == 404 => {
                    st.pending.remove(&uid);
                }
                kube::Error::Api(s) if s.code == 409 => {
                    // Already bound elsewhere (the watch will tell us) or changed; retry.
                    st.enqueue(&uid);
                }
                _ => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed");
                    st.enqueue(&uid);
                }
            }
            drop(st);
            wake.notify_one();
        }
    }
}

/// Reports `pod` unschedulable with `message`, as kube-scheduler does: a `FailedScheduling`
/// Warning Event and the condition PodScheduled=False (reason `Unschedulable`), the condition
/// only while the pod is still unbound.
pub async fn report_unschedulable(client: Client, pod: Arc<Pod>, message: String) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    tracing::info!(pod = %format!("{ns}/{name}"), %message, "unschedulable");
    let now = util::now();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{name}.{:x}",
                jiff::Timestamp::now().as_nanosecond() as u64
            )),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some("FailedScheduling".into()),
        message: Some(message.clone()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(DEFAULT_SCHEDULER.into()),
            host: None,
        }),
        reporting_component: Some(DEFAULT_SCHEDULER.into()),
        reporting_instance: Some(DEFAULT_SCHEDULER.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(error = %e, "creating FailedScheduling event");
    }
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    // Written on the pod as decided, or on a newer version that is still unbound: a bind that
    // landed meanwhile keeps its PodScheduled=True (the node does not write it again).
    let mut rv = pod.metadata.resource_version.clone();
    for _ in 0..3 {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": rv},
            "status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": now,
            }]}
        });
        match pods
            .patch_status(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => match pods.get_opt(&name).await {
                Ok(Some(p))
                    if p.metadata.uid == pod.metadata.uid
                        && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() =>
                {
                    rv = p.metadata.resource_version;
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the pod to set PodScheduled");
                    return;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "setting PodScheduled condition");
                return;
            }
        }
    }
}

/// Applies the events of a watch to the state, as many as are ready under one lock, and wakes the
/// scheduling loop (the informer behind the stream re-lists or resumes after a watch error).
async fn apply_events<K>(
    stream: impl Stream<Item = WEvent<K>> + Send + 'static,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    (index, apply): (u8, fn(&mut State, WEvent<K>)),
) where
    K: Send + 'static,
{
    const MAX_EVENTS_PER_LOCK: usize = 256;
    let mut stream = std::pin::pin!(stream);
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev);
        while events.len() < MAX_EVENTS_PER_LOCK {
            match stream.next().now_or_never() {
                Some(Some(ev)) => events.push(ev),
                Some(None) | None => break,
            }
        }
        let mut st = lock(&state);
        for ev in events.drain(..) {
            if matches!(ev, WEvent::InitDone) {
                st.synced |= 1 << index;
            }
            apply(&mut st, ev);
        }
        drop(st);
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
