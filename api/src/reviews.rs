//! The review kinds (`authorization.k8s.io/v1` access and rules reviews, `authentication.k8s.io/v1`
//! TokenReview and SelfSubjectReview): a create that is answered from the request's user, the
//! `Authorizer` and the token table, and never stored. As in Kubernetes they have no Table form:
//! an `as=Table` request without a plain JSON fallback is refused with 406.

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use skiff_kinds::validate::{Cause, Error as Invalid};

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::registry::map_validation;
use crate::request::ResourceRequest;
use crate::respond::json_response;
use crate::state::{AppState, Attributes, Decision, Rules, UserInfo};

/// What the server can send instead of a Table (Kubernetes' serializer media types).
const ACCEPTED: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The audience of this API server's tokens, as kube-apiserver's default `--api-audiences`.
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Refuses a request whose `Accept` asks only for transformed forms (Table,
/// PartialObjectMetadata) of a kind that has none; a plain JSON (or `*/*`, YAML, protobuf) clause
/// anywhere in the list is answered with the object itself.
pub(crate) fn check_plain_accept(req: &ResourceRequest) -> Result<(), ApiError> {
    let accept = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if accept.is_empty() {
        return Ok(());
    }
    let plain = accept.split(',').any(|clause| {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let transformed = parts.any(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("as"))
        });
        !transformed
            && matches!(
                media.as_str(),
                "application/json"
                    | "application/yaml"
                    | "application/vnd.kubernetes.protobuf"
                    | "application/*"
                    | "*/*"
            )
    });
    if plain {
        Ok(())
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: {ACCEPTED}"
        )))
    }
}

/// `POST` of a review: checks the Accept header, decodes the body and answers 201 with the
/// review and its status.
pub(crate) async fn create(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    check_plain_accept(req)?;
    let body = decode_object(&req.body, &content_type(&req.headers))?;
    crate::objects::check_type_meta(req.kind, &mut body.clone())?;
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match req.kind.kind {
        "SelfSubjectAccessReview" => {
            access_review_spec(req, &spec, false)?;
            access(state, &req.user, &spec)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            access_review_spec(req, &spec, true)?;
            access(state, &subject(&spec), &spec)
        }
        "SelfSubjectRulesReview" => rules_review(state, &req.user, &spec),
        "SelfSubjectReview" => json!({"userInfo": user_info(&req.user)}),
        "TokenReview" => token_review(state, &spec).await?,
        other => {
            return Err(ApiError::internal(format!(
                "no review handler for kind {other}"
            )));
        }
    };
    let mut out = Map::new();
    out.insert("kind".into(), json!(req.kind.kind));
    out.insert("apiVersion".into(), json!(req.kind.api_version()));
    out.insert(
        "metadata".into(),
        body.get("metadata").cloned().unwrap_or_else(|| json!({})),
    );
    if req.kind.kind != "SelfSubjectReview" {
        out.insert("spec".into(), spec);
    }
    out.insert("status".into(), status);
    Ok(json_response(StatusCode::CREATED, &Value::Object(out)))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(req: &ResourceRequest, field: &str, value: &str, detail: &str) -> ApiError {
    let cause = Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value}: {detail}"),
        field: field.into(),
    };
    map_validation(req.kind, "", Invalid::Invalid(vec![cause]))
}

/// Kubernetes' `ValidateSubjectAccessReviewSpec` (and the local review's namespace rule).
fn access_review_spec(
    req: &ResourceRequest,
    spec: &Value,
    with_subject: bool,
) -> Result<(), ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                req,
                "spec.nonResourceAttributes",
                "{...}",
                "cannot be specified in combination with resourceAttributes",
            ));
        }
        (None, None) => {
            return Err(invalid(
                req,
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        _ => {}
    }
    if with_subject && str_at(spec, "/user").is_empty() && strings(spec, "/groups").is_empty() {
        return Err(invalid(
            req,
            "spec.user",
            "\"\"",
            "at least one of user or group must be specified",
        ));
    }
    if req.kind.kind == "LocalSubjectAccessReview" {
        if non_resource.is_some() {
            return Err(invalid(
                req,
                "spec.nonResourceAttributes",
                "{...}",
                "disallowed on this kind of request",
            ));
        }
        let ns = str_at(spec, "/resourceAttributes/namespace");
        let url_ns = req.namespace.as_deref().unwrap_or_default();
        if ns != url_ns {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {url_ns}"
            )));
        }
    }
    Ok(())
}

/// The user a SubjectAccessReview asks about: exactly the name and groups it names.
fn subject(spec: &Value) -> UserInfo {
    UserInfo {
        name: str_at(spec, "/user").to_string(),
        groups: strings(spec, "/groups"),
        uid: str_at(spec, "/uid").to_string(),
        ..UserInfo::default()
    }
}

/// An access review's status, from the authorizer (resource or non-resource attributes).
fn access(state: &AppState, user: &UserInfo, spec: &Value) -> Value {
    let decision = match spec.get("resourceAttributes").filter(|v| !v.is_null()) {
        Some(ra) => {
            let opt = |k: &str| Some(str_at(ra, &format!("/{k}"))).filter(|s| !s.is_empty());
            state.authorizer.authorize(&Attributes {
                user,
                verb: str_at(ra, "/verb"),
                group: str_at(ra, "/group"),
                resource: str_at(ra, "/resource"),
                subresource: opt("subresource"),
                namespace: opt("namespace"),
                name: opt("name"),
                path: None,
                field_selector: Some(str_at(ra, "/fieldSelector/rawSelector"))
                    .filter(|s| !s.is_empty()),
            })
        }
        None => {
            let nra = spec.get("nonResourceAttributes").unwrap_or(&Value::Null);
            state.authorizer.authorize(&Attributes {
                user,
                verb: str_at(nra, "/verb"),
                group: "",
                resource: "",
                subresource: None,
                namespace: None,
                name: None,
                path: Some(str_at(nra, "/path")),
                field_selector: None,
            })
        }
    };
    match decision {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    }
}

/// A SelfSubjectRulesReview's status: the authorizer's rules, or `incomplete` when it cannot
/// list them.
fn rules_review(state: &AppState, user: &UserInfo, spec: &Value) -> Value {
    let namespace = str_at(spec, "/namespace");
    match state.authorizer.rules(user, namespace) {
        Some(Rules {
            resource,
            non_resource,
        }) => json!({
            "resourceRules": resource.iter().map(|r| {
                let mut rule = json!({"verbs": r.verbs, "apiGroups": r.api_groups,
                    "resources": r.resources});
                if !r.resource_names.is_empty() {
                    rule["resourceNames"] = json!(r.resource_names);
                }
                rule
            }).collect::<Vec<_>>(),
            "nonResourceRules": non_resource.iter().map(|r| json!({
                "verbs": r.verbs, "nonResourceURLs": r.non_resource_urls,
            })).collect::<Vec<_>>(),
            "incomplete": false,
        }),
        None => json!({
            "resourceRules": [],
            "nonResourceRules": [],
            "incomplete": true,
            "evaluationError": "the authorizer cannot list the rules of a user",
        }),
    }
}

/// A user as `authentication.k8s.io/v1` `UserInfo`: uid and extra only when set.
fn user_info(user: &UserInfo) -> Value {
    let mut out = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        out["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        out["extra"] = json!(user.extra);
    }
    out
}

/// A TokenReview, as kube-apiserver answers it: the static tokens and the audience-agnostic
/// authenticators hold for the API's audiences only; a ServiceAccount token is checked against
/// the audiences asked (`spec.audiences`, the API's by default). `status.audiences` is the part of
/// the audiences asked the token is good for.
async fn token_review(state: &AppState, spec: &Value) -> Result<Value, ApiError> {
    let token = str_at(spec, "/token");
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let asked = strings(spec, "/audiences");
    let api_audiences: Vec<String> = match &state.service_accounts {
        Some(sa) => sa.audiences.clone(),
        None => vec![API_AUDIENCE.to_string()],
    };
    let refused = |error: String| json!({"authenticated": false, "user": {}, "error": error});
    // Static tokens and the other authenticators are not bound to an audience: they hold for the
    // API's audiences only.
    let implicit = || -> Result<Option<Vec<String>>, String> {
        if asked.is_empty() {
            return Ok(None);
        }
        let both: Vec<String> = asked
            .iter()
            .filter(|a| api_audiences.contains(a))
            .cloned()
            .collect();
        if both.is_empty() {
            Err(format!(
                "token audiences {api_audiences:?} is invalid for the target audiences {asked:?}"
            ))
        } else {
            Ok(Some(both))
        }
    };
    let answer = |user: &UserInfo, audiences: Option<Vec<String>>| {
        let mut status = json!({"authenticated": true, "user": user_info(user)});
        if let Some(audiences) = audiences {
            status["audiences"] = json!(audiences);
        }
        status
    };
    if let Some(user) = crate::auth::user_of_token(state, token) {
        return Ok(match implicit() {
            Ok(audiences) => answer(user, audiences),
            Err(error) => refused(error),
        });
    }
    let mut error = None;
    if state.service_accounts.is_some() && crate::serviceaccount::jwt::looks_like_jwt(token) {
        match crate::serviceaccount::authenticator::authenticate(state, token, &asked).await {
            Ok((user, audiences)) => return Ok(answer(&user, Some(audiences))),
            Err(reason) => error = Some(reason),
        }
    }
    for authenticator in &state.token_authenticators {
        if let Some(user) = authenticator.authenticate(state, token).await {
            return Ok(match implicit() {
                Ok(audiences) => answer(&user, audiences),
                Err(error) => refused(error),
            });
        }
    }
    Ok(match error {
        Some(error) => refused(error),
        None => json!({"authenticated": false, "user": {}}),
    })
}
