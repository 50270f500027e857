//! Which pod goes first under memory pressure, and what its status says — kubelet's
//! `rankMemoryPressure` (pods whose usage exceeds their requests first, then lower priority,
//! then more usage above requests; so BestEffort first, Burstable by usage above requests,
//! Guaranteed last) and its eviction message.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_meta::qos::QosClass;

/// One container's memory, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerUse {
    pub(crate) name: String,
    /// Working set in bytes.
    pub(crate) usage: u64,
    /// Its memory request in bytes (0 without one).
    pub(crate) request: u64,
}

/// A pod that may be evicted.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) qos: QosClass,
    pub(crate) priority: i32,
    /// The pod's working set in bytes, as its backend measures it.
    pub(crate) usage: u64,
    /// The pod's memory request in bytes (kubelet's: the containers' sum, or the largest init
    /// container's if more, plus the pod's overhead).
    pub(crate) request: u64,
    pub(crate) containers: Vec<ContainerUse>,
}

fn memory_of(c: &Container) -> u64 {
    let r = c.resources.as_ref();
    // A limit without a request is the request (the API server defaults it so).
    let q = r
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get("memory"))
        .or_else(|| {
            r.and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get("memory"))
        });
    q.and_then(|q| skiff_meta::quantity::Quantity::parse(&q.0).ok())
        .map_or(0, |q| u64::try_from(q.value_i64()).unwrap_or(0))
}

impl<'a> Candidate<'a> {
    /// The pod with its measured usage: the pod's memory, and each container's where the
    /// backend reports it (`per_container`, by name).
    pub(crate) fn new(pod: &'a Pod, usage: u64, per_container: &[(String, u64)]) -> Candidate<'a> {
        let spec = pod.spec.clone().unwrap_or_default();
        let sum: u64 = spec.containers.iter().map(memory_of).sum();
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(memory_of)
            .max()
            .unwrap_or(0);
        let overhead = spec
            .overhead
            .as_ref()
            .and_then(|o| o.get("memory"))
            .and_then(|q| skiff_meta::quantity::Quantity::parse(&q.0).ok())
            .map_or(0, |q| u64::try_from(q.value_i64()).unwrap_or(0));
        let containers = if per_container.is_empty() {
            // No figures per container: a lone container's are the pod's.
            match spec.containers.as_slice() {
                [only] => vec![ContainerUse {
                    name: only.name.clone(),
                    usage,
                    request: memory_of(only),
                }],
                _ => Vec::new(),
            }
        } else {
            spec.containers
                .iter()
                .filter_map(|c| {
                    let (_, used) = per_container.iter().find(|(n, _)| *n == c.name)?;
                    Some(ContainerUse {
                        name: c.name.clone(),
                        usage: *used,
                        request: memory_of(c),
                    })
                })
                .collect()
        };
        Candidate {
            pod,
            qos: skiff_meta::qos::qos_class(&spec),
            priority: spec.priority.unwrap_or(0),
            usage,
            request: sum.max(init) + overhead,
            containers,
        }
    }

    pub(crate) fn exceeds_requests(&self) -> bool {
        self.usage > self.request
    }

    fn above_requests(&self) -> i128 {
        i128::from(self.usage) - i128::from(self.request)
    }
}

/// Kubelet's order: usage over requests first, then lower priority, then more memory above
/// requests. Stable: equal pods keep their order.
pub(crate) fn compare(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    b.exceeds_requests()
        .cmp(&a.exceeds_requests())
        .then(a.priority.cmp(&b.priority))
        .then(b.above_requests().cmp(&a.above_requests()))
}

/// Kubernetes' `SystemCriticalPriority`: pods at or above it are critical.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Whether the pod may be evicted: kubelet never evicts a critical pod.
pub(crate) fn evictable(c: &Candidate<'_>) -> bool {
    c.priority < SYSTEM_CRITICAL_PRIORITY
}

/// The candidates, the first to evict first.
pub(crate) fn rank(mut candidates: Vec<Candidate<'_>>) -> Vec<Candidate<'_>> {
    candidates.sort_by(compare);
    candidates
}

/// A byte count as Kubernetes prints a binary quantity: the largest suffix that divides it
/// (`512Mi`, `1536Ki`, `1000`).
pub fn binary_si(bytes: i64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut v = bytes;
    let mut i = 0;
    while i + 1 < suffixes.len() && v % 1024 == 0 {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

/// Kubelet's eviction message: `The node was low on resource: memory. Threshold quantity: X,
/// available: Y. Container C was using Z, request is R, has larger consumption of memory. `
/// (one sentence per container whose usage exceeds its request).
pub(crate) fn message(threshold: &str, available: i64, containers: &[ContainerUse]) -> String {
    let mut m = format!(
        "The node was low on resource: memory. Threshold quantity: {threshold}, available: {}. ",
        binary_si(available)
    );
    for c in containers.iter().filter(|c| c.usage > c.request) {
        m.push_str(&format!(
            "Container {} was using {}, request is {}, has larger consumption of memory. ",
            c.name,
            binary_si(i64::try_from(c.usage).unwrap_or(i64::MAX)),
            binary_si(i64::try_from(c.request).unwrap_or(i64::MAX)),
        ));
    }
    m
}

/// The message of a pod refused while the node is under memory pressure (kubelet's
/// admission).
pub(crate) const ADMISSION_MESSAGE: &str = "The node had condition: [MemoryPressure]. ";
