//! ServiceAccount controller (kube-controller-manager's `serviceaccount`): every namespace that
//! is not terminating has the `default` ServiceAccount; one deleted is made again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::Error;

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Shared state of the controller.
pub struct Ctx {
    pub client: Client,
}

/// Whether a namespace is being deleted (nothing is created in it then).
pub(crate) fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Whether a create failed only because the object is there or its namespace is going away.
pub(crate) fn benign_create_error(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 || s.code == 404
        || (s.code == 403 && s.message.contains("is being terminated")))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_string()),
            namespace: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => tracing::info!(namespace = %name, "created the default ServiceAccount"),
        Err(e) if benign_create_error(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Runs the controller: namespaces, and the namespace of every `default` ServiceAccount that
/// changes or goes away.
pub async fn run(ctx: Arc<Ctx>) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default()).watches(
        accounts,
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
        |sa: ServiceAccount| {
            (sa.name_any() == DEFAULT_SERVICE_ACCOUNT)
                .then(|| sa.namespace())
                .flatten()
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        },
    );
    crate::runner::run("serviceaccount", controller, reconcile, ctx).await;
}
