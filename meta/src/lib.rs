//! Domain rules that the API server, the controllers and the node must all apply the same way.
//!
//! No I/O and no async: exact resource quantities, label selectors, a pod's QoS class and
//! readiness, the default image pull policy, and the `skiff.dev/*` names. A rule that more than
//! one crate applies lives here once, so that the copies cannot disagree.

pub mod der;
pub mod duration;
pub mod names;
pub mod pod;
pub mod qos;
pub mod quantity;
pub mod quota;
pub mod selector;
pub mod stats;
pub mod wit;

/// The minor version of the Kubernetes API this project speaks (`/version`, discovery); the one
/// place it is written. The generated patch and protobuf tables name the release they came from
/// and a test checks that it is this one.
pub const KUBERNETES_MINOR: &str = "35";
