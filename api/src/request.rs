//! Parsing a resource URL and its query into a `ResourceRequest`.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use skiff_kinds::Kind;

use crate::error::ApiError;
use crate::state::UserInfo;

/// One request against a resource path, after routing.
pub struct ResourceRequest {
    pub method: Method,
    /// Who sent it, as authentication found.
    pub user: UserInfo,
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The path after the subresource, for proxy subresources.
    pub rest: Option<String>,
    pub query: Query,
    /// The query string as sent, for proxying.
    pub raw_query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Reached through the legacy `/watch/` path prefix.
    pub legacy_watch: bool,
    pub http2: bool,
    /// The connection's upgrade, for the streaming subresources (`pods/exec`).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// Query parameters; the last value of a repeated name wins, empty names are ignored.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded_pairs(raw) {
                if !k.is_empty() {
                    map.insert(k, v);
                }
            }
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter: present and not "false"/"0".
    pub fn flag(&self, key: &str) -> bool {
        self.0
            .get(key)
            .is_some_and(|v| !matches!(v.as_str(), "false" | "0" | "False"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for query parameter {key}"))
            }),
        }
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: only \"All\" is supported"
            ))),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of a query string.
fn form_urlencoded_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a path under `/api` or `/apis` leads.
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourceTarget),
}

pub struct ResourceTarget {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub rest: Option<String>,
    pub legacy_watch: bool,
}

/// Resolves a request path to a route, or a 404 naming the path. Resources not built in are
/// looked up among the custom kinds of `crds` (served only once their CRD is established).
pub fn route(path: &str, crds: &crate::crd::CrdRegistry) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || ApiError::no_route(path);
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", group] => return Ok(Route::Group(group.to_string())),
        ["api", version, rest @ ..] => ("", version, rest),
        ["apis", group, version, rest @ ..] => (group, version, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return Ok(Route::ResourceList {
            group: group.into(),
            version: version.into(),
        });
    }
    let (legacy_watch, rest) = match rest {
        ["watch", more @ ..] if !more.is_empty() => (true, more),
        _ => (false, rest),
    };
    let find = |plural: &str| {
        skiff_kinds::find(group, version, plural).or_else(|| crds.find(group, version, plural))
    };
    let decode = |s: &str| percent_decode(s);
    // namespaces/{ns}/{resource}/... is a namespaced resource; namespaces/{name}[/status|finalize]
    // is the Namespace itself.
    if let ["namespaces", ns, plural, more @ ..] = rest
        && let Some(kind) = find(plural).filter(|k| k.namespaced)
    {
        let (name, subresource, tail) = split_name(more);
        return Ok(Route::Resource(ResourceTarget {
            kind,
            namespace: Some(decode(ns)),
            name: name.map(decode),
            subresource: subresource.map(str::to_string),
            rest: tail,
            legacy_watch,
        }));
    }
    let [plural, more @ ..] = rest else {
        return Err(not_found());
    };
    let kind = find(plural).ok_or_else(not_found)?;
    let (name, subresource, tail) = split_name(more);
    Ok(Route::Resource(ResourceTarget {
        kind,
        namespace: None,
        name: name.map(decode),
        subresource: subresource.map(str::to_string),
        rest: tail,
        legacy_watch,
    }))
}

fn split_name<'a>(more: &[&'a str]) -> (Option<&'a str>, Option<&'a str>, Option<String>) {
    match more {
        [] => (None, None, None),
        [name] => (Some(name), None, None),
        [name, sub] => (Some(name), Some(sub), None),
        [name, sub, tail @ ..] => (Some(name), Some(sub), Some(tail.join("/"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tolerates_empty_params() {
        let q = Query::parse(Some("&force=true&&labelSelector=app%3Dweb&x="));
        assert!(q.flag("force"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.get("x"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
