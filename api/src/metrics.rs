//! The API server's Prometheus metrics, named as kube-apiserver's: requests by verb, resource
//! and code (`apiserver_request_total`), their latency (`apiserver_request_duration_seconds`),
//! requests in flight (`apiserver_current_inflight_requests`) and open watches and other
//! long-running requests (`apiserver_longrunning_requests`); the store's commit latency and
//! size come from `Store::register_metrics`. `measure` is the middleware, `serve` the
//! `/metrics` handler (a non-resource URL under RBAC, like every other).
//!
//! Labels are bounded: a resource that is neither built in nor served from a CRD, and a
//! subresource its kind does not have, are counted with empty labels, so a client cannot grow
//! the series by inventing paths. Recording is atomics and a shared read lock per family.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use skiff_telemetry::metrics::{
    Counter, Exposition, Family, Gauge, HistogramFamily, Labels, REQUEST_SECONDS, Registry,
    histogram_family,
};

use crate::state::AppState;

/// The label names of `apiserver_request_duration_seconds` (and, with `code`, of
/// `apiserver_request_total`), in order.
const LABELS: [&str; 7] = [
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];

/// The API server's metrics and the exposition its `/metrics` serves (the controllers add
/// theirs when they run in the same process).
pub struct ApiMetrics {
    exposition: Exposition,
    requests: Family<Labels<8>, Counter>,
    durations: HistogramFamily<Labels<7>>,
    inflight_read: Gauge,
    inflight_mutating: Gauge,
    longrunning: Family<Labels<7>, Gauge>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    /// The families, registered in a registry of their own, served by a new exposition.
    pub fn new() -> Self {
        let requests: Family<Labels<8>, Counter> = Family::default();
        let durations: HistogramFamily<Labels<7>> = histogram_family(REQUEST_SECONDS);
        let inflight: Family<Labels<1>, Gauge> = Family::default();
        let longrunning: Family<Labels<7>, Gauge> = Family::default();
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            durations.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            inflight.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
            longrunning.clone(),
        );
        let inflight_read = inflight
            .get_or_create(&[("request_kind", "readOnly".to_string())])
            .clone();
        let inflight_mutating = inflight
            .get_or_create(&[("request_kind", "mutating".to_string())])
            .clone();
        let exposition = Exposition::new();
        exposition.add(registry);
        ApiMetrics {
            exposition,
            requests,
            durations,
            inflight_read,
            inflight_mutating,
            longrunning,
        }
    }

    /// What `/metrics` serves; add a registry to serve more (the in-process controllers', the
    /// store's).
    pub fn exposition(&self) -> &Exposition {
        &self.exposition
    }
}

/// What a request is, as kube-apiserver's `RequestInfo` labels it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestInfo {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `DELETECOLLECTION`,
    /// `CONNECT`; for a non-resource URL the method.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// `resource` (one named object), `namespace`, `cluster`, or empty (non-resource).
    pub scope: &'static str,
    /// Whether the request changes something (counts as `mutating` in flight).
    pub mutating: bool,
}

impl RequestInfo {
    /// Reads the method, path and query as kube-apiserver's `RequestInfoFactory`; `known`
    /// says whether a group, version and resource is served (and which subresources its kind
    /// has).
    pub(crate) fn parse(
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        known: impl Fn(&str, &str, &str) -> Option<&'static [&'static str]>,
    ) -> RequestInfo {
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let non_resource = RequestInfo {
            verb: method.as_str().to_string(),
            mutating,
            ..RequestInfo::default()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, mut rest) = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource,
        };
        let mut watch_prefix = false;
        if rest.first() == Some(&"watch") {
            watch_prefix = true;
            rest = &rest[1..];
        }
        let mut namespaced = false;
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            namespaced = true;
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        let (resource, name, subresource) = match rest {
            [] => return non_resource,
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub, ..] => (*resource, Some(*name), Some(*sub)),
        };
        // `namespaces/NAME` is the namespace object itself.
        let namespaced = namespaced && resource != "namespaces";
        let Some(subresources) = known(group, version, resource) else {
            return RequestInfo {
                verb: method.as_str().to_string(),
                mutating,
                ..RequestInfo::default()
            };
        };
        let subresource = subresource
            .filter(|s| subresources.contains(s))
            .unwrap_or_default();
        let watch_param = query.is_some_and(|q| {
            q.split('&')
                .any(|pair| matches!(pair, "watch=true" | "watch=1" | "watch=True"))
        });
        let connect = matches!(subresource, "exec" | "attach" | "portforward" | "proxy");
        let verb = if connect {
            "CONNECT"
        } else {
            match *method {
                Method::GET | Method::HEAD if watch_prefix || watch_param => "WATCH",
                Method::GET | Method::HEAD if name.is_none() => "LIST",
                Method::GET | Method::HEAD => "GET",
                Method::POST => "POST",
                Method::PUT => "PUT",
                Method::PATCH
                    if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) =>
                {
                    "APPLY"
                }
                Method::PATCH => "PATCH",
                Method::DELETE if name.is_none() => "DELETECOLLECTION",
                Method::DELETE => "DELETE",
                _ => method.as_str(),
            }
        };
        let scope = if name.is_some() {
            "resource"
        } else if namespaced {
            "namespace"
        } else {
            "cluster"
        };
        RequestInfo {
            verb: verb.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            scope,
            mutating,
        }
    }

    fn labels(&self) -> Labels<7> {
        let values = [
            self.verb.clone(),
            self.group.clone(),
            self.version.clone(),
            self.resource.clone(),
            self.subresource.clone(),
            self.scope.to_string(),
            "apiserver".to_string(),
        ];
        let mut i = 0;
        values.map(|v| {
            let pair = (LABELS[i], v);
            i += 1;
            pair
        })
    }

    fn long_running(&self) -> bool {
        matches!(self.verb.as_str(), "WATCH" | "CONNECT")
    }
}

/// Decrements a gauge when dropped: a request's slot in flight, a watch's life.
struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware: counts the request by verb, resource and code, times it, holds it in flight,
/// and keeps a watch (or exec, or proxy) in `apiserver_longrunning_requests` until its body ends.
pub(crate) async fn measure(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let metrics = &state.metrics;
    let info = RequestInfo::parse(
        request.method(),
        request.uri().path(),
        request.uri().query(),
        request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        |group, version, plural| {
            skiff_kinds::find(group, version, plural)
                .or_else(|| state.crds.find(group, version, plural))
                .map(|kind| kind.subresources)
        },
    );
    let inflight = if info.mutating {
        &metrics.inflight_mutating
    } else {
        &metrics.inflight_read
    };
    inflight.inc();
    let slot = Held(inflight.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    drop(slot);
    let labels = info.labels();
    let code = response.status().as_u16().to_string();
    let [
        verb,
        group,
        version,
        resource,
        subresource,
        scope,
        component,
    ] = labels.clone();
    metrics
        .requests
        .get_or_create(&[
            verb,
            group,
            version,
            resource,
            subresource,
            scope,
            component,
            ("code", code),
        ])
        .inc();
    if info.long_running() && response.status().is_success() {
        let gauge = metrics.longrunning.get_or_create(&labels).clone();
        gauge.inc();
        let held = Held(gauge);
        let (parts, body) = response.into_parts();
        let body = Body::new(HeldBody { body, _held: held });
        return Response::from_parts(parts, body);
    }
    if !info.long_running() {
        metrics
            .durations
            .get_or_create(&labels)
            .observe_duration(started.elapsed());
    }
    response
}

/// A response body that keeps a long-running request counted until it ends or is dropped.
struct HeldBody {
    body: Body,
    _held: Held,
}

impl HttpBody for HeldBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// `GET /metrics`: every registry of the server's exposition, as OpenMetrics text.
pub(crate) async fn serve(State(state): State<Arc<AppState>>) -> Response {
    let mut response = Response::new(Body::from(state.metrics.exposition.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(skiff_telemetry::metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(group: &str, version: &str, plural: &str) -> Option<&'static [&'static str]> {
        skiff_kinds::find(group, version, plural).map(|k| k.subresources)
    }

    fn info(method: Method, path: &str, query: Option<&str>) -> RequestInfo {
        RequestInfo::parse(&method, path, query, None, known)
    }

    #[test]
    fn verbs_scopes_and_resources_as_kube_apiserver_names_them() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.scope),
            ("LIST", "pods", "namespace")
        );
        let i = info(Method::GET, "/api/v1/namespaces/default/pods/p", None);
        assert_eq!((i.verb.as_str(), i.scope), ("GET", "resource"));
        let i = info(Method::GET, "/api/v1/pods", Some("watch=true&rv=1"));
        assert_eq!((i.verb.as_str(), i.scope), ("WATCH", "cluster"));
        let i = info(Method::GET, "/api/v1/watch/namespaces/ns/pods", None);
        assert_eq!(i.verb, "WATCH");
        let i = info(
            Method::POST,
            "/apis/apps/v1/namespaces/ns/deployments",
            None,
        );
        assert_eq!(
            (
                i.verb.as_str(),
                i.group.as_str(),
                i.version.as_str(),
                i.scope
            ),
            ("POST", "apps", "v1", "namespace")
        );
        assert!(i.mutating);
        let i = info(
            Method::PUT,
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            None,
        );
        assert_eq!((i.verb.as_str(), i.subresource.as_str()), ("PUT", "scale"));
        let i = info(Method::DELETE, "/api/v1/namespaces/ns/configmaps", None);
        assert_eq!(i.verb, "DELETECOLLECTION");
        let i = info(Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.scope),
            ("GET", "namespaces", "resource")
        );
        let i = info(Method::PUT, "/api/v1/namespaces/ns/finalize", None);
        assert_eq!(
            (i.resource.as_str(), i.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let i = info(Method::GET, "/api/v1/namespaces/ns/pods/p/exec", None);
        assert_eq!(i.verb, "CONNECT");
        let i = RequestInfo::parse(
            &Method::PATCH,
            "/api/v1/namespaces/ns/configmaps/c",
            None,
            Some("application/apply-patch+yaml"),
            known,
        );
        assert_eq!(i.verb, "APPLY");
    }

    #[test]
    fn invented_paths_add_no_label_values() {
        let i = info(Method::GET, "/api/v1/namespaces/ns/widgets-123/x", None);
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.group.as_str()),
            ("GET", "", "")
        );
        let i = info(Method::GET, "/apis/nope.example/v9/things", None);
        assert_eq!((i.resource.as_str(), i.version.as_str()), ("", ""));
        let i = info(Method::GET, "/api/v1/namespaces/ns/pods/p/made-up", None);
        assert_eq!((i.resource.as_str(), i.subresource.as_str()), ("pods", ""));
        let i = info(Method::GET, "/metrics", None);
        assert_eq!((i.verb.as_str(), i.scope), ("GET", ""));
        let i = info(Method::GET, "/apis/apps/v1", None);
        assert_eq!(i.resource, "");
    }
}
