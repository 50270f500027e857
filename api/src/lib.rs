//! Skiff API server: the Kubernetes-compatible HTTP API over a revisioned store.
//!
//! `app()` is the axum router; `server::start` serves it over HTTPS from a data directory. Kinds
//! come from `skiff-kinds`, patch semantics from `skiff-patch`, storage from `skiff-store`.
//!
//! Inside, dependencies point one way: `state` and `respond` at the bottom; `resource` (reads);
//! `registry` (the one write path) with the per-kind `strategy` and `alloc` (ClusterIPs,
//! NodePorts, pod CIDRs, the default IngressClass); `verbs` and `subresources`; `watch`;
//! `dispatch`, the only module that knows them all; `app` (router and `auth`) on top. `bootstrap`
//! writes the server's own objects at start, through `registry`.

mod admission;
mod alloc;
mod apiservers;
pub mod app;
pub mod audit;
pub mod auth;
mod authz;
pub mod body;
mod bootstrap;
pub mod bootstraptoken;
pub mod crd;
mod dispatch;
pub mod encryption;
pub mod error;
pub mod fairness;
mod follow;
pub mod limits;
pub mod metrics;

pub mod metricsapi;
pub mod nodeauthz;
pub mod objects;
pub mod pki;
mod rbac;
mod registry;
pub mod request;
mod resource;
mod respond;
mod reviews;
pub mod selectors;
pub mod server;
pub mod serviceaccount;
mod state;
mod strategy;
mod subresources;
mod tracing_layer;
mod ui;
mod verbs;
mod watch;

pub use alloc::{Ipv4Cidr, NetworkConfig, PortRange, RangeError};
pub use app::{AppState, app};
pub use auth::UserInfo;
pub use authz::{Masters, Union};
pub use error::{ApiError, StatusReason};
pub use rbac::{AuthorizationMode, Rbac};
pub use server::{ServerHandle, ServerOptions, start, start_with_store};
pub use skiff_store::EtcdStoreOptions;
pub use state::{
    AllowAuthenticated, Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, Rules,
    TokenAuthenticator,
};

/// The Kubernetes version whose API this server speaks.
pub const KUBERNETES_MINOR: &str = skiff_meta::KUBERNETES_MINOR;

/// The `/version` document.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "emulationMajor": "1",
        "emulationMinor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": env!("SKIFF_GIT_COMMIT"),
        "gitTreeState": env!("SKIFF_GIT_TREE_STATE"),
        "buildDate": env!("SKIFF_BUILD_DATE"),
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}
