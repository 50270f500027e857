//! ClusterRole aggregation (kube-controller-manager's `clusterrole-aggregation` controller): a
//! ClusterRole with an `aggregationRule` gets, as its `rules`, every rule of the ClusterRoles
//! its selectors match (itself excluded), taken by role name, each rule once. Any ClusterRole
//! change requeues every aggregated role, so a role labelled `aggregate-to-edit` reaches `edit`
//! and, through `edit`, `admin`.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_meta::selector::LabelSelector;

use crate::Error;

/// Shared state of the controller.
pub struct Ctx {
    pub client: Client,
    pub roles: Store<ClusterRole>,
}

/// The rules `role` aggregates from `all`, or `None` when it has no `aggregationRule`.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_ref();
    let mut sorted: Vec<&Arc<ClusterRole>> = all.iter().collect();
    sorted.sort_by_key(|r| r.name_any());
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in selectors.into_iter().flatten() {
        let Ok(selector) = LabelSelector::from_k8s(selector) else {
            continue;
        };
        for other in &sorted {
            if other.name_any() == role.name_any() || !selector.matches(other.labels()) {
                continue;
            }
            for rule in other.rules.iter().flatten() {
                if !out.contains(rule) {
                    out.push(rule.clone());
                }
            }
        }
    }
    Some(out)
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let all = ctx.roles.state();
    let Some(rules) = aggregated_rules(&role, &all) else {
        return Ok(Action::await_change());
    };
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({"rules": rules});
    api.patch(
        &role.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// Runs the controller over the ClusterRoles; every change requeues each aggregated role.
pub async fn run(
    ctx: Arc<Ctx>,
    roles: (
        impl Stream<Item = Result<ClusterRole, watcher::Error>> + Send + 'static,
        Store<ClusterRole>,
    ),
    changes: impl Stream<Item = Result<ClusterRole, watcher::Error>> + Send + 'static,
) {
    let store = roles.1.clone();
    let controller =
        Controller::for_stream(roles.0, roles.1).watches_stream(changes, move |_role| {
            store
                .state()
                .iter()
                .filter(|r| r.aggregation_rule.is_some())
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        });
    crate::runner::run("clusterrole-aggregation", controller, reconcile, ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Selector, ObjectMeta};

    fn role(name: &str, label: Option<&str>, rules: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| [(l.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            rules: Some(
                rules
                    .iter()
                    .map(|r| PolicyRule {
                        verbs: vec!["get".into()],
                        api_groups: Some(vec!["".into()]),
                        resources: Some(vec![r.to_string()]),
                        ..Default::default()
                    })
                    .collect(),
            ),
            aggregation_rule: None,
        })
    }

    #[test]
    fn aggregated_roles_take_the_selected_roles_rules_by_name_each_once() {
        let mut edit = (*role("edit", None, &[])).clone();
        edit.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![Selector {
                match_labels: Some([("to-edit".to_string(), "true".to_string())].into()),
                ..Default::default()
            }]),
        });
        let all = vec![
            role("b", Some("to-edit"), &["secrets", "pods"]),
            role("a", Some("to-edit"), &["pods"]),
            role("c", None, &["nodes"]),
            Arc::new(edit.clone()),
        ];
        let rules = aggregated_rules(&edit, &all).expect("edit aggregates");
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        assert_eq!(resources, vec!["pods", "secrets"]);
        assert!(aggregated_rules(&all[2], &all).is_none());
    }
}
