//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`: the
//! `EncryptionConfiguration` file (`config.rs`), the providers that seal and open values
//! (`providers.rs`), and the `Store` wrapper that applies them to the keys of the configured
//! resources (`store.rs`), so nothing above the store sees a ciphertext.

mod config;
mod providers;
mod store;

use std::path::PathBuf;

pub use config::{EncryptionConfig, generate_aesgcm_config};
pub use store::EncryptedStore;

/// What can go wrong loading a configuration or reading a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the encryption provider config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encryption provider config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A stored value none of the configured providers opens.
    #[error("{key}: no provider could decrypt: {reasons}")]
    Undecryptable { key: String, reasons: String },
    #[error(transparent)]
    Store(#[from] skiff_store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
