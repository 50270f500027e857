//! The in-memory view of the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
//! the RBAC authorizer and the escalation checks read: bindings indexed by subject (a user's
//! decision costs the bindings of the user and its groups, not all of them), roles by name.
//! Filled from the store before the first request is answered (`rbac::start`), kept current by
//! the store's watch, and by this server's own RBAC writes at once (read-your-writes); each
//! object's store revision decides which of the two is newer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::rules::{self, PolicyRule, Request};

/// The API group of the RBAC kinds.
pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";

/// Who a binding names, as the index keys it: a ServiceAccount is the user
/// `system:serviceaccount:NS:NAME` it authenticates as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Subject {
    User(String),
    Group(String),
}

/// The role a binding grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RoleRef {
    Role(String),
    ClusterRole(String),
}

/// What the cache keeps of one binding.
#[derive(Clone, Debug)]
struct Binding {
    /// A RoleBinding's namespace; `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    role: RoleRef,
    subjects: Vec<Subject>,
}

#[derive(Default)]
struct Index {
    /// Roles by (namespace, name).
    roles: HashMap<(String, String), Arc<Vec<PolicyRule>>>,
    cluster_roles: HashMap<String, Arc<Vec<PolicyRule>>>,
    /// Bindings by store key.
    bindings: HashMap<String, Binding>,
    by_subject: HashMap<Subject, BTreeSet<String>>,
    /// The store revision each key was last seen at (written or deleted).
    revisions: HashMap<String, u64>,
}

/// The RBAC objects one API server knows, from its store.
#[derive(Default)]
pub(crate) struct RbacCache {
    index: RwLock<Index>,
    /// Set once the stored objects were loaded and the watch started (`rbac::start`).
    pub(crate) started: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for RbacCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacCache").finish_non_exhaustive()
    }
}

/// What a store key holds: its plural and, for namespaced kinds, the namespace, and the name.
fn parse_key(key: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = key.strip_prefix(&format!("/{GROUP}/"))?;
    let (plural, rest) = rest.split_once('/')?;
    match plural {
        "roles" | "rolebindings" => {
            let (ns, name) = rest.split_once('/')?;
            Some((plural, Some(ns), name))
        }
        "clusterroles" | "clusterrolebindings" => Some((plural, None, rest)),
        _ => None,
    }
}

/// The subjects of a binding as index keys (a ServiceAccount without a namespace takes the
/// binding's; one with neither names no one).
fn subjects_of(obj: &Value, binding_namespace: Option<&str>) -> Vec<Subject> {
    let Some(subjects) = obj.get("subjects").and_then(Value::as_array) else {
        return Vec::new();
    };
    subjects
        .iter()
        .filter_map(|s| {
            let kind = s.get("kind").and_then(Value::as_str)?;
            let name = s.get("name").and_then(Value::as_str)?;
            match kind {
                "User" => Some(Subject::User(name.to_string())),
                "Group" => Some(Subject::Group(name.to_string())),
                "ServiceAccount" => {
                    let ns = s
                        .get("namespace")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .or(binding_namespace)?;
                    Some(Subject::User(format!("system:serviceaccount:{ns}:{name}")))
                }
                _ => None,
            }
        })
        .collect()
}

fn role_ref_of(obj: &Value) -> Option<RoleRef> {
    let name = obj.pointer("/roleRef/name").and_then(Value::as_str)?;
    match obj.pointer("/roleRef/kind").and_then(Value::as_str)? {
        "Role" => Some(RoleRef::Role(name.to_string())),
        "ClusterRole" => Some(RoleRef::ClusterRole(name.to_string())),
        _ => None,
    }
}

/// Kubernetes' "not found" text for a missing role, which the authorizer gives as its reason.
fn not_found(role: &RoleRef) -> String {
    match role {
        RoleRef::Role(name) => format!("role.{GROUP} \"{name}\" not found"),
        RoleRef::ClusterRole(name) => format!("clusterrole.{GROUP} \"{name}\" not found"),
    }
}

impl Index {
    fn remove_entry(&mut self, key: &str) {
        let Some((plural, ns, name)) = parse_key(key) else {
            return;
        };
        match plural {
            "roles" => {
                self.roles
                    .remove(&(ns.unwrap_or_default().to_string(), name.to_string()));
            }
            "clusterroles" => {
                self.cluster_roles.remove(name);
            }
            _ => {
                if let Some(old) = self.bindings.remove(key) {
                    for subject in old.subjects {
                        if let Some(set) = self.by_subject.get_mut(&subject) {
                            set.remove(key);
                            if set.is_empty() {
                                self.by_subject.remove(&subject);
                            }
                        }
                    }
                }
            }
        }
    }

    fn put_entry(&mut self, key: &str, obj: &Value) {
        let Some((plural, ns, name)) = parse_key(key) else {
            return;
        };
        self.remove_entry(key);
        match plural {
            "roles" => {
                self.roles.insert(
                    (ns.unwrap_or_default().to_string(), name.to_string()),
                    Arc::new(rules::rules_of(obj)),
                );
            }
            "clusterroles" => {
                self.cluster_roles
                    .insert(name.to_string(), Arc::new(rules::rules_of(obj)));
            }
            _ => {
                let Some(role) = role_ref_of(obj) else {
                    return;
                };
                let subjects = subjects_of(obj, ns);
                for subject in &subjects {
                    self.by_subject
                        .entry(subject.clone())
                        .or_default()
                        .insert(key.to_string());
                }
                self.bindings.insert(
                    key.to_string(),
                    Binding {
                        namespace: ns.map(str::to_string),
                        role,
                        subjects,
                    },
                );
            }
        }
    }

    /// The rules a binding grants, or Kubernetes' text for its missing role.
    fn rules_of(&self, binding: &Binding) -> Result<Arc<Vec<PolicyRule>>, String> {
        let found = match (&binding.role, &binding.namespace) {
            (RoleRef::Role(name), Some(ns)) => self.roles.get(&(ns.clone(), name.clone())),
            (RoleRef::Role(_), None) => None,
            (RoleRef::ClusterRole(name), _) => self.cluster_roles.get(name),
        };
        found.cloned().ok_or_else(|| not_found(&binding.role))
    }

    /// The bindings that name the user or one of its groups, ClusterRoleBindings first.
    fn bindings_of(&self, user: &str, groups: &[String]) -> Vec<&Binding> {
        let mut keys: BTreeSet<&String> = BTreeSet::new();
        let subjects = std::iter::once(Subject::User(user.to_string()))
            .chain(groups.iter().map(|g| Subject::Group(g.clone())));
        for subject in subjects {
            if let Some(set) = self.by_subject.get(&subject) {
                keys.extend(set.iter());
            }
        }
        let mut found: Vec<&Binding> = keys.iter().filter_map(|k| self.bindings.get(*k)).collect();
        found.sort_by_key(|b| b.namespace.is_some());
        found
    }
}

/// The outcome of visiting a user's rules: allowed, or not with the roles that could not be
/// found (Kubernetes' reason `RBAC: …`).
pub(crate) struct Visit {
    pub(crate) allowed: bool,
    pub(crate) errors: Vec<String>,
}

impl RbacCache {
    pub(crate) fn new() -> Self {
        RbacCache::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in an object stored at `key` at revision `rev`, unless something newer of the key
    /// was seen already.
    pub(crate) fn observe(&self, key: &str, obj: &Value, rev: u64) {
        let mut index = self.write();
        if index.revisions.get(key).is_some_and(|seen| *seen >= rev) {
            return;
        }
        index.revisions.insert(key.to_string(), rev);
        index.put_entry(key, obj);
    }

    /// Forgets the object at `key`, deleted at revision `rev`, unless something newer was seen.
    pub(crate) fn forget(&self, key: &str, rev: u64) {
        let mut index = self.write();
        if index.revisions.get(key).is_some_and(|seen| *seen >= rev) {
            return;
        }
        index.revisions.insert(key.to_string(), rev);
        index.remove_entry(key);
    }

    /// Replaces everything with a fresh list of the store.
    pub(crate) fn reset(&self, objects: Vec<(String, Value, u64)>) {
        let mut index = Index::default();
        for (key, obj, rev) in objects {
            index.revisions.insert(key.clone(), rev);
            index.put_entry(&key, &obj);
        }
        *self.write() = index;
    }

    /// Whether a binding of the user grants the request: ClusterRoleBindings everywhere,
    /// RoleBindings only for resource requests in their namespace.
    pub(crate) fn visit(
        &self,
        user: &str,
        groups: &[String],
        namespace: Option<&str>,
        request: &Request<'_>,
    ) -> Visit {
        let index = self.read();
        let mut errors = Vec::new();
        let resource_request = matches!(request, Request::Resource { .. });
        for binding in index.bindings_of(user, groups) {
            if let Some(ns) = &binding.namespace
                && (!resource_request || namespace != Some(ns.as_str()))
            {
                continue;
            }
            match index.rules_of(binding) {
                Ok(rules) => {
                    if rules.iter().any(|r| rules::allows(r, request)) {
                        return Visit {
                            allowed: true,
                            errors,
                        };
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Visit {
            allowed: false,
            errors,
        }
    }

    /// Every rule the user holds in `namespace` (cluster-wide only when empty), as Kubernetes'
    /// `RulesFor`, with the roles that could not be found.
    pub(crate) fn rules_for(
        &self,
        user: &str,
        groups: &[String],
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let index = self.read();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for binding in index.bindings_of(user, groups) {
            if let Some(ns) = &binding.namespace
                && (namespace.is_empty() || ns != namespace)
            {
                continue;
            }
            match index.rules_of(binding) {
                Ok(rules) => out.extend(rules.iter().cloned()),
                Err(e) => errors.push(e),
            }
        }
        (out, errors)
    }

    /// The rules of the role a binding in `namespace` (empty for a ClusterRoleBinding) refers
    /// to, or Kubernetes' not-found text.
    pub(crate) fn role_rules(
        &self,
        role: &RoleRef,
        namespace: &str,
    ) -> Result<Arc<Vec<PolicyRule>>, String> {
        let index = self.read();
        let found = match role {
            RoleRef::Role(name) => index.roles.get(&(namespace.to_string(), name.clone())),
            RoleRef::ClusterRole(name) => index.cluster_roles.get(name),
        };
        found.cloned().ok_or_else(|| match role {
            RoleRef::Role(name) => format!("roles.{GROUP} \"{name}\" not found"),
            RoleRef::ClusterRole(name) => format!("clusterroles.{GROUP} \"{name}\" not found"),
        })
    }
}

/// The role a binding object refers to.
pub(crate) fn binding_role(obj: &Value) -> Option<RoleRef> {
    role_ref_of(obj)
}

/// Keys every RBAC object is stored under start with this.
pub(crate) fn prefix() -> String {
    format!("/{GROUP}/")
}
