//! Test and benchmark support for Skiff: the in-process test tier (`inproc`: a `kube::Client`
//! over the API server's router on the memory store, no process, no socket), simulated nodes
//! (`fake`), the drivers of `skiff bench scheduler` (`bench`), the kill -9 rounds of `skiff bench
//! crash` (`crash`), the container images of the Linux container tests (`oci_image`: busybox
//! built with umoci, pushed with skopeo, and broken variants), and a loopback TCP load balancer
//! for several API servers (`lb`).
//!
//! Nothing in the product's libraries depends on this crate; the `skiff` binary links it only
//! for `skiff bench`.

pub mod bench;
pub mod churn;
pub mod crash;
pub mod etcd;
pub mod fake;
pub mod inproc;
pub mod lb;
pub mod oci_image;
