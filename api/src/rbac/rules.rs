//! RBAC policy rules and their evaluation, as Kubernetes' `rbac/v1/evaluation_helpers.go`
//! (does a rule allow a request) and `registry/rbac/validation` (does one set of rules cover
//! another, and the compact text of the rules an escalation lacks).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `*`: any verb, group, resource or URL.
pub(crate) const ALL: &str = "*";

/// One `rbac.authorization.k8s.io/v1` PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyRule {
    #[serde(default)]
    pub(crate) verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) non_resource_urls: Vec<String>,
}

/// Builds rules the way Kubernetes' `rbacv1helpers.NewRule(verbs...).Groups(...).Resources(...)`
/// does, for the default policy.
impl PolicyRule {
    pub(crate) fn verbs(verbs: &[&str]) -> Self {
        PolicyRule {
            verbs: strings(verbs),
            ..PolicyRule::default()
        }
    }

    pub(crate) fn groups(mut self, groups: &[&str]) -> Self {
        self.api_groups = strings(groups);
        self
    }

    pub(crate) fn resources(mut self, resources: &[&str]) -> Self {
        self.resources = strings(resources);
        self
    }

    pub(crate) fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }

    pub(crate) fn urls(mut self, urls: &[&str]) -> Self {
        self.non_resource_urls = strings(urls);
        self
    }

    /// The rule as the JSON a Role or ClusterRole stores.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Sorted and without repeats, as Kubernetes' rule builder keeps each list.
fn strings(items: &[&str]) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = items.iter().map(|s| s.to_string()).collect();
    set.into_iter().collect()
}

/// The rules of a Role or ClusterRole object (`rules`; malformed entries are skipped, as
/// validation keeps them out of the store).
pub(crate) fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What one request asks, as the rule evaluation sees it.
pub(crate) enum Request<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
        name: Option<&'a str>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    has(&rule.verbs, ALL) || has(&rule.verbs, verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    has(&rule.api_groups, ALL) || has(&rule.api_groups, group)
}

/// `*`, the exact `resource[/subresource]`, or `*/subresource` for a subresource request.
fn resource_matches(rule: &PolicyRule, combined: &str, subresource: Option<&str>) -> bool {
    rule.resources.iter().any(|r| {
        r == ALL
            || r == combined
            || subresource.is_some_and(|sub| !sub.is_empty() && r.strip_prefix("*/") == Some(sub))
    })
}

/// Any name when the rule names none; a request without a name (list, create) never matches a
/// rule that names some.
fn resource_name_matches(rule: &PolicyRule, name: Option<&str>) -> bool {
    rule.resource_names.is_empty() || has(&rule.resource_names, name.unwrap_or(""))
}

/// `*`, the exact path, or a prefix ending in `*`.
fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` allows the request (Kubernetes' `RuleAllows`).
pub(crate) fn allows(rule: &PolicyRule, request: &Request<'_>) -> bool {
    match *request {
        Request::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
        } => {
            let combined = match subresource.filter(|s| !s.is_empty()) {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            };
            verb_matches(rule, verb)
                && api_group_matches(rule, group)
                && resource_matches(rule, &combined, subresource)
                && resource_name_matches(rule, name)
        }
        Request::NonResource { verb, path } => {
            verb_matches(rule, verb) && non_resource_url_matches(rule, path)
        }
    }
}

/// One rule per (group, resource, verb[, name]) and per (URL, verb), as Kubernetes'
/// `BreakdownRule`.
pub(crate) fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let one = PolicyRule {
                    verbs: vec![verb.clone()],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    ..PolicyRule::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(one);
                } else {
                    for name in &rule.resource_names {
                        out.push(PolicyRule {
                            resource_names: vec![name.clone()],
                            ..one.clone()
                        });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: vec![url.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resource_covers_all(set: &[String], wanted: &[String]) -> bool {
    if has(set, ALL) || has_all(set, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        if has(set, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => has(set, &format!("*/{sub}")),
            None => false,
        }
    })
}

fn non_resource_url_covers(owner: &str, wanted: &str) -> bool {
    owner == wanted
        || owner
            .strip_suffix('*')
            .is_some_and(|_| wanted.starts_with(owner.trim_end_matches('*')))
}

fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = sub.non_resource_urls.iter().all(|wanted| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| non_resource_url_covers(o, wanted))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// The parts of `wanted` that `owner` does not cover (empty: covered), as Kubernetes' `Covers`.
pub(crate) fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Rules that differ only in verbs merged into one, as Kubernetes' `CompactRules` (rules of one
/// group and one resource, at most one name, no URLs).
pub(crate) fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && s.resource_names == rule.resource_names
        }) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(crate) fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Kubernetes' `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["create"]}`.
pub(crate) fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> Request<'a> {
        Request::Resource {
            verb,
            group,
            resource,
            subresource: None,
            name: None,
        }
    }

    #[test]
    fn resources_subresources_and_names_match_as_kubernetes() {
        let pods = PolicyRule::verbs(&["get"])
            .groups(&[""])
            .resources(&["pods"]);
        assert!(allows(&pods, &res("get", "", "pods")));
        assert!(!allows(&pods, &res("list", "", "pods")));
        assert!(!allows(&pods, &res("get", "apps", "pods")));
        let log = Request::Resource {
            verb: "get",
            group: "",
            resource: "pods",
            subresource: Some("log"),
            name: Some("p"),
        };
        assert!(!allows(&pods, &log), "pods does not grant pods/log");
        let any_log = PolicyRule::verbs(&["get"])
            .groups(&[""])
            .resources(&["*/log"]);
        assert!(allows(&any_log, &log));
        assert!(!allows(&any_log, &res("get", "", "pods")));
        let named = pods.clone().names(&["p"]);
        let get = |name| Request::Resource {
            verb: "get",
            group: "",
            resource: "pods",
            subresource: None,
            name,
        };
        assert!(allows(&named, &get(Some("p"))));
        assert!(!allows(&named, &get(Some("q"))));
        assert!(!allows(&named, &get(None)), "unnamed never matches names");
        let star = PolicyRule::verbs(&["*"]).groups(&["*"]).resources(&["*"]);
        assert!(allows(&star, &log));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_trailing_star() {
        let rule = PolicyRule::verbs(&["get"]).urls(&["/api", "/apis/*"]);
        let at = |path| Request::NonResource { verb: "get", path };
        assert!(allows(&rule, &at("/api")));
        assert!(!allows(&rule, &at("/api/v1")));
        assert!(allows(&rule, &at("/apis/apps/v1")));
        assert!(!allows(&rule, &at("/apis")));
        assert!(!allows(&rule, &res("get", "", "pods")));
    }

    #[test]
    fn covers_breaks_rules_down_and_names_what_is_missing() {
        let owner = vec![
            PolicyRule::verbs(&["get", "list"])
                .groups(&[""])
                .resources(&["pods", "*/status"]),
        ];
        let wanted = vec![
            PolicyRule::verbs(&["get", "create"])
                .groups(&[""])
                .resources(&["pods", "pods/status"]),
        ];
        let missing = compact(uncovered(&owner, &wanted));
        let text: Vec<String> = missing.iter().map(compact_string).collect();
        assert_eq!(
            text,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["create"]}"#,
                r#"{APIGroups:[""], Resources:["pods/status"], Verbs:["create"]}"#,
            ]
        );
        assert!(uncovered(&owner, &owner).is_empty());
    }
}
