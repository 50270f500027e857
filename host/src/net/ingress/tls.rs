//! HTTPS for the ingress: certificates from the `kubernetes.io/tls` Secrets named in served
//! Ingresses' `spec.tls[]`, chosen by SNI (exact host, then a `*.` wildcard), with a self-signed
//! fallback when nothing matches, as ingress-nginx does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::rules::{self, ObjKey, Objects};

/// The DNS name of the fallback certificate.
pub(crate) const FALLBACK_NAME: &str = "ingress.skiff.local";
/// The common name of the fallback certificate (ingress-nginx's says "Kubernetes Ingress
/// Controller Fake Certificate").
pub(crate) const FALLBACK_COMMON_NAME: &str = "Skiff Ingress Fake Certificate";

/// Errors of the TLS setup.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("secret {0} has no {1}")]
    Missing(String, &'static str),
    #[error("secret {0}: {1}")]
    Invalid(String, String),
    #[error("creating the fallback certificate: {0}")]
    Fallback(String),
}

/// Certificates by host.
#[derive(Debug)]
pub(crate) struct TlsTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix of a `*.SUFFIX` host.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    fallback: Arc<CertifiedKey>,
}

/// Parsed Secrets, by key, with the resourceVersion they were parsed at: a table rebuild parses
/// only the Secrets that changed.
#[derive(Default)]
pub(crate) struct ParsedSecrets {
    parsed: HashMap<ObjKey, Parsed>,
}

/// A Secret's resourceVersion and what it held.
type Parsed = (Option<String>, Result<Arc<CertifiedKey>, String>);

impl ParsedSecrets {
    fn get(&mut self, key: &ObjKey, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
        let rv = secret.metadata.resource_version.clone();
        if let Some((seen, parsed)) = self.parsed.get(key)
            && *seen == rv
            && rv.is_some()
        {
            return parsed.clone();
        }
        let parsed = certified_key(&format!("{}/{}", key.0, key.1), secret)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        self.parsed.insert(key.clone(), (rv, parsed.clone()));
        parsed
    }

    /// Forgets Secrets no longer in the cache.
    fn retain(&mut self, secrets: &BTreeMap<ObjKey, Secret>) {
        self.parsed.retain(|k, _| secrets.contains_key(k));
    }
}

impl TlsTable {
    /// The certificates the served Ingresses name, the oldest Ingress's when two name
    /// one host.
    pub(crate) fn build(
        objects: &Objects,
        secrets: &BTreeMap<ObjKey, Secret>,
        parsed: &mut ParsedSecrets,
        fallback: Arc<CertifiedKey>,
    ) -> TlsTable {
        parsed.retain(secrets);
        let mut table = TlsTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            fallback,
        };
        let mut served: Vec<_> = rules::served_keys(objects)
            .into_iter()
            .filter_map(|k| objects.ingresses.get(&k).map(|i| (k, i)))
            .collect();
        served.sort_by_key(|(k, i)| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                k.clone(),
            )
        });
        for ((ns, name), ing) in served {
            let Some(spec) = &ing.spec else { continue };
            for tls in spec.tls.iter().flatten() {
                let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let key = (ns.clone(), secret_name.to_string());
                let Some(secret) = secrets.get(&key) else {
                    tracing::debug!(ingress = %format!("{ns}/{name}"), secret = secret_name,
                        "the TLS secret is missing; its hosts get the fallback certificate");
                    continue;
                };
                let ck = match parsed.get(&key, secret) {
                    Ok(ck) => ck,
                    Err(e) => {
                        tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e,
                            "ignoring a TLS secret");
                        continue;
                    }
                };
                // Without hosts, the entry covers the Ingress's rule hosts.
                let hosts: Vec<String> = match tls.hosts.as_ref().filter(|h| !h.is_empty()) {
                    Some(h) => h.clone(),
                    None => spec
                        .rules
                        .iter()
                        .flatten()
                        .filter_map(|r| r.host.clone())
                        .collect(),
                };
                for host in hosts {
                    let host = host.to_ascii_lowercase();
                    let map = match host.strip_prefix("*.") {
                        Some(suffix) => table.wildcard.entry(suffix.to_string()),
                        None => table.exact.entry(host),
                    };
                    map.or_insert_with(|| ck.clone());
                }
            }
        }
        table
    }

    /// The certificate for an SNI name (the fallback without one).
    pub(crate) fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.fallback.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(ck) = self.exact.get(&name) {
            return ck.clone();
        }
        if let Some((label, suffix)) = name.split_once('.')
            && !label.is_empty()
            && let Some(ck) = self.wildcard.get(suffix)
        {
            return ck.clone();
        }
        self.fallback.clone()
    }
}

/// rustls' view of the current table: read without a lock on every handshake.
#[derive(Debug)]
pub(crate) struct Resolver {
    pub(crate) table: Arc<ArcSwap<TlsTable>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.table.load().lookup(hello.server_name()))
    }
}

/// The server configuration of the HTTPS listener.
pub(crate) fn server_config(table: Arc<ArcSwap<TlsTable>>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { table }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate chain and key of a TLS Secret (`tls.crt`, `tls.key`, PEM).
pub(crate) fn certified_key(name: &str, secret: &Secret) -> Result<CertifiedKey, TlsError> {
    let data = secret.data.as_ref();
    let crt = data
        .and_then(|d| d.get("tls.crt"))
        .ok_or_else(|| TlsError::Missing(name.to_string(), "tls.crt"))?;
    let key = data
        .and_then(|d| d.get("tls.key"))
        .ok_or_else(|| TlsError::Missing(name.to_string(), "tls.key"))?;
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        TlsError::Invalid(name.to_string(), format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(&crt.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls.crt", &e))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(
            name.to_string(),
            "tls.crt holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key.0).map_err(|e| invalid("tls.key", &e))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| invalid("the key pair", &e))
}

/// A self-signed certificate for handshakes no Secret answers.
pub(crate) fn fallback_certificate() -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |e: &dyn std::fmt::Display| TlsError::Fallback(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(vec![FALLBACK_NAME.to_string()]).map_err(|e| fail(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FALLBACK_COMMON_NAME);
    let signing_key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let cert = params.self_signed(&signing_key).map_err(|e| fail(&e))?;
    let key = PrivateKeyDer::try_from(signing_key.serialize_der()).map_err(|e| fail(&e))?;
    CertifiedKey::from_der(vec![cert.der().clone()], key, &provider())
        .map(Arc::new)
        .map_err(|e| fail(&e))
}
