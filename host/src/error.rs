//! The node agent's error type.

/// Errors of the node agent. Messages name the object, file or address involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or parsing the kubeconfig failed.
    #[error("kubeconfig {path}: {detail}")]
    Kubeconfig {
        /// The kubeconfig path.
        path: String,
        /// Why.
        detail: String,
    },
    /// A call to the API server failed.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// The pod runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] skiff_runtime::Error),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A flag or setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A background task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the node agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
