//! Table tests of Ingress matching: class filtering, hosts and wildcards, `Exact` and `Prefix`
//! paths, precedence across Ingresses, default backends and unservable backends.

use serde_json::{Value, json};

use super::*;

fn ingress(
    ns: &str,
    name: &str,
    created: &str,
    extra_meta: Value,
    spec: Value,
) -> (ObjKey, Ingress) {
    let mut meta = json!({"name": name, "namespace": ns, "creationTimestamp": created});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
        m.extend(extra.clone());
    }
    let ing: Ingress =
        serde_json::from_value(json!({"metadata": meta, "spec": spec})).expect("an Ingress");
    ((ns.to_string(), name.to_string()), ing)
}

fn service(ns: &str, name: &str, ports: Value) -> (ObjKey, Service) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": ports}
    }))
    .expect("a Service");
    ((ns.to_string(), name.to_string()), svc)
}

fn class(name: &str, controller: &str, default: bool) -> (String, IngressClass) {
    let mut c = json!({"metadata": {"name": name}, "spec": {"controller": controller}});
    if default {
        c["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
    }
    (
        name.to_string(),
        serde_json::from_value(c).expect("an IngressClass"),
    )
}

fn path(p: &str, kind: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
}

fn rule(host: Option<&str>, paths: Vec<Value>) -> Value {
    let mut r = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        r["host"] = json!(h);
    }
    r
}

/// Services `a` … `k` in `default` (port 80, named `http`) and `x` in `other`.
fn objects(ingresses: Vec<(ObjKey, Ingress)>) -> Objects {
    let mut services: BTreeMap<ObjKey, Service> = "abcdefghijk"
        .chars()
        .map(|c| {
            service(
                "default",
                &c.to_string(),
                json!([{"name": "http", "port": 80}]),
            )
        })
        .collect();
    services.extend([service("other", "x", json!([{"port": 80}]))]);
    Objects {
        ingresses: ingresses.into_iter().collect(),
        classes: [
            class("skiff", INGRESS_CONTROLLER, true),
            class("nginx", "k8s.io/ingress-nginx", false),
        ]
        .into_iter()
        .collect(),
        services,
    }
}

fn svc_name(t: Option<&Target>) -> String {
    match t {
        Some(Target::Service { name, .. }) => name.clone(),
        Some(Target::Unavailable(reason)) => format!("503: {reason}"),
        None => "404".into(),
    }
}

fn route<'a>(table: &'a RouteTable, host: &str, path: &str) -> Option<&'a Target> {
    table.route(host, path).map(|r| &r.target)
}

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-02T00:00:00Z";

#[test]
fn hosts_paths_and_precedence() {
    let objs = objects(vec![
        ingress(
            "default",
            "main",
            T0,
            json!({}),
            json!({
                "ingressClassName": "skiff",
                "rules": [
                    rule(Some("foo.example.com"), vec![
                        path("/", "Prefix", "a"),
                        path("/api", "Prefix", "b"),
                        path("/api/v1", "Prefix", "c"),
                        path("/exact", "Exact", "d"),
                        path("/both", "Prefix", "e"),
                        path("/both", "Exact", "f"),
                        path("/slash/", "Prefix", "g"),
                        path("/impl", "ImplementationSpecific", "h"),
                    ]),
                    rule(Some("*.example.com"), vec![path("/", "Prefix", "i")]),
                    rule(None, vec![path("/nohost", "Prefix", "j")]),
                ],
            }),
        ),
        // A newer Ingress of the same class adds a longer path for the same host.
        ingress(
            "default",
            "newer",
            T1,
            json!({}),
            json!({
                "ingressClassName": "skiff",
                "rules": [rule(Some("foo.example.com"), vec![
                    path("/api/v1/deep", "Prefix", "k"),
                    // Loses to the older Ingress's identical rule.
                    path("/api", "Prefix", "k"),
                ])],
            }),
        ),
    ]);
    let table = RouteTable::build(&objs);
    let cases = [
        ("foo.example.com", "/", "a"),
        ("foo.example.com", "/other", "a"),
        ("foo.example.com", "/api", "b"),
        ("foo.example.com", "/api/", "b"),
        ("foo.example.com", "/api/x", "b"),
        ("foo.example.com", "/apix", "a"),
        ("foo.example.com", "/api/v1", "c"),
        ("foo.example.com", "/api/v1/x", "c"),
        ("foo.example.com", "/api/v10", "b"),
        ("foo.example.com", "/api/v1/deep/er", "k"),
        ("foo.example.com", "/exact", "d"),
        ("foo.example.com", "/exact/", "a"),
        ("foo.example.com", "/exactly", "a"),
        ("foo.example.com", "/both", "f"),
        ("foo.example.com", "/both/x", "e"),
        ("foo.example.com", "/slash", "g"),
        ("foo.example.com", "/slash/y", "g"),
        ("foo.example.com", "/impl/z", "h"),
        // The Host header's port and case do not matter.
        ("FOO.example.com:8080", "/api", "b"),
        ("foo.example.com.", "/api", "b"),
        // Wildcards match exactly one label.
        ("bar.example.com", "/anything", "i"),
        ("a.bar.example.com", "/anything", "404"),
        ("example.com", "/anything", "404"),
        // A host's own rules come first; then rules without a host.
        ("foo.example.com", "/nohost", "a"),
        ("other.test", "/nohost", "j"),
        ("other.test", "/nohost/1", "j"),
        ("other.test", "/", "404"),
        ("127.0.0.1:8080", "/nohost", "j"),
    ];
    for (host, p, want) in cases {
        assert_eq!(
            svc_name(route(&table, host, p)),
            want,
            "host {host:?} path {p:?}"
        );
    }
}

#[test]
fn class_filtering() {
    let spec = |class: Option<&str>| {
        let mut s = json!({"rules": [rule(Some("h.test"), vec![path("/", "Prefix", "a")])]});
        if let Some(c) = class {
            s["ingressClassName"] = json!(c);
        }
        s
    };
    let cases: Vec<(&str, Value, Value, bool)> = vec![
        ("named skiff", json!({}), spec(Some("skiff")), true),
        ("another class", json!({}), spec(Some("nginx")), false),
        ("an unknown class", json!({}), spec(Some("missing")), false),
        ("no class, skiff is default", json!({}), spec(None), true),
        (
            "deprecated annotation for skiff",
            json!({"annotations": {CLASS_ANNOTATION: "skiff"}}),
            spec(None),
            true,
        ),
        (
            "deprecated annotation for another class",
            json!({"annotations": {CLASS_ANNOTATION: "nginx"}}),
            spec(None),
            false,
        ),
        (
            "annotation before the field",
            json!({"annotations": {CLASS_ANNOTATION: "nginx"}}),
            spec(Some("skiff")),
            false,
        ),
    ];
    for (what, meta, spec, served) in cases {
        let objs = objects(vec![ingress("default", "i", T0, meta, spec)]);
        let table = RouteTable::build(&objs);
        assert_eq!(route(&table, "h.test", "/").is_some(), served, "{what}");
        assert_eq!(served_keys(&objs).len(), usize::from(served), "{what}");
    }

    // Another class with Skiff's controller is served too; without a default class, an Ingress
    // without a class is not.
    let mut objs = objects(vec![
        ingress(
            "default",
            "mine",
            T0,
            json!({}),
            spec(Some("skiff-internal")),
        ),
        ingress("default", "classless", T0, json!({}), {
            let mut s = spec(None);
            s["rules"][0]["host"] = json!("classless.test");
            s
        }),
    ]);
    objs.classes = [
        class("skiff", INGRESS_CONTROLLER, false),
        class("skiff-internal", INGRESS_CONTROLLER, false),
    ]
    .into_iter()
    .collect();
    let table = RouteTable::build(&objs);
    assert!(route(&table, "h.test", "/").is_some());
    assert!(route(&table, "classless.test", "/").is_none());
}

#[test]
fn default_backends_and_unservable_backends() {
    let objs = objects(vec![
        ingress(
            "default",
            "old",
            T0,
            json!({}),
            json!({
                "ingressClassName": "skiff",
                "defaultBackend": {"service": {"name": "a", "port": {"name": "http"}}},
                "rules": [rule(Some("h.test"), vec![
                    path("/missing", "Prefix", "nope"),
                    json!({"path": "/badport", "pathType": "Prefix",
                           "backend": {"service": {"name": "b", "port": {"number": 81}}}}),
                    json!({"path": "/badname", "pathType": "Prefix",
                           "backend": {"service": {"name": "b", "port": {"name": "grpc"}}}}),
                    json!({"path": "/resource", "pathType": "Prefix",
                           "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}}),
                    json!({"path": "/byname", "pathType": "Prefix",
                           "backend": {"service": {"name": "b", "port": {"name": "http"}}}}),
                ])],
            }),
        ),
        ingress(
            "default",
            "new",
            T1,
            json!({}),
            json!({
                "ingressClassName": "skiff",
                "defaultBackend": {"service": {"name": "c", "port": {"number": 80}}},
            }),
        ),
        // Another namespace's Ingress reaches its own namespace's Services only.
        ingress(
            "other",
            "o",
            T1,
            json!({}),
            json!({
                "ingressClassName": "skiff",
                "rules": [rule(Some("o.test"), vec![path("/", "Prefix", "x"), path("/a", "Prefix", "a")])],
            }),
        ),
    ]);
    let table = RouteTable::build(&objs);
    assert_eq!(
        route(&table, "anything.test", "/"),
        Some(&Target::Service {
            namespace: "default".into(),
            name: "a".into(),
            port: ServicePortRef::Name("http".into())
        }),
        "the oldest Ingress's defaultBackend answers what no rule matches"
    );
    assert_eq!(
        route(&table, "h.test", "/byname"),
        Some(&Target::Service {
            namespace: "default".into(),
            name: "b".into(),
            port: ServicePortRef::Name("http".into())
        })
    );
    let unavailable = |host: &str, p: &str| match route(&table, host, p) {
        Some(Target::Unavailable(reason)) => reason.clone(),
        other => panic!("{host}{p}: expected an unavailable backend, got {other:?}"),
    };
    assert_eq!(
        unavailable("h.test", "/missing"),
        "ingress backend: service \"default/nope\" not found"
    );
    assert_eq!(
        unavailable("h.test", "/badport"),
        "ingress backend: service \"default/b\" has no port 81"
    );
    assert_eq!(
        unavailable("h.test", "/badname"),
        "ingress backend: service \"default/b\" has no port \"grpc\""
    );
    assert!(unavailable("h.test", "/resource").contains("not supported"));
    assert_eq!(
        route(&table, "o.test", "/"),
        Some(&Target::Service {
            namespace: "other".into(),
            name: "x".into(),
            port: ServicePortRef::Number(80)
        })
    );
    assert_eq!(
        unavailable("o.test", "/a"),
        "ingress backend: service \"other/a\" not found"
    );

    // Nothing served: every request is a 404.
    let empty = RouteTable::build(&objects(vec![]));
    assert!(empty.is_empty());
    assert_eq!(route(&empty, "h.test", "/"), None);
}

#[test]
fn host_normalization() {
    for (raw, want) in [
        ("a.test", "a.test"),
        ("A.Test:80", "a.test"),
        ("a.test.", "a.test"),
        ("[::1]:8080", "[::1]"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("", ""),
    ] {
        assert_eq!(normalize_host(raw), want, "{raw:?}");
    }
}

#[test]
fn body_sizes_read_as_nginx_reads_them() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("1000"), Some(1000));
    assert_eq!(parse_size("512k"), Some(512 << 10));
    assert_eq!(parse_size("8M"), Some(8 << 20));
    assert_eq!(parse_size("2g"), Some(2 << 30));
    for bad in [
        "",
        "m",
        "1.5m",
        "-1",
        "10mb",
        " 1m",
        "1 m",
        "99999999999999999999g",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
}
