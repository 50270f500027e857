//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-*` headers, each
//! authorized as verb `impersonate` for the authenticated user, as kube-apiserver's
//! `WithImpersonation` filter does; the request then runs as the impersonated user.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::state::{AUTHENTICATED, AppState, Attributes, Decision, UserInfo};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// One thing a request asks to impersonate, authorized on its own.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Target {
    /// API group, resource, subresource, namespace and name the authorizer is asked about.
    fn attributes(&self) -> (&'static str, &'static str, Option<&str>, Option<&str>, &str) {
        match self {
            Target::User(name) => ("", "users", None, None, name),
            Target::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", None, Some(namespace), name)
            }
            Target::Group(name) => ("", "groups", None, None, name),
            Target::Extra { key, value } => (
                "authentication.k8s.io",
                "userextras",
                Some(key.as_str()),
                None,
                value,
            ),
            Target::Uid(uid) => ("authentication.k8s.io", "uids", None, None, uid),
        }
    }
}

/// Whether the request carries any impersonation header.
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"))
}

/// Removes every impersonation header (the handlers see the impersonated user only).
pub(crate) fn strip(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// The user `requestor` impersonates through the headers, `None` when none asks to. Each target
/// is authorized (verb `impersonate`) with `state.authorizer`; the first refused is Kubernetes'
/// 403. Groups, extra or a uid without a user is an error, as in Kubernetes.
pub(crate) fn impersonate(
    state: &AppState,
    requestor: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let targets = targets(headers)?;
    if targets.is_empty() {
        return Ok(None);
    }
    let groups_specified = headers.contains_key(GROUP);
    let mut user = UserInfo::default();
    let mut groups = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for target in &targets {
        let (group, resource, subresource, namespace, name) = target.attributes();
        let attributes = Attributes {
            user: requestor,
            verb: "impersonate",
            group,
            resource,
            subresource,
            namespace,
            name: Some(name),
            path: None,
            field_selector: None,
        };
        match state.authorizer.authorize(&attributes) {
            Decision::Allow => {}
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                return Err(forbidden(&attributes, &reason));
            }
        }
        match target {
            Target::User(name) => user.name = name.clone(),
            Target::ServiceAccount { namespace, name } => {
                user.name = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}");
                if !groups_specified {
                    groups.push("system:serviceaccounts".to_string());
                    groups.push(format!("system:serviceaccounts:{namespace}"));
                }
            }
            Target::Group(group) => groups.push(group.clone()),
            Target::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone())
            }
            Target::Uid(uid) => user.uid = uid.clone(),
        }
    }
    if user.name != ANONYMOUS {
        if !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            groups.push(AUTHENTICATED.to_string());
        }
    } else if !groups.iter().any(|g| g == UNAUTHENTICATED) {
        groups.push(UNAUTHENTICATED.to_string());
    }
    user.groups = groups;
    user.extra = extra;
    Ok(Some(user))
}

/// What the headers ask to impersonate, in Kubernetes' order: the user, groups, extra, uid.
fn targets(headers: &HeaderMap) -> Result<Vec<Target>, ApiError> {
    let text = |value: &axum::http::HeaderValue, name: &str| {
        value
            .to_str()
            .map(str::to_string)
            .map_err(|_| ApiError::bad_request(format!("the {name} header is not valid text")))
    };
    let mut targets = Vec::new();
    let mut has_user = false;
    if let Some(value) = headers.get(USER) {
        let name = text(value, "Impersonate-User")?;
        if !name.is_empty() {
            has_user = true;
            targets.push(match service_account(&name) {
                Some((namespace, sa)) => Target::ServiceAccount {
                    namespace: namespace.to_string(),
                    name: sa.to_string(),
                },
                None => Target::User(name),
            });
        }
    }
    let mut others = false;
    for value in headers.get_all(GROUP) {
        others = true;
        targets.push(Target::Group(text(value, "Impersonate-Group")?));
    }
    let mut extra_names: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with(EXTRA_PREFIX))
        .collect();
    extra_names.dedup();
    for name in extra_names {
        let key = percent_decode(&name[EXTRA_PREFIX.len()..]);
        for value in headers.get_all(name) {
            others = true;
            targets.push(Target::Extra {
                key: key.clone(),
                value: text(value, name)?,
            });
        }
    }
    if let Some(value) = headers.get(UID) {
        let uid = text(value, "Impersonate-Uid")?;
        if !uid.is_empty() {
            others = true;
            targets.push(Target::Uid(uid));
        }
    }
    if others && !has_user {
        return Err(ApiError::internal(format!(
            "Internal error occurred: requested {} without impersonating a user",
            describe(&targets)
        )));
    }
    Ok(targets)
}

/// The targets as an error message lists them (`group "g", uid "u"`).
fn describe(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| match t {
            Target::User(name) => format!("user {name:?}"),
            Target::ServiceAccount { namespace, name } => {
                format!("serviceaccount {namespace:?}/{name:?}")
            }
            Target::Group(name) => format!("group {name:?}"),
            Target::Extra { key, value } => format!("extra {key:?}={value:?}"),
            Target::Uid(uid) => format!("uid {uid:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `system:serviceaccount:NS:NAME` as namespace and name, as Kubernetes' `SplitUsername`.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (valid(namespace) && valid(name)).then_some((namespace, name))
}

/// `%XX` escapes decoded (extra keys may hold characters header names cannot); a malformed
/// escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Kubernetes' refusal of an impersonation: `users "bob" is forbidden: User "alice" cannot
/// impersonate resource "users" in API group "" at the cluster scope`.
fn forbidden(attributes: &Attributes<'_>, reason: &str) -> ApiError {
    let name = attributes.name.unwrap_or_default();
    let qualified = if attributes.group.is_empty() {
        attributes.resource.to_string()
    } else {
        format!("{}.{}", attributes.resource, attributes.group)
    };
    let resource = match attributes.subresource {
        Some(sub) => format!("{}/{sub}", attributes.resource),
        None => attributes.resource.to_string(),
    };
    let scope = match attributes.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    ApiError::forbidden(format!(
        "{qualified} \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"{}\" {scope}{reason}",
        attributes.user.name, attributes.group,
    ))
    .with_details(attributes.group, attributes.resource, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_users_split() {
        assert_eq!(
            service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(service_account("system:serviceaccount:ns"), None);
        assert_eq!(service_account("system:serviceaccount::sa"), None);
        assert_eq!(service_account("system:serviceaccount:ns:a:b"), None);
        assert_eq!(service_account("alice"), None);
    }

    #[test]
    fn extra_keys_are_percent_decoded() {
        assert_eq!(percent_decode("example.com%2fscopes"), "example.com/scopes");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }

    #[test]
    fn the_headers_name_the_targets_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(UID, "u-1".parse().unwrap());
        headers.append(GROUP, "g1".parse().unwrap());
        headers.append(GROUP, "g2".parse().unwrap());
        headers.insert("impersonate-extra-scopes", "s1".parse().unwrap());
        headers.insert(USER, "system:serviceaccount:ns:sa".parse().unwrap());
        assert_eq!(
            targets(&headers).unwrap(),
            vec![
                Target::ServiceAccount {
                    namespace: "ns".into(),
                    name: "sa".into()
                },
                Target::Group("g1".into()),
                Target::Group("g2".into()),
                Target::Extra {
                    key: "scopes".into(),
                    value: "s1".into()
                },
                Target::Uid("u-1".into()),
            ]
        );
        headers.remove(USER);
        let err = targets(&headers).unwrap_err();
        assert_eq!(err.code, 500);
        strip(&mut headers);
        assert!(!requested(&headers));
    }
}
