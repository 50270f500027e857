//! Responses: JSON and Table bodies, one object in the form the client asked for, and warnings.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::body::{Wanted, negotiate};
use crate::request::ResourceRequest;

/// A JSON body with the given status.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A Table body (`kubectl get`), marked with its media type parameters.
pub fn table_response(code: StatusCode, value: &Value) -> Response {
    let mut response = json_response(code, value);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    response
}

/// Renders one object as JSON or as a one-row Table.
pub(crate) fn respond_object(req: &ResourceRequest, code: StatusCode, obj: &Value) -> Response {
    match negotiate(&req.headers) {
        Wanted::Table => {
            let include = req.query.get("includeObject").unwrap_or("Metadata");
            let table = skiff_kinds::table::table(
                req.kind,
                std::slice::from_ref(obj),
                include,
                jiff::Timestamp::now(),
            );
            table_response(code, &table)
        }
        _ => json_response(code, obj),
    }
}

pub(crate) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}
