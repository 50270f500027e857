//! `serviceaccounts/token`: TokenRequest, as kube-apiserver answers it — a signed token for an
//! existing ServiceAccount, for the audiences asked (the API's by default), for
//! `expirationSeconds` (3600 by default, at least 600, capped by the server's maximum),
//! optionally bound to a Pod, Secret or Node that exists.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::jwt::{Claims, KubernetesClaims, ObjectRef};
use crate::body::{content_type, decode_object};
use crate::error::{ApiError, Cause};
use crate::objects;
use crate::request::ResourceRequest;
use crate::resource::name_of;
use crate::respond::json_response;
use crate::state::AppState;

/// `expirationSeconds` when the request has none.
pub(crate) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a token may ask for.
pub(crate) const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime a token may ask for (2^32 seconds).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "authentication.k8s.io",
        "TokenRequest",
        "serviceaccounts",
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }],
    )
}

/// Reads one core object by plural, namespace and name.
async fn get_core(
    state: &AppState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let kind = skiff_kinds::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("unknown kind {plural}")))?;
    match state
        .store
        .get(&objects::key(kind, namespace, name))
        .await?
    {
        Some(kv) => Ok(Some(objects::from_kv(kind, &kv)?)),
        None => Ok(None),
    }
}

fn uid_of(obj: &Value) -> String {
    objects::meta_str(obj, "uid")
        .unwrap_or_default()
        .to_string()
}

/// `POST .../serviceaccounts/NAME/token`.
pub(crate) async fn create(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let Some(sa) = state.service_accounts.as_ref() else {
        return Err(ApiError::not_supported(
            "serviceaccounts/token is not supported: the server has no service-account signing key",
        ));
    };
    let name = name_of(req).to_string();
    let namespace = req.namespace.clone().unwrap_or_default();
    let mut body = decode_object(&req.body, &content_type(&req.headers))?;
    match (
        body.get("apiVersion").and_then(Value::as_str),
        body.get("kind").and_then(Value::as_str),
    ) {
        (None | Some("authentication.k8s.io/v1"), None | Some("TokenRequest")) => {}
        (version, kind) => {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be an authentication.k8s.io/v1 TokenRequest, not {}, Kind={}",
                version.unwrap_or_default(),
                kind.unwrap_or_default()
            )));
        }
    }
    let spec = body
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({}))
        .as_object()
        .cloned()
        .unwrap_or_default();

    // NodeRestriction: a node asks only for tokens bound to its own pods (or itself).
    crate::admission::noderestriction::admit_token_request(
        state,
        &req.user,
        &namespace,
        &name,
        &Value::Object(spec.clone()),
    )
    .await?;
    let mut expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!("spec.expirationSeconds: not an integer: {v}"))
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if let Some(max) = sa.max_expiration_seconds {
        expiration = expiration.min(max);
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = sa.audiences.clone();
    }

    let account = get_core(state, "serviceaccounts", Some(&namespace), &name)
        .await?
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &name))?;
    let mut k8s = KubernetesClaims {
        namespace: namespace.clone(),
        serviceaccount: ObjectRef {
            name: name.clone(),
            uid: uid_of(&account),
        },
        ..KubernetesClaims::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|v| !v.is_null()) {
        bind(state, &namespace, &name, bound, &mut k8s).await?;
    }

    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let claims = Claims {
        iss: sa.issuer.clone(),
        sub: super::user_name(&namespace, &name),
        aud: audiences.clone(),
        exp: iat + expiration,
        iat,
        nbf: iat,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: k8s,
    };
    let token = sa
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map_err(|e| ApiError::internal(format!("expiration time: {e}")))?;

    let mut out_spec = Value::Object(spec);
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    if out_spec.get("boundObjectRef").is_none() {
        out_spec["boundObjectRef"] = Value::Null;
    }
    let mut metadata = body
        .get_mut("metadata")
        .map(Value::take)
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(namespace);
    if metadata.get("creationTimestamp").is_none() {
        metadata["creationTimestamp"] = Value::Null;
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": metadata,
        "spec": out_spec,
        "status": {
            "token": token,
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    });
    Ok(json_response(StatusCode::CREATED, &out))
}

/// Binds the token to the object `bound` names (Pod, Secret or Node, which must exist, with the
/// uid given); a pod-bound token also names the pod's node, as Kubernetes does.
async fn bind(
    state: &AppState,
    namespace: &str,
    sa_name: &str,
    bound: &Value,
    k8s: &mut KubernetesClaims,
) -> Result<(), ApiError> {
    let s = |field: &str| {
        bound
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (kind, api_version, name, uid) = (s("kind"), s("apiVersion"), s("name"), s("uid"));
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let version = api_version
        .rsplit_once('/')
        .map(|(_, v)| v.to_string())
        .unwrap_or(api_version.clone());
    let (plural, scoped) = match (group.as_str(), kind.as_str()) {
        ("", "Pod") => ("pods", Some(namespace)),
        ("", "Secret") => ("secrets", Some(namespace)),
        ("", "Node") => ("nodes", None),
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if name.is_empty() {
        return Err(invalid(
            sa_name,
            "spec.boundObjectRef.name",
            "\"\"",
            "name is required",
        ));
    }
    let obj = get_core(state, plural, scoped, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("", plural, &name))?;
    let actual = uid_of(&obj);
    if !uid.is_empty() && uid != actual {
        return Err(ApiError::conflict_message(
            "",
            &kind,
            &name,
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let reference = ObjectRef { name, uid: actual };
    match kind.as_str() {
        "Pod" => {
            let runs_as = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if runs_as != sa_name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(node_name) = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                let node_uid = get_core(state, "nodes", None, node_name)
                    .await?
                    .map(|n| uid_of(&n))
                    .unwrap_or_default();
                k8s.node = Some(ObjectRef {
                    name: node_name.to_string(),
                    uid: node_uid,
                });
            }
            k8s.pod = Some(reference);
        }
        "Secret" => k8s.secret = Some(reference),
        _ => k8s.node = Some(reference),
    }
    Ok(())
}
