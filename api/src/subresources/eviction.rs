//! `pods/eviction`: a delete that PodDisruptionBudgets may refuse; an allowed eviction takes one
//! disruption from the budget that selects the pod.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::body::{content_type, decode_object};
use crate::error::{ApiError, StatusReason};
use crate::objects::{self, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;
use crate::resource::{load, name_of};
use crate::respond::json_response;
use crate::selectors::LabelSelector;
use crate::state::AppState;
use crate::verbs;

/// `pods/eviction`: deletes the pod with the eviction's options. Disruption budgets are checked
/// by the disruption controller's data once it exists; until then every eviction is allowed.
pub(crate) async fn evict(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let eviction = decode_object(&req.body, &content_type(&req.headers))?;
    let name = name_of(req).to_string();
    if let Some(n) = meta_str(&eviction, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {n} != {name}"
        )));
    }
    let mut opts = verbs::delete::DeleteOptions {
        dry_run: req.query.dry_run()?,
        ..Default::default()
    };
    if let Some(d) = eviction.get("deleteOptions") {
        opts.grace_period_seconds = d.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_rv = d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if d.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"))
        {
            opts.dry_run = true;
        }
    }
    check_eviction(state, req, &name).await?;
    verbs::delete::delete_object(state, req, &name, &opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &objects::status_success(201),
    ))
}

/// Checks the budgets that select the pod and takes one disruption from the matching one, as the
/// Kubernetes eviction subresource does. A budget its controller has not processed yet refuses.
pub(crate) async fn check_eviction(
    state: &AppState,
    req: &ResourceRequest,
    name: &str,
) -> Result<(), ApiError> {
    let (pod, _) = load(state, req).await?;
    if objects::is_deleting(&pod)
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
    {
        return Ok(());
    }
    let Some(pdb_kind) = skiff_kinds::find("policy", "v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    let Some(ns) = req.namespace.as_deref() else {
        return Ok(());
    };
    let listed = state
        .store
        .list(skiff_store::ListOptions {
            prefix: objects::collection_prefix(pdb_kind, Some(ns)),
            ..Default::default()
        })
        .await?;
    let mut matching = Vec::new();
    for kv in &listed.items {
        let pdb = objects::from_kv(pdb_kind, kv)?;
        if selects(&pdb, &pod) {
            matching.push(meta_str(&pdb, "name").unwrap_or_default().to_string());
        }
    }
    let pdb_name = match matching.len() {
        0 => return Ok(()),
        1 => matching.remove(0),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let write = Write {
        kind: pdb_kind,
        namespace: Some(ns),
        name: &pdb_name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
        subresource: Some("eviction"),
    };
    // Take one disruption from the budget, re-checked against it as it is at each attempt.
    registry::guaranteed_update(state, &write, |current| {
        let Some((pdb, _)) = current.filter(|(pdb, _)| selects(pdb, &pod)) else {
            // The budget went away or no longer selects the pod.
            return Ok(Change::Keep(Value::Null));
        };
        let generation = objects::meta(pdb)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let observed = pdb
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let too_many = |msg: String| {
            // As Kubernetes: no Retry-After, so clients (kubectl drain) retry on their own
            // schedule rather than client-go silently re-sending for up to ten rounds.
            ApiError::new(429, StatusReason::TooManyRequests, msg).with_details(
                "policy",
                "poddisruptionbudgets",
                &pdb_name,
            )
        };
        if observed < generation {
            return Err(too_many(format!(
                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        let allowed = pdb
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if allowed <= 0 {
            let healthy = pdb
                .pointer("/status/currentHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let desired = pdb
                .pointer("/status/desiredHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            return Err(too_many(format!(
                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
            )));
        }
        let mut pdb = pdb.clone();
        pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
        let disrupted = pdb["status"]
            .as_object_mut()
            .map(|s| s.entry("disruptedPods").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(d) = disrupted {
            d.insert(name.to_string(), json!(objects::now_rfc3339()));
        }
        Ok(Change::Store(pdb))
    })
    .await?;
    Ok(())
}

/// Whether a budget's selector selects the pod (in policy/v1 an empty selector selects every pod).
fn selects(pdb: &Value, pod: &Value) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector") else {
        return false;
    };
    crate::selectors::selector_query(sel)
        .and_then(|q| LabelSelector::parse(&q).ok())
        .is_some_and(|s| s.matches(pod))
}
