//! Admission plugins of the write path (`registry::ADMISSION`), as Kubernetes' `priority` and
//! `ResourceQuota` plugins: `priority` resolves a pod's PriorityClass and guards the classes,
//! `quota` refuses writes over a namespace's ResourceQuotas and charges their `status.used`;
//! `podsecurity` refuses Linux container pods their namespace's Pod Security level forbids.

pub(crate) mod defaultstorageclass;
pub(crate) mod limitranger;
pub(crate) mod namespace;
pub(crate) mod noderestriction;
pub(crate) mod podsecurity;
pub(crate) mod priority;
pub(crate) mod quota;
pub(crate) mod serviceaccount;
pub(crate) mod wit;

use serde_json::Value;
use skiff_kinds::Kind;
use skiff_store::ListOptions;

use crate::error::ApiError;
use crate::objects;
use crate::registry::Write;
use crate::state::AppState;

/// Kubernetes' `admission.NewForbidden`: `pods "x" is forbidden: REASON`.
pub(crate) fn forbidden(write: &Write<'_>, reason: impl std::fmt::Display) -> ApiError {
    let resource = write.kind.qualified_resource();
    let message = if write.name.is_empty() {
        format!("{resource} is forbidden: {reason}")
    } else {
        format!("{resource} \"{}\" is forbidden: {reason}", write.name)
    };
    ApiError::forbidden(message).with_details(write.kind.group, write.kind.plural, write.name)
}

/// Every stored object of `kind` (in `namespace`, for a namespaced kind), as a read gives it.
pub(crate) async fn list(
    state: &AppState,
    kind: &Kind,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let listed = state
        .store
        .list(ListOptions {
            prefix: objects::collection_prefix(kind, namespace),
            ..ListOptions::default()
        })
        .await?;
    listed
        .items
        .iter()
        .map(|kv| objects::from_kv(kind, kv))
        .collect()
}

#[cfg(test)]
mod tests;
