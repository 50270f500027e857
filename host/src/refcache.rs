//! The node's cache of the ConfigMaps and Secrets its pods' volumes reference, as kubelet's
//! TTL-based `cacheBasedManager`: each pod re-reads its references every few seconds (to follow
//! updates into its file volumes), and through this cache an object is read from the API server
//! at most once per TTL however many pods reference it — with 10,000 pods each projecting their
//! namespace's `kube-root-ca.crt`, one GET per namespace per TTL instead of one per pod. A pod
//! being set up reads fresh and refreshes the cache for the others. Entries not asked for in a
//! while are dropped, so objects of pods gone from the node do not stay in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

/// How long a read serves other pods.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Entries unread for this long are dropped at the next read.
const IDLE: Duration = Duration::from_secs(60);

struct Entry<K> {
    read_at: Instant,
    used_at: Instant,
    value: Option<K>,
}

/// One kind's entries by `(namespace, name)`.
struct TtlMap<K> {
    entries: Mutex<HashMap<(String, String), Entry<K>>>,
}

impl<K> Default for TtlMap<K> {
    fn default() -> Self {
        TtlMap {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> TtlMap<K>
where
    K: Clone + kube::Resource + serde::de::DeserializeOwned + std::fmt::Debug,
{
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry<K>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object (`None`: it does not exist), from the cache when read less than [`TTL`] ago
    /// and `fresh` is false, else from the API server.
    async fn get(
        &self,
        api: &Api<K>,
        namespace: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Option<K>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        let now = Instant::now();
        if !fresh {
            let mut entries = self.lock();
            if let Some(entry) = entries.get_mut(&key)
                && now.duration_since(entry.read_at) < TTL
            {
                entry.used_at = now;
                return Ok(entry.value.clone());
            }
        }
        let value = api.get_opt(name).await?;
        let mut entries = self.lock();
        entries.retain(|_, e| now.duration_since(e.used_at) < IDLE);
        entries.insert(
            key,
            Entry {
                read_at: now,
                used_at: now,
                value: value.clone(),
            },
        );
        Ok(value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The node's ConfigMaps and Secrets cache (one per node, in `NodeCtx`).
#[derive(Default)]
pub(crate) struct RefCache {
    config_maps: TtlMap<ConfigMap>,
    secrets: TtlMap<Secret>,
}

impl RefCache {
    pub(crate) async fn config_map(
        &self,
        api: &Api<ConfigMap>,
        namespace: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Option<ConfigMap>, kube::Error> {
        self.config_maps.get(api, namespace, name, fresh).await
    }

    pub(crate) async fn secret(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Option<Secret>, kube::Error> {
        self.secrets.get(api, namespace, name, fresh).await
    }

    /// Objects held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.config_maps.len() + self.secrets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A client whose API server answers every GET with the ConfigMap `root`, counting calls.
    fn counting_client() -> (kube::Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let service = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "root", "namespace": "team"},
                    "data": {"ca.crt": "pem"},
                });
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .unwrap(),
                )
            }
        });
        (kube::Client::new(service, "team"), calls)
    }

    #[tokio::test]
    async fn many_pods_refreshing_one_object_read_it_once_per_ttl() {
        let (client, calls) = counting_client();
        let api: Api<ConfigMap> = Api::namespaced(client, "team");
        let cache = RefCache::default();
        let first = cache.config_map(&api, "team", "root", true).await.unwrap();
        assert_eq!(first.unwrap().data.unwrap()["ca.crt"], "pem");
        for _ in 0..100 {
            let again = cache.config_map(&api, "team", "root", false).await.unwrap();
            assert!(again.is_some());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one GET for 101 reads");
        // A pod being set up reads fresh.
        cache.config_map(&api, "team", "root", true).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.len(), 1);
    }
}
