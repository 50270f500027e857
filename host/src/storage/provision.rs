//! The local-path provisioner of one node: watches claims and volumes; creates a directory and a
//! pre-bound hostPath PV for a claim of a `skiff.dev/local-path` class placed on this node, and
//! removes the directory, then the PV, when a volume it made is `Released` under `Delete`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Event, EventSource, HostPathVolumeSource, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use skiff_meta::names::{
    BETA_STORAGE_PROVISIONER, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE,
    STORAGE_PROVISIONER,
};
use skiff_meta::quantity::Quantity;
use tokio::sync::watch;

use super::StorageOptions;

/// How often refused claims and released volumes left behind are tried again.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// The node label a local volume's node affinity names.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Why a claim was not provisioned: shown in a `ProvisioningFailed` Warning Event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProvisionError {
    /// The claim asks for something local volumes cannot give.
    #[error("{0}")]
    Unsupported(String),
    /// Not enough room on this node.
    #[error("{0}")]
    NoSpace(String),
    /// Creating the directory failed.
    #[error("creating {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The API server refused a read or the PV.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What the provisioner needs: the API, this node and its options.
struct Provisioner {
    client: kube::Client,
    node: String,
    opts: StorageOptions,
    /// Claim uid -> (namespace, name, the last refusal): retried at each resync; an unchanged
    /// refusal is not reported again.
    failed: HashMap<String, (String, String, String)>,
}

/// Runs the provisioner until `stop`.
pub(crate) async fn run(
    client: kube::Client,
    node: String,
    opts: StorageOptions,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = tokio::fs::create_dir_all(&opts.dir).await {
        tracing::error!(dir = %opts.dir.display(), error = %e, "cannot create the local volume directory; the local-path provisioner is off");
        return;
    }
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut claim_events = watcher::watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut volume_events = watcher::watcher(volumes, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut p = Provisioner {
        client,
        node,
        opts,
        failed: HashMap::new(),
    };
    enum Next {
        Claim(Box<PersistentVolumeClaim>),
        Volume(Box<PersistentVolume>),
        Nothing,
        Resync,
        Stop,
    }
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => Next::Stop,
            _ = resync.tick() => Next::Resync,
            ev = claim_events.next() => match ev {
                None => Next::Stop,
                Some(Ok(claim)) => Next::Claim(Box::new(claim)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching claims");
                    Next::Nothing
                }
            },
            ev = volume_events.next() => match ev {
                None => Next::Stop,
                Some(Ok(WatchEvent::Apply(pv) | WatchEvent::InitApply(pv))) => Next::Volume(Box::new(pv)),
                Some(Ok(_)) => Next::Nothing,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching persistent volumes");
                    Next::Nothing
                }
            },
        };
        match next {
            Next::Claim(claim) => p.claim_changed(&claim).await,
            Next::Volume(pv) => p.volume_changed(&pv).await,
            Next::Nothing => {}
            Next::Resync => p.resync().await,
            Next::Stop => return,
        }
    }
}

/// The PV name of a claim's dynamically provisioned volume, as Kubernetes names it.
pub(crate) fn pv_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The claim's requested storage in bytes.
fn requested_bytes(claim: &PersistentVolumeClaim) -> Result<(u64, K8sQuantity), ProvisionError> {
    let q = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or_else(|| {
            ProvisionError::Unsupported(
                "the claim requests no storage (resources.requests.storage)".into(),
            )
        })?;
    let parsed = Quantity::parse(&q.0).map_err(|e| {
        ProvisionError::Unsupported(format!("invalid storage request {:?}: {e}", q.0))
    })?;
    Ok((u64::try_from(parsed.value_i64()).unwrap_or(0), q.clone()))
}

/// Access modes a local directory can honour: one node at a time.
fn check_access_modes(modes: &[String]) -> Result<(), ProvisionError> {
    if let Some(bad) = modes
        .iter()
        .find(|m| *m != "ReadWriteOnce" && *m != "ReadWriteOncePod")
    {
        return Err(ProvisionError::Unsupported(format!(
            "local-path volumes support only the ReadWriteOnce and ReadWriteOncePod access \
             modes, not {bad}"
        )));
    }
    Ok(())
}

/// Free bytes on the filesystem holding `dir`, for an unprivileged writer.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// True if `pv` is a local-path volume of `node`.
fn is_ours(pv: &PersistentVolume, node: &str) -> bool {
    let by_us = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    by_us && affinity_node(pv).as_deref() == Some(node)
}

/// The node a volume's required node affinity names through `kubernetes.io/hostname`.
pub(crate) fn affinity_node(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == HOSTNAME_LABEL && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

impl Provisioner {
    /// Tries the refused claims again (space may have been freed) and released volumes whose
    /// directory could not be removed.
    async fn resync(&mut self) {
        let failed: Vec<(String, String, String)> = self
            .failed
            .iter()
            .map(|(uid, (ns, name, _))| (uid.clone(), ns.clone(), name.clone()))
            .collect();
        for (uid, ns, name) in failed {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
            match api.get_opt(&name).await {
                Ok(Some(claim)) if claim.metadata.uid.as_deref() == Some(uid.as_str()) => {
                    self.claim_changed(&claim).await
                }
                Ok(_) => {
                    self.failed.remove(&uid);
                }
                Err(e) => tracing::debug!(error = %e, "re-reading a refused claim"),
            }
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        match pvs.list(&ListParams::default()).await {
            Ok(list) => {
                for pv in list.items {
                    self.volume_changed(&pv).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "listing volumes for a resync"),
        }
    }

    async fn claim_changed(&mut self, claim: &PersistentVolumeClaim) {
        let Some(uid) = claim.metadata.uid.clone() else {
            return;
        };
        if !self.wants(claim) {
            self.failed.remove(&uid);
            return;
        }
        match self.provision(claim).await {
            Ok(false) => {}
            Ok(true) => {
                self.failed.remove(&uid);
                self.event(
                    claim,
                    "Normal",
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {}", pv_name(&uid)),
                )
                .await;
            }
            Err(e) => {
                let msg = format!(
                    "failed to provision volume with StorageClass {:?}: {e}",
                    class_of(claim)
                );
                tracing::warn!(claim = %claim_key(claim), error = %msg, "provisioning");
                if self.failed.get(&uid).map(|f| &f.2) != Some(&msg) {
                    self.event(claim, "Warning", "ProvisioningFailed", &msg)
                        .await;
                }
                let ns = claim.metadata.namespace.clone().unwrap_or_default();
                let name = claim.metadata.name.clone().unwrap_or_default();
                self.failed.insert(uid, (ns, name, msg));
            }
        }
    }

    /// True if the claim waits for this node's provisioner: unbound, placed on this node, and
    /// (when the PV controller said so) meant for `skiff.dev/local-path`.
    fn wants(&self, claim: &PersistentVolumeClaim) -> bool {
        if claim.metadata.deletion_timestamp.is_some() {
            return false;
        }
        let bound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty());
        if bound {
            return false;
        }
        let ann = claim.metadata.annotations.as_ref();
        let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        if get(SELECTED_NODE) != Some(self.node.as_str()) {
            return false;
        }
        match get(STORAGE_PROVISIONER).or_else(|| get(BETA_STORAGE_PROVISIONER)) {
            Some(p) => p == LOCAL_PATH_PROVISIONER,
            // Before the PV controller names a provisioner the class decides (`provision`).
            None => true,
        }
    }

    /// Provisions the claim's volume. `Ok(false)`: nothing to do (not our class, or done).
    async fn provision(&self, claim: &PersistentVolumeClaim) -> Result<bool, ProvisionError> {
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let Some(class_name) = class_of(claim) else {
            return Ok(false);
        };
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        let Some(class) = classes.get_opt(&class_name).await? else {
            return Ok(false);
        };
        if class.provisioner != LOCAL_PATH_PROVISIONER {
            return Ok(false);
        }
        let name = pv_name(&uid);
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        if pvs.get_opt(&name).await?.is_some() {
            return Ok(false);
        }
        let spec = claim.spec.clone().unwrap_or_default();
        if spec
            .volume_mode
            .as_deref()
            .is_some_and(|m| m != "Filesystem")
        {
            return Err(ProvisionError::Unsupported(
                "local-path volumes support only volumeMode Filesystem".into(),
            ));
        }
        if spec.data_source.is_some() || spec.data_source_ref.is_some() {
            return Err(ProvisionError::Unsupported(
                "local-path volumes cannot be populated from a data source".into(),
            ));
        }
        let modes = spec.access_modes.clone().unwrap_or_default();
        check_access_modes(&modes)?;
        let (bytes, request) = requested_bytes(claim)?;
        let dir = self.opts.dir.join(&name);
        let free = free_bytes(&self.opts.dir).map_err(|source| ProvisionError::Io {
            path: self.opts.dir.display().to_string(),
            source,
        })?;
        if bytes > free {
            return Err(ProvisionError::NoSpace(format!(
                "requested {} bytes but node {} has only {free} bytes free for local volumes",
                bytes, self.node
            )));
        }
        if let Some(max) = self.opts.max_bytes {
            let used = self.provisioned_bytes(&pvs).await?;
            if used.saturating_add(bytes) > max {
                return Err(ProvisionError::NoSpace(format!(
                    "requested {bytes} bytes but node {} has only {} of its {max} bytes of \
                     local storage (--max-local-storage) left",
                    self.node,
                    max.saturating_sub(used)
                )));
            }
        }
        create_dir(&dir).await?;
        let pv = self.volume(claim, &class, &name, &dir, request, modes);
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                tracing::info!(claim = %claim_key(claim), volume = %name, "provisioned a local volume");
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => {
                remove_dir(&dir).await;
                Err(e.into())
            }
        }
    }

    /// The capacity of every local-path volume of this node.
    async fn provisioned_bytes(&self, pvs: &Api<PersistentVolume>) -> Result<u64, kube::Error> {
        let list = pvs.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|pv| is_ours(pv, &self.node))
            .filter_map(|pv| {
                let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
                u64::try_from(Quantity::parse(&q.0).ok()?.value_i64()).ok()
            })
            .fold(0u64, u64::saturating_add))
    }

    fn volume(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
        name: &str,
        dir: &Path,
        request: K8sQuantity,
        modes: Vec<String>,
    ) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                annotations: Some(BTreeMap::from([(
                    PROVISIONED_BY.to_string(),
                    LOCAL_PATH_PROVISIONER.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(modes),
                capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
                claim_ref: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: claim.metadata.namespace.clone(),
                    name: claim.metadata.name.clone(),
                    uid: claim.metadata.uid.clone(),
                    resource_version: claim.metadata.resource_version.clone(),
                    field_path: None,
                }),
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: HOSTNAME_LABEL.into(),
                                operator: "In".into(),
                                values: Some(vec![self.node.clone()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                persistent_volume_reclaim_policy: Some(
                    class
                        .reclaim_policy
                        .clone()
                        .unwrap_or_else(|| "Delete".into()),
                ),
                storage_class_name: class.metadata.name.clone(),
                mount_options: class.mount_options.clone(),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Deletes a released volume of ours under `Delete`: its directory, then the PV.
    async fn volume_changed(&mut self, pv: &PersistentVolume) {
        if !is_ours(pv, &self.node) || pv.metadata.deletion_timestamp.is_some() {
            return;
        }
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if !released || !delete {
            return;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        let Some(dir) = self.owned_dir(pv) else {
            tracing::warn!(volume = %name, "a released local-path volume outside this node's volume directory is left alone");
            return;
        };
        if !remove_dir(&dir).await {
            // The PV stays, so that the directory is not forgotten; tried again on its next
            // change and at each resync.
            return;
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        match pvs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, "deleted a released local volume"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(volume = %name, error = %e, "deleting a released volume"),
        }
    }

    /// The volume's directory, if it is one this provisioner made (`<dir>/<pv name>`).
    fn owned_dir(&self, pv: &PersistentVolume) -> Option<PathBuf> {
        let name = pv.metadata.name.as_deref()?;
        let path = PathBuf::from(&pv.spec.as_ref()?.host_path.as_ref()?.path);
        let expected = self.opts.dir.join(name);
        (path == expected && !name.contains('/') && name != ".." && name != ".").then_some(expected)
    }

    /// Writes an Event about a claim, from the provisioner.
    async fn event(&self, claim: &PersistentVolumeClaim, type_: &str, reason: &str, message: &str) {
        let ns = claim
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let now = Time(jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{claim_name}.{:x}",
                    jiff::Timestamp::now().as_nanosecond() as u128
                        ^ u128::from(rand::random::<u16>())
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: Some(claim_name),
                namespace: Some(ns.clone()),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(LOCAL_PATH_PROVISIONER.into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some(LOCAL_PATH_PROVISIONER.into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(error = %e, reason, "recording a claim event failed");
        }
    }
}

fn class_of(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty())
}

fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Creates a volume directory writable by every guest, as local-path-provisioner does.
async fn create_dir(dir: &Path) -> Result<(), ProvisionError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| ProvisionError::Io {
        path: dir.display().to_string(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .await
        .map_err(io)
}

/// Removes a volume directory; false (logged) if it could not be removed.
async fn remove_dir(dir: &Path) -> bool {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "removing a local volume directory");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_node_access_modes_are_provisioned() {
        assert!(check_access_modes(&["ReadWriteOnce".into()]).is_ok());
        assert!(check_access_modes(&["ReadWriteOncePod".into()]).is_ok());
        let e = check_access_modes(&["ReadWriteOnce".into(), "ReadWriteMany".into()])
            .expect_err("RWX refused");
        assert!(e.to_string().contains("not ReadWriteMany"), "{e}");
        assert!(check_access_modes(&["ReadOnlyMany".into()]).is_err());
    }

    #[test]
    fn the_free_space_of_a_directory_is_measured() {
        let free = free_bytes(&std::env::temp_dir()).expect("statvfs");
        assert!(free > 0);
        assert!(free_bytes(Path::new("/nonexistent/skiff/dir")).is_err());
    }
}
