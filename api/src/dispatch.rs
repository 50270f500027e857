//! Dispatch: the one module that knows every verb and subresource, and routes a resource request to them.

use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::resource::{load, name_of};
use crate::respond::{json_response, respond_object};
use crate::state::AppState;
use crate::subresources::{approval, binding, eviction, exec, node_proxy, scale, service_proxy};
use crate::verbs;
use crate::verbs::Target;

/// Routes one resource request to its verb, the watch, or a subresource.
pub(crate) async fn handle(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
    crate::authz::check(state.authorizer.as_ref(), &req)?;
    let sub = req.subresource.clone();
    if sub.is_none() {
        let verb = crate::authz::verb(&req);
        if !req.kind.verbs.contains(&verb) {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({verb} {})",
                req.kind.qualified_resource()
            )));
        }
    }
    if req.kind.is_custom()
        && crate::body::content_type(&req.headers) == skiff_proto::MEDIA_TYPE
        && !req.body.is_empty()
    {
        // Custom resources have no protobuf encoding.
        return Err(ApiError::new(
            415,
            crate::error::StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {:?}",
                skiff_proto::MEDIA_TYPE
            ),
        ));
    }
    if req.kind.is_review() {
        return crate::reviews::create(state, &req).await;
    }
    if skiff_kinds::is_aggregated(req.kind) {
        return crate::metricsapi::handle(state, &req).await;
    }
    match (req.method.clone(), req.name.is_some(), sub.as_deref()) {
        (Method::GET, false, None) => {
            if req.legacy_watch || req.query.flag("watch") {
                crate::watch::watch(state, req).await
            } else {
                verbs::list::list(state, &req).await
            }
        }
        (Method::GET, true, None) if req.legacy_watch || req.query.flag("watch") => {
            crate::watch::watch(state, req).await
        }
        (Method::GET, true, None) => verbs::get::get(state, &req).await,
        (Method::POST, false, None) => verbs::create::create(state, &req).await,
        (Method::PUT, true, None) => verbs::update::update(state, &req, Target::Main).await,
        (Method::PATCH, true, None) => verbs::patch::patch(state, &req, Target::Main).await,
        (Method::DELETE, true, None) => verbs::delete::delete(state, &req).await,
        (Method::DELETE, false, None) => verbs::delete::delete_collection(state, &req).await,
        (_, true, Some(_)) => subresource(state, req).await,
        (method, _, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {} {}",
            req.kind.plural,
            if req.name.is_some() {
                "objects"
            } else {
                "collections"
            }
        ))),
    }
}

/// A request to a subresource of one object.
async fn subresource(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
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
        ("status", Method::PUT | Method::PATCH) if kind.group == "certificates.k8s.io" => {
            approval::update_status(state, &req).await
        }
        ("status", Method::PUT) => verbs::update::update(state, &req, Target::Status).await,
        ("status", Method::PATCH) => verbs::patch::patch(state, &req, Target::Status).await,
        ("approval", Method::GET) => {
            let (obj, _) = load(state, &req).await?;
            Ok(respond_object(&req, StatusCode::OK, &obj))
        }
        ("approval", Method::PUT | Method::PATCH) => approval::update(state, &req).await,
        ("scale", Method::GET) if kind.is_custom() => {
            let (obj, _) = load(state, &req).await?;
            Ok(json_response(
                StatusCode::OK,
                &crate::crd::scale::scale_of(kind, &obj)?,
            ))
        }
        ("scale", Method::PUT | Method::PATCH) if kind.is_custom() => {
            crate::crd::scale::update_scale(state, &req).await
        }
        ("scale", Method::GET) => {
            let (obj, _) = load(state, &req).await?;
            Ok(json_response(StatusCode::OK, &scale::scale_of(kind, &obj)?))
        }
        ("scale", Method::PUT | Method::PATCH) => scale::update_scale(state, &req).await,
        ("binding", Method::POST) => binding::bind(state, &req).await,
        ("eviction", Method::POST) => eviction::evict(state, &req).await,
        ("token", Method::POST) => crate::serviceaccount::token_request::create(state, &req).await,
        ("finalize", Method::PUT) => verbs::update::update(state, &req, Target::Main).await,
        ("log", Method::GET) => node_proxy::log(state, &req).await,
        ("proxy", _) if kind.group.is_empty() && kind.kind == "Service" => {
            service_proxy::proxy(state, &req, req.raw_query.as_deref()).await
        }
        ("proxy", _) if kind.group.is_empty() && kind.kind == "Node" => {
            node_proxy::node_proxy(state, &req, req.raw_query.as_deref()).await
        }
        ("proxy", _) => node_proxy::proxy(state, &req, req.raw_query.as_deref()).await,
        ("exec", Method::GET | Method::POST) if kind.group.is_empty() && kind.kind == "Pod" => {
            exec::exec(state, req).await
        }
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
