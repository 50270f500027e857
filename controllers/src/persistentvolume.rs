//! The PersistentVolume controller (kube-controller-manager's `persistentvolume-binder`): binds
//! claims to matching volumes, keeps both phases, releases a volume whose claim is gone and runs
//! its reclaim policy, marks a claim whose volume vanished `Lost`; and the `pvc-protection` and
//! `pv-protection` finalizers.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::Stream;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_meta::names;
use skiff_meta::quantity::Quantity;

use crate::{Error, util};

/// `volumeBindingMode` that delays binding until a pod using the claim is scheduled.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
/// The provisioner name of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
const YES: &str = "yes";

/// Shared state of the binder.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every claim.
    pub claims: Store<PersistentVolumeClaim>,
    /// Every volume.
    pub volumes: Store<PersistentVolume>,
    /// Every StorageClass.
    pub classes: Store<StorageClass>,
    /// Every node (for a volume's node affinity against a claim's selected node).
    pub nodes: Store<Node>,
    /// Events as `persistentvolume-controller`.
    pub recorder: Recorder,
    /// Claims (uid and reason) already told why they wait, so the Event is not repeated.
    pub told: Mutex<HashSet<(String, &'static str)>>,
}

impl Ctx {
    /// A binder context over the given stores.
    pub fn new(
        client: Client,
        claims: Store<PersistentVolumeClaim>,
        volumes: Store<PersistentVolume>,
        classes: Store<StorageClass>,
        nodes: Store<Node>,
    ) -> Ctx {
        Ctx {
            recorder: Recorder::new(client.clone(), "persistentvolume-controller".into()),
            client,
            claims,
            volumes,
            classes,
            nodes,
            told: Mutex::new(HashSet::new()),
        }
    }
}

/// The class a claim asks for (`""` is "no class").
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The class of a volume (`""` is "no class").
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether binding of `claim` waits for a consumer: its class exists with
/// `volumeBindingMode: WaitForFirstConsumer` (no class, or a missing one, binds at once, as
/// Kubernetes' `IsDelayBindingMode`).
pub fn delays_binding(claim: &PersistentVolumeClaim, class: Option<&StorageClass>) -> bool {
    !claim_class(claim).is_empty()
        && class.and_then(|c| c.volume_binding_mode.as_deref()) == Some(WAIT_FOR_FIRST_CONSUMER)
}

fn storage(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<Quantity> {
    map.and_then(|m| m.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

/// A volume's `spec.capacity.storage`.
pub fn volume_capacity(pv: &PersistentVolume) -> Option<Quantity> {
    storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn claim_request(claim: &PersistentVolumeClaim) -> Quantity {
    storage(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
    .unwrap_or(Quantity::from_value(0))
}

/// Whether a volume's `nodeAffinity` (if any) admits `node`.
pub fn node_affinity_admits(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.name_any();
    required
        .node_selector_terms
        .iter()
        .any(|t| crate::scheduler::term_matches(t, labels, &name))
}

/// Whether `pv`'s claimRef names `claim` (a uid, when set, must be the claim's).
pub fn bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Whether `pv` satisfies what `claim` asks: class, volume mode, access modes (a superset),
/// capacity, selector and, for a claim with a selected node, the volume's node affinity.
pub fn satisfies(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> bool {
    let (Some(ps), Some(cs)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    if volume_class(pv) != claim_class(claim) {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(ps.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let have = ps.access_modes.as_deref().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| have.contains(m)) {
        return false;
    }
    if volume_capacity(pv).is_none_or(|c| c < claim_request(claim)) {
        return false;
    }
    if let Some(sel) = &cs.selector {
        let empty = BTreeMap::new();
        if !util::selector_matches(Some(sel), pv.metadata.labels.as_ref().unwrap_or(&empty)) {
            return false;
        }
    }
    node.is_none_or(|n| node_affinity_admits(pv, n))
}

/// The volume `claim` should bind to: one pre-bound to it if it satisfies the claim, else the
/// smallest available volume that does (Kubernetes' `findMatchingVolume`).
pub fn best_match<'a>(
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    claim: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || !satisfies(pv, claim, node) {
            continue;
        }
        let pre_bound = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if pre_bound {
            if bound_to(pv, claim) {
                return Some(pv);
            }
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Released" | "Failed")) {
            continue;
        }
        let cap = volume_capacity(pv).unwrap_or(Quantity::from_value(0));
        if best.as_ref().is_none_or(|(_, b)| cap < *b) {
            best = Some((pv, cap));
        }
    }
    best.map(|(pv, _)| pv)
}

fn annotation<'a, K: Resource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing an event");
    }
}

/// Publishes once per claim and reason.
async fn tell_once(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    type_: EventType,
    reason: &'static str,
    note: String,
) {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let first = ctx
        .told
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((uid, reason));
    if first {
        publish(ctx, claim, type_, reason, note).await;
    }
}

async fn claim_status(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    status: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let old = serde_json::to_value(claim.status.clone().unwrap_or_default()).unwrap_or_default();
    util::patch_status_if_changed(&api, &claim.name_any(), old, status).await?;
    Ok(())
}

async fn volume_status(
    ctx: &Ctx,
    pv: &PersistentVolume,
    status: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let old = serde_json::to_value(pv.status.clone().unwrap_or_default()).unwrap_or_default();
    util::patch_status_if_changed(&api, &pv.name_any(), old, status).await?;
    Ok(())
}

/// Binds `pv` and `claim` both ways (volume first, as Kubernetes), then their phases.
async fn bind(
    ctx: &Ctx,
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut pv = pv.clone();
    let claim_ref = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..Default::default()
    };
    let spec = pv.spec.get_or_insert_with(Default::default);
    let had_ref = spec
        .claim_ref
        .as_ref()
        .is_some_and(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty()));
    if !had_ref {
        if spec.claim_ref.is_none() {
            pv.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(names::BOUND_BY_CONTROLLER.into(), YES.into());
        }
        pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref);
        pv.status = None;
        pv = pvs
            .replace(&pv.name_any(), &PostParams::default(), &pv)
            .await?;
    }
    let capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
    let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
    volume_status(ctx, &pv, json!({"phase": "Bound"})).await?;
    let ns = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let mut c = claim.clone();
    let volume_name = c.spec.as_ref().and_then(|s| s.volume_name.clone());
    let completed = annotation(&c, names::BIND_COMPLETED) == Some(YES);
    if volume_name.as_deref() != Some(pv.name_any().as_str()) || !completed {
        let annotations = c.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(names::BIND_COMPLETED.into(), YES.into());
        if volume_name.as_deref().is_none_or(str::is_empty) {
            annotations.insert(names::BOUND_BY_CONTROLLER.into(), YES.into());
        }
        c.spec.get_or_insert_with(Default::default).volume_name = Some(pv.name_any());
        c.status = None;
        c = claims
            .replace(&c.name_any(), &PostParams::default(), &c)
            .await?;
    }
    // A bound claim is told nothing more: forget what it was told while waiting.
    let uid = c.metadata.uid.clone().unwrap_or_default();
    ctx.told
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(u, _)| *u != uid);
    claim_status(
        ctx,
        &c,
        json!({"phase": "Bound", "capacity": capacity, "accessModes": modes}),
    )
    .await
}

async fn volume_gone(ctx: &Ctx, name: &str) -> Result<bool, Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    Ok(pvs.get_opt(name).await?.is_none())
}

async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    if let Some(name) = volume_name {
        let pv = ctx.volumes.get(&ObjectRef::new(&name));
        let completed = annotation(claim.as_ref(), names::BIND_COMPLETED) == Some(YES);
        return match pv {
            None if volume_gone(&ctx, &name).await? => {
                if completed {
                    lost(
                        &ctx,
                        &claim,
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                    )
                    .await?;
                } else {
                    claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
                }
                Ok(Action::await_change())
            }
            // The store has not seen it yet: its arrival reconciles this claim.
            None => Ok(Action::await_change()),
            Some(pv) => {
                let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                if claim_ref.is_none() || bound_to(&pv, &claim) {
                    if claim_ref.is_none() && !satisfies(&pv, &claim, None) {
                        claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
                        tell_once(
                            &ctx,
                            claim.as_ref(),
                            EventType::Warning,
                            "VolumeMismatch",
                            format!("Cannot bind to requested volume \"{name}\": it does not satisfy the claim"),
                        )
                        .await;
                        return Ok(Action::await_change());
                    }
                    bind(&ctx, &pv, &claim).await?;
                } else if completed {
                    lost(
                        &ctx,
                        &claim,
                        "Two claims are bound to the same volume, this one is bound incorrectly",
                    )
                    .await?;
                } else {
                    claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
                }
                Ok(Action::await_change())
            }
        };
    }
    let class_name = claim_class(&claim).to_string();
    let class = (!class_name.is_empty())
        .then(|| ctx.classes.get(&ObjectRef::new(&class_name)))
        .flatten();
    let delayed = delays_binding(&claim, class.as_deref());
    let selected = annotation(claim.as_ref(), names::SELECTED_NODE).map(str::to_string);
    if delayed && selected.is_none() {
        claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
        tell_once(
            &ctx,
            &claim,
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let node = match (&selected, delayed) {
        (Some(n), true) => ctx.nodes.get(&ObjectRef::new(n)),
        _ => None,
    };
    if delayed && node.is_none() {
        // The selected node is not (yet) known: its volume's affinity cannot be checked.
        // (The node's arrival reconciles the claims naming it.)
        claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
        return Ok(Action::await_change());
    }
    let volumes = ctx.volumes.state();
    if let Some(pv) = best_match(volumes.iter().map(|v| v.as_ref()), &claim, node.as_deref()) {
        bind(&ctx, pv, &claim).await?;
        return Ok(Action::await_change());
    }
    claim_status(&ctx, &claim, json!({"phase": "Pending"})).await?;
    let provisioner = class
        .as_ref()
        .map(|c| c.provisioner.clone())
        .filter(|p| !p.is_empty() && p != NO_PROVISIONER);
    match provisioner {
        Some(p) => {
            if annotation(claim.as_ref(), names::STORAGE_PROVISIONER) != Some(p.as_str()) {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
                let patch = json!({"metadata": {
                    "resourceVersion": claim.metadata.resource_version,
                    "annotations": {
                        names::STORAGE_PROVISIONER: p,
                        names::BETA_STORAGE_PROVISIONER: p,
                    },
                }});
                api.patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await?;
            }
            tell_once(&ctx, &claim, EventType::Normal, "ExternalProvisioning",
                format!("Waiting for a volume to be created either by the external provisioner '{p}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.")).await;
        }
        None if !class_name.is_empty() && class.is_none() => {
            tell_once(
                &ctx,
                &claim,
                EventType::Warning,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            )
            .await;
        }
        None => {
            tell_once(
                &ctx,
                &claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

async fn lost(ctx: &Ctx, claim: &PersistentVolumeClaim, why: &str) -> Result<(), Error> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
        publish(ctx, claim, EventType::Warning, "ClaimLost", why.into()).await;
    }
    claim_status(ctx, claim, json!({"phase": "Lost"})).await
}

/// The claim a volume's claimRef names, from the store or (if the store lacks it) the API.
async fn claim_of(
    ctx: &Ctx,
    pv: &PersistentVolume,
) -> Result<Option<Arc<PersistentVolumeClaim>>, Error> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Ok(None);
    };
    let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) else {
        return Ok(None);
    };
    if let Some(c) = ctx.claims.get(&ObjectRef::new(name).within(ns)) {
        return Ok(Some(c));
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone());
    let Some(r) = claim_ref else {
        if pv.metadata.deletion_timestamp.is_none() {
            volume_status(&ctx, &pv, json!({"phase": "Available"})).await?;
        }
        return Ok(Action::await_change());
    };
    let uid = r.uid.clone().filter(|u| !u.is_empty());
    let claim = claim_of(&ctx, &pv).await?;
    let Some(uid) = uid else {
        // Pre-bound by the user to a claim not yet bound: available to that claim only.
        volume_status(&ctx, &pv, json!({"phase": "Available"})).await?;
        return Ok(Action::await_change());
    };
    match claim {
        Some(c) if c.metadata.uid.as_deref() == Some(uid.as_str()) => {
            let vn = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("");
            if vn.is_empty() || vn == pv.name_any() {
                // Bound, or binding in progress (the claim's reconcile finishes it).
                if vn == pv.name_any() {
                    volume_status(&ctx, &pv, json!({"phase": "Bound"})).await?;
                }
            } else if annotation(pv.as_ref(), names::BOUND_BY_CONTROLLER) == Some(YES) {
                // The claim went to another volume: give this one back.
                let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
                let mut v = pv.as_ref().clone();
                if let Some(s) = v.spec.as_mut() {
                    s.claim_ref = None;
                }
                v.status = None;
                pvs.replace(&v.name_any(), &PostParams::default(), &v)
                    .await?;
            }
            Ok(Action::await_change())
        }
        _ => release(&ctx, &pv).await,
    }
}

/// The claim of a bound volume is gone: `Released`, then the reclaim policy.
async fn release(ctx: &Ctx, pv: &PersistentVolume) -> Result<Action, Error> {
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Failed") {
        return Ok(Action::await_change());
    }
    if phase != Some("Released") {
        volume_status(ctx, pv, json!({"phase": "Released"})).await?;
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete" => {
            if annotation(pv, names::PROVISIONED_BY).is_some_and(|p| !p.is_empty()) {
                // Its provisioner removes the data, then the volume (as an external provisioner).
                return Ok(Action::await_change());
            }
            let message = format!(
                "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                pv.name_any()
            );
            publish(
                ctx,
                pv,
                EventType::Warning,
                "VolumeFailedDelete",
                message.clone(),
            )
            .await;
            volume_status(ctx, pv, json!({"phase": "Failed", "message": message})).await?;
        }
        "Recycle" => {
            let message = "recycling volumes is not supported".to_string();
            publish(
                ctx,
                pv,
                EventType::Warning,
                "VolumeFailedRecycle",
                message.clone(),
            )
            .await;
            volume_status(ctx, pv, json!({"phase": "Failed", "message": message})).await?;
        }
        _ => {}
    }
    Ok(Action::await_change())
}

type WatchStream<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The streams the binder runs on.
pub struct Streams {
    /// Claims (the main stream and store).
    pub claims: (
        WatchStream<PersistentVolumeClaim>,
        Store<PersistentVolumeClaim>,
    ),
    /// Claims again, to reconcile the volumes they name.
    pub claims_for_volumes: WatchStream<PersistentVolumeClaim>,
    /// Volumes (the main stream and store).
    pub volumes: (WatchStream<PersistentVolume>, Store<PersistentVolume>),
    /// Volumes again, to reconcile the claims they name.
    pub volumes_for_claims: WatchStream<PersistentVolume>,
    /// Nodes, to reconcile the claims that selected them.
    pub nodes_for_claims: WatchStream<Node>,
}

/// Runs the binder (claims and volumes) until the streams end.
pub async fn run(ctx: Arc<Ctx>, s: Streams) {
    // A volume's claim, or, for a volume free to bind, every claim still waiting for one (or
    // naming it).
    let waiting = s.claims.1.clone();
    let selecting = waiting.clone();
    let claims = Controller::for_stream(s.claims.0, s.claims.1).watches_stream(
        s.volumes_for_claims,
        move |pv: PersistentVolume| match pv.spec.and_then(|s| s.claim_ref) {
            Some(r) => match (r.name, r.namespace) {
                (Some(name), Some(ns)) => vec![ObjectRef::new(&name).within(&ns)],
                _ => Vec::new(),
            },
            None => waiting
                .state()
                .iter()
                .filter(|c| {
                    let wanted = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                    wanted.is_none_or(|v| v.is_empty() || Some(v) == pv.metadata.name.as_deref())
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect(),
        },
    );
    let claims = claims.watches_stream(s.nodes_for_claims, move |n: Node| {
        let name = n.name_any();
        selecting
            .state()
            .iter()
            .filter(|c| annotation(c.as_ref(), names::SELECTED_NODE) == Some(name.as_str()))
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect::<Vec<_>>()
    });
    let volumes = Controller::for_stream(s.volumes.0, s.volumes.1).watches_stream(
        s.claims_for_volumes,
        |c: PersistentVolumeClaim| {
            c.spec
                .and_then(|s| s.volume_name)
                .filter(|v| !v.is_empty())
                .map(|v| ObjectRef::new(&v))
        },
    );
    tokio::join!(
        crate::runner::run(
            "persistentvolume-binder",
            claims,
            reconcile_claim,
            ctx.clone()
        ),
        crate::runner::run("persistentvolume-binder", volumes, reconcile_volume, ctx),
    );
}

/// Shared state of the protection controllers.
pub struct ProtectionCtx {
    /// API client.
    pub client: Client,
    /// Every pod (claims in use).
    pub pods: Store<Pod>,
}

/// The claims a pod's volumes name.
pub fn pod_claims(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn finalizers_patch<K: Resource>(
    obj: &K,
    finalizer: &str,
    present: bool,
) -> Option<serde_json::Value> {
    let mut list = obj.meta().finalizers.clone().unwrap_or_default();
    let has = list.iter().any(|f| f == finalizer);
    if has == present {
        return None;
    }
    if present {
        list.push(finalizer.into());
    } else {
        list.retain(|f| f != finalizer);
    }
    Some(json!({"metadata": {
        "resourceVersion": obj.meta().resource_version,
        "finalizers": list,
    }}))
}

async fn set_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    present: bool,
) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(patch) = finalizers_patch(obj, finalizer, present) {
        match api
            .patch(
                &obj.meta().name.clone().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn reconcile_claim_protection(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<ProtectionCtx>,
) -> Result<Action, Error> {
    let ns = claim.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    if claim.metadata.deletion_timestamp.is_none() {
        set_finalizer(&api, claim.as_ref(), names::PVC_PROTECTION, true).await?;
        return Ok(Action::await_change());
    }
    let name = claim.name_any();
    let in_use = ctx.pods.state().iter().any(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && !util::pod_terminal(p)
            && pod_claims(p).any(|c| c == name)
    });
    // The store may not show a pod created a moment ago: ask the API before letting go, as
    // Kubernetes' controller does.
    let in_use = in_use || {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let live = pods.list(&kube::api::ListParams::default()).await?;
        live.items
            .iter()
            .any(|p| !util::pod_terminal(p) && pod_claims(p).any(|c| c == name))
    };
    if !in_use {
        set_finalizer(&api, claim.as_ref(), names::PVC_PROTECTION, false).await?;
    }
    Ok(Action::await_change())
}

async fn reconcile_volume_protection(
    pv: Arc<PersistentVolume>,
    ctx: Arc<ProtectionCtx>,
) -> Result<Action, Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if pv.metadata.deletion_timestamp.is_none() {
        set_finalizer(&api, pv.as_ref(), names::PV_PROTECTION, true).await?;
    } else if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        set_finalizer(&api, pv.as_ref(), names::PV_PROTECTION, false).await?;
    }
    Ok(Action::await_change())
}

/// Runs `pvc-protection` until the streams end: every claim gets the finalizer, which a claim
/// being deleted loses once no non-terminal pod uses it.
pub async fn run_claim_protection(
    ctx: Arc<ProtectionCtx>,
    claims: (
        WatchStream<PersistentVolumeClaim>,
        Store<PersistentVolumeClaim>,
    ),
    pods: WatchStream<Pod>,
) {
    let controller = Controller::for_stream(claims.0, claims.1).watches_stream(pods, |p: Pod| {
        let ns = p.namespace().unwrap_or_default();
        pod_claims(&p)
            .map(|c| ObjectRef::new(c).within(&ns))
            .collect::<Vec<_>>()
    });
    crate::runner::run(
        "pvc-protection",
        controller,
        reconcile_claim_protection,
        ctx,
    )
    .await;
}

/// Runs `pv-protection` until the stream ends: every volume gets the finalizer, which a volume
/// being deleted loses once it is not `Bound`.
pub async fn run_volume_protection(
    ctx: Arc<ProtectionCtx>,
    volumes: (WatchStream<PersistentVolume>, Store<PersistentVolume>),
) {
    let controller = Controller::for_stream(volumes.0, volumes.1);
    crate::runner::run(
        "pv-protection",
        controller,
        reconcile_volume_protection,
        ctx,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, size: &str, modes: &[&str], labels: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": "c", "hostPath": {"path": "/x"}},
        }))
        .unwrap()
    }

    fn claim(
        size: &str,
        modes: &[&str],
        selector: Option<serde_json::Value>,
    ) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": modes, "storageClassName": "c", "selector": selector,
                     "resources": {"requests": {"storage": size}}},
        }))
        .unwrap()
    }

    fn names(found: Option<&PersistentVolume>) -> Option<String> {
        found.map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_volume_that_satisfies_the_claim_wins() {
        let vols = [
            pv("big", "10Gi", &["ReadWriteOnce"], json!({})),
            pv("tiny", "500Mi", &["ReadWriteOnce"], json!({})),
            pv("mid", "2Gi", &["ReadWriteOnce", "ReadOnlyMany"], json!({})),
            pv("rox", "1Gi", &["ReadOnlyMany"], json!({})),
        ];
        let c = claim("1Gi", &["ReadWriteOnce"], None);
        assert_eq!(names(best_match(&vols, &c, None)).as_deref(), Some("mid"));
        // Access modes must be a superset.
        let c = claim("1Gi", &["ReadWriteOnce", "ReadOnlyMany"], None);
        assert_eq!(names(best_match(&vols, &c, None)).as_deref(), Some("mid"));
        let c = claim("1Gi", &["ReadWriteMany"], None);
        assert_eq!(names(best_match(&vols, &c, None)), None);
        // Too big for all.
        let c = claim("20Gi", &["ReadWriteOnce"], None);
        assert_eq!(names(best_match(&vols, &c, None)), None);
    }

    #[test]
    fn selector_class_and_pre_binding_limit_the_choice() {
        let mut reserved = pv("reserved", "5Gi", &["ReadWriteOnce"], json!({}));
        reserved.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("data".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
        let mut other = pv("other", "1Gi", &["ReadWriteOnce"], json!({"tier": "gold"}));
        other.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("someone".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
        let mut classless = pv(
            "classless",
            "1Gi",
            &["ReadWriteOnce"],
            json!({"tier": "gold"}),
        );
        classless.spec.as_mut().unwrap().storage_class_name = None;
        let gold = pv("gold", "3Gi", &["ReadWriteOnce"], json!({"tier": "gold"}));
        let vols = [reserved, other, classless, gold];
        let c = claim("1Gi", &["ReadWriteOnce"], None);
        assert_eq!(
            names(best_match(&vols, &c, None)).as_deref(),
            Some("reserved")
        );
        let c = claim(
            "1Gi",
            &["ReadWriteOnce"],
            Some(json!({"matchLabels": {"tier": "gold"}})),
        );
        assert_eq!(
            names(best_match(&vols[1..], &c, None)).as_deref(),
            Some("gold")
        );
    }

    #[test]
    fn node_affinity_is_checked_against_the_selected_node() {
        let mut local = pv("local", "1Gi", &["ReadWriteOnce"], json!({}));
        local.spec.as_mut().unwrap().node_affinity = Some(
            serde_json::from_value(json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                       "values": ["node-a"]}]},
            ]}}))
            .unwrap(),
        );
        let node = |n: &str| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
            )
            .unwrap()
        };
        let c = claim("1Gi", &["ReadWriteOnce"], None);
        let vols = [local];
        assert!(best_match(&vols, &c, Some(&node("node-a"))).is_some());
        assert!(best_match(&vols, &c, Some(&node("node-b"))).is_none());
        assert!(node_affinity_admits(&vols[0], &node("node-a")));
        assert!(!node_affinity_admits(&vols[0], &node("node-b")));
    }
}
