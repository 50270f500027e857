//! `AppState`: what every request handler shares (the store, the accepted tokens, shutdown), and
//! `UserInfo`, who a request comes from.

use std::sync::Arc;
use std::time::Instant;

use skiff_store::Store;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Bearer tokens accepted, with the user each one authenticates.
    pub tokens: Vec<(String, UserInfo)>,
    pub started: Instant,
    /// Tells long-running requests (watches) that the server is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// State over a store, accepting the given bearer tokens; it never shuts down (tests and
    /// in-process clients). `start` uses `with_shutdown` to end watches when it stops.
    pub fn new(store: Arc<dyn Store>, tokens: Vec<(String, UserInfo)>) -> Self {
        static NEVER: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> =
            std::sync::OnceLock::new();
        let shutdown = NEVER
            .get_or_init(|| tokio::sync::watch::channel(false).0)
            .subscribe();
        AppState {
            store,
            tokens,
            started: Instant::now(),
            shutdown,
        }
    }

    /// The same state, with watches ending when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group Kubernetes' authorizers let do anything.
pub const MASTERS: &str = "system:masters";

/// An authenticated caller, as Kubernetes' `user.Info`: a name and the groups it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user in the given groups (and `system:authenticated`).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.into(),
            groups,
        }
    }

    /// The cluster administrator (`system:masters`), whom the server's admin token authenticates.
    pub fn admin(name: impl Into<String>) -> Self {
        UserInfo::new(name, &[MASTERS, AUTHENTICATED])
    }

    /// Whether the user is in a group.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A user known by name only is in `system:authenticated` and no other group.
impl From<&str> for UserInfo {
    fn from(name: &str) -> Self {
        UserInfo::new(name, &[])
    }
}

impl From<String> for UserInfo {
    fn from(name: String) -> Self {
        UserInfo::new(name, &[])
    }
}
