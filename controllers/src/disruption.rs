//! Disruption controller: keeps PodDisruptionBudget status (expectedPods, currentHealthy,
//! desiredHealthy, disruptionsAllowed, observedGeneration, DisruptionAllowed condition) so the
//! eviction API and `kubectl drain` can honour budgets.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::informer::Synced;
use crate::{Error, util};

/// Shared state of the disruption controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every PDB.
    pub pdbs: Store<PodDisruptionBudget>,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every ReplicaSet (for the expected pod count of percentage budgets).
    pub replicasets: Store<ReplicaSet>,
}

fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct = i64::from(s.trim_end_matches('%').parse::<i32>().unwrap_or(0));
            ((pct * i64::from(total) + 99) / 100) as i32
        }
    }
}

/// The status a PDB should have: (expected, currentHealthy, desiredHealthy, allowed).
pub fn compute(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    replicasets: &Store<ReplicaSet>,
) -> (i32, i32, i32, i32) {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let matching: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && p.metadata.deletion_timestamp.is_none()
                && !util::pod_terminal(p)
                && util::selector_matches(
                    spec.selector.as_ref(),
                    &p.metadata.labels.clone().unwrap_or_default(),
                )
        })
        .collect();
    let healthy = matching
        .iter()
        .filter(|p| util::pod_ready(p).is_some())
        .count() as i32;
    // Expected: the replicas of the pods' controllers when known, else the pods themselves.
    let mut seen = HashSet::new();
    let mut expected = 0;
    for p in &matching {
        match util::controller_of(&p.metadata) {
            Some(o) if o.kind == "ReplicaSet" => {
                if seen.insert(o.uid.clone()) {
                    let reps = replicasets
                        .state()
                        .iter()
                        .find(|r| r.metadata.uid.as_deref() == Some(o.uid.as_str()))
                        .and_then(|r| r.spec.as_ref().and_then(|s| s.replicas));
                    expected += reps.unwrap_or(1);
                }
            }
            _ => expected += 1,
        }
    }
    let desired = if let Some(min) = &spec.min_available {
        scaled(min, expected)
    } else if let Some(max) = &spec.max_unavailable {
        (expected - scaled(max, expected)).max(0)
    } else {
        expected
    };
    let allowed = (healthy - desired).max(0);
    (expected, healthy, desired, allowed)
}

/// One pass over every PDB.
pub async fn sweep(ctx: &Ctx) -> Result<(), Error> {
    let pods = ctx.pods.state();
    for pdb in ctx.pdbs.state() {
        let (expected, healthy, desired, allowed) = compute(&pdb, &pods, &ctx.replicasets);
        let status = pdb.status.clone().unwrap_or_default();
        let generation = pdb.metadata.generation.unwrap_or(0);
        if status.expected_pods == expected
            && status.current_healthy == healthy
            && status.desired_healthy == desired
            && status.disruptions_allowed == allowed
            && status.observed_generation == Some(generation)
        {
            continue;
        }
        let (cstatus, reason, message) = if allowed > 0 {
            ("True", "SufficientPods", "")
        } else {
            ("False", "InsufficientPods", "")
        };
        let patch = serde_json::json!({"status": {
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": allowed,
            "observedGeneration": generation,
            "conditions": [{"type": "DisruptionAllowed", "status": cstatus, "reason": reason,
                "message": message, "observedGeneration": generation,
                "lastTransitionTime": util::now()}],
        }});
        let api: Api<PodDisruptionBudget> =
            Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
        match api
            .patch_status(
                &pdb.name_any(),
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

/// Runs the disruption controller: a sweep on every change, at least every second.
pub async fn run(ctx: Arc<Ctx>, synced: Vec<Synced>) {
    Synced::all(&synced).await;
    tracing::info!("disruption controller synced");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if let Err(e) = sweep(ctx.as_ref()).await {
            tracing::debug!(error = %e, "disruption sweep");
        }
    }
}
