//! Integration tests of skiff-store: the conformance suite on both stores, and the redb store's
//! own guarantees (group commit, restart, crash after acknowledgement, bounded file size).

mod conformance;
mod crash;
mod etcd;
mod faults;
mod redb;
