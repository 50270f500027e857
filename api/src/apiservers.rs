//! Which API servers are alive, for the `default/kubernetes` endpoints (kube-apiserver's `lease`
//! endpoint reconciler): every server keeps a record `/skiff.dev/apiservers/IP:PORT` renewed every
//! [`RENEW`]; the Endpoints name every server renewed within [`TTL`], and each server rewrites
//! them when that set changes, so a server that dies leaves them within `TTL + RENEW`. A server
//! that stops cleanly removes its record at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::registry;
use crate::state::AppState;

/// Where the records live: beside the allocation records, under a prefix no kind uses.
const PREFIX: &str = "/skiff.dev/apiservers/";
/// How often a server renews its record and looks at the others'.
pub(crate) const RENEW: Duration = Duration::from_secs(10);
/// How long a record not renewed still counts (kube-apiserver's master lease lasts 15 s).
pub(crate) const TTL: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct Record {
    /// Unix seconds of the last renewal.
    renewed: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The live servers, each with the revision its record was created at (a server registered later
/// has a higher one).
pub(crate) type Live = BTreeMap<SocketAddr, u64>;

/// Renews `me` and returns the live servers (`me` always among them); removes records that
/// expired (each at the revision read, so a renewal meanwhile wins).
pub(crate) async fn renew(state: &AppState, me: SocketAddr) -> Result<Live, ApiError> {
    let record = serde_json::to_vec(&Record { renewed: now() }).expect("a record serializes");
    registry::put_record(state, &format!("{PREFIX}{me}"), record).await?;
    let listed = state
        .store
        .list(skiff_store::ListOptions {
            prefix: PREFIX.to_string(),
            ..Default::default()
        })
        .await?;
    let mut live = Live::new();
    let oldest = now().saturating_sub(TTL.as_secs());
    for kv in listed.items {
        let Some(addr) = kv.key.strip_prefix(PREFIX).and_then(|a| a.parse().ok()) else {
            continue;
        };
        let renewed = serde_json::from_slice::<Record>(&kv.value).map_or(0, |r| r.renewed);
        if renewed >= oldest || addr == me {
            live.insert(addr, kv.create_revision);
        } else {
            registry::delete_record(state, &kv.key, kv.mod_revision).await?;
        }
    }
    live.entry(me).or_insert(u64::MAX);
    Ok(live)
}

/// Removes `me` (a clean stop): the others drop it from the endpoints at their next renewal.
pub(crate) async fn remove(state: &AppState, me: SocketAddr) {
    let key = format!("{PREFIX}{me}");
    if let Ok(Some(kv)) = state.store.get(&key).await {
        let _ = registry::delete_record(state, &key, kv.mod_revision).await;
    }
}

/// Renews `me` every [`RENEW`] and rewrites the `kubernetes` endpoints when the live servers
/// change, until `shutdown`; then removes `me`.
pub(crate) async fn keep(
    state: AppState,
    me: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let user = crate::bootstrap::server_user();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let result = match renew(&state, me).await {
            Ok(live) => crate::bootstrap::kubernetes_endpoints(&state, &user, &live).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "renewing this API server in the kubernetes endpoints");
        }
    }
    remove(&state, me).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    async fn get(state: &AppState, plural: &str, group: &str) -> Value {
        let kind = skiff_kinds::find(group, "v1", plural).unwrap();
        let key = crate::objects::key(kind, Some("default"), "kubernetes");
        let kv = state.store.get(&key).await.unwrap().unwrap();
        crate::objects::from_kv(kind, &kv).unwrap()
    }

    /// Three servers start on one store: the Endpoints name all three (a subset per port), the
    /// slice and the Service's target port the port two of them share (more servers wins over
    /// the newest server's port); one that stopped
    /// renewing is dropped by the next renewal of another, one that stops cleanly at once.
    #[tokio::test]
    async fn the_kubernetes_endpoints_name_the_live_servers() {
        let state = AppState::new(Arc::new(skiff_store::MemoryStore::new()), Vec::new());
        let a: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:6443".parse().unwrap();
        let c: SocketAddr = "127.0.0.3:7443".parse().unwrap();
        for addr in [a, b, c] {
            crate::bootstrap::run(&state, addr).await.unwrap();
        }
        let eps = get(&state, "endpoints", "").await;
        assert_eq!(
            eps["subsets"],
            serde_json::json!([
                {"addresses": [{"ip": "127.0.0.1"}, {"ip": "127.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "127.0.0.3"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
        let slice = get(&state, "endpointslices", "discovery.k8s.io").await;
        assert_eq!(slice["ports"][0]["port"], 6443);
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
        let svc = get(&state, "services", "").await;
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);

        // b stopped renewing long ago; c stops cleanly.
        let old = serde_json::to_vec(&Record { renewed: 1 }).unwrap();
        registry::put_record(&state, &format!("{PREFIX}{b}"), old)
            .await
            .unwrap();
        remove(&state, c).await;
        let live = renew(&state, a).await.unwrap();
        assert_eq!(live.keys().collect::<Vec<_>>(), [&a]);
        crate::bootstrap::kubernetes_endpoints(&state, &crate::bootstrap::server_user(), &live)
            .await
            .unwrap();
        let eps = get(&state, "endpoints", "").await;
        assert_eq!(
            eps["subsets"][0]["addresses"],
            serde_json::json!([{"ip": "127.0.0.1"}])
        );
        assert_eq!(eps["subsets"].as_array().unwrap().len(), 1);
        assert!(
            state
                .store
                .get(&format!("{PREFIX}{b}"))
                .await
                .unwrap()
                .is_none(),
            "the expired record is removed"
        );
    }
}
