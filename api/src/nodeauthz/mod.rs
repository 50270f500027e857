//! The Node authorizer (Kubernetes' `plugin/pkg/auth/authorizer/node`): what a node's own
//! credential (`system:node:NAME` in group `system:nodes`) may do. Secrets, ConfigMaps and
//! ServiceAccount tokens are decided from a graph of the pods bound to each node (`graph.rs`);
//! a node's Lease by its name; everything else by the static node rules
//! (`rbac::components::NODE_RULES`, the `system:node` ClusterRole's rules). Other users get no
//! opinion. Unlike Kubernetes, claims and volumes are not graph decisions: every Skiff node is
//! also the local-path provisioner, which lists and watches all of them. What a node may change within what it may reach is NodeRestriction's
//! (`admission/noderestriction.rs`).
//!
//! The graph is loaded from the store before `start` returns, then follows the store's watch
//! of pods; every write this process stores of those kinds is applied at once by the
//! write path (`after_write`, `after_remove`), so a node reading a Secret right after its pod
//! was bound by this server is never refused for a watch that has not caught up.

mod graph;

use std::sync::{Arc, Mutex, RwLock, Weak};

use serde_json::Value;
use skiff_kinds::Kind;
use skiff_store::{EventType, Store};
use tokio::task::JoinHandle;

use crate::objects;
use crate::rbac::components::NODE_RULES;
use crate::state::{Attributes, Authorizer, Decision, Rules, UserInfo};
use graph::Graph;

/// The group of every node's credential.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The ServiceAccount whose tokens nodes present to each other's endpoints
/// (`kube-system/skiff-node`): every node may request one.
pub const NODE_ENDPOINT_SERVICE_ACCOUNT: (&str, &str) = ("kube-system", "skiff-node");

/// The node a user is, as Kubernetes' `NodeIdentity`: a name `system:node:NAME` in the group
/// `system:nodes`.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// The authorizer; dropping it stops following the store.
pub struct NodeAuthorizer {
    graph: Arc<RwLock<Graph>>,
    /// Whether the graph holds the first list (always, once `start` returned).
    loaded: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NodeAuthorizer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The graphs following each store, so the write path can update them (keyed by the store's
/// address; a graph whose authorizer is gone is dropped on the next write).
static GRAPHS: Mutex<Vec<(usize, Weak<RwLock<Graph>>)>> = Mutex::new(Vec::new());

fn store_id(store: &Arc<dyn Store>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Lets the write path of every server over `store` update `graph`.
fn register(store: &Arc<dyn Store>, graph: &Arc<RwLock<Graph>>) {
    GRAPHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((store_id(store), Arc::downgrade(graph)));
}

fn pods_kind() -> &'static Kind {
    skiff_kinds::find("", "v1", "pods").expect("pods are a built-in kind")
}

/// Whether the graph follows objects of `kind`.
fn graphed(kind: &Kind) -> bool {
    kind.group.is_empty() && kind.plural == "pods"
}

fn apply(graph: &mut Graph, kind: &Kind, obj: &Value, rev: u64, present: bool) {
    let ns = objects::meta_str(obj, "namespace").unwrap_or_default();
    let Some(name) = objects::meta_str(obj, "name") else {
        return;
    };
    let obj = present.then_some(obj);
    if kind.plural == "pods" {
        graph.pod(ns, name, rev, obj);
    }
}

fn write_lock(graph: &RwLock<Graph>) -> std::sync::RwLockWriteGuard<'_, Graph> {
    graph.write().unwrap_or_else(|e| e.into_inner())
}

/// Applies a write this process stored to every graph following `store`.
fn observe(store: &Arc<dyn Store>, kind: &Kind, obj: &Value, rev: u64, present: bool) {
    if !graphed(kind) {
        return;
    }
    let id = store_id(store);
    let graphs: Vec<Arc<RwLock<Graph>>> = {
        let mut all = GRAPHS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, g)| g.strong_count() > 0);
        all.iter()
            .filter(|(s, _)| *s == id)
            .filter_map(|(_, g)| g.upgrade())
            .collect()
    };
    for g in graphs {
        apply(&mut write_lock(&g), kind, obj, rev, present);
    }
}

/// After an object is stored (created or updated) by this process.
pub(crate) fn after_write(store: &Arc<dyn Store>, kind: &Kind, stored: &Value) {
    if let Some(rev) = objects::meta_str(stored, "resourceVersion").and_then(|r| r.parse().ok()) {
        observe(store, kind, stored, rev, true);
    }
}

/// After an object is removed from the store at revision `rev` by this process.
pub(crate) fn after_remove(store: &Arc<dyn Store>, kind: &Kind, old: &Value, rev: u64) {
    observe(store, kind, old, rev, false);
}

impl NodeAuthorizer {
    /// Loads the graph from `store` and follows it until the authorizer is dropped; every
    /// request it is asked about is decided on the loaded graph.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<NodeAuthorizer>, skiff_store::Error> {
        let graph = Arc::new(RwLock::new(Graph::default()));
        register(&store, &graph);
        let rev = load(&store, &graph, pods_kind()).await?;
        let task = tokio::spawn(follow(store, Arc::downgrade(&graph), pods_kind(), rev));
        Ok(Arc::new(NodeAuthorizer {
            graph,
            loaded: Arc::new(true.into()),
            tasks: vec![task],
        }))
    }

    /// As `start`, for a caller that cannot wait (a synchronous builder): the graph loads in
    /// the background, and until it has, graph decisions are refused with a reason saying so
    /// (the node's retry then succeeds). Must be called within a tokio runtime.
    pub fn spawn(store: Arc<dyn Store>) -> Arc<NodeAuthorizer> {
        let graph = Arc::new(RwLock::new(Graph::default()));
        register(&store, &graph);
        let loaded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (weak, flag) = (Arc::downgrade(&graph), loaded.clone());
        let task = tokio::spawn(async move {
            loop {
                let Some(g) = weak.upgrade() else {
                    return;
                };
                match load(&store, &g, pods_kind()).await {
                    Ok(rev) => {
                        flag.store(true, std::sync::atomic::Ordering::Release);
                        drop(g);
                        return follow(store, weak, pods_kind(), rev).await;
                    }
                    Err(skiff_store::Error::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "node authorizer: listing pods");
                        drop(g);
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Arc::new(NodeAuthorizer {
            graph,
            loaded,
            tasks: vec![task],
        })
    }

    fn graph(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Kubernetes' `authorizeReadNamespacedObject` + `authorize`: get, list or watch of one
    /// named object a pod bound to the node references.
    fn read_object(
        &self,
        node: &str,
        a: &Attributes<'_>,
        reaches: fn(&Graph, &str, &str, &str) -> bool,
    ) -> Decision {
        if !matches!(a.verb, "get" | "list" | "watch") {
            return Decision::NoOpinion("can only read resources of this type".into());
        }
        if a.subresource.is_some() {
            return Decision::NoOpinion("cannot read subresource".into());
        }
        let Some(ns) = a.namespace.filter(|n| !n.is_empty()) else {
            return Decision::NoOpinion("can only read namespaced object of this type".into());
        };
        let Some(name) = a.name.filter(|n| !n.is_empty()) else {
            return Decision::NoOpinion("No Object name found".into());
        };
        if !self.loaded.load(std::sync::atomic::Ordering::Acquire) {
            return Decision::NoOpinion("the node authorizer's graph is still loading".into());
        }
        if reaches(&self.graph(), node, ns, name) {
            Decision::Allow
        } else {
            no_relationship(node)
        }
    }

    /// Kubernetes' `authorizeCreateToken`: a token of a ServiceAccount a pod bound to the node
    /// runs as (NodeRestriction checks the token is bound to that pod), or of the node-endpoint
    /// ServiceAccount.
    fn create_token(&self, node: &str, a: &Attributes<'_>) -> Decision {
        let name = a.name.unwrap_or_default();
        if a.verb != "create" || name.is_empty() {
            return Decision::NoOpinion(
                "can only create tokens for individual service accounts".into(),
            );
        }
        if a.subresource != Some("token") {
            return Decision::NoOpinion(
                "can only create token subresource of serviceaccount".into(),
            );
        }
        let ns = a.namespace.unwrap_or_default();
        if (ns, name) == NODE_ENDPOINT_SERVICE_ACCOUNT
            || (self.loaded.load(std::sync::atomic::Ordering::Acquire)
                && self.graph().node_has_service_account(node, ns, name))
        {
            Decision::Allow
        } else {
            no_relationship(node)
        }
    }
}

fn no_relationship(node: &str) -> Decision {
    Decision::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// Kubernetes' `authorizeLease`: the node's own Lease in `kube-node-lease` (creates are limited
/// to its name by NodeRestriction, the name being in the body).
fn lease(node: &str, a: &Attributes<'_>) -> Decision {
    if !matches!(a.verb, "get" | "create" | "update" | "patch" | "delete") {
        return Decision::NoOpinion(
            "can only get, create, update, patch, or delete a node lease".into(),
        );
    }
    if a.namespace != Some(NODE_LEASE_NAMESPACE) {
        return Decision::NoOpinion(format!(
            "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
        ));
    }
    if a.verb != "create" && a.name != Some(node) {
        return Decision::NoOpinion(
            "can only access node lease with the same name as the requesting node".into(),
        );
    }
    Decision::Allow
}

/// Whether `a` lists or watches only Secrets of type `kubernetes.io/tls` (its field selector
/// requires that type). Every node is an ingress controller serving the TLS Secrets Ingresses
/// name, as an ingress controller's ServiceAccount does in Kubernetes: a node may read every TLS
/// Secret, and no other Secret beyond those its pods use.
fn lists_only_tls_secrets(a: &Attributes<'_>) -> bool {
    matches!(a.verb, "list" | "watch")
        && a.field_selector.is_some_and(|selector| {
            selector.split(',').any(|requirement| {
                let requirement = requirement.trim();
                requirement == "type=kubernetes.io/tls" || requirement == "type==kubernetes.io/tls"
            })
        })
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        let Some(node) = node_identity(a.user) else {
            return Decision::NoOpinion(String::new());
        };
        if !a.is_resource_request() {
            return Decision::NoOpinion(String::new());
        }
        match (a.group, a.resource) {
            ("", "secrets") if lists_only_tls_secrets(a) => Decision::Allow,
            ("", "secrets") => self.read_object(node, a, Graph::node_has_secret),
            ("", "configmaps") => self.read_object(node, a, Graph::node_has_config_map),
            ("", "serviceaccounts") => self.create_token(node, a),
            ("coordination.k8s.io", "leases") => lease(node, a),
            _ => {
                if NODE_RULES
                    .iter()
                    .any(|r| r.allows(a.verb, a.group, a.resource, a.subresource, a.name))
                {
                    Decision::Allow
                } else {
                    Decision::NoOpinion(String::new())
                }
            }
        }
    }

    /// As Kubernetes: a node's permissions cannot be listed (they depend on its pods); other
    /// users get nothing from this authorizer.
    fn rules(&self, user: &UserInfo, _namespace: &str) -> Option<Rules> {
        match node_identity(user) {
            Some(_) => None,
            None => Some(Rules::default()),
        }
    }
}

/// Lists `kind` into the graph; returns the list's revision.
async fn load(
    store: &Arc<dyn Store>,
    graph: &RwLock<Graph>,
    kind: &'static Kind,
) -> Result<u64, skiff_store::Error> {
    let list = store
        .list(skiff_store::ListOptions {
            prefix: kind.storage_prefix(),
            ..Default::default()
        })
        .await?;
    let mut g = write_lock(graph);
    g.clear_pods();
    for kv in &list.items {
        if let Ok(obj) = objects::from_kv(kind, kv) {
            apply(&mut g, kind, &obj, kv.mod_revision, true);
        }
    }
    Ok(list.revision)
}

/// Follows `kind` in the store from `rev` while the graph lives; lists again when the watch
/// ends or falls behind.
async fn follow(
    store: Arc<dyn Store>,
    graph: Weak<RwLock<Graph>>,
    kind: &'static Kind,
    mut rev: u64,
) {
    use futures::StreamExt;
    loop {
        match store.watch(&kind.storage_prefix(), rev).await {
            Ok(mut stream) => {
                while let Some(event) = stream.next().await {
                    let Some(graph) = graph.upgrade() else {
                        return;
                    };
                    match event {
                        Ok(event) => {
                            let present = event.event_type == EventType::Put;
                            rev = event.kv.mod_revision;
                            if let Ok(obj) = objects::from_kv(kind, &event.kv) {
                                apply(&mut write_lock(&graph), kind, &obj, rev, present);
                            }
                        }
                        Err(skiff_store::Error::Closed) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, kind = kind.plural, "node authorizer watch ended; listing again");
                            break;
                        }
                    }
                }
            }
            Err(skiff_store::Error::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, kind = kind.plural, "node authorizer watch; listing again");
            }
        }
        let Some(g) = graph.upgrade() else {
            return;
        };
        match load(&store, &g, kind).await {
            Ok(r) => rev = r,
            Err(skiff_store::Error::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, kind = kind.plural, "node authorizer list");
                drop(g);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
