//! The Ingress match table: which Ingresses this node serves (IngressClass rules), and their
//! host and path rules compiled into a table read on every request, matched as Kubernetes
//! specifies (exact and `*.` wildcard hosts; `Exact`, element-wise `Prefix` paths; longest path
//! wins, `Exact` before `Prefix` at equal length; then `defaultBackend`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use skiff_meta::names::{
    INGRESS_BODY_SIZE, INGRESS_BODY_SIZE_DEFAULT, INGRESS_CLASS, INGRESS_CONTROLLER,
};

use crate::net::ServicePortRef;

/// The deprecated annotation naming an Ingress's class, honoured before `spec.ingressClassName`
/// as Kubernetes' controllers do.
pub(crate) const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The IngressClass annotation marking the cluster's default class.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// ingress-nginx's body bound annotation, honoured when Skiff's own ([`INGRESS_BODY_SIZE`]) is
/// absent, so that charts written for ingress-nginx keep their bound.
pub(crate) const NGINX_BODY_SIZE_ANNOTATION: &str = "nginx.ingress.kubernetes.io/proxy-body-size";

/// `namespace/name` of an object.
pub(crate) type ObjKey = (String, String);

/// The objects the table is compiled from: the watch caches.
#[derive(Default, Debug)]
pub(crate) struct Objects {
    pub(crate) ingresses: BTreeMap<ObjKey, Ingress>,
    pub(crate) classes: BTreeMap<String, IngressClass>,
    pub(crate) services: BTreeMap<ObjKey, Service>,
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Service port, served through [`crate::net::ServiceBackend`].
    Service {
        namespace: String,
        name: String,
        port: ServicePortRef,
    },
    /// A backend that cannot be served; the request is answered 503 with this reason.
    Unavailable(String),
}

/// What a request that matches a rule gets: its target, and the bound on its body set by its
/// Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    pub(crate) target: Target,
    /// The largest request body forwarded (`None`: unbounded); past it, 413.
    pub(crate) max_body: Option<BodyBound>,
}

/// A bound on request bodies, and what set it (for the 413's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyBound {
    pub(crate) bytes: u64,
    /// The annotation that set it; `None`: the default.
    pub(crate) set_by: Option<&'static str>,
}

/// One path rule of one host.
#[derive(Debug)]
struct Route {
    /// `Exact`: the whole path. `Prefix`: without its trailing slash (`/` becomes empty).
    path: Box<str>,
    exact: bool,
    routed: Arc<Matched>,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        if self.exact {
            return path == &*self.path;
        }
        // Element-wise: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
        match path.strip_prefix(&*self.path) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// The compiled rules of every served Ingress.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// Rules of exact hosts, by host.
    exact: HashMap<Box<str>, Vec<Route>>,
    /// Rules of `*.SUFFIX` hosts, by `SUFFIX`.
    wildcard: HashMap<Box<str>, Vec<Route>>,
    /// Rules without a host.
    any_host: Vec<Route>,
    /// The oldest served Ingress's `defaultBackend`.
    default_backend: Option<Arc<Matched>>,
}

/// A served Ingress, with what orders it among the others (oldest first, as ingress-nginx
/// resolves conflicts).
struct Served<'a> {
    ingress: &'a Ingress,
    namespace: &'a str,
}

impl RouteTable {
    /// Compiles the rules of the Ingresses this node serves.
    pub(crate) fn build(objects: &Objects) -> RouteTable {
        let mut table = RouteTable::default();
        let served = served_in_order(objects);
        // (sort key, route) per bucket, sorted once at the end.
        type Keyed = Vec<((std::cmp::Reverse<usize>, bool, usize), Route)>;
        let mut exact: HashMap<Box<str>, Keyed> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Keyed> = HashMap::new();
        let mut any_host: Keyed = Vec::new();
        let mut order = 0usize;
        for s in &served {
            let Some(spec) = s.ingress.spec.as_ref() else {
                continue;
            };
            let max_body = max_body(s.ingress);
            let routed = |backend: &IngressBackend| {
                let routed = match &max_body {
                    Ok(max_body) => Matched {
                        target: target(objects, s.namespace, backend),
                        max_body: *max_body,
                    },
                    // The Ingress's author asked for a bound that cannot be read: its rules
                    // answer why rather than guess one.
                    Err(reason) => Matched {
                        target: Target::Unavailable(reason.clone()),
                        max_body: None,
                    },
                };
                Arc::new(routed)
            };
            if table.default_backend.is_none()
                && let Some(b) = &spec.default_backend
            {
                table.default_backend = Some(routed(b));
            }
            for rule in spec.rules.iter().flatten() {
                let bucket = match rule.host.as_deref().map(str::to_ascii_lowercase) {
                    None => &mut any_host,
                    Some(h) if h.is_empty() => &mut any_host,
                    Some(h) => match h.strip_prefix("*.") {
                        Some(suffix) => wildcard.entry(suffix.into()).or_default(),
                        None => exact.entry(h.into()).or_default(),
                    },
                };
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let path = p.path.as_deref().unwrap_or("/");
                    if !path.starts_with('/') {
                        continue;
                    }
                    let exact_type = p.path_type == "Exact";
                    let path: Box<str> = if exact_type {
                        path.into()
                    } else {
                        // `Prefix` and `ImplementationSpecific`: trailing slashes do not count.
                        path.trim_end_matches('/').into()
                    };
                    order += 1;
                    let key = (std::cmp::Reverse(path.len()), !exact_type, order);
                    bucket.push((
                        key,
                        Route {
                            path,
                            exact: exact_type,
                            routed: routed(&p.backend),
                        },
                    ));
                }
            }
        }
        let finish = |mut v: Keyed| -> Vec<Route> {
            v.sort_by_key(|(k, _)| *k);
            v.into_iter().map(|(_, r)| r).collect()
        };
        table.exact = exact.into_iter().map(|(h, v)| (h, finish(v))).collect();
        table.wildcard = wildcard.into_iter().map(|(h, v)| (h, finish(v))).collect();
        table.any_host = finish(any_host);
        table
    }

    /// The target of a request for `host` (the Host header, with or without its port) and
    /// `path`, or `None` when nothing matches (404).
    pub(crate) fn route(&self, host: &str, path: &str) -> Option<&Arc<Matched>> {
        let host = normalize_host(host);
        fn first<'a>(routes: Option<&'a Vec<Route>>, path: &str) -> Option<&'a Route> {
            routes.and_then(|rs| rs.iter().find(|r| r.matches(path)))
        }
        let found = first(self.exact.get(&*host), path)
            .or_else(|| {
                // `*.example.com` matches exactly one more DNS label.
                let (label, suffix) = host.split_once('.')?;
                if label.is_empty() {
                    return None;
                }
                first(self.wildcard.get(suffix), path)
            })
            .or_else(|| first(Some(&self.any_host), path));
        match found {
            Some(r) => Some(&r.routed),
            None => self.default_backend.as_ref(),
        }
    }

    /// Whether no Ingress is served.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.wildcard.is_empty()
            && self.any_host.is_empty()
            && self.default_backend.is_none()
    }
}

/// The host of a Host header: without its port or a trailing dot, lower case (allocating only
/// when the header is not already lower case).
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Whether this node serves the Ingress: its class (the deprecated annotation first, then
/// `spec.ingressClassName`) is `skiff` or an IngressClass whose controller is Skiff's; an Ingress
/// without a class is served while Skiff's class is the cluster's default.
pub(crate) fn is_served(ingress: &Ingress, classes: &BTreeMap<String, IngressClass>) -> bool {
    let ours = |name: &str| {
        name == INGRESS_CLASS
            || classes.get(name).is_some_and(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(INGRESS_CONTROLLER)
            })
    };
    let annotated = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION));
    if let Some(class) = annotated {
        return ours(class);
    }
    match ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(class) => ours(class),
        None => classes.values().any(|c| {
            let default = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            default && ours(c.metadata.name.as_deref().unwrap_or_default())
        }),
    }
}

/// The served Ingresses, oldest first (then by namespace and name).
fn served_in_order(objects: &Objects) -> Vec<Served<'_>> {
    let mut served: Vec<(Option<jiff::Timestamp>, &ObjKey, &Ingress)> = objects
        .ingresses
        .iter()
        .filter(|(_, i)| is_served(i, &objects.classes))
        .map(|(k, i)| (i.metadata.creation_timestamp.as_ref().map(|t| t.0), k, i))
        .collect();
    served.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    served
        .into_iter()
        .map(|(_, k, ingress)| Served {
            ingress,
            namespace: &k.0,
        })
        .collect()
}

/// The served Ingresses' keys, oldest first.
pub(crate) fn served_keys(objects: &Objects) -> Vec<ObjKey> {
    let mut keys: Vec<ObjKey> = objects
        .ingresses
        .iter()
        .filter(|(_, i)| is_served(i, &objects.classes))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

/// An Ingress's body bound: its [`INGRESS_BODY_SIZE`] annotation, else ingress-nginx's, else
/// the default; `Err` with the reason when the annotation's value is not a size.
fn max_body(ingress: &Ingress) -> Result<Option<BodyBound>, String> {
    let annotations = ingress.metadata.annotations.as_ref();
    let set = [INGRESS_BODY_SIZE, NGINX_BODY_SIZE_ANNOTATION]
        .into_iter()
        .find_map(|key| Some((key, annotations?.get(key)?)));
    let Some((key, value)) = set else {
        return Ok(Some(BodyBound {
            bytes: INGRESS_BODY_SIZE_DEFAULT,
            set_by: None,
        }));
    };
    match parse_size(value) {
        Some(0) => Ok(None),
        Some(bytes) => Ok(Some(BodyBound {
            bytes,
            set_by: Some(key),
        })),
        None => Err(format!(
            "ingress annotation {key}: {value:?} is not a size (bytes, or a number with k, m or \
             g; 0 for no bound)"
        )),
    }
}

/// A size in nginx's syntax (`ngx_parse_offset`): decimal bytes, or with a `k`, `m` or `g`
/// suffix (either case) for KiB, MiB or GiB.
pub(crate) fn parse_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1 << 10),
        b'm' | b'M' => (&value[..value.len() - 1], 1 << 20),
        b'g' | b'G' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Resolves a backend against the Services: a Service port that exists, or the reason it
/// cannot be served.
fn target(objects: &Objects, namespace: &str, backend: &IngressBackend) -> Target {
    if let Some(r) = &backend.resource {
        return Target::Unavailable(format!(
            "ingress backend: resource backends ({} {}) are not supported",
            r.kind, r.name
        ));
    }
    let Some(svc) = &backend.service else {
        return Target::Unavailable("ingress backend: no service".into());
    };
    let port = match &svc.port {
        Some(p) => match (p.number, p.name.as_deref()) {
            (Some(n), _) => match u16::try_from(n) {
                Ok(n) => ServicePortRef::Number(n),
                Err(_) => {
                    return Target::Unavailable(format!("ingress backend: invalid port {n}"));
                }
            },
            (None, Some(name)) if !name.is_empty() => ServicePortRef::Name(name.to_string()),
            _ => return Target::Unavailable("ingress backend: no service port".into()),
        },
        None => return Target::Unavailable("ingress backend: no service port".into()),
    };
    let key = (namespace.to_string(), svc.name.clone());
    let Some(service) = objects.services.get(&key) else {
        return Target::Unavailable(format!(
            "ingress backend: service \"{namespace}/{}\" not found",
            svc.name
        ));
    };
    let spec = service.spec.as_ref();
    // An ExternalName Service has no ports of its own; the router resolves it as an alias.
    let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let has_port = spec.and_then(|s| s.ports.as_ref()).is_some_and(|ports| {
        ports.iter().any(|sp| match &port {
            ServicePortRef::Number(n) => sp.port == i32::from(*n),
            ServicePortRef::Name(name) => sp.name.as_deref() == Some(name.as_str()),
        })
    });
    if !external && !has_port {
        let shown = match &port {
            ServicePortRef::Number(n) => n.to_string(),
            ServicePortRef::Name(n) => format!("{n:?}"),
        };
        return Target::Unavailable(format!(
            "ingress backend: service \"{namespace}/{}\" has no port {shown}",
            svc.name
        ));
    }
    Target::Service {
        namespace: namespace.to_string(),
        name: svc.name.clone(),
        port,
    }
}

#[cfg(test)]
mod tests;
