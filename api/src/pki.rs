//! The server's own PKI: a CA made on first start, a serving certificate signed by it, the admin
//! token and the admin kubeconfig, all kept in the data directory.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::prelude::FromDer as _;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a TLS server and its clients need.
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_token: String,
}

/// Writes `contents` to `path` atomically (temp file, fsync, rename) with the given mode. The
/// temporary name is unique to the call, so several servers sharing a data directory may write
/// the same file at once (the last rename wins, no one fails).
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let suffix: u64 = rand::rng().random();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{suffix:016x}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Holds the data directory's credentials lock (`DIR/credentials.lock`, an exclusive `flock`)
/// while the credentials are read or made, so that servers sharing one data directory (with
/// `--etcd-servers`) starting at once agree on one CA, one service-account key, one admin token:
/// the first creates them, the others wait and read them. Released when dropped.
pub struct CredentialsLock {
    _file: fs::File,
}

impl CredentialsLock {
    /// Waits for the lock of `dir` (created if missing).
    pub fn acquire(dir: &Path) -> Result<CredentialsLock> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("credentials.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(CredentialsLock { _file: file })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-ca");
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A random token of 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Loads the PKI from `dir/pki`, creating the CA and token on first start. The serving certificate
/// is made anew on every start, so its names follow the listen address.
pub fn load_or_create(dir: &Path, listen: SocketAddr) -> Result<Pki> {
    let pki = dir.join("pki");
    fs::create_dir_all(&pki).map_err(io(&pki))?;
    let ca_key_path = pki.join("ca.key");
    let ca_cert_path = pki.join("ca.crt");
    let (ca_key, ca_cert_pem) = if ca_key_path.exists() && ca_cert_path.exists() {
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::Invalid {
            path: ca_key_path.clone(),
            message: e.to_string(),
        })?;
        (
            key,
            fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?,
        )
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
        (key, cert.pem())
    };
    let issuer = Issuer::new(ca_params(), &ca_key);

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "skiff".to_string(),
    ];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    } else {
        names.extend(local_addresses().into_iter().map(|ip| ip.to_string()));
    }
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let server_cert_pem = server_cert.pem();
    let server_key_pem = server_key.serialize_pem();
    write_private(&pki.join("server.crt"), server_cert_pem.as_bytes(), 0o644)?;
    write_private(&pki.join("server.key"), server_key_pem.as_bytes(), 0o600)?;

    let token_path = dir.join("admin.token");
    let admin_token = if token_path.exists() {
        fs::read_to_string(&token_path)
            .map_err(io(&token_path))?
            .trim()
            .to_string()
    } else {
        let token = random_token();
        write_private(&token_path, format!("{token}\n").as_bytes(), 0o600)?;
        token
    };
    if admin_token.is_empty() {
        return Err(Error::Invalid {
            path: token_path,
            message: "the admin token is empty".into(),
        });
    }
    Ok(Pki {
        ca_cert_pem,
        server_cert_pem,
        server_key_pem,
        admin_token,
    })
}

/// Addresses of this machine's interfaces, for a server listening on all of them.
fn local_addresses() -> Vec<IpAddr> {
    // Reading /proc is enough for the serving certificate; unreachable names are harmless.
    let mut out = Vec::new();
    if let Ok(text) = fs::read_to_string("/proc/net/fib_trie") {
        for line in text.lines() {
            let line = line.trim();
            if let Some(ip) = line
                .strip_prefix("|-- ")
                .and_then(|s| s.parse::<IpAddr>().ok())
                && !ip.is_unspecified()
            {
                out.push(ip);
            }
        }
    }
    out
}

/// A kubeconfig for `user` with `token`, trusting `ca_pem`, pointing at `server` (an https URL).
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: {user}
    namespace: default
current-context: skiff
preferences: {{}}
"
    )
}

/// The URL clients use to reach a server listening on `listen`.
pub fn server_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        match listen.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        }
    } else {
        listen.ip()
    };
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}:{}", listen.port()),
        IpAddr::V6(v6) => format!("https://[{v6}]:{}", listen.port()),
    }
}

/// How long before "now" a minted client certificate starts being valid (clock skew between
/// machines).
const CLIENT_BACKDATE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// A client certificate for `user` in `groups` (CN = user, one O per group, extended key usage
/// clientAuth), signed by the CA, valid from five minutes ago for `valid_for`, with a fresh
/// ECDSA P-256 key. Returns `(cert_pem, key_pem)`.
pub fn client_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    user: &str,
    groups: &[String],
    valid_for: std::time::Duration,
) -> Result<(String, String)> {
    let invalid = |message: String| Error::Invalid {
        path: PathBuf::from("ca.crt"),
        message,
    };
    if user.is_empty() {
        return Err(invalid("a client certificate needs a user name".into()));
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| invalid(e.to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(CLIENT_BACKDATE);
    params.not_after = epoch + now + valid_for;
    let mut serial: [u8; 16] = rand::rng().random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    // rcgen keeps one value per attribute type; the subject with every group is put in place
    // and the certificate signed again by the CA.
    let der = cert.der().to_vec();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| invalid(format!("the minted certificate does not parse: {e}")))?;
    let der = with_subject(
        &der,
        parsed.tbs_certificate.as_ref(),
        parsed.tbs_certificate.subject.as_raw(),
        &skiff_meta::der::user_subject(user, groups),
        issuer.key(),
    )?;
    Ok((pem_encode("CERTIFICATE", &der), key.serialize_pem()))
}

/// The user (CN) and groups (each O, in order) a PEM certificate names; `None` when it does not
/// parse.
pub fn certificate_subject(cert_pem: &str) -> Option<(String, Vec<String>)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some((user, groups))
}

/// A certificate signing request (PKCS#10) for `user` in `groups` (CN = user, one O per group)
/// with a fresh ECDSA P-256 key, as `skiff kubeconfig` sends it in a CertificateSigningRequest.
/// Returns `(request_pem, key_pem)`.
pub fn client_certificate_request(user: &str, groups: &[String]) -> Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let request = certificate_request(&key, user, groups)?;
    Ok((request, key.serialize_pem()))
}

/// A PEM-encoded certificate signing request for `user` in `groups`, signed with `key`.
fn certificate_request(key: &KeyPair, user: &str, groups: &[String]) -> Result<String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    params.distinguished_name = dn;
    let request = params.serialize_request(key)?;
    let der = request.der().to_vec();
    let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::Invalid {
            path: PathBuf::from("request"),
            message: format!("the request does not parse: {e}"),
        })?;
    let info = &parsed.certification_request_info;
    let der = with_subject(
        &der,
        info.raw,
        info.subject.as_raw(),
        &skiff_meta::der::user_subject(user, groups),
        key,
    )?;
    Ok(pem_encode("CERTIFICATE REQUEST", &der))
}

/// `signed` with the subject inside `info` replaced by `subject` and signed again by `key`
/// (see [`skiff_meta::der::replace_subject`]).
fn with_subject(
    signed: &[u8],
    info: &[u8],
    old_subject: &[u8],
    subject: &[u8],
    key: &impl rcgen::SigningKey,
) -> Result<Vec<u8>> {
    skiff_meta::der::replace_subject(signed, info, old_subject, subject, |m| key.sign(m))?
        .ok_or_else(|| Error::Invalid {
            path: PathBuf::from("certificate"),
            message: "unexpected DER layout".into(),
        })
}

/// PEM text of DER bytes under `label` (`CERTIFICATE`).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A kubeconfig authenticating with a client certificate (`client-certificate-data`,
/// `client-key-data`) as `user_label`, trusting `ca_pem`, pointing at `server_url`; the context's
/// namespace is `namespace` (none: the server's default).
pub fn client_kubeconfig(
    server_url: &str,
    ca_pem: &str,
    user_label: &str,
    cert_pem: &str,
    key_pem: &str,
    namespace: Option<&str>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let namespace = namespace
        .map(|ns| format!("    namespace: {}\n", quote(ns)))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: {user}
{namespace}current-context: skiff
preferences: {{}}
",
        server = quote(server_url),
        ca = b64(ca_pem),
        user = quote(user_label),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The minted certificate names the user and groups, is a client certificate, chains to the
    /// CA, and the kubeconfig carries it.
    #[test]
    fn a_client_certificate_names_the_user_and_groups() {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params().self_signed(&ca_key).unwrap();
        let groups = vec!["team-a".to_string(), "devs".to_string()];
        let (cert_pem, key_pem) = client_certificate(
            &ca.pem(),
            &ca_key.serialize_pem(),
            "alice",
            &groups,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let orgs: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cn, ["alice"]);
        assert_eq!(orgs, ["team-a", "devs"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let (_, ca_der) = x509_parser::pem::parse_x509_pem(ca.pem().as_bytes()).unwrap();
        let ca_cert = ca_der.parse_x509().unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert!(KeyPair::from_pem(&key_pem).is_ok());
        assert_eq!(
            certificate_subject(&cert_pem),
            Some(("alice".to_string(), groups.clone()))
        );
        assert_eq!(certificate_subject("garbage"), None);

        let config = client_kubeconfig(
            "https://127.0.0.1:6443",
            &ca.pem(),
            "alice",
            &cert_pem,
            &key_pem,
            Some("team-a"),
        );
        let parsed: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
        assert_eq!(parsed["contexts"][0]["context"]["namespace"], "team-a");
        assert_eq!(parsed["users"][0]["name"], "alice");
        let data = parsed["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded, cert_pem.as_bytes());
        let none = client_kubeconfig("https://x", &ca.pem(), "a", &cert_pem, &key_pem, None);
        let parsed: serde_yaml::Value = serde_yaml::from_str(&none).unwrap();
        assert!(parsed["contexts"][0]["context"]["namespace"].is_null());
    }

    /// The request carries every group and a valid self-signature.
    #[test]
    fn a_client_certificate_request_names_the_user_and_groups() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let groups = vec!["g1".to_string(), "g2".to_string(), "g3".to_string()];
        let pem = certificate_request(&key, "bob", &groups).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .unwrap();
        let subject = &csr.certification_request_info.subject;
        let orgs: Vec<_> = subject
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["g1", "g2", "g3"]);
        let cn: Vec<_> = subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["bob"]);
        csr.verify_signature().unwrap();
    }

    /// Servers starting at once on one empty data directory agree on one CA and one admin
    /// token, each with its own serving certificate signed by it.
    #[test]
    fn servers_sharing_a_directory_agree_on_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let loaded: Vec<Pki> = (0..4u16)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let _lock = CredentialsLock::acquire(&dir).unwrap();
                    load_or_create(&dir, SocketAddr::from(([127, 0, 0, 1], 6443 + i))).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let on_disk = fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
        for pki in &loaded {
            assert_eq!(pki.ca_cert_pem, on_disk);
            assert_eq!(pki.admin_token, loaded[0].admin_token);
        }
        assert_ne!(loaded[0].server_cert_pem, loaded[1].server_cert_pem);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("pki"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_client_certificate_needs_a_user() {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params().self_signed(&ca_key).unwrap();
        let err = client_certificate(
            &ca.pem(),
            &ca_key.serialize_pem(),
            "",
            &[],
            std::time::Duration::from_secs(60),
        );
        assert!(err.is_err());
    }
}
