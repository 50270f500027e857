//! What a pod's environment and volumes are made from: the ConfigMaps and Secrets it refers
//! to, and the ServiceAccount tokens its projected volumes ask for — finding them and reading
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;

use crate::refcache::RefCache;
use crate::tokens::{DEFAULT_EXPIRATION_SECONDS, TokenError, TokenKey, TokenManager};

/// The ConfigMaps and Secrets a pod refers to, as read from the API (`None`: not found), and
/// the tokens of its `serviceAccountToken` sources.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Refs {
    pub(crate) config_maps: HashMap<String, Option<ConfigMap>>,
    pub(crate) secrets: HashMap<String, Option<Secret>>,
    pub(crate) tokens: BTreeMap<TokenSource, TokenData>,
}

impl Refs {
    /// True if the pod's files come from anything that can change (what the worker re-reads).
    pub(crate) fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty() && self.tokens.is_empty()
    }
}

/// What a projected `serviceAccountToken` source asks for; sources asking the same share one
/// token, as kubelet's cache key does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TokenSource {
    /// Empty: the API server's own audiences.
    pub(crate) audience: String,
    pub(crate) expiration_seconds: i64,
}

/// A token's text, never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenData(pub(crate) String);

impl std::fmt::Debug for TokenData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenData(..)")
    }
}

/// Why a pod's referenced objects could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// Reading a ConfigMap or Secret failed (not "not found": that is `None` in [`Refs`]).
    #[error("reading referenced objects: {0}")]
    Read(#[from] kube::Error),
    /// The API server gave no token for a projected volume (kubelet's FailedMount text).
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {error}")]
    Token {
        volume: String,
        #[source]
        error: TokenError,
    },
}

/// The ServiceAccount a pod runs as (`spec.serviceAccountName`, the deprecated
/// `spec.serviceAccount`, else `default`).
pub(crate) fn service_account(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.clone())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The pod's `serviceAccountToken` sources with the volume each is in.
pub(crate) fn token_sources(pod: &Pod) -> Vec<(String, TokenSource)> {
    let mut out = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        let Some(p) = &v.projected else { continue };
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                out.push((v.name.clone(), token_source(t)));
            }
        }
    }
    out
}

/// What a `serviceAccountToken` source asks for, with kubelet's defaults.
pub(crate) fn token_source(
    t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> TokenSource {
    TokenSource {
        audience: t.audience.clone().unwrap_or_default(),
        expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
    }
}

/// Names of the ConfigMaps and Secrets a pod refers to (env, envFrom, volumes).
pub(crate) fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (cms, secrets);
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    cms.insert(r.name.clone());
                }
                if let Some(r) = &vf.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            secrets.insert(n.clone());
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    cms.insert(cm.name.clone());
                }
                if let Some(s) = &src.secret {
                    secrets.insert(s.name.clone());
                }
            }
        }
    }
    (cms, secrets)
}

/// Reads the ConfigMaps and Secrets a pod refers to — through the node's `cache` unless `fresh`
/// (a pod being set up reads fresh) — and has `tokens` give the tokens its projected volumes ask
/// for (cached ones until they are due for rotation).
pub(crate) async fn fetch(
    client: &kube::Client,
    tokens: &TokenManager,
    cache: &RefCache,
    fresh: bool,
    pod: &Pod,
) -> Result<Refs, FetchError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = referenced(pod);
    let mut refs = Refs::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in cms {
        let v = cache.config_map(&cm_api, ns, &name, fresh).await?;
        refs.config_maps.insert(name, v);
    }
    let s_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        let v = cache.secret(&s_api, ns, &name, fresh).await?;
        refs.secrets.insert(name, v);
    }
    let service_account = service_account(pod);
    for (volume, source) in token_sources(pod) {
        if refs.tokens.contains_key(&source) {
            continue;
        }
        let key = TokenKey {
            namespace: ns.to_string(),
            service_account: service_account.clone(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audiences: if source.audience.is_empty() {
                Vec::new()
            } else {
                vec![source.audience.clone()]
            },
            expiration_seconds: source.expiration_seconds,
        };
        let issued = tokens
            .get(&key)
            .await
            .map_err(|error| FetchError::Token { volume, error })?;
        refs.tokens.insert(source, TokenData(issued.token));
    }
    Ok(refs)
}

pub(super) fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

pub(super) fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}
