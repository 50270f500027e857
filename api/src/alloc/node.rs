//! A Node's pod CIDR, as kube-controller-manager's `--allocate-node-cidrs`: a Node created
//! without `spec.podCIDR` gets the lowest free subnet of `--node-cidr-mask-size` in the cluster
//! CIDR; an explicit one must lie inside the cluster CIDR and overlap no other Node's. A record
//! is kept per subnet of the grid the explicit CIDR touches, so overlaps are failed creates.

use serde_json::{Value, json};

use super::{
    Ipv4Cidr, NetworkConfig, Owner, Pool, Space, Taken, holder, release_taken, take, take_dynamic,
};
use crate::error::{ApiError, Cause};
use crate::registry::Write;
use crate::state::AppState;

struct CidrSpace {
    cluster: Ipv4Cidr,
    mask: u8,
}

impl Space for CidrSpace {
    fn pool(&self) -> Pool {
        Pool::PodCidr
    }
    fn len(&self) -> u64 {
        self.cluster.subnet_count(self.mask)
    }
    fn band(&self) -> u64 {
        0
    }
    fn random(&self) -> bool {
        false
    }
    fn value(&self, index: u64) -> String {
        self.cluster
            .subnet(self.mask, index)
            .map(|c| c.to_string())
            .unwrap_or_default()
    }
    fn index(&self, value: &str) -> Option<u64> {
        let c: Ipv4Cidr = value.parse().ok()?;
        if c.prefix_len() != self.mask || !self.cluster.covers(&c) {
            return None;
        }
        let first = self.cluster.subnet(self.mask, 0)?;
        let step = 1u64 << (32 - u32::from(self.mask));
        Some((u64::from(u32::from(c.network())) - u64::from(u32::from(first.network()))) / step)
    }
}

fn pod_cidr(obj: &Value) -> &str {
    obj.pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .or_else(|| obj.pointer("/spec/podCIDRs/0").and_then(Value::as_str))
        .unwrap_or_default()
}

/// The grid subnets an IPv4 pod CIDR inside the cluster CIDR touches.
fn cells(net: &NetworkConfig, cidr: &Ipv4Cidr) -> Vec<String> {
    if !net.cluster_cidr.covers(cidr) {
        return Vec::new();
    }
    let mask = net.node_cidr_mask;
    if cidr.prefix_len() >= mask {
        return Ipv4Cidr::new(cidr.network(), mask)
            .map(|c| vec![c.to_string()])
            .unwrap_or_default();
    }
    (0..cidr.subnet_count(mask))
        .filter_map(|i| cidr.subnet(mask, i))
        .map(|c| c.to_string())
        .collect()
}

/// The record keys a Node holds.
pub(super) fn held(net: &NetworkConfig, obj: &Value) -> Vec<String> {
    match pod_cidr(obj).parse::<Ipv4Cidr>() {
        Ok(c) => cells(net, &c)
            .iter()
            .map(|cell| Pool::PodCidr.key(cell))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn set_cidr(obj: &mut Value, cidr: &str) {
    if let Some(m) = obj.as_object_mut() {
        let spec = m.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("podCIDR".into(), json!(cidr));
            spec.insert("podCIDRs".into(), json!([cidr]));
        }
    }
}

fn refuse(write: &Write<'_>, field: &str, reason: &str, message: String) -> ApiError {
    let kind = write.kind;
    ApiError::invalid(
        kind.group,
        kind.kind,
        kind.plural,
        write.name,
        vec![Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        }],
    )
}

/// Gives the Node its pod CIDR (new, or unchanged from `old`).
pub(super) async fn allocate(
    state: &AppState,
    write: &Write<'_>,
    owner: &Owner,
    obj: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let net = &state.network;
    let wanted = pod_cidr(obj).to_string();
    let before = old.map(pod_cidr).unwrap_or_default().to_string();
    if !before.is_empty() {
        if wanted.is_empty() {
            set_cidr(obj, &before);
            return Ok(());
        }
        if wanted != before {
            return Err(refuse(
                write,
                "spec.podCIDRs",
                "FieldValueForbidden",
                "Forbidden: node updates may not change podCIDR except from \"\" to valid".into(),
            ));
        }
        return Ok(());
    }
    if wanted.is_empty() {
        let space = CidrSpace {
            cluster: net.cluster_cidr,
            mask: net.node_cidr_mask,
        };
        let Some(cidr) = take_dynamic(state, &space, owner, write.dry_run, taken).await? else {
            // As Kubernetes' node IPAM, a full cluster CIDR never blocks a Node's writes: it
            // stays without a range (its node says so).
            tracing::warn!(node = write.name, cluster_cidr = %net.cluster_cidr, "no pod CIDR left for the node");
            return Ok(());
        };
        set_cidr(obj, &cidr);
        return Ok(());
    }
    let cidr: Ipv4Cidr = match wanted.parse() {
        Ok(c) if net.cluster_cidr.covers(&c) => c,
        _ => {
            return Err(refuse(
                write,
                "spec.podCIDR",
                "FieldValueInvalid",
                format!(
                    "Invalid value: {wanted:?}: must lie inside the cluster CIDR {}",
                    net.cluster_cidr
                ),
            ));
        }
    };
    let mut mine = Taken {
        keys: Vec::new(),
        uid: taken.uid.clone(),
    };
    for cell in cells(net, &cidr) {
        if !take(state, Pool::PodCidr, &cell, owner, write.dry_run, &mut mine).await? {
            let other = holder(state, &Pool::PodCidr.key(&cell))
                .await?
                .map(|o| o.name)
                .unwrap_or_default();
            release_taken(state, mine).await;
            if old.is_none() && other == write.name {
                // A create of a Node that exists (a restarted node registering again with its
                // `--pod-cidr`): the conflict is the name, as the store would say, so the node
                // updates the Node it has instead of being told it overlaps itself.
                return Err(ApiError::already_exists(
                    write.kind.group,
                    write.kind.plural,
                    write.name,
                ));
            }
            return Err(refuse(
                write,
                "spec.podCIDR",
                "FieldValueInvalid",
                format!("Invalid value: {wanted:?}: overlaps the pod CIDR of node {other:?}"),
            ));
        }
    }
    taken.keys.extend(mine.keys);
    set_cidr(obj, &wanted);
    Ok(())
}
