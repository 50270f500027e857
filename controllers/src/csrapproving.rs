//! CertificateSigningRequest approving controller (kube-controller-manager's `csrapproving`):
//! approves `kubernetes.io/kube-apiserver-client-kubelet` requests for a node's client
//! certificate (CN `system:node:NAME`, O `system:nodes`, kubelet usages) when a
//! SubjectAccessReview says the requestor may `create` `certificatesigningrequests/nodeclient`
//! (a bootstrapper asking for a new node) or `.../selfnodeclient` (the node renewing its own).
//! Anything else is left alone: never denied, never approved here.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::Error;
use crate::csrsigning::{KUBE_APISERVER_CLIENT_KUBELET, kubelet_client_node};
use crate::runner::Clock;

/// Shared state of the approving controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Where time comes from.
    pub clock: Clock,
}

/// One kind of request the approver recognizes, and the permission its requestor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recognized {
    /// The node itself renews its certificate (`spec.username` is the certificate's CN).
    SelfNodeClient,
    /// Someone else (a bootstrap token) asks for a node's first certificate.
    NodeClient,
}

impl Recognized {
    /// The `certificatesigningrequests` subresource the requestor must be allowed to create.
    pub fn subresource(self) -> &'static str {
        match self {
            Recognized::SelfNodeClient => "selfnodeclient",
            Recognized::NodeClient => "nodeclient",
        }
    }

    /// The Approved condition's message, Kubernetes' words.
    pub fn message(self) -> &'static str {
        match self {
            Recognized::SelfNodeClient => {
                "Auto approving self kubelet client certificate after SubjectAccessReview."
            }
            Recognized::NodeClient => {
                "Auto approving kubelet client certificate after SubjectAccessReview."
            }
        }
    }
}

/// Which recognizers match a request, in Kubernetes' order (self first): none for a request
/// of another signer or not a node client certificate.
pub fn recognize(csr: &CertificateSigningRequest) -> Vec<Recognized> {
    if csr.spec.signer_name != KUBE_APISERVER_CLIENT_KUBELET {
        return Vec::new();
    }
    let request = String::from_utf8_lossy(&csr.spec.request.0);
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let Ok(node) = kubelet_client_node(&request, &usages) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if csr.spec.username.as_deref() == Some(format!("system:node:{node}").as_str()) {
        out.push(Recognized::SelfNodeClient);
    }
    out.push(Recognized::NodeClient);
    out
}

fn decided(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Approved" || c.type_ == "Denied") && c.status == "True")
        })
}

/// Whether the requestor of `csr` may create `certificatesigningrequests/SUBRESOURCE`.
async fn allowed(
    client: &Client,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, Error> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            groups: spec.groups.clone(),
            uid: spec.uid.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                verb: Some("create".into()),
                subresource: Some(subresource.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if decided(&csr) {
        return Ok(Action::await_change());
    }
    for recognized in recognize(&csr) {
        if !allowed(&ctx.client, &csr, recognized.subresource()).await? {
            continue;
        }
        let time = Time(ctx.clock.now());
        let mut conditions = csr
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(recognized.message().into()),
            last_update_time: Some(time.clone()),
            last_transition_time: Some(time),
        });
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": csr.resource_version()},
            "status": {"conditions": conditions},
        });
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        return match api
            .patch_approval(
                &csr.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(csr = %csr.name_any(), "{}", recognized.message());
                Ok(Action::await_change())
            }
            // Changed meanwhile (or gone): the watch brings the newer object.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                Ok(Action::await_change())
            }
            Err(e) => Err(e.into()),
        };
    }
    Ok(Action::await_change())
}

/// Runs the approving controller over the CertificateSigningRequests it is given.
pub async fn run(
    ctx: Arc<Ctx>,
    csrs: (
        impl Stream<Item = Result<CertificateSigningRequest, watcher::Error>> + Send + 'static,
        Store<CertificateSigningRequest>,
    ),
) {
    let controller = Controller::for_stream(csrs.0, csrs.1);
    crate::runner::run("csrapproving", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn csr(cn: &str, org: &str, username: &str, signer: &str) -> CertificateSigningRequest {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, cn);
        dn.push(rcgen::DnType::OrganizationName, org);
        params.distinguished_name = dn;
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let mut csr = CertificateSigningRequest::default();
        csr.spec.request = ByteString(pem.into_bytes());
        csr.spec.signer_name = signer.into();
        csr.spec.username = Some(username.into());
        csr.spec.usages = Some(vec!["digital signature".into(), "client auth".into()]);
        csr
    }

    #[test]
    fn node_client_requests_are_recognized_and_nothing_else() {
        let kubelet = KUBE_APISERVER_CLIENT_KUBELET;
        assert_eq!(
            recognize(&csr(
                "system:node:n1",
                "system:nodes",
                "system:bootstrap:abcdef",
                kubelet
            )),
            vec![Recognized::NodeClient]
        );
        assert_eq!(
            recognize(&csr(
                "system:node:n1",
                "system:nodes",
                "system:node:n1",
                kubelet
            )),
            vec![Recognized::SelfNodeClient, Recognized::NodeClient]
        );
        assert!(recognize(&csr("alice", "system:nodes", "alice", kubelet)).is_empty());
        assert!(recognize(&csr("system:node:n1", "system:masters", "x", kubelet)).is_empty());
        assert!(
            recognize(&csr(
                "system:node:n1",
                "system:nodes",
                "x",
                "kubernetes.io/kube-apiserver-client"
            ))
            .is_empty()
        );
        let mut serving = csr("system:node:n1", "system:nodes", "x", kubelet);
        serving.spec.usages = Some(vec!["digital signature".into(), "server auth".into()]);
        assert!(recognize(&serving).is_empty());
    }
}
