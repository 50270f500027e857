//! The Node authorizer's graph: pods bound to nodes and what they reference (Secrets,
//! ConfigMaps, their ServiceAccount) — kept from the store's watch and from this server's own
//! writes, newest revision per pod wins.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// What one pod bound to a node reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodRefs {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) node: String,
    pub(crate) service_account: String,
    pub(crate) secrets: BTreeSet<String>,
    pub(crate) config_maps: BTreeSet<String>,
}

/// One stored object's last known state: present (with its data) or deleted, at a revision.
#[derive(Debug)]
struct Entry<T> {
    rev: u64,
    value: Option<T>,
}

/// Objects of one kind by `namespace/name`, each at its newest seen revision. A deletion stays
/// as a tombstone so an older event arriving late (the watch after a synchronous write) cannot
/// bring the object back.
#[derive(Debug)]
struct Versioned<T> {
    entries: HashMap<String, Entry<T>>,
}

impl<T> Default for Versioned<T> {
    fn default() -> Self {
        Versioned {
            entries: HashMap::new(),
        }
    }
}

impl<T> Versioned<T> {
    /// Records `value` (None: deleted) at `rev`; returns the previous value when it was older.
    fn set(&mut self, key: String, rev: u64, value: Option<T>) -> Result<Option<T>, ()> {
        match self.entries.get_mut(&key) {
            Some(e) if e.rev >= rev => Err(()),
            Some(e) => {
                e.rev = rev;
                Ok(std::mem::replace(&mut e.value, value))
            }
            None => {
                self.entries.insert(key, Entry { rev, value });
                Ok(None)
            }
        }
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).and_then(|e| e.value.as_ref())
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The graph.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pods: Versioned<PodRefs>,
    /// Pod keys per node name.
    by_node: HashMap<String, BTreeSet<String>>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Graph {
    /// Forgets every pod (before a relist).
    pub(crate) fn clear_pods(&mut self) {
        self.pods.clear();
        self.by_node.clear();
    }

    /// A pod written at `rev` (None: deleted). Pods without `spec.nodeName` are not in the graph.
    pub(crate) fn pod(&mut self, namespace: &str, name: &str, rev: u64, pod: Option<&Value>) {
        let refs = pod.and_then(|p| pod_refs(namespace, name, p));
        let k = key(namespace, name);
        let node = refs.as_ref().map(|r| r.node.clone());
        if let Ok(old) = self.pods.set(k.clone(), rev, refs) {
            if let Some(old) = old
                && let Some(set) = self.by_node.get_mut(&old.node)
            {
                set.remove(&k);
                if set.is_empty() {
                    self.by_node.remove(&old.node);
                }
            }
            if let Some(node) = node {
                self.by_node.entry(node).or_default().insert(k);
            }
        }
    }

    /// The pods bound to `node`.
    pub(crate) fn pods_of<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a PodRefs> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
    }

    /// Whether a pod bound to `node` references the Secret `namespace/name`.
    pub(crate) fn node_has_secret(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.pods_of(node)
            .any(|p| p.namespace == namespace && p.secrets.contains(name))
    }

    /// Whether a pod bound to `node` references the ConfigMap `namespace/name`.
    pub(crate) fn node_has_config_map(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.pods_of(node)
            .any(|p| p.namespace == namespace && p.config_maps.contains(name))
    }

    /// Whether a pod bound to `node` runs as the ServiceAccount `namespace/name`.
    pub(crate) fn node_has_service_account(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.pods_of(node)
            .any(|p| p.namespace == namespace && p.service_account == name)
    }
}

/// What a bound pod references, as Kubernetes' graph populator reads it (`podutil.VisitPodSecretNames`,
/// `VisitPodConfigmapNames`).
pub(crate) fn pod_refs(namespace: &str, name: &str, pod: &Value) -> Option<PodRefs> {
    let spec = pod.get("spec")?;
    let node = spec.get("nodeName").and_then(Value::as_str)?;
    if node.is_empty() {
        return None;
    }
    let str_at = |v: &Value, path: &str| {
        v.pointer(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut refs = PodRefs {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: str_at(pod, "/metadata/uid").unwrap_or_default(),
        node: node.to_string(),
        service_account: str_at(spec, "/serviceAccountName").unwrap_or_else(|| "default".into()),
        ..PodRefs::default()
    };
    let items = |v: &Value, field: &str| -> Vec<Value> {
        v.get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for s in items(spec, "imagePullSecrets") {
        refs.secrets.extend(str_at(&s, "/name"));
    }
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(spec, field) {
            for from in items(&c, "envFrom") {
                refs.secrets.extend(str_at(&from, "/secretRef/name"));
                refs.config_maps.extend(str_at(&from, "/configMapRef/name"));
            }
            for env in items(&c, "env") {
                refs.secrets
                    .extend(str_at(&env, "/valueFrom/secretKeyRef/name"));
                refs.config_maps
                    .extend(str_at(&env, "/valueFrom/configMapKeyRef/name"));
            }
        }
    }
    for v in items(spec, "volumes") {
        refs.secrets.extend(str_at(&v, "/secret/secretName"));
        refs.config_maps.extend(str_at(&v, "/configMap/name"));
        for src in items(v.get("projected").unwrap_or(&Value::Null), "sources") {
            refs.secrets.extend(str_at(&src, "/secret/name"));
            refs.config_maps.extend(str_at(&src, "/configMap/name"));
        }
        for plugin in [
            "azureFile",
            "cephfs",
            "cinder",
            "flexVolume",
            "iscsi",
            "rbd",
            "scaleIO",
            "storageos",
            "csi",
        ] {
            for field in ["secretRef", "nodePublishSecretRef"] {
                refs.secrets
                    .extend(str_at(&v, &format!("/{plugin}/{field}/name")));
            }
        }
        refs.secrets.extend(str_at(&v, "/azureFile/secretName"));
    }
    Some(refs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(node: &str) -> Value {
        json!({
            "metadata": {"uid": "u1"},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{
                    "name": "c",
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}],
                }],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
                ],
            }
        })
    }

    #[test]
    fn a_bound_pod_reaches_what_it_references() {
        let mut g = Graph::default();
        g.pod("ns", "p", 5, Some(&pod("n1")));
        for s in ["pull", "env-secret", "vol-secret"] {
            assert!(g.node_has_secret("n1", "ns", s), "{s}");
            assert!(!g.node_has_secret("n2", "ns", s), "{s}");
            assert!(!g.node_has_secret("n1", "other", s), "{s}");
        }
        assert!(g.node_has_config_map("n1", "ns", "env-cm"));
        assert!(g.node_has_config_map("n1", "ns", "kube-root-ca.crt"));
        assert!(g.node_has_service_account("n1", "ns", "sa"));
        assert!(!g.node_has_service_account("n2", "ns", "sa"));
    }

    #[test]
    fn newer_revisions_win_and_deletions_stay_deleted() {
        let mut g = Graph::default();
        g.pod("ns", "p", 10, Some(&pod("n1")));
        // An older event arriving late changes nothing.
        g.pod("ns", "p", 9, Some(&json!({"spec": {}})));
        assert!(g.node_has_secret("n1", "ns", "pull"));
        // Moved (a new pod of the same name on another node).
        g.pod("ns", "p", 11, Some(&pod("n2")));
        assert!(!g.node_has_secret("n1", "ns", "pull"));
        assert!(g.node_has_secret("n2", "ns", "pull"));
        g.pod("ns", "p", 12, None);
        g.pod("ns", "p", 11, Some(&pod("n2")));
        assert!(!g.node_has_secret("n2", "ns", "pull"));
        assert!(g.pods_of("n2").next().is_none());
    }

    #[test]
    fn unbound_pods_reach_nothing() {
        let mut g = Graph::default();
        g.pod(
            "ns",
            "p",
            1,
            Some(&json!({"spec": {"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}})),
        );
        assert!(g.pods_of("").next().is_none());
        assert!(!g.node_has_secret("", "ns", "x"));
    }
}
