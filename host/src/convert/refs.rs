//! The ConfigMaps and Secrets a pod refers to: finding their names and reading them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;

/// The ConfigMaps and Secrets a pod refers to, as read from the API (`None`: not found).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Refs {
    pub(crate) config_maps: HashMap<String, Option<ConfigMap>>,
    pub(crate) secrets: HashMap<String, Option<Secret>>,
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

/// Reads the ConfigMaps and Secrets a pod refers to.
pub(crate) async fn fetch(client: &kube::Client, pod: &Pod) -> Result<Refs, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = referenced(pod);
    let mut refs = Refs::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in cms {
        let v = cm_api.get_opt(&name).await?;
        refs.config_maps.insert(name, v);
    }
    let s_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        let v = s_api.get_opt(&name).await?;
        refs.secrets.insert(name, v);
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
