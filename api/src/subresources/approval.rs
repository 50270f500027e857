//! `certificatesigningrequests/NAME/approval`: an update of the Approved/Denied conditions, which
//! only a user allowed to `approve` for the request's signer may make (Kubernetes'
//! CertificateApproval admission: verb `approve` on `signers.certificates.k8s.io` named after the
//! signer, or after its domain with `/*`); and a `status` write that sets the certificate, which
//! needs `sign` the same way (CertificateSigning admission).

use axum::response::Response;
use serde_json::Value;

use crate::body::{content_type, decode_object};
use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::resource::{load, name_of};
use crate::state::{AppState, Attributes, Decision};
use crate::verbs::{self, Target};

/// Whether `req.user` may `verb` (approve, sign) requests of `signer`.
fn allowed_for_signer(state: &AppState, req: &ResourceRequest, verb: &str, signer: &str) -> bool {
    let wildcard = signer
        .split_once('/')
        .map(|(domain, _)| format!("{domain}/*"));
    std::iter::once(signer.to_string())
        .chain(wildcard)
        .any(|name| {
            state.authorizer.authorize(&Attributes {
                user: &req.user,
                verb,
                group: "certificates.k8s.io",
                resource: "signers",
                subresource: None,
                namespace: None,
                name: Some(&name),
                path: None,
                field_selector: None,
            }) == Decision::Allow
        })
}

fn signer_of(csr: &Value) -> &str {
    csr.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn not_permitted(req: &ResourceRequest, verb: &str, signer: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{}.{} {:?} is forbidden: user not permitted to {verb} requests with signerName {signer:?}",
        req.kind.plural,
        req.kind.group,
        name_of(req)
    ))
}

/// `PUT` or `PATCH` of a CertificateSigningRequest's status: a write that may set
/// `status.certificate` to something new needs `sign` for the signer. A replacement is compared
/// with the stored certificate; a patch that names `certificate` at all is checked.
pub(crate) async fn update_status(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
    let (csr, _) = load(state, req).await?;
    let stored = csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sets_certificate = if req.method == axum::http::Method::PATCH {
        String::from_utf8_lossy(&req.body).contains("certificate")
    } else {
        decode_object(&req.body, &content_type(&req.headers))?
            .pointer("/status/certificate")
            .and_then(Value::as_str)
            .is_some_and(|sent| !sent.is_empty() && sent != stored)
    };
    let signer = signer_of(&csr);
    if sets_certificate && !allowed_for_signer(state, req, "sign", signer) {
        return Err(not_permitted(req, "sign", signer));
    }
    if req.method == axum::http::Method::PATCH {
        verbs::patch::patch(state, req, Target::Status).await
    } else {
        verbs::update::update(state, req, Target::Status).await
    }
}

/// `PUT` or `PATCH` of the approval subresource, after the signer check.
pub(crate) async fn update(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (csr, _) = load(state, req).await?;
    let signer = signer_of(&csr);
    if !allowed_for_signer(state, req, "approve", signer) {
        return Err(not_permitted(req, "approve", signer));
    }
    if req.method == axum::http::Method::PATCH {
        verbs::patch::patch(state, req, Target::Approval).await
    } else {
        verbs::update::update(state, req, Target::Approval).await
    }
}
