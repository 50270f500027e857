//! RBAC (`rbac.authorization.k8s.io/v1`): the authorizer over Roles, ClusterRoles and their
//! bindings, the default policy reconciled at start, and escalation checks.
//!
//! `cache` holds what the store says (loaded by `start` before the first request is answered,
//! followed by a watch, updated at once by this server's own writes through `after_write` and
//! `after_remove`); `authorizer` decides from it; `escalation` is the admission step that keeps
//! a writer from granting more than it holds; `policy` and `reconcile` write the default roles
//! and bindings at every start, aggregated roles complete.

mod authorizer;
pub(crate) mod cache;
pub(crate) mod components;
pub(crate) mod escalation;
pub(crate) mod namespaced;
pub(crate) mod policy;
pub(crate) mod reconcile;
pub(crate) mod rules;

use std::sync::Arc;

use futures::future::BoxFuture;

use serde_json::Value;
use skiff_kinds::Kind;
use skiff_store::EventType;

pub use authorizer::Rbac;
pub(crate) use cache::RbacCache;

use crate::error::ApiError;
use crate::objects;
use crate::state::AppState;

/// One of `--authorization-mode`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Every authenticated user may do everything.
    AlwaysAllow,
    /// Roles and bindings decide.
    Rbac,
    /// Nodes may reach what their pods need.
    Node,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "AlwaysAllow" => Ok(AuthorizationMode::AlwaysAllow),
            "RBAC" => Ok(AuthorizationMode::Rbac),
            "Node" => Ok(AuthorizationMode::Node),
            other => Err(format!(
                "unknown authorization mode {other:?} (known: AlwaysAllow, Node, RBAC)"
            )),
        }
    }
}

impl AppState {
    /// The same state, authorizing as a server started with `--authorization-mode RBAC`:
    /// `system:masters` first, then this state's roles and bindings.
    pub fn with_rbac(self) -> Self {
        let rbac = Arc::new(Rbac::new(self.rbac.clone()));
        self.with_authorizer(Arc::new(crate::authz::Union(vec![
            Arc::new(crate::authz::Masters),
            rbac,
        ])))
    }

    /// The RBAC authorizer over this state's roles and bindings (to put in a union).
    pub fn rbac_authorizer(&self) -> Arc<Rbac> {
        Arc::new(Rbac::new(self.rbac.clone()))
    }

    /// The same state, authorizing as `--authorization-mode` says: `AlwaysAllow` alone keeps
    /// [`crate::AllowAuthenticated`]; otherwise `system:masters` first, then each mode in order
    /// (`Node` loads its graph of pods in the background; must be called within a runtime).
    pub fn with_authorization_modes(self, modes: &[AuthorizationMode]) -> Result<Self, String> {
        if modes.is_empty() {
            return Err("--authorization-mode names no mode".into());
        }
        if modes.contains(&AuthorizationMode::AlwaysAllow) {
            if modes.len() > 1 {
                return Err("AlwaysAllow cannot be combined with other modes".into());
            }
            return Ok(self.with_authorizer(Arc::new(crate::state::AllowAuthenticated)));
        }
        let mut members: Vec<Arc<dyn crate::state::Authorizer>> =
            vec![Arc::new(crate::authz::Masters)];
        for mode in modes {
            match mode {
                AuthorizationMode::Rbac => members.push(self.rbac_authorizer()),
                AuthorizationMode::Node => {
                    members.push(crate::nodeauthz::NodeAuthorizer::spawn(self.store.clone()));
                }
                AuthorizationMode::AlwaysAllow => {}
            }
        }
        Ok(self.with_authorizer(Arc::new(crate::authz::Union(members))))
    }

    /// Writes the default RBAC policy as the server does at every start (missing roles and
    /// bindings created, autoupdated ones completed, aggregated roles filled).
    pub async fn reconcile_default_policy(&self) -> Result<(), ApiError> {
        reconcile::run(self).await
    }
}

fn is_rbac(kind: &Kind) -> bool {
    kind.group == cache::GROUP
}

/// After a write is stored: the cache learns of it before the response (read-your-writes).
pub(crate) fn after_write(state: &AppState, kind: &Kind, stored: &Value) {
    if !is_rbac(kind) {
        return;
    }
    let Some(rev) = objects::meta_str(stored, "resourceVersion").and_then(|r| r.parse().ok())
    else {
        return;
    };
    let name = objects::meta_str(stored, "name").unwrap_or_default();
    let key = objects::key(kind, objects::meta_str(stored, "namespace"), name);
    state.rbac.observe(&key, stored, rev);
}

/// After an object is removed from the store at revision `rev`.
pub(crate) fn after_remove(state: &AppState, kind: &Kind, old: &Value, rev: u64) {
    if !is_rbac(kind) {
        return;
    }
    let name = objects::meta_str(old, "name").unwrap_or_default();
    let key = objects::key(kind, objects::meta_str(old, "namespace"), name);
    state.rbac.forget(&key, rev);
}

/// Loads the cache from the store the first time it is called for a server, then follows the
/// store's watch of the RBAC kinds for as long as the server's state lives.
pub(crate) async fn start(state: &Arc<AppState>) -> Result<(), ApiError> {
    let rbac = state.rbac.clone();
    rbac.started
        .get_or_try_init(|| async {
            let rev = load(state).await?;
            tokio::spawn(crate::follow::follow(Objects, Arc::downgrade(state), rev));
            Ok::<(), ApiError>(())
        })
        .await?;
    Ok(())
}

/// The kind of an RBAC store key.
fn kind_of_key(key: &str) -> Option<&'static Kind> {
    let plural = key.strip_prefix(&cache::prefix())?.split('/').next()?;
    skiff_kinds::find(cache::GROUP, "v1", plural)
}

/// Lists the stored RBAC objects into the cache; returns the revision of the list.
async fn load(state: &AppState) -> Result<u64, ApiError> {
    let list = state
        .store
        .list(skiff_store::ListOptions {
            prefix: cache::prefix(),
            ..Default::default()
        })
        .await?;
    let mut objects = Vec::new();
    for kv in &list.items {
        let Some(kind) = kind_of_key(&kv.key) else {
            continue;
        };
        if let Ok(obj) = objects::from_kv(kind, kv) {
            objects.push((kv.key.clone(), obj, kv.mod_revision));
        }
    }
    state.rbac.reset(objects);
    Ok(list.revision)
}

/// The RBAC cache follows the store's Roles, ClusterRoles and bindings.
struct Objects;

impl crate::follow::Follower for Objects {
    const WHAT: &'static str = "RBAC objects";

    fn prefix(&self) -> String {
        cache::prefix()
    }

    fn apply(&self, state: &Arc<AppState>, event: &skiff_store::Event) {
        let kv = &event.kv;
        match event.event_type {
            EventType::Put => {
                if let Some(kind) = kind_of_key(&kv.key)
                    && let Ok(obj) = objects::from_kv(kind, kv)
                {
                    state.rbac.observe(&kv.key, &obj, kv.mod_revision);
                }
            }
            EventType::Delete => state.rbac.forget(&kv.key, kv.mod_revision),
        }
    }

    fn load<'a>(&'a self, state: &'a AppState) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(load(state))
    }
}
