//! Kubernetes' `DefaultIngressClass` admission: an Ingress created without a class gets the name
//! of the IngressClass marked default (the newest one, if several are).

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects;
use crate::state::AppState;

/// The annotation marking the default IngressClass.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

pub(super) async fn default_class(state: &AppState, obj: &mut Value) -> Result<(), ApiError> {
    let has_class = obj
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
        || objects::meta(obj)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("kubernetes.io/ingress.class"))
            .is_some();
    if has_class {
        return Ok(());
    }
    let kind = skiff_kinds::find("networking.k8s.io", "v1", "ingressclasses")
        .expect("ingressclasses are a known kind");
    let listed = state
        .store
        .list(skiff_store::ListOptions {
            prefix: objects::collection_prefix(kind, None),
            ..Default::default()
        })
        .await?;
    let mut best: Option<(String, String)> = None;
    for kv in &listed.items {
        let class = objects::from_kv(kind, kv)?;
        let is_default = objects::meta(&class)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .and_then(Value::as_str)
            == Some("true");
        if !is_default {
            continue;
        }
        let created = objects::meta_str(&class, "creationTimestamp")
            .unwrap_or_default()
            .to_string();
        let name = objects::meta_str(&class, "name")
            .unwrap_or_default()
            .to_string();
        if best.as_ref().is_none_or(|(c, _)| created >= *c) {
            best = Some((created, name));
        }
    }
    if let Some((_, name)) = best
        && let Some(m) = obj.as_object_mut()
    {
        let spec = m.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("ingressClassName".into(), json!(name));
        }
    }
    Ok(())
}
