//! Deleting a CustomResourceDefinition: while it carries the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer and a deletion timestamp, the server
//! deletes its objects in every namespace through the write path (their own finalizers are
//! honoured: it waits for them), then removes the finalizer, which removes the CRD.

use std::sync::Weak;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_kinds::Kind;
use skiff_kinds::crd::CustomKind;

use super::{CLEANUP_FINALIZER, crd_kind, registry};
use crate::error::{ApiError, StatusReason};
use crate::objects::{self, meta_mut};
use crate::registry::{Change, Write};
use crate::request::{Query, ResourceRequest};
use crate::state::{AppState, UserInfo};
use crate::verbs::delete::{DeleteOptions, delete_object};

/// The user the server deletes a CRD's objects as.
const CLEANUP_USER: &str = "system:apiserver";

fn has_finalizer(crd: &Value) -> bool {
    objects::finalizers(crd)
        .iter()
        .any(|f| f == CLEANUP_FINALIZER)
}

/// Starts removing the objects of `crd` if it is being deleted and this server is not at it yet.
pub(super) fn maybe_start(state: &AppState, crd: &Value) {
    if !objects::is_deleting(crd) || !has_finalizer(crd) {
        return;
    }
    let Some(name) = objects::meta_str(crd, "name").map(str::to_string) else {
        return;
    };
    let Some(weak) = state.crds.state.get().cloned() else {
        return;
    };
    {
        let mut cleaning = state
            .crds
            .cleaning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !cleaning.insert(name.clone()) {
            return;
        }
    }
    tokio::spawn(async move {
        let result = run(&weak, &name).await;
        if let Some(state) = weak.upgrade() {
            state
                .crds
                .cleaning
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
        }
        if let Err(e) = result {
            tracing::warn!(crd = %name, error = %e.message, "removing a CustomResourceDefinition's objects");
        }
    });
}

/// The kind under which the CRD's objects are stored (any served version shares the storage).
fn storage_kind(crd: &Value) -> Option<&'static Kind> {
    CustomKind::from_crd(crd)
        .into_iter()
        .next()
        .map(registry::intern)
}

async fn run(weak: &Weak<AppState>, name: &str) -> Result<(), ApiError> {
    loop {
        let Some(state) = weak.upgrade() else {
            return Ok(());
        };
        let Some(kv) = state
            .store
            .get(&objects::key(crd_kind(), None, name))
            .await?
        else {
            return Ok(());
        };
        let crd = objects::from_kv(crd_kind(), &kv)?;
        if !objects::is_deleting(&crd) || !has_finalizer(&crd) {
            return Ok(());
        }
        let kind = storage_kind(&crd);
        let prefix = match kind {
            Some(k) => k.storage_prefix(),
            None => format!(
                "/{}/{}/",
                crd.pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                crd.pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        };
        let list = state
            .store
            .list(skiff_store::ListOptions {
                prefix: prefix.clone(),
                ..Default::default()
            })
            .await?;
        if list.items.is_empty() {
            return remove_finalizer(&state, name).await;
        }
        for kv in &list.items {
            match kind {
                Some(kind) => delete_one(&state, kind, kv).await?,
                None => {
                    let _ = state.store.delete(&kv.key, Some(kv.mod_revision)).await;
                }
            }
        }
        // Wait for the next change of the objects (a deletion, a finalizer removed).
        let mut watch = state.store.watch(&prefix, list.revision).await?;
        let mut shutdown = state.shutdown.clone();
        drop(state);
        tokio::select! {
            _ = watch.next() => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return Ok(()),
        }
    }
}

/// Deletes one stored object through the write path, unless it is already being deleted.
async fn delete_one(
    state: &AppState,
    kind: &'static Kind,
    kv: &skiff_store::KeyValue,
) -> Result<(), ApiError> {
    let obj = objects::from_kv(kind, kv)?;
    if objects::is_deleting(&obj) {
        return Ok(());
    }
    let Some(name) = objects::meta_str(&obj, "name").map(str::to_string) else {
        return Ok(());
    };
    let req = ResourceRequest {
        method: Method::DELETE,
        user: UserInfo::admin(CLEANUP_USER),
        kind,
        namespace: objects::meta_str(&obj, "namespace").map(str::to_string),
        name: Some(name.clone()),
        subresource: None,
        rest: None,
        query: Query::default(),
        raw_query: None,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        legacy_watch: false,
        http2: false,
        upgrade: None,
    };
    match delete_object(state, &req, &name, &DeleteOptions::default()).await {
        Err(e) if e.reason == StatusReason::NotFound => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn remove_finalizer(state: &AppState, name: &str) -> Result<(), ApiError> {
    let user = UserInfo::admin(CLEANUP_USER);
    let write = Write {
        kind: crd_kind(),
        namespace: None,
        name,
        user: &user,
        dry_run: false,
        subresource: None,
    };
    let result = crate::registry::guaranteed_update(state, &write, |current| {
        let Some((obj, _)) = current else {
            return Err(ApiError::not_found(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                name,
            ));
        };
        let mut new = obj.clone();
        if let Some(list) = meta_mut(&mut new)
            .get_mut("finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f != CLEANUP_FINALIZER);
        }
        Ok(Change::Update(new))
    })
    .await;
    match result {
        Err(e) if e.reason == StatusReason::NotFound => Ok(()),
        other => other.map(|_| ()),
    }
}
