//! The default policy of the cluster's own components (controller manager, scheduler, nodes,
//! the API server's node client): their ClusterRoles and ClusterRoleBindings, least privilege.

use serde_json::Value;

/// The ClusterRoles and ClusterRoleBindings of the components, reconciled at start with the
/// rest of the default policy.
#[allow(dead_code)]
pub(crate) fn component_policy() -> Vec<Value> {
    Vec::new()
}
