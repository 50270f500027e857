//! kube-apiserver's `EncryptionConfiguration` (`apiserver.config.k8s.io/v1`, YAML or JSON): which
//! resources are encrypted, and with which providers in order (the first writes, all read).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use serde::Deserialize;

use super::providers::{Provider, Transformer};
use super::{Error, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceFile>,
}

#[derive(Deserialize)]
struct ResourceFile {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderFile>,
}

#[derive(Deserialize)]
struct ProviderFile {
    aesgcm: Option<KeysFile>,
    secretbox: Option<KeysFile>,
    identity: Option<serde_yaml::Value>,
    aescbc: Option<serde_yaml::Value>,
    kms: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyFile>,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

/// Which stored resources one entry covers, in storage terms (`core` for the core group);
/// `None` matches any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResourceMatch {
    group: Option<String>,
    resource: Option<String>,
}

impl ResourceMatch {
    /// `secrets`, `deployments.apps`, `*.apps`, `*.` (every core resource), `*.*` (everything).
    fn parse(text: &str) -> Option<ResourceMatch> {
        let (resource, group) = match text.split_once('.') {
            Some((r, g)) => (r, g),
            None => (text, ""),
        };
        if resource.is_empty() || (resource != "*" && resource.contains('*')) {
            return None;
        }
        if group.contains('*') && group != "*" {
            return None;
        }
        let group = match group {
            "*" => None,
            "" => Some("core".to_string()),
            g => Some(g.to_string()),
        };
        let resource = (resource != "*").then(|| resource.to_string());
        Some(ResourceMatch { group, resource })
    }

    fn matches(&self, group: &str, resource: &str) -> bool {
        self.group.as_deref().is_none_or(|g| g == group)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }

    /// The store prefix of every key this entry covers.
    fn prefix(&self) -> String {
        match (&self.group, &self.resource) {
            (Some(g), Some(r)) => format!("/{g}/{r}/"),
            (Some(g), None) => format!("/{g}/"),
            (None, _) => "/".to_string(),
        }
    }
}

/// One `resources[]` entry: what it covers and how.
#[derive(Debug)]
struct Rule {
    matches: Vec<ResourceMatch>,
    transformer: Arc<Transformer>,
}

/// A loaded configuration: the first entry covering a key decides its transformer.
#[derive(Debug, Default)]
pub struct EncryptionConfig {
    rules: Vec<Rule>,
}

impl EncryptionConfig {
    /// Reads and checks the file at `path`; unsupported providers (`kms`, `aescbc`) are errors.
    pub fn load(path: &Path) -> Result<EncryptionConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        EncryptionConfig::parse(&text, path)
    }

    /// As [`load`](Self::load), from the file's text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<EncryptionConfig> {
        let invalid = |message: String| Error::Invalid {
            path: PathBuf::from(path),
            message,
        };
        let file: File = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.kind != "EncryptionConfiguration" {
            return Err(invalid(format!(
                "kind: Unsupported value: {:?}: supported values: \"EncryptionConfiguration\"",
                file.kind
            )));
        }
        if file.api_version != "apiserver.config.k8s.io/v1" {
            return Err(invalid(format!(
                "apiVersion: Unsupported value: {:?}: supported values: \"apiserver.config.k8s.io/v1\"",
                file.api_version
            )));
        }
        if file.resources.is_empty() {
            return Err(invalid("resources: Required value".into()));
        }
        let mut rules = Vec::new();
        for (i, entry) in file.resources.iter().enumerate() {
            if entry.resources.is_empty() {
                return Err(invalid(format!("resources[{i}].resources: Required value")));
            }
            let mut matches = Vec::new();
            for (j, r) in entry.resources.iter().enumerate() {
                let m = ResourceMatch::parse(r).ok_or_else(|| {
                    invalid(format!(
                        "resources[{i}].resources[{j}]: Invalid value: {r:?}: resource name is not valid"
                    ))
                })?;
                matches.push(m);
            }
            if entry.providers.is_empty() {
                return Err(invalid(format!("resources[{i}].providers: Required value")));
            }
            let mut providers = Vec::new();
            for (j, p) in entry.providers.iter().enumerate() {
                let field = format!("resources[{i}].providers[{j}]");
                providers.push(provider(p, &field).map_err(invalid)?);
            }
            rules.push(Rule {
                matches,
                transformer: Arc::new(Transformer::new(providers)),
            });
        }
        Ok(EncryptionConfig { rules })
    }

    /// The transformer of a store key `/{group}/{resource}/...`, if an entry covers it.
    pub(crate) fn transformer_for(&self, key: &str) -> Option<&Arc<Transformer>> {
        let mut parts = key.strip_prefix('/')?.splitn(3, '/');
        let group = parts.next()?;
        let resource = parts.next()?;
        parts.next()?;
        self.rules
            .iter()
            .find(|rule| rule.matches.iter().any(|m| m.matches(group, resource)))
            .map(|rule| &rule.transformer)
    }

    /// Store prefixes that hold every covered key (possibly more: callers check each key).
    pub(crate) fn prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .rules
            .iter()
            .flat_map(|r| r.matches.iter().map(ResourceMatch::prefix))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }
}

fn provider(p: &ProviderFile, field: &str) -> Result<Provider, String> {
    let set = [
        p.aesgcm.is_some(),
        p.secretbox.is_some(),
        p.identity.is_some(),
        p.aescbc.is_some(),
        p.kms.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(format!(
            "{field}: Invalid value: \"providers\": provider must contain exactly one provider type"
        ));
    }
    if p.kms.is_some() {
        return Err(format!(
            "{field}.kms: Unsupported value: the kms provider is not supported"
        ));
    }
    if p.aescbc.is_some() {
        return Err(format!(
            "{field}.aescbc: Unsupported value: the aescbc provider is not supported (use aesgcm or secretbox)"
        ));
    }
    if p.identity.is_some() {
        return Ok(Provider::Identity);
    }
    let (kind, keys, sizes): (&str, &KeysFile, &[usize]) = match (&p.aesgcm, &p.secretbox) {
        (Some(k), _) => ("aesgcm", k, &[16, 24, 32]),
        (_, Some(k)) => ("secretbox", k, &[32]),
        _ => return Err(format!("{field}: Required value: a provider type")),
    };
    if keys.keys.is_empty() {
        return Err(format!("{field}.{kind}.keys: Required value"));
    }
    let mut decoded = Vec::new();
    for (k, key) in keys.keys.iter().enumerate() {
        let at = format!("{field}.{kind}.keys[{k}]");
        if key.name.is_empty() {
            return Err(format!("{at}.name: Required value"));
        }
        if key.name.contains(':') {
            return Err(format!(
                "{at}.name: Invalid value: {:?}: should not contain ':'",
                key.name
            ));
        }
        if decoded
            .iter()
            .any(|(n, _): &(String, Vec<u8>)| *n == key.name)
        {
            return Err(format!("{at}.name: Duplicate value: {:?}", key.name));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(key.secret.trim())
            .map_err(|e| {
                format!(
                    "{at}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded: {e}"
                )
            })?;
        if !sizes.contains(&secret.len()) {
            let allowed = sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "{at}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of [{allowed}]",
                secret.len()
            ));
        }
        decoded.push((key.name.clone(), secret));
    }
    Ok(match kind {
        "aesgcm" => Provider::aesgcm(decoded),
        _ => Provider::secretbox(decoded),
    })
}

/// A new configuration encrypting Secrets with one fresh 32-byte aesgcm key named `name`,
/// identity second so a store written before reads (what `skiff up` writes on first start).
pub fn generate_aesgcm_config(name: &str) -> String {
    let key: [u8; 32] = rand::rng().random();
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         - resources:\n\
         \x20 - secrets\n\
         \x20 providers:\n\
         \x20 - aesgcm:\n\
         \x20     keys:\n\
         \x20     - name: {name}\n\
         \x20       secret: {secret}\n\
         \x20 - identity: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        let m = |s: &str| ResourceMatch::parse(s).unwrap();
        assert!(m("secrets").matches("core", "secrets"));
        assert!(!m("secrets").matches("apps", "secrets"));
        assert!(m("deployments.apps").matches("apps", "deployments"));
        assert!(m("*.apps").matches("apps", "replicasets"));
        assert!(m("*.").matches("core", "configmaps"));
        assert!(m("*.*").matches("batch", "jobs"));
        assert_eq!(m("secrets").prefix(), "/core/secrets/");
        assert!(ResourceMatch::parse("sec*ets").is_none());
    }

    #[test]
    fn generated_config_loads() {
        let text = generate_aesgcm_config("key1");
        let config = EncryptionConfig::parse(&text, Path::new("x")).unwrap();
        assert!(config.transformer_for("/core/secrets/default/s").is_some());
        assert!(
            config
                .transformer_for("/core/configmaps/default/s")
                .is_none()
        );
    }

    #[test]
    fn json_and_wildcards() {
        let text = r#"{"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [
              {"resources": ["secrets"], "providers": [{"identity": {}}]},
              {"resources": ["*.apps", "*.*"], "providers": [{"secretbox": {"keys": [
                {"name": "k", "secret": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="}]}}]}]}"#;
        let config = EncryptionConfig::parse(text, Path::new("c.json")).unwrap();
        let secrets = config.transformer_for("/core/secrets/ns/s").unwrap();
        let other = config.transformer_for("/batch/jobs/ns/j").unwrap();
        // The first entry covering a key decides: Secrets stay plain here.
        assert_eq!(secrets.seal("/core/secrets/ns/s", b"v"), b"v");
        assert!(
            other
                .seal("/batch/jobs/ns/j", b"v")
                .starts_with(b"k8s:enc:secretbox:v1:k:")
        );
        assert_eq!(config.prefixes(), ["/", "/apps/", "/core/secrets/"]);
        assert!(config.transformer_for("/core/secrets").is_none());
    }

    #[test]
    fn refusals() {
        let refused = |providers: &str| {
            let text = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
            );
            EncryptionConfig::parse(&text, Path::new("c.yaml"))
                .unwrap_err()
                .to_string()
        };
        assert!(refused("  - kms: {name: x}\n").contains("kms provider is not supported"));
        assert!(refused("  - aescbc: {keys: []}\n").contains("aescbc provider is not supported"));
        assert!(
            refused("  - aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}\n")
                .contains("secret is not of the expected length, got 5")
        );
        assert!(
            refused("  - secretbox: {keys: [{name: k, secret: MTIzNDU2Nzg5MDEyMzQ1Ng==}]}\n")
                .contains("expected one of [32]")
        );
    }
}
