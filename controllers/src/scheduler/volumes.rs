//! The scheduler's volume rules (kube-scheduler's VolumeBinding plugin, simplified): a pod's
//! claims must exist and not be deleting; an unbound claim of an `Immediate` class keeps the pod
//! Pending; a bound claim's volume limits the pod to the nodes its `nodeAffinity` admits; an
//! unbound `WaitForFirstConsumer` claim gets the chosen node as `volume.kubernetes.io/selected-node`
//! and the pod waits until the claim is bound.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::runtime::watcher::Event as WEvent;
use skiff_meta::names;

use crate::persistentvolume::{self as pv, NO_PROVISIONER};

/// A watched kind kept by key, with its re-list in progress.
pub(super) struct Cache<K> {
    objects: HashMap<String, Arc<K>>,
    relist: Vec<K>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: HashMap::new(),
            relist: Vec::new(),
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

impl<K: ResourceExt> Cache<K> {
    /// Applies a watch event; returns whether the cache changed (a re-list counts once done).
    pub(super) fn apply(&mut self, ev: WEvent<K>) -> bool {
        match ev {
            WEvent::Init => {
                self.relist.clear();
                false
            }
            WEvent::InitApply(o) => {
                self.relist.push(o);
                false
            }
            WEvent::InitDone => {
                self.objects = std::mem::take(&mut self.relist)
                    .into_iter()
                    .map(|o| (key(&o), Arc::new(o)))
                    .collect();
                true
            }
            WEvent::Apply(o) => {
                self.objects.insert(key(&o), Arc::new(o));
                true
            }
            WEvent::Delete(o) => self.objects.remove(&key(&o)).is_some(),
        }
    }

    fn get(&self, key: &str) -> Option<&K> {
        self.objects.get(key).map(Arc::as_ref)
    }
}

/// The claims, volumes and classes the scheduler sees.
#[derive(Default)]
pub(super) struct Volumes {
    pub(super) claims: Cache<PersistentVolumeClaim>,
    pub(super) volumes: Cache<PersistentVolume>,
    pub(super) classes: Cache<StorageClass>,
}

/// An unbound `WaitForFirstConsumer` claim of a pod.
struct Delayed<'a> {
    claim: &'a PersistentVolumeClaim,
    /// Whether its class has a provisioner (else only an existing volume can satisfy it).
    provisioned: bool,
}

/// What a pod's claims ask of a node.
pub(super) struct PodVolumes<'a> {
    all: &'a Volumes,
    bound: Vec<&'a PersistentVolume>,
    delayed: Vec<Delayed<'a>>,
}

/// Why no node fits a claim that would wait for binding there.
pub(super) const NO_VOLUME: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound volume's node affinity excludes the node.
pub(super) const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";

impl Volumes {
    /// The claims of `pod`, or the reason it cannot be scheduled anywhere (kube-scheduler's
    /// VolumeBinding PreFilter wording).
    pub(super) fn for_pod<'a>(&'a self, pod: &Pod) -> Result<PodVolumes<'a>, String> {
        let ns = pod.namespace().unwrap_or_default();
        let mut out = PodVolumes {
            all: self,
            bound: Vec::new(),
            delayed: Vec::new(),
        };
        let mut immediate_unbound = false;
        for name in pv::pod_claims(pod) {
            let Some(claim) = self.claims.get(&format!("{ns}/{name}")) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let volume_name = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("");
            if !volume_name.is_empty() {
                match self.volumes.get(volume_name) {
                    Some(v) => out.bound.push(v),
                    None => {
                        return Err(format!(
                            "pvc {ns}/{name} bound to non-existent pv {volume_name}"
                        ));
                    }
                }
                continue;
            }
            let class = self.classes.get(pv::claim_class(claim));
            if !pv::delays_binding(claim, class) {
                immediate_unbound = true;
                continue;
            }
            let provisioner = class.map(|c| c.provisioner.as_str()).unwrap_or("");
            out.delayed.push(Delayed {
                claim,
                provisioned: !provisioner.is_empty() && provisioner != NO_PROVISIONER,
            });
        }
        if immediate_unbound {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        Ok(out)
    }
}

impl PodVolumes<'_> {
    /// Whether `node` can hold the pod's volumes.
    pub(super) fn fit(&self, node: &Node) -> Result<(), &'static str> {
        if self
            .bound
            .iter()
            .any(|v| !pv::node_affinity_admits(v, node))
        {
            return Err(AFFINITY_CONFLICT);
        }
        let name = node.name_any();
        for d in &self.delayed {
            let selected = d
                .claim
                .annotations()
                .get(names::SELECTED_NODE)
                .map(String::as_str);
            if selected.is_some_and(|s| s != name) {
                return Err(NO_VOLUME);
            }
            if !d.provisioned
                && pv::best_match(
                    self.all.volumes.objects.values().map(Arc::as_ref),
                    d.claim,
                    Some(node),
                )
                .is_none()
            {
                return Err(NO_VOLUME);
            }
        }
        Ok(())
    }

    /// The claims still to be bound once the pod goes to `node`: `(namespace, name, whether it
    /// already names the node)`. Empty when the pod can be bound at once.
    pub(super) fn to_select(&self, node: &str) -> Vec<(String, String, bool)> {
        self.delayed
            .iter()
            .map(|d| {
                let selected = d
                    .claim
                    .annotations()
                    .get(names::SELECTED_NODE)
                    .is_some_and(|s| s == node);
                (
                    d.claim.namespace().unwrap_or_default(),
                    d.claim.name_any(),
                    selected,
                )
            })
            .collect()
    }
}
