//! The node's storage: the local-path provisioner (`provision.rs`) and the claims of a pod
//! resolved to directories on this node (`claims.rs`).
//!
//! The provisioner runs in every node, not centrally: a local volume is a directory on one
//! node's disk, so only that node can create it, measure its free space and delete it.

mod claims;
mod provision;

use std::path::PathBuf;

pub(crate) use claims::{ClaimPaths, resolve_claims};
pub(crate) use provision::run;

/// Where the local-path provisioner keeps its volumes and how much it may hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// The directory holding one subdirectory per provisioned volume (`DATA_DIR/volumes`).
    pub dir: PathBuf,
    /// The most bytes all volumes provisioned on this node may claim together (`None`: only
    /// the filesystem's free space limits it).
    pub max_bytes: Option<u64>,
}
