//! StatefulSet controller: pods `NAME-0..N-1` with stable names and hostnames, created in order
//! (OrderedReady) or all at once (Parallel), PVCs from volumeClaimTemplates (`CLAIM-NAME-i`),
//! scale-down from the highest ordinal, and rolling update by descending ordinal.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::replicaset::owned_pods;
use crate::{Error, util};

/// Label carrying the template hash on StatefulSet pods.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// Label carrying the pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// Shared state of the StatefulSet controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
}

fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(&format!("{set}-"))
        .and_then(|s| s.parse().ok())
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let hash = util::template_hash(&serde_json::to_value(&spec.template).unwrap_or_default());
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let all = owned_pods(&ctx.pods, &ns, &uid);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; replicas as usize];
    let mut extra: Vec<Arc<Pod>> = Vec::new();
    let mut terminating = false;
    for p in &all {
        if p.metadata.deletion_timestamp.is_some() {
            terminating = true;
            continue;
        }
        match ordinal(&name, p) {
            Some(i) if (0..replicas).contains(&i) => slots[i as usize] = Some(p.clone()),
            _ => extra.push(p.clone()),
        }
    }
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let ready = |p: &Pod| util::pod_ready(p).is_some();
    let mut acted = false;
    // Create missing ordinals: in order, each waiting for its predecessors to be Ready.
    for (i, slot) in slots.iter().enumerate() {
        if let Some(p) = slot {
            if !parallel && !ready(p) {
                break;
            }
            continue;
        }
        if !parallel && terminating {
            break;
        }
        let pod_name = format!("{name}-{i}");
        for t in spec.volume_claim_templates.iter().flatten() {
            let claim = format!("{}-{pod_name}", t.name_any());
            let mut pvc = t.clone();
            pvc.metadata.name = Some(claim.clone());
            pvc.metadata.namespace = Some(ns.clone());
            let mut labels = spec.selector.match_labels.clone().unwrap_or_default();
            labels.extend(t.metadata.labels.clone().unwrap_or_default());
            pvc.metadata.labels = Some(labels);
            pvc.status = None;
            match pvc_api.create(&PostParams::default(), &pvc).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut pod = util::pod_from_template(
            &spec.template,
            &ns,
            util::controller_ref(sts.as_ref()),
            None,
            Some(pod_name.clone()),
        );
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(HASH_LABEL.into(), hash.clone());
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
        if let Some(ps) = pod.spec.as_mut() {
            ps.hostname = Some(pod_name.clone());
            ps.subdomain =
                Some(spec.service_name.clone().unwrap_or_default()).filter(|s| !s.is_empty());
            for t in spec.volume_claim_templates.iter().flatten() {
                let vols = ps.volumes.get_or_insert_with(Vec::new);
                vols.retain(|v| v.name != t.name_any());
                vols.push(Volume {
                    name: t.name_any(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: format!("{}-{pod_name}", t.name_any()),
                        read_only: None,
                    }),
                    ..Default::default()
                });
            }
        }
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        acted = true;
        if !parallel {
            break;
        }
    }
    // Scale down from the highest ordinal, one at a time unless Parallel.
    if !acted {
        extra.sort_by_key(|p| std::cmp::Reverse(ordinal(&name, p).unwrap_or(i32::MAX)));
        for p in extra.iter().take(if parallel { usize::MAX } else { 1 }) {
            let _ = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await;
            acted = true;
        }
    }
    // Rolling update: replace the highest outdated ordinal once every pod is Ready.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    if !acted
        && rolling
        && !terminating
        && slots.iter().all(|s| s.as_ref().is_some_and(|p| ready(p)))
    {
        for i in (partition.max(0) as usize..slots.len()).rev() {
            if let Some(p) = &slots[i]
                && p.labels().get(HASH_LABEL) != Some(&hash)
            {
                let _ = pods_api
                    .delete(&p.name_any(), &DeleteParams::default())
                    .await;
                break;
            }
        }
    }
    let live: Vec<&Arc<Pod>> = slots.iter().flatten().collect();
    let status = serde_json::json!({
        "observedGeneration": sts.metadata.generation.unwrap_or(0),
        "replicas": live.len(),
        "readyReplicas": live.iter().filter(|p| ready(p)).count(),
        "availableReplicas": live.iter().filter(|p| util::pod_available(p, min_ready, now)).count(),
        "currentReplicas": live.iter().filter(|p| p.labels().get(HASH_LABEL) == Some(&hash)).count(),
        "updatedReplicas": live.iter().filter(|p| p.labels().get(HASH_LABEL) == Some(&hash)).count(),
        "currentRevision": format!("{name}-{hash}"),
        "updateRevision": format!("{name}-{hash}"),
    });
    let old = serde_json::to_value(sts.status.clone().unwrap_or_default()).unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    util::patch_status_if_changed(&api, &name, old, status).await?;
    Ok(Action::requeue(Duration::from_secs(if acted {
        1
    } else {
        300
    })))
}

/// Runs the StatefulSet controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    sets: (
        impl futures::Stream<Item = Result<StatefulSet, kube::runtime::watcher::Error>> + Send + 'static,
        Store<StatefulSet>,
    ),
    pods: impl futures::Stream<Item = Result<Pod, kube::runtime::watcher::Error>> + Send + 'static,
) {
    let controller = Controller::for_stream(sets.0, sets.1).owns_stream(pods);
    crate::runner::run("statefulset", controller, reconcile, ctx).await;
}
