//! The watches that feed the routing table (Services, EndpointSlices, Deployments and Nodes of
//! the whole cluster) and the network policies (NetworkPolicies, Namespaces and Pods of the whole
//! cluster). Each event is applied as it arrives; a relist (after a watch is lost) forgets what
//! it no longer lists.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::policy::Policies;
use super::table::Table;

/// How one kind's events change a cache `T` (the routing table, the policies).
trait Feed<T>:
    Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static
{
    type Key: Eq + Hash + Send;
    fn key(&self) -> Self::Key;
    fn apply(self, t: &T);
    fn delete(&self, t: &T);
    fn retain(t: &T, keep: &HashSet<Self::Key>);
}

fn ns_name<K: Resource>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl Feed<Table> for Service {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        ns_name(self)
    }
    fn apply(self, t: &Table) {
        t.apply_service(self);
    }
    fn delete(&self, t: &Table) {
        let (ns, name) = ns_name(self);
        t.delete_service(&ns, &name);
    }
    fn retain(t: &Table, keep: &HashSet<Self::Key>) {
        t.retain_services(keep);
    }
}

impl Feed<Table> for EndpointSlice {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        ns_name(self)
    }
    fn apply(self, t: &Table) {
        t.apply_slice(self);
    }
    fn delete(&self, t: &Table) {
        let (ns, name) = ns_name(self);
        t.delete_slice(&ns, &name);
    }
    fn retain(t: &Table, keep: &HashSet<Self::Key>) {
        t.retain_slices(keep);
    }
}

impl Feed<Table> for Deployment {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        ns_name(self)
    }
    fn apply(self, t: &Table) {
        t.apply_deployment(&self);
    }
    fn delete(&self, t: &Table) {
        let (ns, name) = ns_name(self);
        t.delete_deployment(&ns, &name);
    }
    fn retain(t: &Table, keep: &HashSet<Self::Key>) {
        t.retain_deployments(keep);
    }
}

impl Feed<Table> for Node {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.name_any()
    }
    fn apply(self, t: &Table) {
        t.apply_node(&self);
    }
    fn delete(&self, t: &Table) {
        t.delete_node(&self.name_any());
    }
    fn retain(t: &Table, keep: &HashSet<Self::Key>) {
        t.retain_nodes(keep);
    }
}

impl Feed<Policies> for NetworkPolicy {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        ns_name(self)
    }
    fn apply(self, p: &Policies) {
        p.apply_policy(&self);
    }
    fn delete(&self, p: &Policies) {
        let (ns, name) = ns_name(self);
        p.delete_policy(&ns, &name);
    }
    fn retain(p: &Policies, keep: &HashSet<Self::Key>) {
        p.retain_policies(keep);
    }
}

impl Feed<Policies> for Namespace {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.name_any()
    }
    fn apply(self, p: &Policies) {
        p.apply_namespace(&self);
    }
    fn delete(&self, p: &Policies) {
        p.delete_namespace(&self.name_any());
    }
    fn retain(p: &Policies, keep: &HashSet<Self::Key>) {
        p.retain_namespaces(keep);
    }
}

impl Feed<Policies> for Pod {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        ns_name(self)
    }
    fn apply(self, p: &Policies) {
        p.apply_pod(&self);
    }
    fn delete(&self, p: &Policies) {
        let (ns, name) = ns_name(self);
        p.delete_pod(&ns, &name);
    }
    fn retain(p: &Policies, keep: &HashSet<Self::Key>) {
        p.retain_pods(keep);
    }
}

async fn feed<K, T>(api: Api<K>, table: Arc<T>, mut stop: watch::Receiver<bool>)
where
    K: Feed<T, DynamicType = ()>,
    T: Send + Sync + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Option<HashSet<K::Key>> = None;
    loop {
        let ev = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watching for the service router")
            }
            Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(Event::InitApply(o))) => {
                if let Some(seen) = &mut listed {
                    seen.insert(o.key());
                }
                o.apply(&table);
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = listed.take() {
                    K::retain(&table, &seen);
                }
            }
            Some(Ok(Event::Apply(o))) => o.apply(&table),
            Some(Ok(Event::Delete(o))) => o.delete(&table),
        }
    }
}

/// Starts the watches feeding `table` and `policies`; they end when `stop` turns true.
pub(crate) fn spawn_watches(
    client: &kube::Client,
    table: &Arc<Table>,
    policies: &Arc<Policies>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(feed::<NetworkPolicy, _>(
            Api::all(client.clone()),
            policies.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<Namespace, _>(
            Api::all(client.clone()),
            policies.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<Pod, _>(
            Api::all(client.clone()),
            policies.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<Service, _>(
            Api::all(client.clone()),
            table.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<EndpointSlice, _>(
            Api::all(client.clone()),
            table.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<Deployment, _>(
            Api::all(client.clone()),
            table.clone(),
            stop.clone(),
        )),
        tokio::spawn(feed::<Node, _>(
            Api::all(client.clone()),
            table.clone(),
            stop.clone(),
        )),
    ]
}
