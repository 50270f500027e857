//! Client certificate rotation, as kubelet's `--rotate-certificates`: a node whose kubeconfig
//! holds a client certificate asks for a new one (a fresh key, a CertificateSigningRequest of
//! signer `kubernetes.io/kube-apiserver-client-kubelet`, made with its current credential, which
//! the `csrapproving` controller approves for a node renewing its own) when a random point
//! between 70% and 84% of the certificate's lifetime is reached, as kubelet's certificate manager
//! does; it rewrites the kubeconfig (0600) and swaps the client every part of the node uses, in
//! place, so no request in flight is dropped. A failed renewal is retried with back-off until the
//! old certificate ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;

use crate::bootstrap;
use crate::error::{Error, Result};

/// The client the node uses: a `kube::Client` whose every request goes to the current inner
/// client, swapped when the certificate is renewed.
#[derive(Clone)]
struct Current(Arc<ArcSwap<kube::Client>>);

impl tower::Service<Request<Body>> for Current {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, std::result::Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.0.load_full();
        Box::pin(async move { client.send(request).await })
    }
}

/// The node's client for `kubeconfig`: rotated in the background when the kubeconfig's user is
/// a client certificate, the plain client otherwise. The rotation stops once every clone of the
/// returned client is dropped.
pub(crate) async fn client(kubeconfig: &Path, node: &str) -> Result<kube::Client> {
    let inner = crate::client(kubeconfig).await?;
    let Some(pem) = certificate(kubeconfig)? else {
        return Ok(inner);
    };
    let Some(validity) = bootstrap::validity(&pem) else {
        return Ok(inner);
    };
    let namespace = inner.default_namespace().to_string();
    let current = Arc::new(ArcSwap::from_pointee(inner));
    let client = kube::Client::new(Current(current.clone()), namespace);
    tokio::spawn(rotate(
        Arc::downgrade(&current),
        kubeconfig.to_path_buf(),
        node.to_string(),
        validity,
    ));
    Ok(client)
}

fn certificate(kubeconfig: &Path) -> Result<Option<Vec<u8>>> {
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| Error::Kubeconfig {
        path: kubeconfig.display().to_string(),
        detail: e.to_string(),
    })?;
    let doc: serde_json::Value = serde_yaml::from_str(&text).map_err(|e| Error::Kubeconfig {
        path: kubeconfig.display().to_string(),
        detail: e.to_string(),
    })?;
    bootstrap::client_certificate(kubeconfig, &doc)
}

/// When to renew a certificate valid from `start` to `end`: at `start` + a fraction of its
/// lifetime between 70% and 84% (`jitter` in 0..1 picks it), as kubelet's
/// `nextRotationDeadline`.
pub(crate) fn renewal_time(
    start: jiff::Timestamp,
    end: jiff::Timestamp,
    jitter: f64,
) -> jiff::Timestamp {
    let lifetime = (end.as_millisecond() - start.as_millisecond()).max(0);
    // 70% of the lifetime, plus up to a fifth of that: kubelet's `wait.Jitter(0.7 × total, 0.2)`.
    let base = lifetime * 7 / 10;
    let at = start.as_millisecond() + base + (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    jiff::Timestamp::from_millisecond(at).unwrap_or(end)
}

fn until(at: jiff::Timestamp) -> Duration {
    let now = jiff::Timestamp::now().as_millisecond();
    Duration::from_millis((at.as_millisecond() - now).max(0) as u64)
}

async fn rotate(
    current: Weak<ArcSwap<kube::Client>>,
    kubeconfig: PathBuf,
    node: String,
    (mut start, mut end): (jiff::Timestamp, jiff::Timestamp),
) {
    loop {
        let at = renewal_time(start, end, rand::random::<f64>());
        tracing::info!(
            expires = %end, renew_at = %at,
            "the node's client certificate will be renewed"
        );
        tokio::time::sleep(until(at)).await;
        let mut backoff = Duration::from_secs(1);
        loop {
            let Some(swap) = current.upgrade() else {
                return;
            };
            match renew(&swap, &kubeconfig, &node).await {
                Ok(validity) => {
                    (start, end) = validity;
                    tracing::info!(expires = %end, "the node's client certificate was renewed");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "renewing the node's client certificate");
                }
            }
            drop(swap);
            // Retry until the end; past it the node's requests fail, as kubelet's do.
            tokio::time::sleep(backoff.min(until(end).max(Duration::from_secs(1)))).await;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
}

/// One renewal: a new key and CSR, the signed certificate, the kubeconfig rewritten, the client
/// swapped. Returns the new certificate's validity.
async fn renew(
    swap: &ArcSwap<kube::Client>,
    kubeconfig: &Path,
    node: &str,
) -> Result<(jiff::Timestamp, jiff::Timestamp)> {
    let key =
        rcgen::KeyPair::generate().map_err(|e| Error::Internal(format!("making a key: {e}")))?;
    let request = bootstrap::csr_pem(node, &key)?;
    let client = swap.load_full();
    let cert = bootstrap::request_certificate(&client, node, &request).await?;
    let validity = bootstrap::validity(cert.as_bytes())
        .ok_or_else(|| Error::Internal("the issued certificate cannot be read".into()))?;
    let (server, ca) = bootstrap::cluster_of(kubeconfig)?;
    let text = bootstrap::node_kubeconfig(&server, &ca, node, &cert, &key.serialize_pem());
    bootstrap::write_private(kubeconfig, text.as_bytes())?;
    let fresh = crate::client(kubeconfig).await?;
    swap.store(Arc::new(fresh));
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_70_and_84_percent_of_the_lifetime() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let end: jiff::Timestamp = "2026-01-01T01:40:00Z".parse().unwrap(); // 100 minutes
        let at = |j| renewal_time(start, end, j).to_string();
        assert_eq!(at(0.0), "2026-01-01T01:10:00Z");
        assert_eq!(at(0.5), "2026-01-01T01:17:00Z");
        assert_eq!(at(1.0), "2026-01-01T01:24:00Z");
        assert_eq!(at(7.0), "2026-01-01T01:24:00Z");
    }
}
