//! Namespace controller: when a namespace is Terminating, deletes every namespaced object in it
//! (found through discovery), and once nothing is left removes the `kubernetes` finalizer through
//! `namespaces/NAME/finalize`, after which the API server deletes the namespace.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::Error;

/// Shared state of the namespace controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == "kubernetes") {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = 0usize;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &ar);
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(resource = %ar.plural, error = %e, "listing in terminating namespace");
                    continue;
                }
            };
            for obj in list.items {
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api
                    .delete(&obj.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::debug!(error = %e, "deleting in terminating namespace"),
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .into_iter()
                .filter(|f| f != "kubernetes")
                .collect(),
        );
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource::<Namespace>("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Runs the namespace controller.
pub async fn run(ctx: Arc<Ctx>) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    crate::runner::run("namespace", controller, reconcile, ctx).await;
}
