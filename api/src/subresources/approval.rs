//! `certificatesigningrequests/NAME/approval`: an update of the Approved/Denied conditions, which
//! only a user allowed to `approve` for the request's signer may make (Kubernetes'
//! CertificateApproval admission: verb `approve` on `signers.certificates.k8s.io` named after the
//! signer, or after its domain with `/*`).

use axum::response::Response;
use serde_json::Value;

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
            }) == Decision::Allow
        })
}

/// `PUT` or `PATCH` of the approval subresource, after the signer check.
pub(crate) async fn update(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (csr, _) = load(state, req).await?;
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !allowed_for_signer(state, req, "approve", signer) {
        return Err(ApiError::forbidden(format!(
            "{}.{} {:?} is forbidden: user not permitted to approve requests with signerName {signer:?}",
            req.kind.plural,
            req.kind.group,
            name_of(req)
        )));
    }
    if req.method == axum::http::Method::PATCH {
        verbs::patch::patch(state, req, Target::Approval).await
    } else {
        verbs::update::update(state, req, Target::Approval).await
    }
}
