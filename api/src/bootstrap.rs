//! What the server writes itself at every start, through the write path as its own user: the
//! system namespaces, the `default/kubernetes` Service with its Endpoints and EndpointSlice
//! (pointing at this server), the system PriorityClasses, the default IngressClass `skiff`, the
//! default StorageClass `local-path` and the RuntimeClasses `wasm` and `oci`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::{Value, json};
use skiff_kinds::validate::FieldValidation;

use crate::error::ApiError;
use crate::registry::{self, Change, Write};
use crate::state::{AppState, UserInfo};

/// Namespaces every cluster has.
pub(crate) const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The field manager of what the server writes itself.
const MANAGER: &str = "kube-apiserver";

/// The EndpointSlice `managed-by` value of the server's own slice, so that the EndpointSlice
/// controller (`skiff_meta::names::ENDPOINTSLICE_MANAGED_BY`) leaves it alone.
pub(crate) const APISERVER_MANAGED_BY: &str = "kube-apiserver";

/// The server's own user.
pub(crate) fn server_user() -> UserInfo {
    UserInfo::new("system:apiserver", &[crate::state::MASTERS])
}

/// Creates `desired` unless it exists; if it exists, `refresh` may return what to store instead
/// (`None` keeps it). Both go through the write path.
async fn ensure(
    state: &AppState,
    user: &UserInfo,
    group: &str,
    plural: &str,
    desired: Value,
    refresh: impl Fn(&Value) -> Option<Value>,
) -> Result<(), ApiError> {
    let kind = skiff_kinds::find(group, "v1", plural).expect("bootstrap kinds are known");
    let namespace = desired
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = desired
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prepared = registry::prepare_create(
        kind,
        namespace.as_deref(),
        desired,
        FieldValidation::Strict,
        MANAGER,
        false,
    )?;
    let write = Write {
        kind,
        namespace: namespace.as_deref(),
        name: &name,
        user,
        dry_run: false,
        subresource: None,
    };
    // Servers starting at once on one store (etcd) race to create the same objects: the loser
    // of a create may be refused before its store write (the `kubernetes` Service's fixed
    // ClusterIP is already held by the winner's), so a failed attempt is tried again, when the
    // object is there to refresh.
    let mut attempt = 0;
    loop {
        let result = registry::guaranteed_update(state, &write, |current| {
            Ok(match current {
                None => Change::Create(prepared.obj.clone()),
                Some((obj, _)) => match refresh(obj) {
                    Some(new) if new != *obj => Change::Update(new),
                    _ => Change::Keep(obj.clone()),
                },
            })
        })
        .await;
        match result {
            Err(_) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            result => return result.map(drop),
        }
    }
}

/// The address the `kubernetes` Service's endpoint names: the listen address, or loopback when
/// the server listens on every address.
fn advertised(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    }
}

/// Everything the server writes at start, in order.
pub(crate) async fn run(state: &AppState, listen: SocketAddr) -> Result<(), ApiError> {
    let user = server_user();
    for name in SYSTEM_NAMESPACES {
        registry::ensure_namespace(state, &user, name).await?;
    }
    crate::alloc::repair(state).await?;
    kubernetes_service(state, &user, listen).await?;
    priority_classes(state, &user).await?;
    ingress_class(state, &user).await?;
    storage_class(state, &user).await?;
    runtime_classes(state, &user).await?;
    crate::serviceaccount::bootstrap(state).await
}

/// The RuntimeClasses of the two pod runtimes, `wasm` and `oci`, each named as its handler.
/// Created when absent, never overwritten (an operator may add scheduling or overhead).
async fn runtime_classes(state: &AppState, user: &UserInfo) -> Result<(), ApiError> {
    for name in [
        skiff_meta::names::WASM_RUNTIME_CLASS,
        skiff_meta::names::OCI_RUNTIME_CLASS,
    ] {
        let class = json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": name},
            "handler": name,
        });
        ensure(state, user, "node.k8s.io", "runtimeclasses", class, |_| {
            None
        })
        .await?;
    }
    Ok(())
}

/// The system PriorityClasses `system-node-critical` and `system-cluster-critical`, created
/// when missing; priority admission keeps them from being deleted and validation from being
/// changed.
async fn priority_classes(state: &AppState, user: &UserInfo) -> Result<(), ApiError> {
    for (name, value, description) in skiff_kinds::validate::SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        });
        ensure(
            state,
            user,
            "scheduling.k8s.io",
            "priorityclasses",
            class,
            |_| None,
        )
        .await?;
    }
    Ok(())
}

/// `default/kubernetes`: ClusterIP the first address of the range, port `https` 443; its
/// Endpoints and EndpointSlice name the live API servers (`crate::apiservers`), this one first
/// registered as live.
async fn kubernetes_service(
    state: &AppState,
    user: &UserInfo,
    listen: SocketAddr,
) -> Result<(), ApiError> {
    let live = crate::apiservers::renew(state, me(listen)).await?;
    kubernetes_endpoints(state, user, &live).await
}

/// This server as the endpoints name it.
pub(crate) fn me(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(advertised(listen), listen.port())
}

/// Writes the `kubernetes` Service's target port, Endpoints and EndpointSlice for the live
/// servers (unchanged objects are not written). The Endpoints have one subset per port; the
/// EndpointSlice (one port per slice) and the Service's `targetPort` take the port most servers
/// listen on, on a tie the port of the server registered last (a server restarted on another
/// port is followed at once) — Kubernetes expects every API server on one port.
pub(crate) async fn kubernetes_endpoints(
    state: &AppState,
    user: &UserInfo,
    live: &crate::apiservers::Live,
) -> Result<(), ApiError> {
    // Port → (its servers' addresses, the newest registration among them).
    let mut by_port: std::collections::BTreeMap<u16, (Vec<String>, u64)> = Default::default();
    for (addr, registered) in live {
        let group = by_port.entry(addr.port()).or_default();
        group.0.push(addr.ip().to_string());
        group.1 = group.1.max(*registered);
    }
    let (port, slice_addresses) = by_port
        .iter()
        .max_by_key(|(_, (ips, newest))| (ips.len(), *newest))
        .map(|(p, (ips, _))| (*p, ips.clone()))
        .unwrap_or_default();
    let ip = state.network.kubernetes_service_ip().to_string();
    let ports = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": ports, "sessionAffinity": "None"},
    });
    ensure(state, user, "", "services", service, |old| {
        let mut new = old.clone();
        let spec = new.get_mut("spec")?.as_object_mut()?;
        spec.insert("ports".into(), ports.clone());
        Some(new)
    })
    .await?;
    let subsets: Vec<Value> = by_port
        .iter()
        .map(|(port, (ips, _))| {
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"addresses": addresses,
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
        })
        .collect();
    let subsets = Value::Array(subsets);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    ensure(state, user, "", "endpoints", endpoints, |old| {
        let mut new = old.clone();
        new.as_object_mut()?
            .insert("subsets".into(), subsets.clone());
        Some(new)
    })
    .await?;
    let labels = json!({
        "kubernetes.io/service-name": "kubernetes",
        "endpointslice.kubernetes.io/managed-by": APISERVER_MANAGED_BY,
    });
    let endpoints: Vec<Value> = slice_addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    let endpoints = Value::Array(endpoints);
    let slice_ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": slice_ports,
    });
    ensure(
        state,
        user,
        "discovery.k8s.io",
        "endpointslices",
        slice,
        |old| {
            let mut new = old.clone();
            let m = new.as_object_mut()?;
            m.insert("endpoints".into(), endpoints.clone());
            m.insert("ports".into(), slice_ports.clone());
            m.insert("addressType".into(), json!("IPv4"));
            let meta = m.get_mut("metadata")?.as_object_mut()?;
            meta.insert("labels".into(), labels.clone());
            Some(new)
        },
    )
    .await
}

/// The IngressClass every node's ingress serves, marked default; created once (an operator may
/// change it afterwards).
async fn ingress_class(state: &AppState, user: &UserInfo) -> Result<(), ApiError> {
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": skiff_meta::names::INGRESS_CLASS,
            "annotations": {crate::alloc::DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": skiff_meta::names::INGRESS_CONTROLLER},
    });
    ensure(
        state,
        user,
        "networking.k8s.io",
        "ingressclasses",
        class,
        |_| None,
    )
    .await
}

/// The StorageClass of the local-path provisioner, marked default: volumes are made on the node
/// the claim's first pod is scheduled to, and removed with their claim. Created when absent,
/// never overwritten (an operator may change or unmark it).
async fn storage_class(state: &AppState, user: &UserInfo) -> Result<(), ApiError> {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": skiff_meta::names::LOCAL_PATH_CLASS,
            "annotations": {skiff_meta::names::DEFAULT_STORAGE_CLASS: "true"}},
        "provisioner": skiff_meta::names::LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    ensure(
        state,
        user,
        "storage.k8s.io",
        "storageclasses",
        class,
        |_| None,
    )
    .await
}
