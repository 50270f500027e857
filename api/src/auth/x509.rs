//! x509 client certificates: the TLS server asks for one and verifies it against the client CA
//! (the cluster CA by default); a verified certificate authenticates CN as the user and each O as
//! a group, as kube-apiserver's `--client-ca-file` authenticator.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::state::UserInfo;

/// The user of the verified client certificate of a connection, put into each of its requests'
/// extensions by the server; the authentication middleware uses it when there is no bearer
/// token.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub UserInfo);

/// Client-certificate authentication as kube-apiserver does it: the TLS server asks for a
/// certificate (naming the client CA as acceptable) but lets any through the handshake — only
/// the proof of possession of its key is checked there — and [`ClientAuth::user`] verifies the
/// chain against the client CA afterwards, so a certificate from another CA, or expired, reaches
/// the API unauthenticated and gets its 401 (`Unauthorized`), not a TLS alert.
#[derive(Debug)]
pub struct ClientAuth {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientAuth {
    /// Client authentication against the CA certificate(s) in `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<Arc<ClientAuth>, String> {
        Ok(Arc::new(ClientAuth {
            inner: client_verifier(ca_pem)?,
        }))
    }

    /// The user of a connection's certificate chain (leaf first) when it chains to the client CA,
    /// is valid now and is meant for client authentication; `None` otherwise.
    pub fn user(&self, chain: &[CertificateDer<'_>]) -> Option<UserInfo> {
        let (leaf, intermediates) = chain.split_first()?;
        self.inner
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .ok()?;
        user_of_certificate(leaf)
    }
}

impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    /// Accepted here; [`ClientAuth::user`] verifies the chain once the connection is up.
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// rustls' verifier of client certificates chaining to the CA certificate(s) in `ca_pem`,
/// valid now and for client authentication; a client without a certificate is let through.
fn client_verifier(ca_pem: &str) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("client CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("client CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("client CA: no certificate found".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// The user a (verified) leaf certificate names: CN the user name, each O a group, plus
/// `system:authenticated`. `None` when the certificate does not parse or has no CN.
pub fn user_of_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(UserInfo::new(name, &groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minted certificate names its user and groups; a certificate without CN names no one.
    #[test]
    fn the_certificate_names_the_user() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let (cert_pem, _) = crate::pki::client_certificate(
            &ca.pem(),
            &ca_key.serialize_pem(),
            "alice",
            &["team-a".into(), "devs".into()],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let user = user_of_certificate(&der).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["team-a", "devs", "system:authenticated"]);
        assert!(user.uid.is_empty());

        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "only-o");
        let key = rcgen::KeyPair::generate().unwrap();
        let anonymous = params.self_signed(&key).unwrap();
        assert!(user_of_certificate(anonymous.der()).is_none());
        assert!(user_of_certificate(b"not a certificate").is_none());
        assert!(ClientAuth::new("").is_err());

        // Only a chain to the client CA authenticates.
        let auth = ClientAuth::new(&ca.pem()).unwrap();
        assert_eq!(auth.user(std::slice::from_ref(&der)).unwrap().name, "alice");
        let other_key = rcgen::KeyPair::generate().unwrap();
        let mut other_params = rcgen::CertificateParams::default();
        other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other = other_params.self_signed(&other_key).unwrap();
        let (foreign, _) = crate::pki::client_certificate(
            &other.pem(),
            &other_key.serialize_pem(),
            "mallory",
            &[],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let foreign = CertificateDer::from_pem_slice(foreign.as_bytes()).unwrap();
        assert!(user_of_certificate(&foreign).is_some());
        assert!(auth.user(&[foreign]).is_none());
        assert!(auth.user(&[]).is_none());

        // A certificate of the right CA authenticates while it is valid, not once expired.
        let current = |not_after| {
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "old-alice");
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = not_after;
            let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), &ca_key).unwrap();
            params
                .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
                .unwrap()
        };
        let valid = current(rcgen::date_time_ymd(4000, 1, 1));
        assert_eq!(auth.user(&[valid.der().clone()]).unwrap().name, "old-alice");
        let expired = current(rcgen::date_time_ymd(2002, 1, 1));
        assert!(user_of_certificate(expired.der()).is_some());
        assert!(auth.user(&[expired.der().clone()]).is_none());
    }
}
