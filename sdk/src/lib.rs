//! Skiff's app SDK: describe an app — its wasm components, routes, config, storage and scale — in
//! `skiff.toml` or in Rust, build it, push its components to a registry as wasm OCI artifacts,
//! and apply the Kubernetes objects that run it (server-side apply, pruning what the app no
//! longer declares).
//!
//! The pieces, each usable alone:
//! - [`manifest::load`] reads and validates `skiff.toml` (errors name file, line and field);
//!   [`App::new`] and [`Component::new`] build the same model in code.
//! - [`build::build`] runs each component's `[component.build] command`.
//! - [`render::render`] turns an [`App`] into Kubernetes objects, given each component's image.
//! - [`deploy::Deployer`] pushes, applies, prunes and waits, reporting [`deploy::Event`]s to a
//!   callback; [`deploy::delete`] and [`deploy::list`] remove and list apps.
//!
//! Deploying an app built in code to the cluster a kubeconfig names:
//!
//! ```no_run
//! use skiff_sdk::{App, Component, Source};
//! use skiff_sdk::deploy::{Deployer, Event};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::new("shop")
//!     .version("1.0.0")
//!     .component(
//!         Component::new("frontend", Source::File("frontend.wasm".into()))
//!             .route("/")
//!             .env("GREETING", "hi"),
//!     )
//!     .component(Component::new("backend", Source::File("backend.wasm".into())).replicas(2));
//! let client = kube::Client::try_default().await?;
//! let deployer = Deployer::discover(client).await?;
//! let deployed = deployer
//!     .deploy(&app, &mut |e: &Event| eprintln!("{e}"))
//!     .await?;
//! for url in deployed.urls {
//!     println!("{url}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `sdk/README.md` documents `skiff.toml` and the objects an app becomes.

pub mod build;
pub mod deploy;
pub mod manifest;
pub mod model;
pub mod render;

pub use manifest::{MANIFEST_FILE, ManifestError};
pub use model::{
    App, AppMeta, Autoscale, Build, Component, ConfigValue, Quantities, Resources, Route,
    ScaleToZero, Source,
};

/// The field manager of everything the SDK applies.
pub const FIELD_MANAGER: &str = "skiff";
/// Label: the app's name.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: the app an object is part of (with [`LABEL_MANAGED_BY`], what pruning selects).
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label: the component an object belongs to.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: the app's version.
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
/// Label: `skiff` on every object the SDK applies.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Pod annotation prefix: `capabilities.skiff.dev/<container>` lists the WASI packages the
/// container is given beyond the default, comma-separated.
pub const CAPABILITIES_ANNOTATION_PREFIX: &str = "capabilities.skiff.dev/";
/// Manifest annotation of a pushed component: the sha256 digest of its `.wasm` source.
pub const SOURCE_DIGEST_ANNOTATION: &str = "dev.skiff.source.digest";
/// The container name of every component's pod.
pub const CONTAINER: &str = "app";
/// The port a component serves on inside its pod.
pub const COMPONENT_PORT: i32 = 8080;
/// The port of a component's Service.
pub const SERVICE_PORT: i32 = 80;
/// Where `wasi:config/store` values are mounted (file name = key).
pub const CONFIG_MOUNT: &str = "/etc/skiff/config";
/// Where the `wasi:keyvalue` volume is mounted.
pub const KEYVALUE_MOUNT: &str = "/var/lib/skiff/keyvalue";

/// Errors of the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `skiff.toml` is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An app built in code breaks a rule.
    #[error("{at}: {message}")]
    Invalid {
        /// The component and field.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component's build command failed, or did not make its source.
    #[error("component {component:?}: {message}")]
    Build {
        /// The component.
        component: String,
        /// What went wrong.
        message: String,
    },
    /// A component's source is not something Skiff can run.
    #[error("component {component:?}: {message}")]
    Source {
        /// The component.
        component: String,
        /// What is wrong.
        message: String,
    },
    /// Pushing to the registry failed.
    #[error("pushing {reference}: {source}")]
    Push {
        /// The reference pushed to.
        reference: String,
        /// The cause.
        #[source]
        source: skiff_registry::ClientError,
    },
    /// The cluster refused or failed a request.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The cluster does not publish what the SDK needs (e.g. a registry).
    #[error("{0}")]
    Cluster(String),
    /// A rollout did not finish.
    #[error("{0}")]
    Rollout(String),
    /// A route is already served by another app's Ingress (same host and path): the ingress
    /// would keep answering for that one.
    #[error("{0}")]
    RouteTaken(String),
    /// An object could not be encoded.
    #[error("encoding {what}: {message}")]
    Encode {
        /// The object.
        what: String,
        /// Why.
        message: String,
    },
}

/// Results of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}
