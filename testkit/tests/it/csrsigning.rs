//! The `kubernetes.io/kube-apiserver-client` signer in process: an approved request is issued a
//! certificate from the cluster CA with the requested subject; one asking for other usages gets
//! a `Failed` condition; other signers' and unapproved requests are left alone.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::csrsigning::{DEFAULT_SIGNING_DURATION, SigningCa};
use skiff_controllers::{Clock, Options};
use skiff_testkit::inproc::{InProcess, wait_object};
use x509_parser::prelude::{FromDer, X509Certificate};

const DEADLINE: Duration = Duration::from_secs(30);

fn ca() -> SigningCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "test-ca");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    SigningCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        duration: DEFAULT_SIGNING_DURATION,
    }
}

fn request_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "jane");
    dn.push(rcgen::DnType::OrganizationName, "dev");
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr(name: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"request": k8s_openapi::ByteString(request_pem().into_bytes()),
            "signerName": signer, "usages": usages, "expirationSeconds": 3600},
    }))
    .unwrap()
}

async fn create_approved(api: &Api<CertificateSigningRequest>, csr: CertificateSigningRequest) {
    let name = csr.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &csr).await.unwrap();
    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True",
        "reason": "Test", "message": "approved"}]}});
    api.patch_subresource(
        "approval",
        &name,
        &PatchParams::default(),
        &Patch::Merge(approval),
    )
    .await
    .unwrap();
}

fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn failed(csr: &CertificateSigningRequest) -> Option<(String, String)> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_client_requests_are_signed_by_the_cluster_ca() {
    let api = InProcess::start().await.unwrap();
    let ca = ca();
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        cluster_signing: Some(ca.clone()),
        ..Options::default()
    };
    opts.select("csrsigning").unwrap();
    let _c = skiff_controllers::start(api.client.clone(), opts);
    let csrs: Api<CertificateSigningRequest> = Api::all(api.client.clone());

    // Left alone: another signer's, the legacy signer's, and an unapproved request.
    create_approved(&csrs, csr("other", "example.com/signer", &["client auth"])).await;
    create_approved(
        &csrs,
        csr("legacy", "kubernetes.io/legacy-unknown", &["client auth"]),
    )
    .await;
    csrs.create(
        &PostParams::default(),
        &csr(
            "pending",
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
        ),
    )
    .await
    .unwrap();

    create_approved(
        &csrs,
        csr(
            "server",
            "kubernetes.io/kube-apiserver-client",
            &["client auth", "server auth"],
        ),
    )
    .await;
    let refused = wait_object(&csrs, "server", DEADLINE, |c| failed(c).is_some())
        .await
        .unwrap();
    let (reason, message) = failed(&refused).unwrap();
    assert_eq!(reason, "SignerValidationFailure");
    assert_eq!(message, "invalid usage for client certificate: server auth");
    assert!(!issued(&refused));

    create_approved(
        &csrs,
        csr(
            "jane",
            "kubernetes.io/kube-apiserver-client",
            &["digital signature", "client auth"],
        ),
    )
    .await;
    let signed = wait_object(&csrs, "jane", DEADLINE, issued).await.unwrap();
    let pem = signed.status.unwrap().certificate.unwrap().0;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&block.contents).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=jane, O=dev");
    assert_eq!(cert.issuer().to_string(), "CN=test-ca");
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(&ca_block.contents).unwrap();
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("the certificate chains to the cluster CA");
    let validity = cert.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        3600 + 300,
        "expirationSeconds, from five minutes back"
    );
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .is_some_and(|e| e.value.client_auth)
    );

    // Handled after the others were: they are still unsigned and not failed.
    for name in ["other", "legacy", "pending"] {
        let c = csrs.get(name).await.unwrap();
        assert!(!issued(&c) && failed(&c).is_none(), "{name} was touched");
    }
}
