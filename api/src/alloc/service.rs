//! A Service's ClusterIP and NodePorts: explicit values honoured (422 with Kubernetes' message if
//! outside the range or taken), the rest allocated from the upper part of the range first.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::range::{ServiceIps, static_band};
use super::{Owner, Pool, PortRange, Space, Taken, invalid, take, take_dynamic};
use crate::error::ApiError;
use crate::registry::Write;
use crate::state::AppState;

struct IpSpace(ServiceIps);

impl Space for IpSpace {
    fn pool(&self) -> Pool {
        Pool::ServiceIp
    }
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn band(&self) -> u64 {
        self.0.static_band()
    }
    fn random(&self) -> bool {
        true
    }
    fn value(&self, index: u64) -> String {
        self.0
            .ip(index)
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }
    fn index(&self, value: &str) -> Option<u64> {
        self.0.index(value.parse().ok()?)
    }
}

struct PortSpace(PortRange);

impl Space for PortSpace {
    fn pool(&self) -> Pool {
        Pool::NodePort
    }
    fn len(&self) -> u64 {
        self.0.size()
    }
    fn band(&self) -> u64 {
        static_band(self.0.size(), 16, 32, 128)
    }
    fn random(&self) -> bool {
        true
    }
    fn value(&self, index: u64) -> String {
        (u64::from(self.0.first) + index).to_string()
    }
    fn index(&self, value: &str) -> Option<u64> {
        let port: i64 = value.parse().ok()?;
        self.0
            .contains(port)
            .then(|| (port - i64::from(self.0.first)) as u64)
    }
}

fn spec_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn service_type(obj: &Value) -> &str {
    match spec_str(obj, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

/// The ClusterIP an object holds, if it holds one.
fn cluster_ip(obj: &Value) -> Option<&str> {
    let ip = spec_str(obj, "clusterIP");
    (service_type(obj) != "ExternalName" && !ip.is_empty() && ip != "None").then_some(ip)
}

fn node_ports(obj: &Value) -> Vec<i64> {
    if !matches!(service_type(obj), "NodePort" | "LoadBalancer") {
        return Vec::new();
    }
    let mut ports: Vec<i64> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The record keys a Service holds.
pub(super) fn held(obj: &Value) -> Vec<String> {
    let mut keys: Vec<String> = cluster_ip(obj)
        .map(|ip| Pool::ServiceIp.key(ip))
        .into_iter()
        .collect();
    keys.extend(
        node_ports(obj)
            .into_iter()
            .map(|p| Pool::NodePort.key(&p.to_string())),
    );
    keys
}

fn set_spec(obj: &mut Value, field: &str, value: Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(field.into(), value);
    }
}

/// Allocates what the Service needs that `old` (the stored Service, on update) does not hold.
pub(super) async fn allocate(
    state: &AppState,
    write: &Write<'_>,
    owner: &Owner,
    obj: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    if service_type(obj) != "ExternalName" {
        allocate_ip(state, write, owner, obj, old, taken).await?;
    }
    allocate_node_ports(state, write, owner, obj, old, taken).await
}

async fn allocate_ip(
    state: &AppState,
    write: &Write<'_>,
    owner: &Owner,
    obj: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    // As Kubernetes' `normalizeClusterIPs`: `clusterIPs` alone names the address too.
    let ip = match spec_str(obj, "clusterIP") {
        "" => obj
            .pointer("/spec/clusterIPs/0")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ip => ip.to_string(),
    };
    if ip == "None" {
        set_spec(obj, "clusterIP", json!("None"));
        set_spec(obj, "clusterIPs", json!(["None"]));
        return Ok(());
    }
    if !ip.is_empty() && old.and_then(cluster_ip) == Some(ip.as_str()) {
        return Ok(());
    }
    let ips = state.network.service_ips();
    let chosen = if ip.is_empty() {
        take_dynamic(state, &IpSpace(ips), owner, write.dry_run, taken)
            .await?
            .ok_or_else(|| {
                ApiError::internal(
                    "Internal error occurred: failed to allocate a serviceIP: range is full",
                )
            })?
    } else {
        let field_value = format!("[]string{{\"{ip}\"}}");
        let in_range = ip
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|a| ips.index(a))
            .is_some();
        if !in_range {
            return Err(invalid(
                write,
                "spec.clusterIPs",
                &field_value,
                &format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    state.network.service_cidr
                ),
            ));
        }
        if !take(state, Pool::ServiceIp, &ip, owner, write.dry_run, taken).await? {
            return Err(invalid(
                write,
                "spec.clusterIPs",
                &field_value,
                &format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ));
        }
        ip
    };
    set_spec(obj, "clusterIP", json!(chosen));
    set_spec(obj, "clusterIPs", json!([chosen]));
    Ok(())
}

async fn allocate_node_ports(
    state: &AppState,
    write: &Write<'_>,
    owner: &Owner,
    obj: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let ty = service_type(obj).to_string();
    if ty != "NodePort" && ty != "LoadBalancer" {
        return Ok(());
    }
    let dynamic = ty == "NodePort"
        || obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            != Some(false);
    let held: Vec<i64> = old.map(node_ports).unwrap_or_default();
    let range = state.network.node_ports;
    let count = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let pointer = format!("/spec/ports/{i}/nodePort");
        let wanted = obj.pointer(&pointer).and_then(Value::as_i64).unwrap_or(0);
        if wanted != 0 {
            if held.contains(&wanted) {
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            if !range.contains(wanted) {
                return Err(invalid(
                    write,
                    &field,
                    &wanted.to_string(),
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {range}"
                    ),
                ));
            }
            if !take(
                state,
                Pool::NodePort,
                &wanted.to_string(),
                owner,
                write.dry_run,
                taken,
            )
            .await?
            {
                return Err(invalid(
                    write,
                    &field,
                    &wanted.to_string(),
                    "provided port is already allocated",
                ));
            }
        } else if dynamic {
            let port = take_dynamic(state, &PortSpace(range), owner, write.dry_run, taken)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(
                        "Internal error occurred: failed to allocate a nodePort: range is full",
                    )
                })?;
            if let Some(p) = obj.pointer_mut(&format!("/spec/ports/{i}"))
                && let Some(m) = p.as_object_mut()
            {
                m.insert("nodePort".into(), json!(port.parse::<i64>().unwrap_or(0)));
            }
        }
    }
    Ok(())
}
