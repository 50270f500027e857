//! Subresources served by the API server itself: scale, binding, eviction, a
//! CertificateSigningRequest's approval (after the signer check), and the node-served
//! log and proxy, forwarded to the pod's node, exec, spliced to the pod's node over an upgraded
//! connection, and a Service's proxy, forwarded to a ready
//! endpoint's node. `status` and `finalize` are the update and patch
//! verbs with their own target; `dispatch` routes them all.

pub(crate) mod approval;
pub(crate) mod binding;
pub(crate) mod eviction;
pub(crate) mod exec;
pub(crate) mod node_proxy;
pub(crate) mod scale;
pub(crate) mod service_proxy;
