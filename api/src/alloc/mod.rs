//! Values the server hands out at write time, as Kubernetes' allocators do: Service ClusterIPs
//! (from `--service-cluster-ip-range`), NodePorts (from `--service-node-port-range`) and Node pod
//! CIDRs (kube-controller-manager's `--allocate-node-cidrs`, done here at Node create), plus the
//! default IngressClass written into a new Ingress.
//!
//! Each value taken is one allocation record in the store, created with create-if-absent through
//! the write path (`registry::create_record`) and naming its owner (kind, namespace, name, uid):
//! a value already taken is a failed create, so two writers can never take the same value, and
//! the records survive restarts. This is what Kubernetes' MultiCIDRServiceAllocator does with
//! `IPAddress` objects. A record is freed when its owner lets the value go (delete, type change)
//! and by the repair pass at start (`repair`), which also records values of owners without one.

mod ingress;
mod node;
mod range;
mod repair;
mod service;

use std::net::Ipv4Addr;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use skiff_kinds::validate::{Cause, Error as Invalid};

pub(crate) use ingress::DEFAULT_CLASS_ANNOTATION;
pub use range::{Ipv4Cidr, PortRange, RangeError};
pub(crate) use repair::repair;

use crate::error::ApiError;
use crate::objects::meta_str;
use crate::registry::{self, Write};
use crate::state::AppState;
use range::ServiceIps;

/// Where the cluster's addresses and ports come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Service ClusterIPs (`--service-cluster-ip-range`, default `10.96.0.0/12`); the first
    /// address is the `default/kubernetes` Service's.
    pub service_cidr: Ipv4Cidr,
    /// NodePorts (`--service-node-port-range`, default `30000-32767`).
    pub node_ports: PortRange,
    /// The pods of all nodes (`--cluster-cidr`, default `10.244.0.0/16`).
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each Node's pod CIDR (`--node-cidr-mask-size`, default 24).
    pub node_cidr_mask: u8,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            service_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12).expect("valid"),
            node_ports: PortRange {
                first: 30000,
                last: 32767,
            },
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16).expect("valid"),
            node_cidr_mask: 24,
        }
    }
}

impl NetworkConfig {
    /// Checks that the ranges can be used together.
    pub fn check(&self) -> Result<(), RangeError> {
        if self.node_cidr_mask < self.cluster_cidr.prefix_len() || self.node_cidr_mask > 30 {
            return Err(RangeError::new(format!(
                "--node-cidr-mask-size {} must be between the cluster CIDR's prefix length ({}) and 30",
                self.node_cidr_mask,
                self.cluster_cidr.prefix_len()
            )));
        }
        if self.service_cidr.prefix_len() > 30 {
            return Err(RangeError::new(format!(
                "the service cluster IP range {} is too small",
                self.service_cidr
            )));
        }
        Ok(())
    }

    /// The address of the `default/kubernetes` Service: the range's first usable address.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_ips()
            .ip(0)
            .expect("a checked range has addresses")
    }

    pub(crate) fn service_ips(&self) -> ServiceIps {
        ServiceIps {
            cidr: self.service_cidr,
        }
    }
}

/// The kinds of allocation record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    ServiceIp,
    NodePort,
    PodCidr,
}

/// Where allocation records live in the store: beside the objects, under a prefix no kind uses.
const PREFIX: &str = "/skiff.dev/allocations/";

impl Pool {
    fn dir(self) -> &'static str {
        match self {
            Pool::ServiceIp => "serviceips",
            Pool::NodePort => "nodeports",
            Pool::PodCidr => "podcidrs",
        }
    }

    fn prefix(self) -> String {
        format!("{PREFIX}{}/", self.dir())
    }

    /// A record's key; a CIDR's `/` becomes `_` so the value stays one key segment.
    pub(crate) fn key(self, value: &str) -> String {
        format!("{}{}", self.prefix(), value.replace('/', "_"))
    }

    fn value_of(self, key: &str) -> Option<String> {
        key.strip_prefix(&self.prefix())
            .map(|v| v.replace('_', "/"))
    }
}

/// Who holds a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) uid: String,
    /// When the record was taken (Unix seconds): a record younger than `repair::GRACE` whose
    /// owner is not stored yet may belong to a write in flight on another server, and is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<u64>,
}

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Owner {
    fn of(write: &Write<'_>, obj: &Value) -> Owner {
        Owner {
            kind: write.kind.kind.to_string(),
            namespace: write.namespace.map(str::to_string),
            name: write.name.to_string(),
            uid: meta_str(obj, "uid").unwrap_or_default().to_string(),
            since: Some(unix_now()),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an owner serializes")
    }
}

/// The records one write created; released if the write does not happen.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Taken {
    keys: Vec<String>,
    uid: String,
}

impl Taken {
    fn push(&mut self, key: String) {
        self.keys.push(key);
    }
}

/// Gives back what a write took (it failed, lost a race or was a dry run).
pub(crate) async fn release_taken(state: &AppState, taken: Taken) {
    for key in taken.keys {
        release_key(state, &key, &taken.uid).await;
    }
}

/// Frees one record if `uid` still holds it.
pub(crate) async fn release_key(state: &AppState, key: &str, uid: &str) {
    let kv = match state.store.get(key).await {
        Ok(Some(kv)) => kv,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(key, error = %e, "reading an allocation record");
            return;
        }
    };
    let holder: Option<Owner> = serde_json::from_slice(&kv.value).ok();
    if holder.is_some_and(|o| o.uid != uid) {
        return;
    }
    if let Err(e) = registry::delete_record(state, key, kv.mod_revision).await {
        tracing::warn!(key, error = %e, "freeing an allocation record");
    }
}

/// The holder of a value, if taken.
async fn holder(state: &AppState, key: &str) -> Result<Option<Owner>, ApiError> {
    Ok(state.store.get(key).await?.map(|kv| {
        serde_json::from_slice(&kv.value).unwrap_or_else(|_| Owner {
            kind: String::new(),
            namespace: None,
            name: String::new(),
            uid: String::new(),
            since: None,
        })
    }))
}

/// Takes one value for `owner`: `Ok(true)` if now held (or already held by the same owner),
/// `Ok(false)` if someone else holds it. A dry run only looks.
async fn take(
    state: &AppState,
    pool: Pool,
    value: &str,
    owner: &Owner,
    dry_run: bool,
    taken: &mut Taken,
) -> Result<bool, ApiError> {
    if take_free(state, pool, value, owner, dry_run, taken).await? {
        return Ok(true);
    }
    Ok(holder(state, &pool.key(value))
        .await?
        .is_some_and(|h| h.uid == owner.uid))
}

/// Takes one value only if nobody holds it, the owner included (a dynamic pick must not hand
/// one Service the same NodePort twice).
async fn take_free(
    state: &AppState,
    pool: Pool,
    value: &str,
    owner: &Owner,
    dry_run: bool,
    taken: &mut Taken,
) -> Result<bool, ApiError> {
    let key = pool.key(value);
    if dry_run {
        return Ok(holder(state, &key).await?.is_none());
    }
    if registry::create_record(state, &key, owner.bytes()).await? {
        taken.push(key);
        return Ok(true);
    }
    Ok(false)
}

/// A range of values indexed from 0, with a low band kept for explicit picks.
trait Space: Sync {
    fn pool(&self) -> Pool;
    fn len(&self) -> u64;
    /// Values below this index are handed out dynamically only when the rest is full.
    fn band(&self) -> u64;
    /// Dynamic picks start at random (Services) or at the lowest free value (pod CIDRs).
    fn random(&self) -> bool;
    fn value(&self, index: u64) -> String;
    fn index(&self, value: &str) -> Option<u64>;
}

/// Takes a free value of the space for `owner`: random probes in the upper band first, then a
/// scan of what is taken (upper band, then lower). `None` when the range is full.
async fn take_dynamic(
    state: &AppState,
    space: &dyn Space,
    owner: &Owner,
    dry_run: bool,
    taken: &mut Taken,
) -> Result<Option<String>, ApiError> {
    let (band, len) = (space.band().min(space.len()), space.len());
    if space.random() && band < len {
        for _ in 0..4 {
            let index = rand::rng().random_range(band..len);
            let value = space.value(index);
            if take_free(state, space.pool(), &value, owner, dry_run, taken).await? {
                return Ok(Some(value));
            }
        }
    }
    let listed = state
        .store
        .list(skiff_store::ListOptions {
            prefix: space.pool().prefix(),
            ..Default::default()
        })
        .await?;
    let used: std::collections::HashSet<u64> = listed
        .items
        .iter()
        .filter_map(|kv| space.pool().value_of(&kv.key))
        .filter_map(|v| space.index(&v))
        .collect();
    let start = if space.random() && band < len {
        rand::rng().random_range(band..len)
    } else {
        band
    };
    let upper = (start..len).chain(band..start);
    for index in upper.chain(0..band) {
        if used.contains(&index) {
            continue;
        }
        let value = space.value(index);
        if take_free(state, space.pool(), &value, owner, dry_run, taken).await? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A 422 for one field, as Kubernetes words it (`spec.clusterIPs: Invalid value: ...`).
fn invalid(write: &Write<'_>, field: &str, value: &str, message: &str) -> ApiError {
    registry::map_validation(
        write.kind,
        write.name,
        Invalid::Invalid(vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {message}"),
            field: field.into(),
        }]),
    )
}

/// Takes what a new object needs: a Service's ClusterIP and NodePorts, a Node's pod CIDR, an
/// Ingress's default class. On error nothing stays taken.
pub(crate) async fn before_create(
    state: &AppState,
    write: &Write<'_>,
    obj: &mut Value,
) -> Result<Taken, ApiError> {
    let owner = Owner::of(write, obj);
    let mut taken = Taken {
        keys: Vec::new(),
        uid: owner.uid.clone(),
    };
    let result = match (write.kind.group, write.kind.kind) {
        ("", "Service") => service::allocate(state, write, &owner, obj, None, &mut taken).await,
        ("", "Node") => node::allocate(state, write, &owner, obj, None, &mut taken).await,
        ("networking.k8s.io", "Ingress") => ingress::default_class(state, obj).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => Ok(taken),
        Err(e) => {
            release_taken(state, taken).await;
            Err(e)
        }
    }
}

/// Takes what an update adds (a NodePort for a new port, a ClusterIP for a Service that stops
/// being ExternalName, a pod CIDR for a Node that had none).
pub(crate) async fn before_update(
    state: &AppState,
    write: &Write<'_>,
    obj: &mut Value,
    old: &Value,
) -> Result<Taken, ApiError> {
    let owner = Owner::of(write, old);
    let mut taken = Taken {
        keys: Vec::new(),
        uid: owner.uid.clone(),
    };
    let result = match (write.kind.group, write.kind.kind) {
        ("", "Service") => {
            service::allocate(state, write, &owner, obj, Some(old), &mut taken).await
        }
        ("", "Node") => node::allocate(state, write, &owner, obj, Some(old), &mut taken).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => Ok(taken),
        Err(e) => {
            release_taken(state, taken).await;
            Err(e)
        }
    }
}

/// After an update is stored: frees what the old object held and the new one does not.
pub(crate) async fn after_update(state: &AppState, write: &Write<'_>, obj: &Value, old: &Value) {
    let held = held_keys(&state.network, write.kind, old);
    if held.is_empty() {
        return;
    }
    let kept = held_keys(&state.network, write.kind, obj);
    let uid = meta_str(old, "uid").unwrap_or_default();
    for key in held.iter().filter(|k| !kept.contains(k)) {
        release_key(state, key, uid).await;
    }
}

/// After an object is removed: frees everything it held.
pub(crate) async fn after_delete(state: &AppState, write: &Write<'_>, old: &Value) {
    let uid = meta_str(old, "uid").unwrap_or_default();
    for key in held_keys(&state.network, write.kind, old) {
        release_key(state, &key, uid).await;
    }
}

/// The record keys an object holds.
pub(crate) fn held_keys(net: &NetworkConfig, kind: &skiff_kinds::Kind, obj: &Value) -> Vec<String> {
    match (kind.group, kind.kind) {
        ("", "Service") => service::held(obj),
        ("", "Node") => node::held(net, obj),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
