//! What a controller wrote and its informer does not show yet: the objects it created, updated
//! or deleted, laid over the informer's store until the store catches up, so a reconcile that
//! runs right after a write (the next pod event) never acts on a stale cache — no second create
//! of a slice it just made, no update from an older version — and never has to wait for one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};

enum Entry<K> {
    /// Created or updated: the server's answer.
    Wrote(Arc<K>),
    /// Deleted at this revision (0 when unknown).
    Deleted(u64),
}

/// Own writes per `(namespace, name)`, dropped once the informer shows them.
pub struct Written<K> {
    inner: Mutex<HashMap<(String, String), Entry<K>>>,
}

impl<K> Default for Written<K> {
    fn default() -> Self {
        Written {
            inner: Mutex::new(HashMap::new()),
        }
    }
}

fn revision<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource + ResourceExt> Written<K> {
    /// Records the object the server answered a create or update with.
    pub fn wrote(&self, obj: K) {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        self.lock().insert(key, Entry::Wrote(Arc::new(obj)));
    }

    /// Records that `obj` (as last seen) was deleted.
    pub fn deleted(&self, obj: &K) {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        self.lock()
            .insert(key, Entry::Deleted(revision(obj).unwrap_or(0)));
    }

    /// Forgets what was recorded for `namespace/name` (the server said it is gone or changed).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// The objects of `namespace` that satisfy `belongs`, as this controller last knows them:
    /// `stored` (from the informer) with own newer writes put in and own deletes taken out.
    /// Records the store has caught up with are dropped.
    pub fn overlay(
        &self,
        namespace: &str,
        stored: Vec<Arc<K>>,
        belongs: impl Fn(&K) -> bool,
    ) -> Vec<Arc<K>> {
        let mut by_name: HashMap<String, Arc<K>> =
            stored.into_iter().map(|o| (o.name_any(), o)).collect();
        let mut m = self.lock();
        m.retain(|(ns, name), entry| {
            if ns != namespace {
                return true;
            }
            let seen = by_name.get(name).map(|o| revision(o.as_ref()));
            match entry {
                Entry::Wrote(mine) => match seen {
                    // The store caught up (or its revisions cannot be compared).
                    Some(rv) if rv.is_none() || rv >= revision(mine.as_ref()) => false,
                    _ => {
                        if belongs(mine) {
                            by_name.insert(name.clone(), mine.clone());
                        }
                        true
                    }
                },
                Entry::Deleted(at) => match seen {
                    None => false,
                    Some(Some(rv)) if rv > *at && *at != 0 => false,
                    Some(_) => {
                        by_name.remove(name);
                        true
                    }
                },
            }
        });
        drop(m);
        let mut out: Vec<Arc<K>> = by_name.into_values().collect();
        out.sort_by_key(|o| o.name_any());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry<K>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}
        }))
        .unwrap()
    }

    fn names(v: &[Arc<ConfigMap>]) -> Vec<(String, String)> {
        v.iter()
            .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn own_writes_show_until_the_store_catches_up() {
        let w = Written::<ConfigMap>::default();
        w.wrote(cm("new", "7"));
        w.wrote(cm("upd", "9"));
        let stored = vec![Arc::new(cm("upd", "5")), Arc::new(cm("gone", "3"))];
        w.deleted(&cm("gone", "3"));
        let got = w.overlay("ns", stored, |_| true);
        assert_eq!(
            names(&got),
            [("new".into(), "7".into()), ("upd".into(), "9".into())]
        );
        // The store caught up: the records are dropped and the store's view wins.
        let stored = vec![Arc::new(cm("new", "7")), Arc::new(cm("upd", "12"))];
        let got = w.overlay("ns", stored, |_| true);
        assert_eq!(
            names(&got),
            [("new".into(), "7".into()), ("upd".into(), "12".into())]
        );
        assert!(w.lock().is_empty());
        // Another namespace is untouched, and `belongs` filters own writes.
        w.wrote(cm("x", "20"));
        assert!(w.overlay("other", vec![], |_| true).is_empty());
        assert!(w.overlay("ns", vec![], |_| false).is_empty());
        assert_eq!(w.lock().len(), 1);
    }
}
