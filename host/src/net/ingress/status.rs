//! `status.loadBalancer.ingress` of the served Ingresses: each node adds its own address and
//! keeps the other nodes' entries (a read-modify-write through `ingresses/status` with the
//! resourceVersion precondition, retried on conflict), and takes its entry off an Ingress it no
//! longer serves.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use super::rules::ObjKey;

/// How often one status write is tried again after a conflict.
const CONFLICT_RETRIES: usize = 5;
/// How long a stopping node spends taking its address off the Ingresses.
const SHUTDOWN_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Which Ingresses need this node's entry added (`true`) or removed (`false`).
pub(crate) type Pending = Arc<BTreeMap<ObjKey, bool>>;

/// The node's address as a load-balancer entry: `ip` for an IP address, else `hostname`.
pub(crate) fn entry(address: &str) -> IngressLoadBalancerIngress {
    if address.parse::<std::net::IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(address.to_string()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(address.to_string()),
            ..Default::default()
        }
    }
}

fn same_address(a: &IngressLoadBalancerIngress, b: &IngressLoadBalancerIngress) -> bool {
    a.ip == b.ip && a.hostname == b.hostname
}

/// Whether the Ingress's status lists `ours`.
pub(crate) fn has_entry(ingress: &Ingress, ours: &IngressLoadBalancerIngress) -> bool {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|entries| entries.iter().any(|e| same_address(e, ours)))
}

/// The status with `ours` added (`present`) or removed, every other entry kept; `None` when it
/// already is so.
pub(crate) fn merged(
    status: Option<&IngressStatus>,
    ours: &IngressLoadBalancerIngress,
    present: bool,
) -> Option<IngressStatus> {
    let mut entries: Vec<IngressLoadBalancerIngress> = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let has = entries.iter().any(|e| same_address(e, ours));
    if has == present {
        return None;
    }
    if present {
        entries.push(ours.clone());
        // Kubernetes' controllers keep the list sorted, so every node writes the same order.
        entries.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
    } else {
        entries.retain(|e| !same_address(e, ours));
    }
    Some(IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: (!entries.is_empty()).then_some(entries),
        }),
    })
}

/// Writes this node's entry on the Ingresses `pending` names, each time it changes, until
/// `stop`; then takes the entry off every Ingress (as ingress-nginx does on shutdown), within
/// a short budget.
pub(crate) async fn run(
    client: kube::Client,
    ours: IngressLoadBalancerIngress,
    mut pending: watch::Receiver<Pending>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let work = pending.borrow_and_update().clone();
        for ((ns, name), present) in work.iter() {
            if *stop.borrow() {
                break;
            }
            if let Err(e) = write(&client, ns, name, &ours, *present).await {
                tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e,
                    "updating the Ingress's load-balancer status");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            // The watch task is gone: the node stops.
            changed = pending.changed() => if changed.is_err() { break },
        }
    }
    if tokio::time::timeout(SHUTDOWN_BUDGET, withdraw(&client, &ours))
        .await
        .is_err()
    {
        tracing::warn!("the node's address is still on some Ingresses' status");
    }
}

/// Takes this node's entry off every Ingress that lists it.
async fn withdraw(client: &kube::Client, ours: &IngressLoadBalancerIngress) {
    let api: Api<Ingress> = Api::all(client.clone());
    let list = match api.list(&Default::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "listing Ingresses to withdraw the node's address");
            return;
        }
    };
    for ing in list.items.iter().filter(|i| has_entry(i, ours)) {
        let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
            continue;
        };
        if let Err(e) = write(client, ns, name, ours, false).await {
            tracing::debug!(ingress = %format!("{ns}/{name}"), error = %e,
                "withdrawing the node's address");
        }
    }
}

async fn write(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ours: &IngressLoadBalancerIngress,
    present: bool,
) -> Result<(), kube::Error> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut ing) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(status) = merged(ing.status.as_ref(), ours, present) else {
            return Ok(());
        };
        ing.status = Some(status);
        // The object carries the resourceVersion it was read at: a concurrent write by
        // another node is a conflict, not a lost entry.
        match api.replace_status(name, &PostParams::default(), &ing).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    tracing::warn!(ingress = %format!("{ns}/{name}"),
        "the Ingress's status kept changing; trying again on its next event");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(ips: &[&str]) -> IngressStatus {
        IngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(ips.iter().map(|ip| entry(ip)).collect()),
            }),
        }
    }

    fn ips(s: &IngressStatus) -> Vec<String> {
        s.load_balancer
            .as_ref()
            .and_then(|l| l.ingress.as_ref())
            .map(|v| {
                v.iter()
                    .map(|e| e.ip.clone().or(e.hostname.clone()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn merging_keeps_other_nodes_entries() {
        let me = entry("127.0.0.2");
        let added = merged(Some(&lb(&["127.0.0.3", "127.0.0.1"])), &me, true).expect("a change");
        assert_eq!(ips(&added), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert_eq!(merged(Some(&added), &me, true), None, "already there");
        let removed = merged(Some(&added), &me, false).expect("a change");
        assert_eq!(ips(&removed), ["127.0.0.1", "127.0.0.3"]);
        assert_eq!(merged(Some(&removed), &me, false), None, "already gone");
        assert_eq!(
            ips(&merged(None, &me, true).expect("a change")),
            ["127.0.0.2"]
        );
        let emptied = merged(Some(&lb(&["127.0.0.2"])), &me, false).expect("a change");
        assert_eq!(emptied.load_balancer.and_then(|l| l.ingress), None);
        let host = entry("node.example.com");
        assert_eq!(host.hostname.as_deref(), Some("node.example.com"));
        assert_eq!(host.ip, None);
    }
}
