//! A pod's `persistentVolumeClaim` volumes resolved to directories on this node: claim, then
//! its bound PV, then the PV's `hostPath` or `local` path. A claim not bound yet makes the pod
//! wait (kubelet's `FailedMount`); a volume of another node is refused.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;

use super::provision::affinity_node;

/// Claim name -> the directory of its bound volume on this node.
pub(crate) type ClaimPaths = HashMap<String, PathBuf>;

/// Resolves every claim the pod's volumes name. `Err` is the `FailedMount` message; the pod
/// waits and tries again.
pub(crate) async fn resolve_claims(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
) -> Result<ClaimPaths, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = ClaimPaths::new();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(src) = &v.persistent_volume_claim else {
            continue;
        };
        let name = &src.claim_name;
        if out.contains_key(name) {
            continue;
        }
        let claim = claims
            .get_opt(name)
            .await
            .map_err(|e| format!("reading PersistentVolumeClaim {ns}/{name}: {e}"))?
            .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "error processing PVC {ns}/{name}: PVC is being deleted"
            ));
        }
        let pv_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let Some(pv_name) = pv_name.filter(|_| bound) else {
            return Err(format!(
                "error processing PVC {ns}/{name}: PVC is not bound"
            ));
        };
        let pv = pvs
            .get_opt(&pv_name)
            .await
            .map_err(|e| format!("reading PersistentVolume {pv_name}: {e}"))?
            .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
        out.insert(name.clone(), volume_path(&pv, &claim, node)?);
    }
    Ok(out)
}

/// The directory of a bound volume on `node`.
fn volume_path(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    node: &str,
) -> Result<PathBuf, String> {
    let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
    let spec = pv
        .spec
        .as_ref()
        .ok_or_else(|| format!("PersistentVolume {pv_name} has no spec"))?;
    let claim_uid = claim.metadata.uid.as_deref();
    let ref_uid = spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref());
    if ref_uid.is_some() && ref_uid != claim_uid {
        return Err(format!(
            "PersistentVolume {pv_name} is bound to another claim"
        ));
    }
    if let Some(other) = affinity_node(pv)
        && other != node
    {
        return Err(format!(
            "PersistentVolume {pv_name} is a local volume of node {other}, not of node {node}: \
             volume node affinity conflict"
        ));
    }
    if let Some(h) = &spec.host_path {
        return Ok(PathBuf::from(&h.path));
    }
    if let Some(l) = &spec.local {
        return Ok(PathBuf::from(&l.path));
    }
    Err(format!(
        "PersistentVolume {pv_name}: only hostPath and local volumes can be mounted into wasm \
         pods"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "uid": "u1"}})).unwrap()
    }

    #[test]
    fn a_volume_path_comes_from_hostpath_or_local_on_its_node_only() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv1"},
            "spec": {"hostPath": {"path": "/v/pv1"}, "claimRef": {"uid": "u1"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}
        }))
        .unwrap();
        assert_eq!(volume_path(&pv, &claim(), "a"), Ok(PathBuf::from("/v/pv1")));
        let e = volume_path(&pv, &claim(), "b").expect_err("another node's volume");
        assert!(e.contains("volume node affinity conflict"), "{e}");

        let local: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv2"}, "spec": {"local": {"path": "/mnt/x"}}
        }))
        .unwrap();
        assert_eq!(
            volume_path(&local, &claim(), "b"),
            Ok(PathBuf::from("/mnt/x"))
        );

        let other: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv3"}, "spec": {"hostPath": {"path": "/x"}, "claimRef": {"uid": "u2"}}
        }))
        .unwrap();
        assert!(volume_path(&other, &claim(), "a").is_err());
        let nfs: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv4"}, "spec": {"nfs": {"server": "s", "path": "/"}}
        }))
        .unwrap();
        assert!(
            volume_path(&nfs, &claim(), "a")
                .unwrap_err()
                .contains("only hostPath")
        );
    }
}
