//! ServiceAccount tokens, as kube-apiserver issues and checks them: the ES256 signing key and the
//! verification keys (`jwt`), `serviceaccounts/token` (`token_request`), the bearer-token
//! authenticator and TokenReview's check (`authenticator`), and the OIDC discovery documents
//! (`discovery`).

pub mod authenticator;
pub(crate) mod discovery;
pub mod jwt;
pub(crate) mod token_request;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use authenticator::ServiceAccountAuthenticator;
pub use jwt::{Claims, KubernetesClaims, ObjectRef};

/// kube-apiserver's usual `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience of the tokens nodes present to each other's endpoints.
pub const NODE_ENDPOINT_AUDIENCE: &str = "skiff.dev/node-endpoint";
/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap with the cluster CA every namespace has.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The namespace and name of the ServiceAccount nodes get endpoint tokens for.
pub const NODE_SERVICE_ACCOUNT: (&str, &str) = ("kube-system", "skiff-node");
/// The group of every ServiceAccount.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Where the token, CA and namespace are mounted in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The user name of a ServiceAccount: `system:serviceaccount:NS:NAME`.
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Why the service-account keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("service-account key: {0}")]
    Generate(String),
    #[error("signing a service-account token: {0}")]
    Sign(String),
}

/// The service-account flags of `skiff server` (kube-apiserver's names).
#[derive(Clone, Debug)]
pub struct ServiceAccountOptions {
    /// `--service-account-issuer`.
    pub issuer: String,
    /// `--api-audiences`; empty means the issuer.
    pub api_audiences: Vec<String>,
    /// `--service-account-signing-key-file`; `None` means `DATA/pki/sa.key`, made on first start.
    pub signing_key_file: Option<PathBuf>,
    /// `--service-account-key-file` (repeatable): more keys tokens may be signed with.
    pub key_files: Vec<PathBuf>,
    /// `--service-account-max-token-expiration`; `None` is no cap.
    pub max_token_expiration: Option<Duration>,
}

impl Default for ServiceAccountOptions {
    fn default() -> Self {
        ServiceAccountOptions {
            issuer: DEFAULT_ISSUER.to_string(),
            api_audiences: Vec::new(),
            signing_key_file: None,
            key_files: Vec::new(),
            max_token_expiration: None,
        }
    }
}

/// Everything the server needs to issue and check ServiceAccount tokens.
pub struct ServiceAccounts {
    pub issuer: String,
    /// The API server's audiences: tokens must name one of them to authenticate a request.
    pub audiences: Vec<String>,
    /// The longest lifetime a TokenRequest gets, in seconds.
    pub max_expiration_seconds: Option<i64>,
    /// The cluster CA (PEM), published as `kube-root-ca.crt` in every namespace.
    pub ca_pem: String,
    signer: jwt::Signer,
    verifiers: Vec<jwt::PublicKey>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("key_id", &self.signer.public.kid)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ServiceAccounts {
    /// Loads the signing key (`opts.signing_key_file`, or `DATA/pki/sa.key`, created with mode
    /// 0600 on first start) and the extra verification keys.
    pub fn load_or_create(
        data_dir: &Path,
        opts: &ServiceAccountOptions,
        ca_pem: String,
    ) -> Result<Self, Error> {
        let signer = match &opts.signing_key_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(io(path))?;
                jwt::Signer::from_pem(&pem).map_err(|message| Error::Key {
                    path: path.clone(),
                    message,
                })?
            }
            None => {
                let dir = data_dir.join("pki");
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let path = dir.join("sa.key");
                if path.exists() {
                    let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
                    jwt::Signer::from_pem(&pem).map_err(|message| Error::Key {
                        path: path.clone(),
                        message,
                    })?
                } else {
                    let pem = jwt::Signer::generate_pem().map_err(Error::Generate)?;
                    crate::pki::write_private(&path, pem.as_bytes(), 0o600).map_err(|e| {
                        Error::Key {
                            path: path.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    jwt::Signer::from_pem(&pem).map_err(|message| Error::Key {
                        path: path.clone(),
                        message,
                    })?
                }
            }
        };
        let mut verifiers = vec![signer.public.clone()];
        for path in &opts.key_files {
            let pem = std::fs::read_to_string(path).map_err(io(path))?;
            let keys = jwt::PublicKey::all_from_pem(&pem).map_err(|message| Error::Key {
                path: path.clone(),
                message,
            })?;
            for key in keys {
                if !verifiers.iter().any(|k| k.kid == key.kid) {
                    verifiers.push(key);
                }
            }
        }
        Ok(Self::with_signer(signer, verifiers, opts, ca_pem))
    }

    /// Issuing and checking with a key made in memory (tests, in-process servers).
    pub fn ephemeral(opts: &ServiceAccountOptions, ca_pem: String) -> Result<Self, Error> {
        let pem = jwt::Signer::generate_pem().map_err(Error::Generate)?;
        let signer = jwt::Signer::from_pem(&pem).map_err(Error::Generate)?;
        let verifiers = vec![signer.public.clone()];
        Ok(Self::with_signer(signer, verifiers, opts, ca_pem))
    }

    fn with_signer(
        signer: jwt::Signer,
        verifiers: Vec<jwt::PublicKey>,
        opts: &ServiceAccountOptions,
        ca_pem: String,
    ) -> Self {
        let audiences = if opts.api_audiences.is_empty() {
            vec![opts.issuer.clone()]
        } else {
            opts.api_audiences.clone()
        };
        ServiceAccounts {
            issuer: opts.issuer.clone(),
            audiences,
            max_expiration_seconds: opts
                .max_token_expiration
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            ca_pem,
            signer,
            verifiers,
        }
    }

    /// Signs `claims` with the signing key (ES256, `kid` the key's id).
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        self.signer.sign(claims).map_err(Error::Sign)
    }

    /// The claims of a token signed by one of the keys, issued by this issuer, neither expired
    /// nor before its `nbf` (a minute's leeway, as Kubernetes); the audience is not checked here.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        jwt::verify(token, &self.issuer, &self.verifiers)
    }

    /// The verification keys, as the JWKS document of `/openid/v1/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.verifiers.iter().map(jwt::PublicKey::jwk).collect::<Vec<_>>(),
        })
    }
}

/// Creates `desired` (a core object) unless it exists; when it exists, `refresh` may return
/// what to store instead. Through the write path, as the server's user.
async fn ensure_core(
    state: &crate::state::AppState,
    plural: &str,
    desired: serde_json::Value,
    refresh: impl Fn(&serde_json::Value) -> Option<serde_json::Value>,
) -> Result<(), crate::error::ApiError> {
    use crate::registry::{self, Change, Write};
    let kind = skiff_kinds::find("", "v1", plural).expect("a known core kind");
    let namespace = desired
        .pointer("/metadata/namespace")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let name = desired
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prepared = registry::prepare_create(
        kind,
        namespace.as_deref(),
        desired,
        skiff_kinds::validate::FieldValidation::Strict,
        "kube-apiserver",
        false,
    )?;
    let user = crate::bootstrap::server_user();
    let write = Write {
        kind,
        namespace: namespace.as_deref(),
        name: &name,
        user: &user,
        dry_run: false,
        subresource: None,
    };
    registry::guaranteed_update(state, &write, |current| {
        Ok(match current {
            None => Change::Create(prepared.obj.clone()),
            Some((obj, _)) => match refresh(obj) {
                Some(new) if new != *obj => Change::Update(new),
                _ => Change::Keep(obj.clone()),
            },
        })
    })
    .await
    .map(drop)
}

/// The `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap of `namespace`, created
/// (or, for the ConfigMap, repaired) unless they are there. Nothing without service accounts.
/// (A boxed future: the namespace create path calls it, and it creates through that path.)
pub(crate) fn namespace_objects<'a>(
    state: &'a crate::state::AppState,
    namespace: &'a str,
) -> futures::future::BoxFuture<'a, Result<(), crate::error::ApiError>> {
    Box::pin(namespace_objects_inner(state, namespace))
}

async fn namespace_objects_inner(
    state: &crate::state::AppState,
    namespace: &str,
) -> Result<(), crate::error::ApiError> {
    let Some(sa) = state.service_accounts.clone() else {
        return Ok(());
    };
    ensure_core(
        state,
        "serviceaccounts",
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace}}),
        |_| None,
    )
    .await?;
    let data = serde_json::json!({"ca.crt": sa.ca_pem});
    ensure_core(
        state,
        "configmaps",
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace},
            "data": data}),
        |old| {
            let mut new = old.clone();
            new.as_object_mut()?.insert("data".into(), data.clone());
            Some(new)
        },
    )
    .await
}

/// At start: every namespace's `default` ServiceAccount and `kube-root-ca.crt`, and the
/// `kube-system/skiff-node` ServiceAccount nodes get endpoint tokens for.
pub(crate) async fn bootstrap(
    state: &crate::state::AppState,
) -> Result<(), crate::error::ApiError> {
    if state.service_accounts.is_none() {
        return Ok(());
    }
    let kind = skiff_kinds::find("", "v1", "namespaces").expect("a known kind");
    for ns in crate::admission::list(state, kind, None).await? {
        if crate::objects::is_deleting(&ns) {
            continue;
        }
        if let Some(name) = crate::objects::meta_str(&ns, "name") {
            namespace_objects(state, name).await?;
        }
    }
    let (namespace, name) = NODE_SERVICE_ACCOUNT;
    ensure_core(
        state,
        "serviceaccounts",
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace}}),
        |_| None,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn claims(sa: &ServiceAccounts) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            iss: sa.issuer.clone(),
            sub: user_name("ns", "sa"),
            aud: sa.audiences.clone(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims::default(),
        }
    }

    #[test]
    fn the_signing_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ServiceAccountOptions::default();
        let first = ServiceAccounts::load_or_create(dir.path(), &opts, "CA".into()).unwrap();
        let path = dir.path().join("pki/sa.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = first.sign(&claims(&first)).unwrap();
        let again = ServiceAccounts::load_or_create(dir.path(), &opts, "CA".into()).unwrap();
        assert!(again.verify(&token).is_ok(), "a restart keeps the key");
        assert_eq!(again.audiences, vec![DEFAULT_ISSUER.to_string()]);
    }

    #[test]
    fn key_files_sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let signing = dir.path().join("sa.key");
        std::fs::write(&signing, jwt::Signer::generate_pem().unwrap()).unwrap();
        // Another issuer's key, given by its public half only (a PUBLIC KEY block).
        let extra_pem = jwt::Signer::generate_pem().unwrap();
        let extra_public = dir.path().join("extra.pub");
        let public = rcgen::KeyPair::from_pem(&extra_pem)
            .unwrap()
            .public_key_pem();
        std::fs::write(&extra_public, public).unwrap();
        let opts = ServiceAccountOptions {
            signing_key_file: Some(signing),
            key_files: vec![extra_public],
            api_audiences: vec!["a".into(), "b".into()],
            ..ServiceAccountOptions::default()
        };
        let sa = ServiceAccounts::load_or_create(dir.path(), &opts, String::new()).unwrap();
        assert!(
            !dir.path().join("pki/sa.key").exists(),
            "no key is made when one is given"
        );
        assert_eq!(sa.audiences, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(sa.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(sa.verify(&sa.sign(&claims(&sa)).unwrap()).is_ok());
        let extra = jwt::Signer::from_pem(&extra_pem).unwrap();
        assert!(sa.verify(&extra.sign(&claims(&sa)).unwrap()).is_ok());
        let unknown =
            ServiceAccounts::ephemeral(&ServiceAccountOptions::default(), String::new()).unwrap();
        assert!(sa.verify(&unknown.sign(&claims(&sa)).unwrap()).is_err());
    }
}
