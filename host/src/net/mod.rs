//! The node's Kubernetes-aware networking: the Service router (Services and EndpointSlices to
//! endpoints, fed to the runtime's Kubernetes-free network hook) and the ingress (Ingress rules
//! and NodePorts to Services). The two meet at [`ServiceBackend`]. On a node that runs Linux
//! containers, the bridge services (`bridge`, `dns`) give them the cluster DNS, the wasm pods'
//! IPs and the ClusterIPs. NetworkPolicies (`policy`) are decided by the router for every
//! request it delivers.

pub(crate) mod bridge;
pub(crate) mod dns;
mod hold;
pub mod ingress;
mod nodeport;
pub(crate) mod policy;
mod router;
pub(crate) mod table;
mod watch;

pub use router::Router;
pub(crate) use router::{
    ENDPOINT_GONE_HEADER, NODE_AUTH_HEADER, POLICY_DENIED_HEADER, SOURCE_IP_HEADER,
};
pub(crate) use watch::spawn_watches;

use futures::future::BoxFuture;
use http::{Request, Response};
use skiff_runtime::HttpBody;

/// A Service port as a backend names it: by number (`port.number`, a NodePort's target) or by
/// name (`port.name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServicePortRef {
    /// The Service's `spec.ports[].port`.
    Number(u16),
    /// The Service's `spec.ports[].name`.
    Name(String),
}

/// Serves a request addressed to a Service port, the way the Service router does for a pod's
/// outgoing call. Never fails: a request that reaches no endpoint is answered by the router
/// itself (503 no endpoint, 504 held past its deadline, 508 loop), with a short plain-text reason.
pub trait ServiceBackend: Send + Sync {
    /// Sends `req` to a ready endpoint of Service `namespace/name` on `port`.
    fn serve(
        &self,
        namespace: &str,
        name: &str,
        port: &ServicePortRef,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Response<HttpBody>>;
}
