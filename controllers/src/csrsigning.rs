//! CertificateSigningRequest signing controller (the role of kube-controller-manager's
//! `csrsigning` for `kubernetes.io/kube-apiserver-client` and
//! `kubernetes.io/kube-apiserver-client-kubelet`): an approved, not yet issued request of those
//! signers is checked against the signer's rules (for the kubelet signer: a node's client
//! certificate, CN `system:node:NAME`, O `system:nodes`, no subject alternative names) and signed
//! with the cluster CA; the certificate (or a `Failed` condition saying why not) is written
//! through `status`.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

use crate::Error;
use crate::runner::Clock;

/// The signer this controller serves.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// The signer of nodes' client certificates.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// kube-controller-manager's default `--cluster-signing-duration` (one year).
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far back a certificate's validity starts, for clocks that lag (as Kubernetes' signer).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The CA the signer issues from: kube-controller-manager's `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file`, and `--cluster-signing-duration` (the default and the cap of a
/// certificate's lifetime).
#[derive(Clone)]
pub struct SigningCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, PEM.
    pub key_pem: String,
    /// Lifetime of issued certificates, and the most a request's `expirationSeconds` gets.
    pub duration: Duration,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// Why a request is refused by the signer (its `Failed` condition's message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("invalid usage for client certificate: {0}")]
    Usage(String),
    #[error("missing required usage for client certificate: client auth")]
    NoClientAuth,
    #[error("the request is for a CA certificate, which this signer does not issue")]
    Ca,
    #[error("the request cannot be signed: {0}")]
    Request(String),
    #[error("{0}")]
    NotKubeletClient(String),
}

/// Shared state of the signing controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Where time comes from.
    pub clock: Clock,
    /// The CA, parsed once.
    pub ca: SigningCa,
}

/// Kubernetes' `validAPIServerClientUsages`: `client auth`, optionally with `digital signature`
/// and `key encipherment`, nothing else.
pub fn check_usages(usages: &[String]) -> Result<(), Refusal> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(Refusal::Usage(other.to_string())),
        }
    }
    if client_auth {
        Ok(())
    } else {
        Err(Refusal::NoClientAuth)
    }
}

/// The node a `kube-apiserver-client-kubelet` request is for (Kubernetes'
/// `ValidateKubeletClientCSR`): organization exactly `system:nodes`, common name
/// `system:node:NAME`, no DNS, email, IP or URI names, usages `digital signature` and
/// `client auth` (and optionally `key encipherment`).
pub fn kubelet_client_node(request_pem: &str, usages: &[String]) -> Result<String, Refusal> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::FromDer;
    let refuse = |m: &str| Refusal::NotKubeletClient(m.to_string());
    let (_, block) = x509_parser::pem::parse_x509_pem(request_pem.as_bytes())
        .map_err(|e| Refusal::Request(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| Refusal::Request(e.to_string()))?;
    let subject = &csr.certification_request_info.subject;
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    if orgs != ["system:nodes"] {
        return Err(refuse("subject organization is not system:nodes"));
    }
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("");
    let Some(node) = cn.strip_prefix("system:node:").filter(|n| !n.is_empty()) else {
        return Err(refuse(
            "subject common name does not begin with system:node:",
        ));
    };
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext
                && !san.general_names.is_empty()
            {
                return Err(refuse(
                    "DNS, email, IP and URI subjectAltNames are not allowed",
                ));
            }
        }
    }
    let mut sorted: Vec<&str> = usages.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != ["client auth", "digital signature"]
        && sorted != ["client auth", "digital signature", "key encipherment"]
    {
        return Err(refuse(
            "usages did not match [digital signature client auth] or [key encipherment digital signature client auth]",
        ));
    }
    Ok(node.to_string())
}

/// The certificate for a PEM request, signed by `ca`, valid from `now - 5m` for `lifetime`:
/// the requested subject and names, usages from `usages` (already checked), never a CA.
/// Requests rcgen cannot take (a key type it does not sign for, an extension it does not know)
/// are refused.
pub fn sign(
    request_pem: &str,
    usages: &[String],
    ca: &SigningCa,
    now_since_epoch: Duration,
    lifetime: Duration,
) -> Result<String, Refusal> {
    let refuse = |e: rcgen::Error| Refusal::Request(e.to_string());
    let mut csr = CertificateSigningRequestParams::from_pem(request_pem).map_err(refuse)?;
    if matches!(csr.params.is_ca, IsCa::Ca(_)) {
        return Err(Refusal::Ca);
    }
    let params = &mut csr.params;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now_since_epoch.saturating_sub(BACKDATE);
    params.not_after = epoch + now_since_epoch + lifetime;
    let mut serial = now_since_epoch.as_nanos().to_be_bytes().to_vec();
    serial.extend(request_pem.len().to_be_bytes());
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from(serial));
    let key = KeyPair::from_pem(&ca.key_pem).map_err(refuse)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(refuse)?;
    let cert = csr.signed_by(&issuer).map_err(refuse)?;
    // rcgen keeps one value per attribute type of a subject: the request's own subject (one O
    // per group) goes into the certificate as it was asked.
    with_request_subject(cert.der(), request_pem, issuer.key()).map_err(refuse)
}

/// `cert` (DER) with the subject of the PEM request, signed again by `key`, as PEM.
fn with_request_subject(
    cert: &[u8],
    request_pem: &str,
    key: &KeyPair,
) -> Result<String, rcgen::Error> {
    use base64::Engine as _;
    use rcgen::SigningKey as _;
    use x509_parser::prelude::FromDer as _;
    let bad_request = |_| rcgen::Error::CouldNotParseCertificationRequest;
    let (_, block) =
        x509_parser::pem::parse_x509_pem(request_pem.as_bytes()).map_err(bad_request)?;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|_| rcgen::Error::CouldNotParseCertificationRequest)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
    let der = skiff_meta::der::replace_subject(
        cert,
        parsed.tbs_certificate.as_ref(),
        parsed.tbs_certificate.subject.as_raw(),
        request.certification_request_info.subject.as_raw(),
        |message| key.sign(message),
    )?
    .ok_or(rcgen::Error::CouldNotParseCertificate)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

fn has_condition(csr: &CertificateSigningRequest, ty: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    let kubelet = csr.spec.signer_name == KUBE_APISERVER_CLIENT_KUBELET;
    if !(kubelet || csr.spec.signer_name == KUBE_APISERVER_CLIENT)
        || !has_condition(&csr, "Approved")
        || has_condition(&csr, "Denied")
        || has_condition(&csr, "Failed")
        || issued
    {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let since_epoch =
        Duration::try_from(now.duration_since(jiff::Timestamp::UNIX_EPOCH)).unwrap_or_default();
    let lifetime = csr
        .spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .map_or(ctx.ca.duration, |d| d.min(ctx.ca.duration));
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let request = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let checked = if kubelet {
        kubelet_client_node(&request, &usages).map(|_| ())
    } else {
        check_usages(&usages)
    };
    let outcome = checked.and_then(|()| sign(&request, &usages, &ctx.ca, since_epoch, lifetime));
    let mut updated = (*csr).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match outcome {
        Ok(cert) => status.certificate = Some(ByteString(cert.into_bytes())),
        Err(refusal) => {
            tracing::info!(csr = %csr.name_any(), %refusal, "refusing certificate signing request");
            let time = Time(now);
            status.conditions.get_or_insert_with(Vec::new).push(
                CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerValidationFailure".into()),
                    message: Some(refusal.to_string()),
                    last_update_time: Some(time.clone()),
                    last_transition_time: Some(time),
                },
            );
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api
        .replace_status(&csr.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Changed meanwhile (or gone): the watch brings the newer object.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Runs the signing controller over the CertificateSigningRequests it is given.
pub async fn run(
    ctx: Arc<Ctx>,
    csrs: (
        impl Stream<Item = Result<CertificateSigningRequest, watcher::Error>> + Send + 'static,
        Store<CertificateSigningRequest>,
    ),
) {
    let controller = Controller::for_stream(csrs.0, csrs.1);
    crate::runner::run("csrsigning", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn client_certificates_need_client_auth_and_nothing_but_signature_or_encipherment() {
        assert_eq!(check_usages(&strings(&["client auth"])), Ok(()));
        assert_eq!(
            check_usages(&strings(&[
                "digital signature",
                "key encipherment",
                "client auth"
            ])),
            Ok(())
        );
        assert_eq!(
            check_usages(&strings(&["digital signature"])),
            Err(Refusal::NoClientAuth)
        );
        assert_eq!(
            check_usages(&strings(&["client auth", "server auth"])),
            Err(Refusal::Usage("server auth".into()))
        );
    }

    fn ca() -> SigningCa {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        SigningCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            duration: DEFAULT_SIGNING_DURATION,
        }
    }

    fn request(ca_request: bool) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "jane");
        dn.push(rcgen::DnType::OrganizationName, "dev");
        params.distinguished_name = dn;
        if ca_request {
            params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn the_certificate_has_the_requested_subject_and_lifetime() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let now = Duration::from_secs(1_800_000_000);
        let pem = sign(
            &request(false),
            &strings(&["client auth"]),
            &ca(),
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&block.contents).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=jane, O=dev");
        assert_eq!(
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp(),
            3600 + 300
        );
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn a_request_for_a_ca_is_refused() {
        let refused = sign(
            &request(true),
            &strings(&["client auth"]),
            &ca(),
            Duration::from_secs(1_800_000_000),
            DEFAULT_SIGNING_DURATION,
        );
        assert_eq!(refused, Err(Refusal::Ca));
    }

    fn node_request(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            dn.push(rcgen::DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn kubelet_client_requests_are_a_node_and_nothing_more() {
        let usages = strings(&["digital signature", "client auth"]);
        assert_eq!(
            kubelet_client_node(
                &node_request("system:node:n1", &["system:nodes"], &[]),
                &usages
            ),
            Ok("n1".to_string())
        );
        let with_key = strings(&["key encipherment", "digital signature", "client auth"]);
        assert!(
            kubelet_client_node(
                &node_request("system:node:n1", &["system:nodes"], &[]),
                &with_key
            )
            .is_ok()
        );
        for (cn, orgs, dns) in [
            ("system:node:n1", &["system:masters"][..], &[][..]),
            ("system:node:n1", &["system:nodes", "x"][..], &[][..]),
            ("alice", &["system:nodes"][..], &[][..]),
            ("system:node:n1", &["system:nodes"][..], &["n1.example"][..]),
        ] {
            assert!(
                matches!(
                    kubelet_client_node(&node_request(cn, orgs, dns), &usages),
                    Err(Refusal::NotKubeletClient(_))
                ),
                "{cn} {orgs:?} {dns:?}"
            );
        }
        assert!(
            kubelet_client_node(
                &node_request("system:node:n1", &["system:nodes"], &[]),
                &strings(&["client auth", "server auth", "digital signature"])
            )
            .is_err()
        );
    }
}
