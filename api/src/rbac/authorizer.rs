//! The RBAC authorizer, as Kubernetes' `plugin/pkg/auth/authorizer/rbac`: a request is allowed
//! when a rule of a role bound to the user (by name, group or ServiceAccount) allows it;
//! otherwise it has no opinion — with no reason, or `RBAC: ` and the roles that could not be
//! found — so the union refuses it with Kubernetes' plain message.

use std::sync::Arc;

use super::cache::RbacCache;
use super::rules::{PolicyRule, Request};
use crate::state::{
    Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, Rules, UserInfo,
};

/// Authorizes from the Roles, ClusterRoles and bindings of one server's store.
pub struct Rbac {
    cache: Arc<RbacCache>,
}

impl Rbac {
    pub(crate) fn new(cache: Arc<RbacCache>) -> Self {
        Rbac { cache }
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        let request = match attributes.path {
            Some(path) => Request::NonResource {
                verb: attributes.verb,
                path,
            },
            None => Request::Resource {
                verb: attributes.verb,
                group: attributes.group,
                resource: attributes.resource,
                subresource: attributes.subresource,
                name: attributes.name,
            },
        };
        let visit = self.cache.visit(
            &attributes.user.name,
            &attributes.user.groups,
            attributes.namespace.filter(|ns| !ns.is_empty()),
            &request,
        );
        if visit.allowed {
            Decision::Allow
        } else if visit.errors.is_empty() {
            Decision::NoOpinion(String::new())
        } else {
            Decision::NoOpinion(format!("RBAC: {}", aggregate(&visit.errors)))
        }
    }

    fn rules(&self, user: &UserInfo, namespace: &str) -> Option<Rules> {
        let (rules, _) = self.cache.rules_for(&user.name, &user.groups, namespace);
        Some(to_review_rules(&rules))
    }
}

/// Go's `utilerrors.NewAggregate(errs).Error()`: one error as is, several as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Policy rules as a SelfSubjectRulesReview lists them: a rule with resources is a resource
/// rule, one with URLs a non-resource rule.
pub(crate) fn to_review_rules(rules: &[PolicyRule]) -> Rules {
    let mut out = Rules::default();
    for rule in rules {
        if !rule.resources.is_empty() {
            out.resource.push(ResourceRule {
                verbs: rule.verbs.clone(),
                api_groups: rule.api_groups.clone(),
                resources: rule.resources.clone(),
                resource_names: rule.resource_names.clone(),
            });
        }
        if !rule.non_resource_urls.is_empty() {
            out.non_resource.push(NonResourceRule {
                verbs: rule.verbs.clone(),
                non_resource_urls: rule.non_resource_urls.clone(),
            });
        }
    }
    out
}
