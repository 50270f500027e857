//! `pods/binding`: the scheduler assigns a pod to a node, once.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;
use crate::resource::name_of;
use crate::respond::json_response;
use crate::state::AppState;

/// `pods/binding`: assigns a pod to a node, once.
pub(crate) async fn bind(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
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
        subresource: Some("binding"),
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
