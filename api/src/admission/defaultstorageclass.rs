//! Kubernetes' `DefaultStorageClass` and `PersistentVolumeClaimResize` admission plugins: a claim
//! created without a class gets the StorageClass marked default (the newest one, if several are,
//! as Kubernetes since 1.26), and a bound claim may only grow when its class allows expansion.

use serde_json::{Value, json};
use skiff_meta::names::DEFAULT_STORAGE_CLASS;
use skiff_meta::quantity::Quantity;

use super::{forbidden, list};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// The beta annotation that named a claim's class before `spec.storageClassName` existed.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The beta spelling of the default-class annotation, still honoured by Kubernetes.
const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The plugin.
pub(crate) struct DefaultStorageClass;

impl Admission for DefaultStorageClass {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            match (write.kind.group, write.kind.plural, op) {
                ("", "persistentvolumeclaims", Operation::Create) => {
                    default_class(state, obj).await
                }
                ("", "persistentvolumeclaims", Operation::Update) => match old {
                    Some(old) => resize(state, write, obj, old).await,
                    None => Ok(()),
                },
                _ => Ok(()),
            }
        })
    }
}

fn storage_classes() -> &'static skiff_kinds::Kind {
    skiff_kinds::find("storage.k8s.io", "v1", "storageclasses")
        .expect("storageclasses are a known kind")
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    objects::meta(obj)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Whether a StorageClass is marked default (`"true"` on either spelling of the annotation).
pub(crate) fn is_default(class: &Value) -> bool {
    annotation(class, DEFAULT_STORAGE_CLASS) == Some("true")
        || annotation(class, BETA_DEFAULT_ANNOTATION) == Some("true")
}

/// The default class among `classes`, as Kubernetes' `GetDefaultClass`: the newest marked one,
/// and of those made in the same instant the first by name.
pub(crate) fn newest_default(classes: &[Value]) -> Option<&Value> {
    let key = |c: &Value| {
        (
            meta_str(c, "creationTimestamp")
                .unwrap_or_default()
                .to_string(),
            std::cmp::Reverse(meta_str(c, "name").unwrap_or_default().to_string()),
        )
    };
    classes
        .iter()
        .filter(|c| is_default(c))
        .max_by(|a, b| key(a).cmp(&key(b)))
}

/// A claim that names no class (`spec.storageClassName` absent or null, no beta annotation)
/// gets the default class; an empty name asks for no class and is left alone.
async fn default_class(state: &AppState, claim: &mut Value) -> Result<(), ApiError> {
    let named = claim
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
        || annotation(claim, BETA_CLASS_ANNOTATION).is_some();
    if named {
        return Ok(());
    }
    let classes = list(state, storage_classes(), None).await?;
    let Some(name) = newest_default(&classes).and_then(|c| meta_str(c, "name")) else {
        return Ok(());
    };
    if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("storageClassName".into(), json!(name));
    }
    Ok(())
}

fn requested(claim: &Value) -> Option<Quantity> {
    claim
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(|q| Quantity::parse(q).ok())
}

/// A larger storage request is only admitted for a bound claim whose class allows expansion.
async fn resize(
    state: &AppState,
    write: &Write<'_>,
    claim: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    let (Some(new), Some(prev)) = (requested(claim), requested(old)) else {
        return Ok(());
    };
    if new <= prev || objects::is_deleting(claim) {
        return Ok(());
    }
    let class = claim
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expandable = !class.is_empty()
        && list(state, storage_classes(), None)
            .await?
            .iter()
            .find(|c| meta_str(c, "name") == Some(class))
            .and_then(|c| c.get("allowVolumeExpansion"))
            .and_then(Value::as_bool)
            == Some(true);
    if expandable {
        Ok(())
    } else {
        Err(forbidden(
            write,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ))
    }
}
