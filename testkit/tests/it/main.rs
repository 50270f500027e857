//! In-process tests of the controllers and the node agent: each test runs the API router on a
//! memory store, a kube client over it, and only the controllers (or the node, on the fake
//! runtime backend) it is about; it waits on watches with a deadline.

mod clusterroleaggregation;
mod csrsigning;
mod gc_custom;
mod informers;
mod ingress;
mod kubectl;
mod local_storage;
mod node;
mod node_pressure;
mod priority_quota;
mod projected;
mod reconcilers;
mod replication;
mod router;
mod scheduler_status;
mod serviceaccount;
mod services;
mod volumes;
mod volumes_local_path;
