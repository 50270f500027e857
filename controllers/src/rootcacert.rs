//! Root CA publisher (kube-controller-manager's `root-ca-cert-publisher`): every namespace that
//! is not terminating has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! (from the controllers' kubeconfig); one deleted is made again, one changed is put back.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::Error;
use crate::serviceaccount::{benign_create_error, terminating};

/// The ConfigMap every namespace has.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Its one key.
pub const CA_KEY: &str = "ca.crt";

/// Shared state of the controller.
pub struct Ctx {
    pub client: Client,
    /// The cluster CA, PEM.
    pub ca_pem: String,
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = BTreeMap::from([(CA_KEY.to_string(), ctx.ca_pem.clone())]);
    match api.get_opt(ROOT_CA_CONFIGMAP).await? {
        Some(cm) if cm.data.as_ref() == Some(&data) => {}
        Some(_) => {
            let patch = serde_json::json!({"data": data});
            api.patch(
                ROOT_CA_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            tracing::info!(namespace = %name, "repaired kube-root-ca.crt");
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.to_string()),
                    namespace: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => tracing::info!(namespace = %name, "created kube-root-ca.crt"),
                Err(e) if benign_create_error(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

/// Runs the controller: namespaces, and the namespace of every `kube-root-ca.crt` that changes
/// or goes away.
pub async fn run(ctx: Arc<Ctx>) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default()).watches(
        maps,
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
        |cm: ConfigMap| {
            (cm.name_any() == ROOT_CA_CONFIGMAP)
                .then(|| cm.namespace())
                .flatten()
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        },
    );
    crate::runner::run("root-ca-cert-publisher", controller, reconcile, ctx).await;
}
