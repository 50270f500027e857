//! TLS bootstrap, as kubelet's `--bootstrap-kubeconfig`: a node without a usable kubeconfig
//! makes a key and a CertificateSigningRequest for its client certificate (CN
//! `system:node:NAME`, O `system:nodes`, signer `kubernetes.io/kube-apiserver-client-kubelet`),
//! creates it with the bootstrap credential (a bootstrap token), waits on a watch until the
//! approver and signer have issued it, and writes its own kubeconfig (0600, certificate and key
//! inline, the bootstrap kubeconfig's server and CA).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher;
use serde_json::Value;

use crate::error::{Error, Result};

/// The signer of nodes' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// A certificate closer than this to its end is not used: the node bootstraps again.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

fn kc_error(path: &Path, detail: impl Into<String>) -> Error {
    Error::Kubeconfig {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Makes sure `kubeconfig` holds a usable credential for node `node`: kept as it is when it
/// exists and its client certificate (if it has one) is still valid; otherwise made anew through
/// TLS bootstrap with `bootstrap`.
pub async fn ensure_kubeconfig(bootstrap: &Path, kubeconfig: &Path, node: &str) -> Result<()> {
    if let Some(reason) = unusable(kubeconfig).await? {
        tracing::info!(
            kubeconfig = %kubeconfig.display(),
            %reason,
            "bootstrapping the node's client certificate"
        );
    } else {
        return Ok(());
    }
    let (server, ca_data) = cluster_of(bootstrap)?;
    let client = crate::client(bootstrap).await?;
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let request = csr_pem(node, &key)?;
    let certificate = request_certificate(&client, node, &request).await?;
    let text = node_kubeconfig(&server, &ca_data, node, &certificate, &key.serialize_pem());
    write_private(kubeconfig, text.as_bytes())?;
    tracing::info!(kubeconfig = %kubeconfig.display(), "the node's client certificate is issued");
    Ok(())
}

/// Why `path` cannot be used (missing, unreadable, its certificate expired), or `None`.
async fn unusable(path: &Path) -> Result<Option<String>> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some("the kubeconfig does not exist".into()));
        }
        Err(e) => return Err(kc_error(path, e.to_string())),
    };
    let doc: Value = match serde_yaml::from_str(&text) {
        Ok(d) => d,
        Err(e) => return Ok(Some(format!("the kubeconfig cannot be read: {e}"))),
    };
    if current_user(&doc).is_none() {
        return Ok(Some("the kubeconfig has no user".into()));
    }
    let Some(pem) = client_certificate(path, &doc)? else {
        return Ok(None);
    };
    match not_after(&pem) {
        Some(end) if end > jiff::Timestamp::now() + EXPIRY_MARGIN => Ok(None),
        Some(end) => Ok(Some(format!("its certificate expires at {end}"))),
        None => Ok(Some("its certificate cannot be read".into())),
    }
}

/// The inline client certificate (`client-certificate-data`, PEM) of the kubeconfig's current
/// user, if it has one.
pub(crate) fn client_certificate(path: &Path, doc: &Value) -> Result<Option<Vec<u8>>> {
    let Some(cert) = current_user(doc)
        .and_then(|u| u.get("client-certificate-data"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(cert.trim())
        .map(Some)
        .map_err(|e| kc_error(path, format!("client-certificate-data: {e}")))
}

/// The start and end of a PEM certificate's validity.
pub(crate) fn validity(pem: &[u8]) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents).ok()?;
    let v = cert.validity();
    Some((
        jiff::Timestamp::from_second(v.not_before.timestamp()).ok()?,
        jiff::Timestamp::from_second(v.not_after.timestamp()).ok()?,
    ))
}

/// The end of a PEM certificate's validity.
pub(crate) fn not_after(pem: &[u8]) -> Option<jiff::Timestamp> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents).ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

fn current_context(doc: &Value) -> Option<&Value> {
    let name = doc.get("current-context").and_then(Value::as_str);
    let contexts = doc.get("contexts")?.as_array()?;
    contexts
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == name)
        .or_else(|| contexts.first())?
        .get("context")
}

fn named<'a>(doc: &'a Value, list: &str, field: &str, name: Option<&str>) -> Option<&'a Value> {
    let items = doc.get(list)?.as_array()?;
    items
        .iter()
        .find(|u| u.get("name").and_then(Value::as_str) == name)
        .or_else(|| items.first())?
        .get(field)
}

fn current_user(doc: &Value) -> Option<&Value> {
    let user = current_context(doc)
        .and_then(|c| c.get("user"))
        .and_then(Value::as_str);
    named(doc, "users", "user", user)
}

/// The server URL and the CA (base64 PEM) of a kubeconfig's current cluster.
pub(crate) fn cluster_of(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| kc_error(path, e.to_string()))?;
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| kc_error(path, e.to_string()))?;
    let name = current_context(&doc)
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str);
    let cluster =
        named(&doc, "clusters", "cluster", name).ok_or_else(|| kc_error(path, "no cluster"))?;
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| kc_error(path, "the cluster has no server"))?;
    let ca = if let Some(data) = cluster
        .get("certificate-authority-data")
        .and_then(Value::as_str)
    {
        data.to_string()
    } else if let Some(file) = cluster.get("certificate-authority").and_then(Value::as_str) {
        let file = path.parent().unwrap_or(Path::new(".")).join(file);
        let pem = std::fs::read(&file).map_err(|e| kc_error(&file, e.to_string()))?;
        base64::engine::general_purpose::STANDARD.encode(pem)
    } else {
        return Err(kc_error(path, "the cluster has no certificate authority"));
    };
    Ok((server.to_string(), ca))
}

/// A PEM certificate request for node `node`'s client certificate.
pub(crate) fn csr_pem(node: &str, key: &rcgen::KeyPair) -> Result<String> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::Internal(format!("making the certificate request: {e}")))
}

/// Creates the CertificateSigningRequest and waits on a watch until it is issued (its
/// certificate, PEM) or refused.
pub(crate) async fn request_certificate(
    client: &kube::Client,
    node: &str,
    request: &str,
) -> Result<String> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let name = format!("node-csr-{node}-{:08x}", rand::random::<u32>());
    let mut csr = CertificateSigningRequest::default();
    csr.metadata.name = Some(name.clone());
    csr.spec.request = ByteString(request.as_bytes().to_vec());
    csr.spec.signer_name = KUBELET_CLIENT_SIGNER.into();
    csr.spec.usages = Some(vec!["digital signature".into(), "client auth".into()]);
    api.create(&PostParams::default(), &csr).await?;
    tracing::info!(csr = %name, "waiting for the node's certificate signing request to be approved and signed");
    let mut events = std::pin::pin!(watcher::watch_object(api, &name).boxed());
    while let Some(event) = events.next().await {
        let csr = match event {
            Ok(Some(csr)) => csr,
            Ok(None) => {
                return Err(Error::Config(format!(
                    "the certificate signing request {name} was deleted before it was issued"
                )));
            }
            Err(e) => {
                tracing::debug!(error = %e, "watching the certificate signing request");
                continue;
            }
        };
        let status = csr.status.unwrap_or_default();
        for c in status.conditions.unwrap_or_default() {
            if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                return Err(Error::Config(format!(
                    "the certificate signing request {name} was {}: {}",
                    c.type_.to_lowercase(),
                    c.message.unwrap_or_default()
                )));
            }
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(cert.0)
                .map_err(|_| Error::Internal("the issued certificate is not PEM".into()));
        }
    }
    Err(Error::Internal(format!(
        "the watch of the certificate signing request {name} ended"
    )))
}

/// A kubeconfig for node `node` with an inline client certificate and key.
pub(crate) fn node_kubeconfig(
    server: &str,
    ca_data: &str,
    node: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = format!("system:node:{node}");
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
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
current-context: skiff
preferences: {{}}
",
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// Writes `contents` to `path` atomically with mode 0600.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |what: String| move |source| Error::Io { what, source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_node() {
        use x509_parser::certification_request::X509CertificationRequest;
        use x509_parser::prelude::FromDer;
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = csr_pem("n1", &key).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        let subject = csr.certification_request_info.subject.to_string();
        assert!(subject.contains("CN=system:node:n1"), "{subject}");
        assert!(subject.contains("O=system:nodes"), "{subject}");
    }

    #[tokio::test]
    async fn a_missing_or_expired_kubeconfig_is_bootstrapped_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.kubeconfig");
        assert!(unusable(&path).await.unwrap().is_some());
        let write = |valid_for: i64| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::default();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let epoch = rcgen::date_time_ymd(1970, 1, 1);
            params.not_before = epoch + (now - Duration::from_secs(7200));
            params.not_after = if valid_for >= 0 {
                epoch + (now + Duration::from_secs(valid_for as u64))
            } else {
                epoch + (now - Duration::from_secs((-valid_for) as u64))
            };
            let cert = params.self_signed(&key).unwrap();
            let text = node_kubeconfig(
                "https://127.0.0.1:6443",
                "Q0E=",
                "n1",
                &cert.pem(),
                &key.serialize_pem(),
            );
            write_private(&path, text.as_bytes()).unwrap();
        };
        write(3600);
        assert_eq!(unusable(&path).await.unwrap(), None);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write(-60);
        assert!(unusable(&path).await.unwrap().is_some());
    }
}
