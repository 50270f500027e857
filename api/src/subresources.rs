//! Subresources: status, scale, binding, eviction; the node-served ones answer "not supported".

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::app::{AppState, json_response};
use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::handlers::{self, PatchType, Target, load, name_of, respond_object};
use crate::objects::{self, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;

pub(crate) async fn handle(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
    let sub = req.subresource.clone().unwrap_or_default();
    let kind = req.kind;
    if !kind.subresources.contains(&sub.as_str()) {
        return Err(ApiError::no_route(&format!("{}/{sub}", kind.plural)));
    }
    match (sub.as_str(), req.method.clone()) {
        ("status", Method::GET) => {
            let (obj, _) = load(state, &req).await?;
            Ok(respond_object(&req, StatusCode::OK, &obj))
        }
        ("status", Method::PUT) => handlers::update(state, &req, Target::Status).await,
        ("status", Method::PATCH) => handlers::patch(state, &req, Target::Status).await,
        ("scale", Method::GET) => {
            let (obj, _) = load(state, &req).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&obj)?))
        }
        ("scale", Method::PUT | Method::PATCH) => update_scale(state, &req).await,
        ("binding", Method::POST) => bind(state, &req).await,
        ("eviction", Method::POST) => evict(state, &req).await,
        ("finalize", Method::PUT) => handlers::update(state, &req, Target::Main).await,
        ("log", Method::GET) => crate::node_proxy::log(state, &req).await,
        ("proxy", _) => crate::node_proxy::proxy(state, &req, req.raw_query.as_deref()).await,
        ("exec" | "attach" | "portforward", _) => Err(ApiError::not_supported(format!(
            "{}/{sub} is not supported by this server yet (pod {:?})",
            kind.plural,
            name_of(&req)
        ))),
        (_, method) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}/{sub}",
            kind.plural
        ))),
    }
}

/// The autoscaling/v1 Scale of a workload.
fn scale_of(obj: &Value) -> Result<Value, ApiError> {
    let meta = objects::meta(obj).cloned().unwrap_or_default();
    let selector = obj
        .pointer("/spec/selector")
        .and_then(crate::selectors::selector_query)
        .unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    }))
}

async fn update_scale(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let name = name_of(req).to_string();
    let write = Write {
        kind: req.kind,
        namespace: req.namespace.as_deref(),
        name: &name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
    };
    let stored = registry::guaranteed_update(state, &write, |current| {
        let Some((obj, kv)) = current else {
            return Err(ApiError::not_found(req.kind.group, req.kind.plural, &name));
        };
        let current = scale_of(obj)?;
        let wanted = if req.method == Method::PUT {
            decode_object(&req.body, &content_type(&req.headers))?
        } else {
            let ptype = handlers::patch_type(req)?;
            let doc = handlers::decode_patch(req, ptype)?;
            match ptype {
                PatchType::Json => skiff_patch::json_patch(&current, &doc),
                PatchType::Merge | PatchType::Strategic => skiff_patch::merge_patch(&current, &doc),
                PatchType::Apply => {
                    return Err(ApiError::not_supported(
                        "server-side apply on the scale subresource is not supported",
                    ));
                }
            }
            .map_err(|e| handlers::map_patch_error(req.kind, &name, e))?
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                req.kind.plural,
                &name,
                vec![crate::error::Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        if let Some(rv) = meta_str(&wanted, "resourceVersion").filter(|r| !r.is_empty())
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(req.kind.group, req.kind.plural, &name));
        }
        let mut new = obj.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("replicas".into(), json!(replicas));
        }
        objects::bump_generation(req.kind, obj, &mut new);
        Ok(Change::Store(new))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&stored)?))
}

/// `pods/binding`: assigns a pod to a node, once.
async fn bind(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let binding = decode_object(&req.body, &content_type(&req.headers))?;
    let name = name_of(req).to_string();
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                "bindings",
                &name,
                vec![crate::error::Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "target.name".into(),
                }],
            )
        })?
        .to_string();
    let write = Write {
        kind: req.kind,
        namespace: req.namespace.as_deref(),
        name: &name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
    };
    registry::guaranteed_update(state, &write, |current| {
        let Some((pod, _)) = current else {
            return Err(ApiError::not_found("", "pods", &name));
        };
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
            && meta_str(pod, "uid") != Some(uid)
        {
            return Err(ApiError::conflict_message(
                "",
                "pods",
                &name,
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": the UID in the binding does not match the pod"
                ),
            ));
        }
        if let Some(existing) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict_message(
                "",
                "pods",
                &name,
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{existing}\""
                ),
            ));
        }
        if objects::is_deleting(pod) {
            return Err(ApiError::conflict_message(
                "",
                "pods",
                &name,
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"
                ),
            ));
        }
        let mut new = pod.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        set_condition(&mut new, "PodScheduled", "True", None);
        Ok(Change::Store(new))
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &objects::status_success(201),
    ))
}

/// Sets a pod condition, keeping the transition time when the status does not change.
pub(crate) fn set_condition(pod: &mut Value, kind: &str, status: &str, reason: Option<&str>) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let status_obj = obj.entry("status").or_insert_with(|| json!({}));
    let Some(status_map) = status_obj.as_object_mut() else {
        return;
    };
    let conditions = status_map.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let now = objects::now_rfc3339();
    if let Some(existing) = list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        if existing.get("status").and_then(Value::as_str) != Some(status) {
            existing["status"] = json!(status);
            existing["lastTransitionTime"] = json!(now);
        }
        if let Some(r) = reason {
            existing["reason"] = json!(r);
        }
    } else {
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        list.push(c);
    }
}

/// `pods/eviction`: deletes the pod with the eviction's options. Disruption budgets are checked
/// by the disruption controller's data once it exists; until then every eviction is allowed.
async fn evict(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let eviction = decode_object(&req.body, &content_type(&req.headers))?;
    let name = name_of(req).to_string();
    if let Some(n) = meta_str(&eviction, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {n} != {name}"
        )));
    }
    let mut opts = handlers::DeleteOptions {
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
    crate::disruption::check_eviction(state, req, &name).await?;
    handlers::delete_object(state, req, &name, &opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &objects::status_success(201),
    ))
}
