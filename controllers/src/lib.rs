//! Skiff scheduler and workload controllers, clients of the public Kubernetes API.

pub mod scheduler;
pub mod util;
