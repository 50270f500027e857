//! Test and benchmark support for Skiff: the in-process test tier (`inproc`: a `kube::Client`
//! over the API server's router on the memory store, no process, no socket), simulated nodes
//! (`fake`) and the drivers of `skiff bench scheduler` (`bench`).
//!
//! Nothing in the product's libraries depends on this crate; the `skiff` binary links it only
//! for `skiff bench`.

pub mod bench;
pub mod fake;
pub mod inproc;
