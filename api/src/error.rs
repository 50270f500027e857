//! `ApiError`: every failure of the HTTP API, rendered as a Kubernetes `Status` object.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-level cause of an `Invalid` or `Conflict` error (`details.causes[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// Why a request failed: Kubernetes' `metav1.StatusReason` values this server sends, rendered as
/// the `reason` of a `Status`. Clients (client-go's `apierrors.IsConflict`, kubectl) switch on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    AlreadyExists,
    Conflict,
    /// 410: a resource version or continue token older than the compacted history.
    Expired,
    Gone,
    RequestEntityTooLarge,
    /// 414, for a URL over `crate::limits::MAX_URL_BYTES` (not a `metav1` constant).
    UriTooLong,
    UnsupportedMediaType,
    Invalid,
    TooManyRequests,
    InternalError,
    /// 501, for subresources this server does not serve (not a `metav1` constant).
    NotImplemented,
    ServiceUnavailable,
    /// 507, the store's disk is full (not a `metav1` constant).
    InsufficientStorage,
    /// 504: a resource version newer than the store has reached.
    Timeout,
}

impl StatusReason {
    /// The wire form, as in a `Status` object's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::BadRequest => "BadRequest",
            StatusReason::Unauthorized => "Unauthorized",
            StatusReason::Forbidden => "Forbidden",
            StatusReason::NotFound => "NotFound",
            StatusReason::MethodNotAllowed => "MethodNotAllowed",
            StatusReason::NotAcceptable => "NotAcceptable",
            StatusReason::AlreadyExists => "AlreadyExists",
            StatusReason::Conflict => "Conflict",
            StatusReason::Expired => "Expired",
            StatusReason::Gone => "Gone",
            StatusReason::RequestEntityTooLarge => "RequestEntityTooLarge",
            StatusReason::UriTooLong => "RequestURITooLong",
            StatusReason::UnsupportedMediaType => "UnsupportedMediaType",
            StatusReason::Invalid => "Invalid",
            StatusReason::TooManyRequests => "TooManyRequests",
            StatusReason::InternalError => "InternalError",
            StatusReason::NotImplemented => "NotImplemented",
            StatusReason::ServiceUnavailable => "ServiceUnavailable",
            StatusReason::InsufficientStorage => "InsufficientStorage",
            StatusReason::Timeout => "Timeout",
        }
    }
}

impl std::fmt::Display for StatusReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed API request. `Display` is the message the client sees. Boxed, so results stay small.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct ApiError(Box<ErrorDetails>);

/// What an `ApiError` carries; reached through `Deref`.
#[derive(Clone, Debug)]
pub struct ErrorDetails {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl std::ops::Deref for ApiError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorDetails {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(code: u16, reason: StatusReason, message: impl Into<String>) -> Self {
        ApiError(Box::new(ErrorDetails {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after_seconds: None,
        }))
    }

    /// Sets `details.name`, `details.group` and `details.kind` (the resource plural, as Kubernetes does).
    pub fn with_details(mut self, group: &str, resource: &str, name: &str) -> Self {
        self.group = (!group.is_empty()).then(|| group.to_string());
        self.kind = Some(resource.to_string());
        self.name = (!name.is_empty()).then(|| name.to_string());
        self
    }

    pub fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.causes = causes;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, StatusReason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, StatusReason::Unauthorized, "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, StatusReason::Forbidden, message)
    }

    /// `pods "x" not found`
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            StatusReason::NotFound,
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// A path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            StatusReason::NotFound,
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, StatusReason::MethodNotAllowed, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, StatusReason::NotAcceptable, message)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            StatusReason::AlreadyExists,
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// The optimistic-concurrency conflict clients retry on.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            StatusReason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .with_details(group, resource, name)
    }

    pub fn conflict_message(
        group: &str,
        resource: &str,
        name: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::new(409, StatusReason::Conflict, message).with_details(group, resource, name)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, StatusReason::Expired, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, StatusReason::RequestEntityTooLarge, message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"
            ),
        )
    }

    /// 422 with one cause per invalid field: `Pod "x" is invalid: spec.containers: Required value`.
    pub fn invalid(
        group: &str,
        kind: &str,
        resource: &str,
        name: &str,
        causes: Vec<Cause>,
    ) -> Self {
        let summary = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect::<Vec<_>>();
        let summary = if summary.len() == 1 {
            summary[0].clone()
        } else {
            format!("[{}]", summary.join(", "))
        };
        let what = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            StatusReason::Invalid,
            format!("{what} \"{name}\" is invalid: {summary}"),
        )
        .with_details(group, resource, name)
        .with_kind(kind)
        .with_causes(causes)
    }

    /// Replaces the message (e.g. with the exact wording of the validation that failed).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn with_kind(mut self, kind: &str) -> Self {
        self.kind = Some(kind.to_string());
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, StatusReason::InternalError, message)
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(501, StatusReason::NotImplemented, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, StatusReason::ServiceUnavailable, message)
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(secs) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl From<skiff_store::Error> for ApiError {
    fn from(err: skiff_store::Error) -> Self {
        match err {
            skiff_store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            skiff_store::Error::FutureRevision { requested, current } => {
                let mut e = ApiError::new(
                    504,
                    StatusReason::Timeout,
                    format!("Too large resource version: {requested}, current: {current}"),
                );
                e.retry_after_seconds = Some(1);
                e
            }
            skiff_store::Error::Closed => ApiError::unavailable("the store is shutting down"),
            skiff_store::Error::NoSpace(detail) => {
                tracing::error!(error = %detail, "store is out of space");
                // 507 Insufficient Storage: the write was not made; it will succeed again once
                // the server's disk has room.
                ApiError::new(
                    507,
                    StatusReason::InsufficientStorage,
                    "the storage is full: the write was not made; writes resume once disk space is freed",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal("an internal error occurred in the storage layer")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut response = (code, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_render_as_kubernetes_status_reasons() {
        let conflict = ApiError::conflict("apps", "deployments", "web");
        assert_eq!(conflict.reason, StatusReason::Conflict);
        assert_eq!(conflict.status()["reason"], "Conflict");
        assert_eq!(conflict.status()["code"], 409);
        assert_eq!(ApiError::gone("old").status()["reason"], "Expired");
        assert_eq!(
            ApiError::not_supported("x").status()["reason"],
            "NotImplemented"
        );
        assert_eq!(StatusReason::TooManyRequests.to_string(), "TooManyRequests");
    }
}
