//! The per-server registry of custom kinds: which CustomResourceDefinitions are stored, which of
//! their versions are served, and whether each is established or being deleted. Built from the
//! store before the first request is answered and kept current from the store's watch (so every
//! server over one store sees every CRD change); the server's own CRD writes are applied at once.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use serde_json::Value;
use skiff_kinds::Kind;
use skiff_kinds::crd::CustomKind;

/// What the registry knows of one stored CRD.
#[derive(Debug, Clone)]
struct Served {
    /// The store revision of the CRD this entry reflects.
    revision: u64,
    /// The CRD object as stored.
    crd: Value,
    /// One kind per served version, in the CRD's order.
    kinds: Vec<&'static Kind>,
    /// `Established` is True: its kinds are served.
    established: bool,
    /// The CRD has a deletion timestamp: its objects are being removed.
    terminating: bool,
}

/// The custom kinds one API server serves, from the CRDs in its store.
#[derive(Debug)]
pub struct CrdRegistry {
    crds: RwLock<BTreeMap<String, Served>>,
    /// The highest store revision of CRDs the registry has taken in.
    seen: tokio::sync::watch::Sender<u64>,
    /// Set once the stored CRDs were loaded and the watch started (`crd::start`).
    pub(crate) started: tokio::sync::OnceCell<()>,
    /// The server this registry belongs to, for the tasks it starts (set by `crd::start`).
    pub(crate) state: std::sync::OnceLock<std::sync::Weak<crate::state::AppState>>,
    /// Names of the CRDs whose objects this server is removing.
    pub(crate) cleaning: Mutex<std::collections::HashSet<String>>,
}

/// Custom kinds already built, shared by every server of the process: a CRD version is leaked
/// once per distinct content (its [`CustomKind`]), so re-reading or re-writing an unchanged CRD
/// leaks nothing. The pool is bounded by the number of distinct CRD versions the process has
/// ever seen (each change of a schema, names or columns adds one).
static POOL: Mutex<Vec<&'static Kind>> = Mutex::new(Vec::new());

/// The `&'static Kind` for a custom kind, leaked only the first time its content is seen.
pub fn intern(custom: CustomKind) -> &'static Kind {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = pool.iter().find(|k| k.custom == Some(&custom)) {
        return k;
    }
    let kind = custom.leak();
    pool.push(kind);
    kind
}

/// Whether a CRD's condition `type` has status `True`.
pub fn condition_true(crd: &Value, type_: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(type_)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn name_of(crd: &Value) -> Option<&str> {
    crd.pointer("/metadata/name").and_then(Value::as_str)
}

impl CrdRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        CrdRegistry {
            crds: RwLock::default(),
            seen: tokio::sync::watch::Sender::new(0),
            started: tokio::sync::OnceCell::new(),
            state: std::sync::OnceLock::new(),
            cleaning: Mutex::default(),
        }
    }

    /// Records that everything up to `revision` was taken in.
    pub(crate) fn seen(&self, revision: u64) {
        self.seen.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// Waits until the registry has taken in the CRD changes up to store revision `revision`
    /// (a CRD write's `resourceVersion`), from this server's writes or the store's watch.
    pub async fn synced(&self, revision: u64) {
        let mut rx = self.seen.subscribe();
        // The sender lives as long as `self`, so the wait ends only when the revision is reached.
        let _ = rx.wait_for(|r| *r >= revision).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Served>> {
        self.crds.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Served>> {
        self.crds.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a CRD as stored at `revision`; older news than what is known is ignored.
    pub fn observe(&self, crd: &Value, revision: u64) {
        let Some(name) = name_of(crd) else {
            return;
        };
        if self.read().get(name).is_some_and(|s| s.revision > revision) {
            return;
        }
        let kinds = CustomKind::from_crd(crd).into_iter().map(intern).collect();
        let served = Served {
            revision,
            crd: crd.clone(),
            kinds,
            established: condition_true(crd, "Established"),
            terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
        };
        let mut crds = self.write();
        if crds.get(name).is_some_and(|s| s.revision > revision) {
            return;
        }
        crds.insert(name.to_string(), served);
        drop(crds);
        self.seen(revision);
    }

    /// Forgets a CRD removed at `revision`.
    pub fn forget(&self, name: &str, revision: u64) {
        let mut crds = self.write();
        if crds.get(name).is_some_and(|s| s.revision <= revision) {
            crds.remove(name);
        }
        drop(crds);
        self.seen(revision);
    }

    /// Replaces everything known with the CRDs of one list at `revision`.
    pub fn reset(&self, crds: Vec<Value>, revision: u64) {
        let names: Vec<String> = crds
            .iter()
            .filter_map(|c| name_of(c).map(str::to_string))
            .collect();
        for crd in &crds {
            self.observe(crd, revision);
        }
        self.write()
            .retain(|name, s| names.contains(name) || s.revision > revision);
        self.seen(revision);
    }

    /// Every served custom kind version of an established CRD, by CRD name then version order.
    pub fn kinds(&self) -> Vec<&'static Kind> {
        self.read()
            .values()
            .filter(|s| s.established)
            .flat_map(|s| s.kinds.iter().copied())
            .collect()
    }

    /// The custom kind served at `/apis/{group}/{version}/{plural}`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        self.kinds()
            .into_iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// The custom kind named by an object's `apiVersion` and `kind`.
    pub fn find_by_kind(&self, api_version: &str, kind: &str) -> Option<&'static Kind> {
        let (group, version) = api_version.split_once('/')?;
        self.kinds()
            .into_iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    /// The custom kind a kubectl-style name refers to in a group (plural, singular, short name or
    /// kind, case-insensitive), in the CRD's storage version if it is served, else its first.
    pub fn find_by_plural(&self, group: &str, name: &str) -> Option<&'static Kind> {
        let name = name.to_ascii_lowercase();
        let matches: Vec<&'static Kind> = self
            .kinds()
            .into_iter()
            .filter(|k| {
                k.group == group
                    && (k.plural == name
                        || k.singular == name
                        || k.short_names.contains(&name.as_str())
                        || k.kind.to_ascii_lowercase() == name)
            })
            .collect();
        let preferred = matches.first()?.custom.and_then(preferred_version);
        matches
            .iter()
            .find(|k| Some(k.version) == preferred.as_deref())
            .or(matches.first())
            .copied()
    }

    /// Whether the CRD serving `kind` is being deleted (its objects may be read and deleted but
    /// not created).
    pub fn terminating(&self, kind: &Kind) -> bool {
        let Some(custom) = kind.custom else {
            return false;
        };
        self.read()
            .get(&custom.crd_name)
            .is_some_and(|s| s.terminating)
    }

    /// The stored CRDs other than `name`, as last seen.
    pub fn others(&self, name: &str) -> Vec<Value> {
        self.read()
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, s)| s.crd.clone())
            .collect()
    }

    /// The established CRDs' groups, each with its served versions in Kubernetes' priority order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in self.kinds() {
            let group = k.group.to_string();
            let idx = match out.iter().position(|(g, _)| *g == group) {
                Some(i) => i,
                None => {
                    out.push((group, Vec::new()));
                    out.len() - 1
                }
            };
            if !out[idx].1.iter().any(|v| v == k.version) {
                out[idx].1.push(k.version.to_string());
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by(|a, b| skiff_kinds::discovery::compare_versions(a, b));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The version a CRD's kubectl-style names resolve to: its highest-priority served version.
fn preferred_version(custom: &CustomKind) -> Option<String> {
    let mut versions = custom.served_versions.clone();
    versions.sort_by(|a, b| skiff_kinds::discovery::compare_versions(a, b));
    versions.into_iter().next()
}

impl Default for CrdRegistry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(plural: &str, established: bool, versions: &[&str]) -> Value {
        json!({
            "metadata": {"name": format!("{plural}.registry.test")},
            "spec": {"group": "registry.test", "scope": "Namespaced",
                "names": {"plural": plural, "kind": "Thing", "shortNames": ["th"]},
                "versions": versions.iter().enumerate().map(|(i, v)| json!({
                    "name": v, "served": true, "storage": i == 0})).collect::<Vec<_>>()},
            "status": {"conditions": [{"type": "Established",
                "status": if established { "True" } else { "False" }}]},
        })
    }

    #[test]
    fn unchanged_versions_are_interned_once() {
        let registry = CrdRegistry::new();
        registry.observe(&crd("things", true, &["v1"]), 5);
        let first = registry
            .find("registry.test", "v1", "things")
            .expect("served");
        registry.observe(&crd("things", true, &["v1"]), 6);
        let again = registry
            .find("registry.test", "v1", "things")
            .expect("served");
        assert!(std::ptr::eq(first, again), "the same content leaks once");
        // Older news is ignored; removal at a later revision forgets.
        registry.observe(&crd("things", false, &["v1"]), 4);
        assert!(registry.find("registry.test", "v1", "things").is_some());
        registry.forget("things.registry.test", 7);
        assert!(registry.kinds().is_empty());
    }

    #[test]
    fn only_established_crds_are_served_and_names_resolve_to_the_preferred_version() {
        let registry = CrdRegistry::new();
        registry.observe(&crd("pending", false, &["v1"]), 1);
        assert!(registry.kinds().is_empty());
        registry.observe(&crd("things", true, &["v1beta1", "v1", "v1alpha1"]), 2);
        assert_eq!(registry.kinds().len(), 3);
        let by_short = registry
            .find_by_plural("registry.test", "TH")
            .expect("short name");
        assert_eq!(by_short.version, "v1");
        assert_eq!(
            registry
                .find_by_kind("registry.test/v1alpha1", "Thing")
                .map(|k| k.version),
            Some("v1alpha1")
        );
        assert_eq!(
            registry.groups(),
            [(
                "registry.test".to_string(),
                vec![
                    "v1".to_string(),
                    "v1beta1".to_string(),
                    "v1alpha1".to_string()
                ]
            )]
        );
        registry.reset(vec![crd("pending", true, &["v1"])], 3);
        assert!(registry.find("registry.test", "v1", "things").is_none());
        assert!(registry.find("registry.test", "v1", "pending").is_some());
    }
}
