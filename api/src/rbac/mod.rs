//! RBAC (`rbac.authorization.k8s.io/v1`): the authorizer over Roles, ClusterRoles and their
//! bindings, the default policy reconciled at start, and escalation checks.

pub(crate) mod components;
