//! A local single-member etcd for tests and benchmarks (Debian's `etcd` on free loopback ports):
//! the launcher lives in `skiff-store` (whose conformance suite needs it without depending on
//! this crate); this is its home for every other test.

pub use skiff_store::etcd::launch::{Etcd, available};
