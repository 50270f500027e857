//! The Node object: registration (capacity, allocatable, nodeInfo, addresses, conditions,
//! labels, daemon endpoint, the podCIDR asked for or given by the API server), status heartbeats, and the node Lease renewed every quarter
//! of its duration (10 s by default).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_meta::names::RUNTIME_LABEL;
use skiff_meta::wit::NODE_INTERFACES;

/// The namespace of node leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a lease is valid without renewal, by default (kubelet's `--node-lease-duration-seconds`);
/// the lease is renewed every quarter of it, as kubelet does.
pub const DEFAULT_LEASE_DURATION_SECONDS: u32 = 40;
/// How often the Node's status (conditions' heartbeat times) is refreshed.
pub(crate) const STATUS_REFRESH: Duration = Duration::from_secs(60);
/// The kubelet version the node reports (the Kubernetes API version it serves pods for).
pub(crate) fn kubelet_version() -> String {
    format!("v1.{}.0-skiff", skiff_meta::KUBERNETES_MINOR)
}

/// What the Node object says about this node.
#[derive(Debug, Clone)]
pub(crate) struct NodeFacts {
    pub(crate) name: String,
    pub(crate) zone: Option<String>,
    pub(crate) host_ip: IpAddr,
    pub(crate) port: u16,
    /// The Node's pod CIDR: the one asked for (`--pod-cidr`), then the one the API server's
    /// Node carries once registered.
    pub(crate) pod_cidr: Option<String>,
    /// The pods the backends hold; the Node's `pods` capacity is also bounded by the pod CIDR.
    pub(crate) backend_pods: u32,
    pub(crate) cpus: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) started: jiff::Timestamp,
    pub(crate) lease_duration_seconds: u32,
    /// The handlers of the node's backends, sorted.
    pub(crate) runtimes: Vec<String>,
    /// The WIT interfaces the backends provide (the `skiff.dev/interfaces` annotation).
    pub(crate) interfaces: Vec<String>,
    /// The backends' own conditions (`OCIRuntimeReady`).
    pub(crate) conditions: Vec<crate::RuntimeCondition>,
    /// What allocatable leaves out of capacity (reservations and the hard eviction threshold).
    pub(crate) reserved: crate::eviction::Reserved,
    /// The MemoryPressure condition the eviction manager keeps.
    pub(crate) eviction: std::sync::Arc<crate::eviction::Shared>,
}

impl NodeFacts {
    /// How often the lease is renewed: a quarter of its duration, at least every second.
    pub(crate) fn lease_renew(&self) -> Duration {
        Duration::from_millis((u64::from(self.lease_duration_seconds) * 250).max(1000))
    }

    fn lease_duration(&self) -> i32 {
        i32::try_from(self.lease_duration_seconds).unwrap_or(i32::MAX)
    }

    /// What the node can really hold: its backends' limits, and one pod IP per pod (none
    /// without a pod CIDR).
    pub(crate) fn pods(&self) -> u32 {
        let addresses = self
            .pod_cidr
            .as_deref()
            .and_then(|c| crate::ctx::IpPool::parse(c).ok())
            .map_or(0, |p| p.capacity());
        self.backend_pods.min(addresses)
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// The Go name of this machine's architecture, as Kubernetes labels it.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Total memory from `/proc/meminfo`.
pub(crate) fn memory_bytes() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

fn system_info() -> NodeSystemInfo {
    let machine_id = read_trimmed("/etc/machine-id");
    let product_uuid = read_trimmed("/sys/class/dmi/id/product_uuid");
    NodeSystemInfo {
        architecture: go_arch().to_string(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!(
            "wasm://skiff-runtime {} (wasmtime 48)",
            env!("CARGO_PKG_VERSION")
        ),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        kube_proxy_version: kubelet_version(),
        kubelet_version: kubelet_version(),
        system_uuid: if product_uuid.is_empty() {
            machine_id.clone()
        } else {
            product_uuid
        },
        machine_id,
        operating_system: std::env::consts::OS.to_string(),
        os_image: os_image(),
        swap: None,
    }
}

fn labels(f: &NodeFacts) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("kubernetes.io/hostname".into(), f.name.clone());
    l.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    l.insert("kubernetes.io/arch".into(), go_arch().into());
    l.insert("beta.kubernetes.io/os".into(), std::env::consts::OS.into());
    l.insert("beta.kubernetes.io/arch".into(), go_arch().into());
    // Handlers are DNS labels, so joined by `.` they still make one valid label value.
    l.insert(RUNTIME_LABEL.into(), f.runtimes.join("."));
    if let Some(z) = &f.zone {
        l.insert("topology.kubernetes.io/zone".into(), z.clone());
    }
    l
}

fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    f: &NodeFacts,
) -> NodeCondition {
    NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(jiff::Timestamp::now())),
        last_transition_time: Some(Time(f.started)),
    }
}

/// Capacity less what is reserved, as kubelet computes allocatable (never below zero).
fn allocatable(f: &NodeFacts, capacity: &BTreeMap<String, Quantity>) -> BTreeMap<String, Quantity> {
    let mut a = capacity.clone();
    if f.reserved.cpu_milli > 0 {
        let milli = (i64::from(f.cpus) * 1000 - f.reserved.cpu_milli).max(0);
        let q = if milli % 1000 == 0 {
            (milli / 1000).to_string()
        } else {
            format!("{milli}m")
        };
        a.insert("cpu".to_string(), Quantity(q));
    }
    if f.reserved.memory_bytes > 0 {
        let bytes =
            (i64::try_from(f.memory_bytes).unwrap_or(i64::MAX) - f.reserved.memory_bytes).max(0);
        let q = if bytes % 1024 == 0 {
            format!("{}Ki", bytes / 1024)
        } else {
            bytes.to_string()
        };
        a.insert("memory".to_string(), Quantity(q));
    }
    a
}

/// The Node's status.
pub(crate) fn status(f: &NodeFacts) -> NodeStatus {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(f.cpus.to_string()));
    capacity.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", f.memory_bytes / 1024)),
    );
    capacity.insert("pods".to_string(), Quantity(f.pods().to_string()));
    let allocatable = allocatable(f, &capacity);
    let pressure = f.eviction.memory_pressure();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: f.host_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: f.name.clone(),
            },
        ]),
        allocatable: Some(allocatable),
        capacity: Some(capacity),
        conditions: Some({
            let mut all = vec![
                if pressure.under_pressure {
                    NodeCondition {
                        last_transition_time: Some(Time(pressure.since)),
                        ..condition(
                            "MemoryPressure",
                            "True",
                            "KubeletHasInsufficientMemory",
                            "kubelet has insufficient memory available",
                            f,
                        )
                    }
                } else {
                    NodeCondition {
                        last_transition_time: Some(Time(pressure.since.max(f.started))),
                        ..condition(
                            "MemoryPressure",
                            "False",
                            "KubeletHasSufficientMemory",
                            "kubelet has sufficient memory available",
                            f,
                        )
                    }
                },
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    f,
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    f,
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                    f,
                ),
            ];
            all.extend(f.conditions.iter().map(|c| {
                condition(
                    &c.type_,
                    if c.ready { "True" } else { "False" },
                    &c.reason,
                    &c.message,
                    f,
                )
            }));
            all
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(f.port),
            }),
        }),
        node_info: Some(system_info()),
        ..Default::default()
    }
}

/// Creates the Node, or updates its labels (and its pod CIDR, if one was asked for) if it exists;
/// then its status. Without a pod CIDR of its own the node takes the one the API server gave
/// its Node (a re-registering node keeps its CIDR). A refused pod CIDR is a 422 whose message
/// says why.
pub(crate) async fn register(
    client: &kube::Client,
    f: &mut NodeFacts,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(f.name.clone()),
            labels: Some(labels(f)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                (
                    NODE_INTERFACES.to_string(),
                    crate::interfaces::annotation(&f.interfaces),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: f.pod_cidr.clone(),
            pod_cidrs: f.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    };
    let stored = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let mut patch = json!({"metadata": {
                "labels": labels(f),
                "annotations": {NODE_INTERFACES: crate::interfaces::annotation(&f.interfaces)},
            }});
            if let Some(cidr) = &f.pod_cidr {
                patch["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
            }
            api.patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e),
    };
    f.pod_cidr = stored
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| f.pod_cidr.clone());
    update_status(client, f).await
}

/// Says on an Event (in `default`, where node events live) why the API server refused the
/// Node, since there is no Node to put a condition on. The reason is the one Kubernetes' node
/// IPAM reports when a node gets no pod CIDR.
pub(crate) async fn refused_event(client: &kube::Client, f: &NodeFacts, message: &str) {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let now = Time(jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", f.name)),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(f.name.clone()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
        reason: Some("CIDRNotAvailable".into()),
        message: Some(format!(
            "the node runs no pods: the API server refused it: {message}"
        )),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(f.name.clone()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(error = %e, "recording why the node was refused");
    }
}

/// Writes the Node's status (fresh heartbeat times).
pub(crate) async fn update_status(
    client: &kube::Client,
    f: &NodeFacts,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": status(f) });
    api.patch_status(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Creates or renews the node's Lease.
pub(crate) async fn renew_lease(
    client: &kube::Client,
    f: &NodeFacts,
    node_uid: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(jiff::Timestamp::now());
    match api.get_opt(&f.name).await? {
        Some(_) => {
            let patch = json!({"spec": {
                "holderIdentity": f.name,
                "leaseDurationSeconds": f.lease_duration(),
                "renewTime": now,
            }});
            api.patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(f.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: f.name.clone(),
                            uid: uid.to_string(),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(f.name.clone()),
                    lease_duration_seconds: Some(f.lease_duration()),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(runtimes: &[&str]) -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            zone: None,
            host_ip: IpAddr::from([127, 0, 0, 1]),
            port: 10250,
            pod_cidr: Some("10.244.0.0/24".into()),
            backend_pods: 110,
            cpus: 2,
            memory_bytes: 1 << 30,
            started: jiff::Timestamp::UNIX_EPOCH,
            lease_duration_seconds: 40,
            runtimes: runtimes.iter().map(|h| h.to_string()).collect(),
            interfaces: Vec::new(),
            conditions: Vec::new(),
            reserved: crate::eviction::Reserved::default(),
            eviction: Default::default(),
        }
    }

    #[test]
    fn allocatable_is_capacity_less_reservations_and_the_hard_threshold() {
        let mut f = facts(&["wasm"]);
        assert_eq!(status(&f).allocatable, status(&f).capacity);
        let o = crate::eviction::EvictionOptions {
            system_reserved: crate::eviction::parse_reserved("cpu=500m,memory=128Mi")
                .expect("reserved"),
            ..Default::default()
        };
        f.reserved = o.reserved(f.memory_bytes);
        let a = status(&f).allocatable.expect("allocatable");
        assert_eq!(a["cpu"].0, "1500m");
        // 1Gi − 128Mi − 100Mi (kubelet's default hard threshold).
        assert_eq!(a["memory"].0, format!("{}Ki", (1024 - 228) * 1024));
        assert_eq!(a["pods"].0, "110");
    }

    #[test]
    fn memory_pressure_follows_the_eviction_manager() {
        let f = facts(&["wasm"]);
        let cond = |f: &NodeFacts| {
            status(f)
                .conditions
                .expect("conditions")
                .into_iter()
                .find(|c| c.type_ == "MemoryPressure")
                .expect("MemoryPressure")
        };
        let c = cond(&f);
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasSufficientMemory"));
        f.eviction.set_memory_pressure(true);
        let c = cond(&f);
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasInsufficientMemory"));
        assert_eq!(
            c.message.as_deref(),
            Some("kubelet has insufficient memory available")
        );
        assert_eq!(
            c.last_transition_time.map(|t| t.0),
            Some(f.eviction.memory_pressure().since)
        );
    }

    #[test]
    fn the_pods_capacity_is_bounded_by_the_pod_cidr() {
        let mut f = facts(&["wasm"]);
        assert_eq!(f.pods(), 110);
        f.pod_cidr = Some("10.244.0.0/28".into());
        assert_eq!(f.pods(), 13);
        // Not registered yet, or refused: no address, so no pod.
        f.pod_cidr = None;
        assert_eq!(f.pods(), 0);
    }

    #[test]
    fn the_runtime_label_lists_the_backends_handlers() {
        assert_eq!(labels(&facts(&["wasm"]))[RUNTIME_LABEL], "wasm");
        // A label value cannot hold a comma; handlers are DNS labels, so `.` separates them.
        assert_eq!(labels(&facts(&["oci", "wasm"]))[RUNTIME_LABEL], "oci.wasm");
    }

    #[test]
    fn backend_conditions_follow_kubelets_four() {
        let mut f = facts(&["wasm"]);
        f.conditions.push(crate::RuntimeCondition {
            type_: crate::OCI_CONDITION.into(),
            ready: false,
            reason: "NotRoot".into(),
            message: "Linux containers need root".into(),
        });
        let conds = status(&f).conditions.expect("conditions");
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "MemoryPressure",
                "DiskPressure",
                "PIDPressure",
                "Ready",
                "OCIRuntimeReady"
            ]
        );
        let oci = &conds[4];
        assert_eq!(oci.status, "False");
        assert_eq!(oci.reason.as_deref(), Some("NotRoot"));
        assert_eq!(oci.message.as_deref(), Some("Linux containers need root"));
    }
}
