//! What every pod worker and the node listener share: the API client, the backends (runtime
//! and image service by handler), the pod IP pool, the table of live sandboxes and the Service
//! routing table their readiness feeds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use skiff_runtime::{DnsConfig, PodNetwork, PodSandbox, Runtimes};

use crate::net::table::Table;
use crate::tokens::{Clock, SystemClock, TokenManager};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An IPv4 pod CIDR handing out addresses from `.2` on (`.1` is the gateway, as with a bridge).
/// Each address in use records its owner (the pod's uid, which is its sandbox's id): only the
/// owner gives it back, so an address released late by a pod that no longer holds it is never
/// taken from the pod that holds it now.
#[derive(Debug)]
pub(crate) struct IpPool {
    base: u32,
    size: u32,
    /// Offset -> owner.
    used: HashMap<u32, String>,
    /// No free offset is below this one (allocation scans from here).
    low: u32,
}

impl IpPool {
    /// Parses `A.B.C.D/N` (IPv4, N between 8 and 30).
    pub(crate) fn parse(cidr: &str) -> Result<IpPool, String> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {cidr:?} is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("pod CIDR {cidr:?}: only IPv4 is supported"))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("pod CIDR {cidr:?}: prefix length must be 8..=30"))?;
        let mask = u32::MAX << (32 - len);
        Ok(IpPool {
            base: u32::from(addr) & mask,
            size: 1 << (32 - len),
            used: HashMap::new(),
            low: 2,
        })
    }

    /// No range yet (the API server has not accepted the Node's pod CIDR): no address to give.
    pub(crate) fn unassigned() -> IpPool {
        IpPool {
            base: 0,
            size: 0,
            used: HashMap::new(),
            low: 2,
        }
    }

    pub(crate) fn is_assigned(&self) -> bool {
        self.size > 0
    }

    /// The CIDR in canonical form.
    pub(crate) fn cidr(&self) -> String {
        if !self.is_assigned() {
            return "<none: not assigned by the API server>".into();
        }
        format!(
            "{}/{}",
            Ipv4Addr::from(self.base),
            32 - self.size.trailing_zeros()
        )
    }

    /// How many pod addresses the range holds (all but the network, gateway and broadcast
    /// addresses).
    pub(crate) fn capacity(&self) -> u32 {
        self.size.saturating_sub(3)
    }

    /// Takes `wanted` for `owner` if it is in the range and free, else the lowest free address.
    pub(crate) fn allocate(&mut self, wanted: Option<IpAddr>, owner: &str) -> Option<IpAddr> {
        if self.size < 4 {
            return None;
        }
        if let Some(IpAddr::V4(w)) = wanted {
            let off = u32::from(w).wrapping_sub(self.base);
            if (2..self.size - 1).contains(&off) && !self.used.contains_key(&off) {
                self.used.insert(off, owner.to_string());
                return Some(IpAddr::V4(w));
            }
        }
        let off = (self.low.max(2)..self.size - 1).find(|o| !self.used.contains_key(o))?;
        self.used.insert(off, owner.to_string());
        self.low = off + 1;
        Some(IpAddr::V4(Ipv4Addr::from(self.base + off)))
    }

    /// Marks an address used by `owner` (a re-adopted pod's), unless another owner holds it;
    /// false if it is outside the range.
    pub(crate) fn reserve(&mut self, ip: IpAddr, owner: &str) -> bool {
        let IpAddr::V4(v4) = ip else {
            return false;
        };
        let off = u32::from(v4).wrapping_sub(self.base);
        if self.size < 4 || !(2..self.size - 1).contains(&off) {
            return false;
        }
        self.used.entry(off).or_insert_with(|| owner.to_string());
        true
    }

    /// Gives an address back, if `owner` holds it.
    pub(crate) fn release(&mut self, ip: IpAddr, owner: &str) {
        if let IpAddr::V4(v4) = ip {
            let off = u32::from(v4).wrapping_sub(self.base);
            if self.used.get(&off).is_some_and(|o| o == owner) {
                self.used.remove(&off);
                self.low = self.low.min(off);
            }
        }
    }
}

/// Shared by the pod workers and the listener.
pub(crate) struct NodeCtx {
    pub(crate) client: kube::Client,
    pub(crate) runtimes: Runtimes,
    pub(crate) node_name: String,
    pub(crate) host_ip: IpAddr,
    pub(crate) ips: Mutex<IpPool>,
    sandboxes: Mutex<HashMap<(String, String), Arc<dyn PodSandbox>>>,
    /// The Service routing table; the workers report their pods' readiness to it.
    pub(crate) services: Arc<Table>,
    /// The node's own resolver (`/etc/resolv.conf`), for pods with `dnsPolicy: Default`.
    pub(crate) host_dns: DnsConfig,
    /// The ServiceAccount tokens of projected volumes.
    pub(crate) tokens: TokenManager,
    /// The ConfigMaps and Secrets pods' volumes reference, read at most once per TTL.
    pub(crate) objects: crate::refcache::RefCache,
    /// The node's Prometheus metrics (`crate::metrics`).
    pub(crate) metrics: Arc<crate::metrics::NodeMetrics>,
    /// The eviction manager's condition and its orders to the workers.
    pub(crate) eviction: Arc<crate::eviction::Shared>,
}

impl NodeCtx {
    pub(crate) fn new(
        client: kube::Client,
        runtimes: Runtimes,
        node_name: String,
        host_ip: IpAddr,
        ips: IpPool,
    ) -> NodeCtx {
        NodeCtx {
            tokens: TokenManager::new(client.clone(), Arc::new(SystemClock)),
            objects: Default::default(),
            client,
            runtimes,
            services: Arc::new(Table::new(node_name.clone())),
            node_name,
            host_ip,
            ips: Mutex::new(ips),
            sandboxes: Mutex::new(HashMap::new()),
            host_dns: DnsConfig::default(),
            metrics: Arc::default(),
            eviction: Arc::default(),
        }
    }

    /// The same context sharing `eviction` with the eviction manager and the Node's status.
    pub(crate) fn with_eviction(mut self, eviction: Arc<crate::eviction::Shared>) -> NodeCtx {
        self.eviction = eviction;
        self
    }

    /// The same context reading the time of token rotation from `clock`.
    pub(crate) fn with_token_clock(mut self, clock: Arc<dyn Clock>) -> NodeCtx {
        self.tokens = TokenManager::new(self.client.clone(), clock);
        self
    }

    /// The same context recording in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<crate::metrics::NodeMetrics>) -> NodeCtx {
        self.metrics = metrics;
        self
    }

    /// The same context with the node's own resolver configuration.
    pub(crate) fn with_host_dns(mut self, host_dns: DnsConfig) -> NodeCtx {
        self.host_dns = host_dns;
        self
    }

    /// Marks the IPs of the sandboxes the backends re-adopted used, before any is handed out.
    pub(crate) fn reserve_adopted(&self) {
        let mut ips = lock(&self.ips);
        for b in self.runtimes.iter() {
            for id in b.runtime.pods() {
                if let Some(ip) = b.runtime.pod(&id).and_then(|sb| sb.ip())
                    && !ips.reserve(ip, &id)
                {
                    tracing::warn!(pod = %id, %ip, cidr = %ips.cidr(), "a re-adopted pod's IP lies outside this node's pod CIDR");
                }
            }
        }
    }

    /// Marks one address used by `owner` (a re-adopted sandbox's).
    pub(crate) fn reserve_ip(&self, ip: IpAddr, owner: &str) -> bool {
        lock(&self.ips).reserve(ip, owner)
    }

    /// The node's pod network (gateway and prefix) once it has a pod CIDR.
    pub(crate) fn pod_network(&self) -> Option<PodNetwork> {
        let ips = lock(&self.ips);
        if !ips.is_assigned() {
            return None;
        }
        crate::convert::pod_network(&ips.cidr())
    }

    /// The same context reporting to the routing table `services`.
    pub(crate) fn with_services(mut self, services: Arc<Table>) -> NodeCtx {
        self.services = services;
        self
    }

    pub(crate) fn allocate_ip(&self, wanted: Option<IpAddr>, owner: &str) -> Option<IpAddr> {
        lock(&self.ips).allocate(wanted, owner)
    }

    /// Gives the node its pod range once the API server accepted it, unless it has one.
    pub(crate) fn assign_pool(&self, pool: IpPool) {
        {
            let mut ips = lock(&self.ips);
            if ips.is_assigned() {
                return;
            }
            *ips = pool;
        }
        self.reserve_adopted();
    }

    /// The node's pod CIDR.
    pub(crate) fn pod_cidr(&self) -> String {
        lock(&self.ips).cidr()
    }

    /// Gives `owner`'s address back (nothing if another owner holds it now).
    pub(crate) fn release_ip(&self, ip: IpAddr, owner: &str) {
        lock(&self.ips).release(ip, owner)
    }

    /// Publishes a pod's sandbox for the listener.
    pub(crate) fn publish(&self, ns: &str, name: &str, sandbox: Arc<dyn PodSandbox>) {
        self.metrics.add_pod(ns, name, sandbox.clone());
        lock(&self.sandboxes).insert((ns.to_string(), name.to_string()), sandbox);
    }

    /// Withdraws a pod's sandbox if it is still this one.
    pub(crate) fn withdraw(&self, ns: &str, name: &str, id: &str) {
        let mut map = lock(&self.sandboxes);
        let key = (ns.to_string(), name.to_string());
        if map.get(&key).is_some_and(|s| s.id() == id) {
            map.remove(&key);
            self.metrics.remove_pod(ns, name);
        }
    }

    /// Every published sandbox, by pod namespace and name.
    pub(crate) fn sandboxes(&self) -> Vec<((String, String), Arc<dyn PodSandbox>)> {
        lock(&self.sandboxes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The sandbox of a pod by namespace and name.
    pub(crate) fn sandbox(&self, ns: &str, name: &str) -> Option<Arc<dyn PodSandbox>> {
        lock(&self.sandboxes)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_and_reuses_addresses() {
        let mut p = IpPool::parse("10.88.0.7/24").expect("cidr");
        assert_eq!(p.cidr(), "10.88.0.0/24");
        let a = p.allocate(None, "a").expect("free");
        assert_eq!(a.to_string(), "10.88.0.2");
        let wanted: IpAddr = "10.88.0.50".parse().expect("ip");
        assert_eq!(p.allocate(Some(wanted), "b"), Some(wanted));
        assert_eq!(
            p.allocate(Some(wanted), "b").map(|i| i.to_string()),
            Some("10.88.0.3".into())
        );
        p.release(a, "a");
        assert_eq!(p.allocate(None, "a"), Some(a));
        assert_eq!(p.capacity(), 253);
        let mut small = IpPool::parse("10.0.0.0/30").expect("cidr");
        assert_eq!(small.capacity(), 1);
        assert!(small.allocate(None, "a").is_some());
        assert!(small.allocate(None, "a").is_none());
        assert!(IpPool::parse("fd00::/64").is_err());
    }

    #[test]
    fn reserved_addresses_are_not_handed_out() {
        let mut p = IpPool::parse("10.88.0.0/29").expect("cidr");
        assert!(p.reserve("10.88.0.2".parse().expect("ip"), "r"));
        assert!(p.reserve("10.88.0.3".parse().expect("ip"), "r"));
        // Twice is fine; the gateway, the broadcast address and other ranges are not.
        assert!(p.reserve("10.88.0.3".parse().expect("ip"), "r"));
        assert!(!p.reserve("10.88.0.1".parse().expect("ip"), "r"));
        assert!(!p.reserve("10.88.0.7".parse().expect("ip"), "r"));
        assert!(!p.reserve("10.99.0.4".parse().expect("ip"), "r"));
        assert_eq!(
            p.allocate(None, "a").map(|i| i.to_string()),
            Some("10.88.0.4".into())
        );
        assert!(!IpPool::unassigned().reserve("10.88.0.2".parse().expect("ip"), "r"));
    }

    /// Only the owner gives an address back: a pod that released its address (a finished
    /// one), then releases it again after another pod took it, frees nothing.
    #[test]
    fn only_the_owner_gives_an_address_back() {
        let mut p = IpPool::parse("10.88.0.0/29").expect("cidr");
        let a = p.allocate(None, "pod-a").expect("free");
        p.release(a, "pod-a");
        assert_eq!(p.allocate(None, "pod-b"), Some(a));
        p.release(a, "pod-a");
        assert_ne!(
            p.allocate(Some(a), "pod-c"),
            Some(a),
            "pod-b still holds it"
        );
        // A reservation does not take an address another owner holds.
        assert!(p.reserve(a, "pod-d"));
        p.release(a, "pod-d");
        assert_ne!(p.allocate(Some(a), "pod-c"), Some(a));
        p.release(a, "pod-b");
        assert_eq!(p.allocate(Some(a), "pod-c"), Some(a));
    }
}
