//! ReplicationController: the replica controller of `replicaset.rs` over the core/v1 kind, whose
//! selector is an equality map.

use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use skiff_meta::selector::{LabelSelector, Operator, Requirement};

use crate::replicaset::ReplicaKind;

impl ReplicaKind for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";
    const TERMINATING_REPLICAS: bool = false;

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    /// `labels.SelectorFromSet(spec.selector)`; an empty map selects nothing here (the API
    /// defaults it from the template's labels and refuses it empty).
    fn selector(&self) -> Option<LabelSelector> {
        let map = self.spec.as_ref()?.selector.as_ref()?;
        let requirements = map
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, [v.clone()]))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some(LabelSelector::from_requirements(requirements)).filter(|s| !s.is_empty())
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ReplicationControllerSpec;

    use super::*;

    fn rc(selector: Option<BTreeMap<String, String>>) -> ReplicationController {
        ReplicationController {
            spec: Some(ReplicationControllerSpec {
                selector,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_selector_is_the_equality_map() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let sel = rc(Some(labels(&[("app", "web"), ("tier", "fe")])))
            .selector()
            .expect("a selector");
        assert_eq!(sel.to_string(), "app=web,tier=fe");
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(rc(Some(BTreeMap::new())).selector().is_none());
        assert!(rc(None).selector().is_none());
        assert_eq!(rc(None).replicas(), 1);
    }
}
