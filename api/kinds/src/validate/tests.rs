//! Tests for decoding and validation.

use serde_json::{Value, json};

use super::*;
use crate::{find, find_by_kind};

fn kind(api_version: &str, k: &str) -> &'static Kind {
    find_by_kind(api_version, k).expect("known kind")
}

fn causes(r: Result<(), Error>) -> Vec<(String, String, String)> {
    match r {
        Err(Error::Invalid(c)) => c
            .into_iter()
            .map(|c| (c.reason, c.field, c.message))
            .collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn deployment(selector: Value, labels: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    });
    crate::defaults::apply(kind("apps/v1", "Deployment"), &mut d);
    d
}

#[test]
fn decode_reports_unknown_fields_per_mode() {
    let k = kind("apps/v1", "Deployment");
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["foo"] = json!(1);
    d["spec"]["template"]["spec"]["containers"][0]["bogus"] = json!("x");
    d["spec"]["strategy"]["nullField"] = Value::Null;

    let warnings = decode(k, &d, FieldValidation::Warn).expect("warn decodes");
    assert_eq!(
        warnings,
        vec![
            "unknown field \"spec.template.spec.containers[0].bogus\"".to_string(),
            "unknown field \"spec.foo\"".to_string(),
        ]
    );
    assert_eq!(decode(k, &d, FieldValidation::Ignore), Ok(vec![]));
    assert_eq!(
        decode(k, &d, FieldValidation::Strict),
        Err(Error::BadRequest(
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.template.spec.containers[0].bogus\", unknown field \"spec.foo\"".into()
        ))
    );
}

#[test]
fn decode_accepts_known_fields_and_rejects_wrong_types() {
    let k = kind("v1", "Pod");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any": "thing"}, "annotations": {"a/b": "c"}, "creationTimestamp": null},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                  "resources": {"limits": {"cpu": "100m"}}, "env": [{"name": "A", "value": "1"}]}]},
        "status": {}
    });
    assert_eq!(decode(k, &pod, FieldValidation::Strict), Ok(vec![]));
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
    match decode(k, &bad, FieldValidation::Strict) {
        Err(Error::BadRequest(m)) => assert!(
            m.starts_with("Pod in version \"v1\" cannot be handled as a Pod: "),
            "{m}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        decode(k, &json!([1]), FieldValidation::Warn),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn field_validation_parses_query_values() {
    assert_eq!(FieldValidation::from_query(None), Ok(FieldValidation::Warn));
    assert_eq!(
        FieldValidation::from_query(Some("")),
        Ok(FieldValidation::Warn)
    );
    assert_eq!(
        FieldValidation::from_query(Some("Strict")),
        Ok(FieldValidation::Strict)
    );
    assert_eq!(
        FieldValidation::from_query(Some("Ignore")),
        Ok(FieldValidation::Ignore)
    );
    assert!(FieldValidation::from_query(Some("strict")).is_err());
}

#[test]
fn names_are_checked_per_kind() {
    let cm = kind("v1", "ConfigMap");
    let obj = json!({"metadata": {"name": "Bad_Name", "namespace": "default"}});
    assert_eq!(
        causes(validate(cm, &obj, None)),
        vec![(
            "FieldValueInvalid".into(),
            "metadata.name".into(),
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()
        )]
    );
    let ok = json!({"metadata": {"name": "a.b-c", "namespace": "default"}});
    assert_eq!(validate(cm, &ok, None), Ok(()));

    let ns = kind("v1", "Namespace");
    let dotted = json!({"metadata": {"name": "a.b"}});
    let c = causes(validate(ns, &dotted, None));
    assert_eq!(c.len(), 1);
    assert!(
        c[0].2.contains("a lowercase RFC 1123 label must consist"),
        "{:?}",
        c
    );

    let long = "a".repeat(64);
    let c = causes(validate(ns, &json!({"metadata": {"name": long}}), None));
    assert_eq!(
        c[0].2,
        format!("Invalid value: \"{long}\": must be no more than 63 characters")
    );

    let svc = kind("v1", "Service");
    let c = causes(validate(
        svc,
        &json!({"metadata": {"name": "1abc", "namespace": "d"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
        None,
    ));
    assert!(c[0].2.contains("a DNS-1035 label must consist"), "{c:?}");

    let missing = causes(validate(cm, &json!({"metadata": {"namespace": "d"}}), None));
    assert_eq!(
        missing,
        vec![(
            "FieldValueRequired".into(),
            "metadata.name".into(),
            "Required value: name or generateName is required".into()
        )]
    );

    let role = kind("rbac.authorization.k8s.io/v1", "ClusterRole");
    assert_eq!(
        validate(
            role,
            &json!({"metadata": {"name": "system:aggregate-to-admin"}}),
            None
        ),
        Ok(())
    );
}

#[test]
fn labels_and_annotations_are_checked() {
    let cm = kind("v1", "ConfigMap");
    let obj = json!({"metadata": {"name": "x", "namespace": "d", "labels": {"-bad": "ok", "good": "bad value"}}});
    let c = causes(validate(cm, &obj, None));
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0].1, "metadata.labels");
    assert!(
        c[0].2.starts_with(
            "Invalid value: \"-bad\": name part must consist of alphanumeric characters"
        ),
        "{c:?}"
    );
    assert!(
        c[1].2
            .starts_with("Invalid value: \"bad value\": a valid label must be an empty string"),
        "{c:?}"
    );
    let big = "x".repeat(300 * 1024);
    let c = causes(validate(
        cm,
        &json!({"metadata": {"name": "x", "namespace": "d", "annotations": {"a": big}}}),
        None,
    ));
    assert_eq!(
        c,
        vec![(
            "FieldValueTooLong".into(),
            "metadata.annotations".into(),
            "Too long: must have at most 262144 bytes".into()
        )]
    );
}

#[test]
fn selector_mismatch_is_422_with_kubernetes_cause() {
    let k = kind("apps/v1", "Deployment");
    let d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "other", "tier": "x"}),
    );
    let r = validate(k, &d, None);
    assert_eq!(
        causes(r.clone()),
        vec![(
            "FieldValueInvalid".into(),
            "spec.template.metadata.labels".into(),
            "Invalid value: map[string]string{\"app\":\"other\", \"tier\":\"x\"}: `selector` does not match template `labels`".into()
        )]
    );
    let Err(Error::Invalid(c)) = r else { panic!() };
    assert_eq!(
        invalid_message(k, "web", &c),
        "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\", \"tier\":\"x\"}: `selector` does not match template `labels`"
    );
    let good = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    assert_eq!(validate(k, &good, None), Ok(()));
    let mut neg = good.clone();
    neg["spec"]["replicas"] = json!(-1);
    assert_eq!(
        causes(validate(k, &neg, None)),
        vec![(
            "FieldValueInvalid".into(),
            "spec.replicas".into(),
            "Invalid value: -1: must be greater than or equal to 0".into()
        )]
    );
    let mut nosel = good.clone();
    nosel["spec"].as_object_mut().map(|s| s.remove("selector"));
    assert_eq!(
        causes(validate(k, &nosel, None)),
        vec![(
            "FieldValueRequired".into(),
            "spec.selector".into(),
            "Required value".into()
        )]
    );
    let exprs = deployment(
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
        json!({"app": "api"}),
    );
    assert_eq!(validate(k, &exprs, None), Ok(()));
}

#[test]
fn deployment_selector_is_immutable() {
    let k = kind("apps/v1", "Deployment");
    let old = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web", "v": "2"}),
    );
    let new = deployment(
        json!({"matchLabels": {"app": "web", "v": "2"}}),
        json!({"app": "web", "v": "2"}),
    );
    assert_eq!(
        causes(validate(k, &new, Some(&old))),
        vec![(
            "FieldValueInvalid".into(),
            "spec.selector".into(),
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable".into()
        )]
    );
    assert_eq!(validate(k, &old, Some(&old)), Ok(()));
}

#[test]
fn pod_containers_are_validated() {
    let k = kind("v1", "Pod");
    let mut pod = json!({
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {"restartPolicy": "Sometimes", "containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 70000, "protocol": "TCP"}]},
            {"name": "app", "image": ""},
            {"name": "Bad", "image": "i"}
        ]}
    });
    crate::defaults::apply(k, &mut pod);
    let c = causes(validate(k, &pod, None));
    let fields: Vec<&str> = c.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].ports[0].containerPort",
            "spec.containers[1].name",
            "spec.containers[1].image",
            "spec.containers[2].name",
            "spec.restartPolicy",
        ]
    );
    assert_eq!(
        c[0].2,
        "Invalid value: 70000: must be between 1 and 65535, inclusive"
    );
    assert_eq!(
        c[1],
        (
            "FieldValueDuplicate".into(),
            "spec.containers[1].name".into(),
            "Duplicate value: \"app\"".into()
        )
    );
    assert_eq!(c[2].0, "FieldValueRequired");
    assert_eq!(
        c[4].2,
        "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );

    let empty = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"restartPolicy": "Always", "containers": []}});
    assert_eq!(
        causes(validate(k, &empty, None)),
        vec![(
            "FieldValueRequired".into(),
            "spec.containers".into(),
            "Required value".into()
        )]
    );
}

#[test]
fn pod_updates_may_only_change_images_and_a_few_fields() {
    let k = kind("v1", "Pod");
    let mut old = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}});
    crate::defaults::apply(k, &mut old);
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("a:2");
    new["spec"]["activeDeadlineSeconds"] = json!(30);
    assert_eq!(validate(k, &new, Some(&old)), Ok(()));
    new["spec"]["restartPolicy"] = json!("Never");
    let c = causes(validate(k, &new, Some(&old)));
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].0.as_str(), c[0].1.as_str()),
        ("FieldValueForbidden", "spec")
    );
    assert!(c[0].2.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
    ));
    let mut bound = old.clone();
    bound["spec"]["nodeName"] = json!("node-1");
    assert_eq!(validate(k, &bound, Some(&old)), Ok(()));
}

#[test]
fn job_template_restart_policy_must_be_on_failure_or_never() {
    let k = kind("batch/v1", "Job");
    let mut job = json!({
        "metadata": {"name": "j", "namespace": "d", "uid": "u-1"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
    });
    crate::defaults::apply(k, &mut job);
    assert_eq!(
        causes(validate(k, &job, None)),
        vec![(
            "FieldValueNotSupported".into(),
            "spec.template.spec.restartPolicy".into(),
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()
        )]
    );
    job["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(validate(k, &job, None), Ok(()));
    job["spec"]["parallelism"] = json!(-2);
    assert_eq!(causes(validate(k, &job, None))[0].1, "spec.parallelism");
}

#[test]
fn cron_schedules_follow_the_standard_parser() {
    for ok in [
        "*/5 * * * *",
        "0 0 * * 0",
        "@hourly",
        "@every 1h30m",
        "0 9-17 * JAN-MAR mon-fri",
        "5,10 0 1 */2 ?",
        "CRON_TZ=Europe/Berlin 0 0 * * *",
    ] {
        assert_eq!(validate_schedule(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        validate_schedule("* * * *"),
        Err("expected exactly 5 fields, found 4: [* * * *]".into())
    );
    assert_eq!(
        validate_schedule("60 * * * *"),
        Err("end of range (60) above maximum (59): 60".into())
    );
    assert_eq!(
        validate_schedule("@fortnightly"),
        Err("unrecognized descriptor: @fortnightly".into())
    );
    assert!(validate_schedule("* * * * * *").is_err());
    assert!(validate_schedule("*/0 * * * *").is_err());
    assert!(validate_schedule("5-1 * * * *").is_err());
    assert!(validate_schedule("").is_err());

    let k = kind("batch/v1", "CronJob");
    let mut cj = json!({
        "metadata": {"name": "c", "namespace": "d"},
        "spec": {"schedule": "not a schedule", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}
    });
    crate::defaults::apply(k, &mut cj);
    assert_eq!(
        causes(validate(k, &cj, None)),
        vec![("FieldValueInvalid".into(), "spec.schedule".into(), "Invalid value: \"not a schedule\": expected exactly 5 fields, found 3: [not a schedule]".into())]
    );
    cj["spec"]["schedule"] = json!("TZ=UTC 0 * * * *");
    assert_eq!(
        causes(validate(k, &cj, None)),
        vec![("FieldValueInvalid".into(), "spec.schedule".into(), "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into())]
    );
    cj["spec"]["schedule"] = json!("0 * * * *");
    cj["spec"]["timeZone"] = json!("Europe/Berlin");
    assert_eq!(validate(k, &cj, None), Ok(()));
    cj["spec"]["timeZone"] = json!("Europe/Berln");
    assert_eq!(
        causes(validate(k, &cj, None)),
        vec![(
            "FieldValueInvalid".into(),
            "spec.timeZone".into(),
            "Invalid value: \"Europe/Berln\": unknown time zone Europe/Berln".into()
        )]
    );
}

#[test]
fn services_are_validated_and_cluster_ip_is_immutable() {
    let k = find("", "v1", "services").expect("services");
    let mut svc = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"type": "Bogus", "ports": [{"port": 0}]}});
    crate::defaults::apply(k, &mut svc);
    let c = causes(validate(k, &svc, None));
    assert_eq!(c[0], ("FieldValueNotSupported".into(), "spec.type".into(), "Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()));
    assert_eq!(
        c[1],
        (
            "FieldValueInvalid".into(),
            "spec.ports[0].port".into(),
            "Invalid value: 0: must be between 1 and 65535, inclusive".into()
        )
    );

    let mut old = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
    crate::defaults::apply(k, &mut old);
    assert_eq!(validate(k, &old, None), Ok(()));
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    assert_eq!(
        causes(validate(k, &new, Some(&old))),
        vec![(
            "FieldValueInvalid".into(),
            "spec.clusterIPs[0]".into(),
            "Invalid value: []string{\"10.96.0.11\"}: may not change once set".into()
        )]
    );
}

#[test]
fn immutable_config_maps_reject_data_changes() {
    let k = kind("v1", "ConfigMap");
    let old =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
    let new =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        causes(validate(k, &new, Some(&old))),
        vec![(
            "FieldValueForbidden".into(),
            "data".into(),
            "Forbidden: field is immutable when `immutable` is set".into()
        )]
    );
    let bad_key = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "1"}});
    assert_eq!(causes(validate(k, &bad_key, None))[0].1, "data[a b]");
}

#[test]
fn smaller_kinds_are_validated() {
    let rb = kind("rbac.authorization.k8s.io/v1", "RoleBinding");
    let b = json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "d"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                   "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
    assert_eq!(validate(rb, &b, None), Ok(()));
    let mut changed = b.clone();
    changed["roleRef"]["name"] = json!("other");
    let c = causes(validate(rb, &changed, Some(&b)));
    assert_eq!(
        (c[0].1.as_str(), c[0].2.ends_with("cannot change roleRef")),
        ("roleRef", true)
    );
    let crb = kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding");
    let cb = json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
    let fields: Vec<String> = causes(validate(crb, &cb, None))
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(fields, vec!["roleRef.kind", "subjects[0].namespace"]);

    let pdb = kind("policy/v1", "PodDisruptionBudget");
    let both = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}});
    let fields: Vec<String> = causes(validate(pdb, &both, None))
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(fields, vec!["spec", "spec.maxUnavailable"]);

    let hpa = kind("autoscaling/v2", "HorizontalPodAutoscaler");
    let h = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"minReplicas": 3, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
    assert_eq!(
        causes(validate(hpa, &h, None)),
        vec![(
            "FieldValueInvalid".into(),
            "spec.maxReplicas".into(),
            "Invalid value: 2: must be greater than or equal to `minReplicas`".into()
        )]
    );

    let pvc = kind("v1", "PersistentVolumeClaim");
    let fields: Vec<String> = causes(validate(
        pvc,
        &json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}}),
        None,
    ))
    .into_iter()
    .map(|c| c.1)
    .collect();
    assert_eq!(fields, vec!["spec.accessModes", "spec.resources[storage]"]);

    let ing = kind("networking.k8s.io/v1", "Ingress");
    let i = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {"rules": [{"host": "example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        {"path": "api", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
    ]}}]}});
    let fields: Vec<String> = causes(validate(ing, &i, None))
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(fields, vec!["spec.rules[0].http.paths[1].pathType"]);

    let rc = kind("node.k8s.io/v1", "RuntimeClass");
    assert_eq!(
        validate(
            rc,
            &json!({"metadata": {"name": "oci"}, "handler": "oci"}),
            None
        ),
        Ok(())
    );
    assert_eq!(
        causes(validate(rc, &json!({"metadata": {"name": "oci"}}), None))[0].1,
        "handler"
    );
}

#[test]
fn raw_bodies_report_duplicate_fields() {
    assert_eq!(
        duplicate_fields(
            br#"{"a":1,"spec":{"replicas":1,"replicas":2,"list":[{"x":1,"x":2}]},"a":3}"#
        )
        .expect("parses"),
        vec![
            "spec.replicas".to_string(),
            "spec.list[0].x".to_string(),
            "a".to_string()
        ]
    );
    let k = kind("v1", "ConfigMap");
    let body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","name":"d"},"bogus":1}"#;
    let (obj, warnings) = decode_bytes(k, body, FieldValidation::Warn).expect("warn");
    assert_eq!(obj["metadata"]["name"], "d");
    assert_eq!(
        warnings,
        vec![
            "duplicate field \"metadata.name\"".to_string(),
            "unknown field \"bogus\"".to_string()
        ]
    );
    assert_eq!(
        decode_bytes(k, body, FieldValidation::Strict).map(|_| ()),
        Err(Error::BadRequest("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", unknown field \"bogus\"".into()))
    );
    assert_eq!(
        decode_bytes(k, body, FieldValidation::Ignore).map(|r| r.1),
        Ok(vec![])
    );
    assert!(matches!(
        decode_bytes(k, b"{", FieldValidation::Warn),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn owner_references_need_identity() {
    let k = kind("v1", "ConfigMap");
    let obj = json!({"metadata": {"name": "c", "namespace": "d", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "", "controller": true}
    ]}});
    let c = causes(validate(k, &obj, None));
    assert_eq!(
        c[0],
        (
            "FieldValueInvalid".into(),
            "metadata.ownerReferences.uid".into(),
            "Invalid value: \"\": uid must not be empty".into()
        )
    );
    assert_eq!(c[1].1, "metadata.ownerReferences");
    assert!(c[1].2.ends_with("Only one reference can have Controller set to true. Found \"true\" in references for web and rs"));
}

#[test]
fn container_resources_are_checked() {
    let k = kind("v1", "Pod");
    let mut pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [
        {"name": "a", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1 GB"}, "limits": {"cpu": "1"}}}
    ]}});
    crate::defaults::apply(k, &mut pod);
    assert_eq!(
        causes(validate(k, &pod, None)),
        vec![
            ("FieldValueInvalid".into(), "spec.containers[0].resources.requests[memory]".into(),
             "Invalid value: \"1 GB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into()),
            ("FieldValueInvalid".into(), "spec.containers[0].resources.requests".into(),
             "Invalid value: \"2\": must be less than or equal to cpu limit of 1".into()),
        ]
    );
}

#[test]
fn objects_as_a_real_server_returns_them_decode_strictly() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-5d4f8c7b9-abcde", "generateName": "web-5d4f8c7b9-", "namespace": "default",
            "uid": "7c9d1f5e-0000-4000-8000-000000000001", "resourceVersion": "12345", "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8c7b9",
                                 "uid": "7c9d1f5e-0000-4000-8000-000000000002", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}}}}}}]
        },
        "spec": {
            "containers": [{
                "name": "app", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.25, "memory": "64Mi"}},
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": "node-a",
            "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:05Z"}],
            "hostIP": "192.0.2.10", "hostIPs": [{"ip": "192.0.2.10"}], "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
            "startTime": "2026-01-01T00:00:01Z", "qosClass": "Burstable",
            "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": "2026-01-01T00:00:03Z"}},
                                   "lastState": {}, "ready": true, "restartCount": 0, "image": "docker.io/library/nginx:1.27",
                                   "imageID": "docker.io/library/nginx@sha256:abc", "containerID": "containerd://abc", "started": true}]
        }
    });
    assert_eq!(
        decode(kind("v1", "Pod"), &pod, FieldValidation::Strict),
        Ok(vec![])
    );

    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"}, "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletReady", "message": "ready"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1", "osImage": "Debian", "containerRuntimeVersion": "skiff://0.1",
                         "kubeletVersion": "v1.34.0", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            "images": [{"names": ["nginx:1.27"], "sizeBytes": 1000}]
        }
    });
    assert_eq!(
        decode(kind("v1", "Node"), &node, FieldValidation::Strict),
        Ok(vec![])
    );

    let event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.123456Z", "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
        "reportingController": "skiff.dev/controller", "reportingInstance": "c-1", "action": "Scale", "reason": "Scaled",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default"},
        "note": "scaled up", "type": "Normal"
    });
    assert_eq!(
        decode(
            kind("events.k8s.io/v1", "Event"),
            &event,
            FieldValidation::Strict
        ),
        Ok(vec![])
    );

    let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r-1", "namespace": "d"},
                          "revision": 1, "data": {"spec": {"template": {"$patch": "replace", "spec": {"anything": [1, 2]}}}}});
    assert_eq!(
        decode(
            kind("apps/v1", "ControllerRevision"),
            &revision,
            FieldValidation::Strict
        ),
        Ok(vec![])
    );

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
                        "type": "Opaque", "data": {"a": "MQ=="}, "stringData": {"b": "2"}});
    assert_eq!(
        decode(kind("v1", "Secret"), &secret, FieldValidation::Strict),
        Ok(vec![])
    );
}

#[test]
fn events_v1_need_the_new_fields() {
    let k = kind("events.k8s.io/v1", "Event");
    let ok = json!({"metadata": {"name": "e.1", "namespace": "d"}, "eventTime": "2026-01-01T00:00:00.000000Z",
                    "reportingController": "skiff.dev/scheduler", "reportingInstance": "s-1", "action": "Binding",
                    "reason": "Scheduled", "type": "Normal", "regarding": {"kind": "Pod", "name": "p"}});
    assert_eq!(validate(k, &ok, None), Ok(()));
    let fields: Vec<String> = causes(validate(
        k,
        &json!({"metadata": {"name": "e.1", "namespace": "d"}, "type": "Bad"}),
        None,
    ))
    .into_iter()
    .map(|c| c.1)
    .collect();
    assert_eq!(
        fields,
        vec![
            "eventTime",
            "type",
            "reportingController",
            "reportingInstance",
            "action",
            "reason"
        ]
    );
}

#[test]
fn statefulset_containers_may_mount_their_claim_templates() {
    let kind = crate::find("apps", "v1", "statefulsets").unwrap();
    let sts = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3, "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "app", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    });
    let mut obj = sts.clone();
    crate::defaults::apply(kind, &mut obj);
    crate::validate::validate(kind, &obj, None).expect("claim template volumes are mountable");
    let mut missing = sts;
    missing["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] =
        serde_json::json!("nope");
    crate::defaults::apply(kind, &mut missing);
    assert!(
        crate::validate::validate(kind, &missing, None).is_err(),
        "an unknown volume is still refused"
    );
}

/// Service rules as Kubernetes words them: one row per spec, the causes it gets.
#[test]
fn services_are_validated_as_kubernetes_does() {
    let k = find("", "v1", "services").expect("services");
    type Expected = Vec<(&'static str, &'static str, &'static str)>;
    let rows: Vec<(Value, Expected)> = vec![
        (
            json!({"ports": [{"port": 80}, {"port": 81}]}),
            vec![
                ("FieldValueRequired", "spec.ports[0].name", "Required value"),
                ("FieldValueRequired", "spec.ports[1].name", "Required value"),
            ],
        ),
        (
            json!({"ports": [{"name": "Web_1", "port": 80}]}),
            vec![(
                "FieldValueInvalid",
                "spec.ports[0].name",
                "Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            )],
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            vec![(
                "FieldValueDuplicate",
                "spec.ports[1].name",
                "Duplicate value: \"a\"",
            )],
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
            vec![(
                "FieldValueDuplicate",
                "spec.ports[1]",
                "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            )],
        ),
        (
            json!({"ports": [{"port": 80, "protocol": "HTTP"}]}),
            vec![(
                "FieldValueNotSupported",
                "spec.ports[0].protocol",
                "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            )],
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": 70000}]}),
            vec![(
                "FieldValueInvalid",
                "spec.ports[0].targetPort",
                "Invalid value: 70000: must be between 1 and 65535, inclusive",
            )],
        ),
        (
            json!({"ports": [{"port": 80}], "selector": {"app": "no spaces"}}),
            vec![(
                "FieldValueInvalid",
                "spec.selector",
                "Invalid value: \"no spaces\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            )],
        ),
        (
            json!({"ports": [{"port": 80}], "sessionAffinity": "Sticky"}),
            vec![(
                "FieldValueNotSupported",
                "spec.sessionAffinity",
                "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            )],
        ),
        (
            json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
            vec![(
                "FieldValueInvalid",
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "Invalid value: 0: must be greater than 0 and less than 86400",
            )],
        ),
        (
            json!({"ports": [{"port": 80}], "ipFamilies": ["IPv6"]}),
            vec![(
                "FieldValueInvalid",
                "spec.ipFamilies[0]",
                "Invalid value: \"IPv6\": not configured on this cluster",
            )],
        ),
        (
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 81, "nodePort": 30080}]}),
            vec![(
                "FieldValueDuplicate",
                "spec.ports[1].nodePort",
                "Duplicate value: 30080",
            )],
        ),
        (
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 53, "nodePort": 30053},
                {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            vec![],
        ),
        (
            json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}),
            vec![],
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": "http-alt"}]}),
            vec![],
        ),
    ];
    for (spec, want) in rows {
        let mut svc = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": spec.clone()});
        crate::defaults::apply(k, &mut svc);
        let got = match validate(k, &svc, None) {
            Ok(()) => Vec::new(),
            err => causes(err),
        };
        let want: Vec<(String, String, String)> = want
            .into_iter()
            .map(|(r, f, m)| (r.into(), f.into(), m.into()))
            .collect();
        assert_eq!(got, want, "{spec}");
    }
    // ClientIP affinity gets Kubernetes' default timeout.
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}});
    crate::defaults::apply(k, &mut svc);
    assert_eq!(
        svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
}

#[test]
fn a_replication_controller_needs_an_equality_selector_matching_its_template() {
    let k = kind("v1", "ReplicationController");
    let rc = |selector: Value, labels: Value| {
        let mut rc = json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": selector, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
        });
        crate::defaults::apply(k, &mut rc);
        rc
    };
    let good = rc(json!({"app": "web"}), json!({"app": "web", "v": "1"}));
    assert_eq!(validate(k, &good, None), Ok(()));
    // The selector may change on update, unlike a ReplicaSet's.
    let changed = rc(json!({"v": "1"}), json!({"app": "web", "v": "1"}));
    assert_eq!(validate(k, &changed, Some(&good)), Ok(()));
    assert_eq!(
        causes(validate(k, &rc(json!({"app": "api"}), json!({"app": "web"})), None)),
        vec![(
            "FieldValueInvalid".to_string(),
            "spec.template.metadata.labels".to_string(),
            "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".to_string()
        )]
    );
    let mut neg = good.clone();
    neg["spec"]["replicas"] = json!(-1);
    neg["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    let got = causes(validate(k, &neg, None));
    let fields: Vec<&str> = got.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.replicas", "spec.template.spec.restartPolicy"],
        "{got:?}"
    );
    // No labels anywhere: no selector can be defaulted.
    let bare = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    });
    let got = causes(validate(k, &bare, None));
    assert_eq!(
        got[0],
        (
            "FieldValueRequired".to_string(),
            "spec.selector".to_string(),
            "Required value".to_string()
        )
    );
}

#[test]
fn priority_classes_follow_kubernetes() {
    let pc = kind("scheduling.k8s.io/v1", "PriorityClass");
    let class = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(validate(pc, &class("high", 1_000_000_000), None), Ok(()));
    assert_eq!(
        causes(validate(pc, &class("higher", 1_000_000_001), None)),
        vec![(
            "FieldValueForbidden".to_string(),
            "value".to_string(),
            "Forbidden: maximum allowed value of a user defined priority is 1000000000".to_string()
        )]
    );
    assert_eq!(
        validate(pc, &class("system-node-critical", 2_000_001_000), None),
        Ok(())
    );
    assert_eq!(
        causes(validate(pc, &class("system-node-critical", 5), None))[0].2,
        "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"
    );
    assert_eq!(
        causes(validate(pc, &class("system-mine", 5), None))[0].2,
        "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
    );
    let mut never = class("high", 10);
    never["preemptionPolicy"] = json!("Sometimes");
    assert_eq!(causes(validate(pc, &never, None))[0].1, "preemptionPolicy");
    // value and preemptionPolicy are immutable
    let old = class("high", 10);
    let mut new = class("high", 11);
    new["preemptionPolicy"] = json!("Never");
    let got: Vec<String> = causes(validate(pc, &new, Some(&old)))
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(
        got,
        vec![
            "Forbidden: may not be changed in an update.".to_string(),
            "Invalid value: \"Never\": field is immutable".to_string()
        ]
    );
    let mut described = class("high", 10);
    described["description"] = json!("changed");
    assert_eq!(validate(pc, &described, Some(&old)), Ok(()));
}

#[test]
fn resource_quotas_are_validated_as_kubernetes_does() {
    let rq = kind("v1", "ResourceQuota");
    let quota = |spec: Value| json!({"metadata": {"name": "q", "namespace": "d"}, "spec": spec});
    let ok = quota(
        json!({"hard": {"pods": "10", "limits.cpu": "2", "count/deployments.apps": "3",
        "requests.example.com/gpu": "1"}, "scopes": ["NotTerminating"]}),
    );
    assert_eq!(validate(rq, &ok, None), Ok(()));
    let got = |spec: Value| -> Vec<(String, String)> {
        causes(validate(rq, &quota(spec), None))
            .into_iter()
            .map(|c| (c.1, c.2))
            .collect()
    };
    assert_eq!(
        got(json!({"hard": {"bananas": "1", "pods": "1500m", "secrets": "-1"}})),
        vec![
            (
                "spec.hard[bananas]".to_string(),
                "Invalid value: \"bananas\": must be a standard resource for quota".to_string()
            ),
            (
                "spec.hard[pods]".to_string(),
                "Invalid value: \"1500m\": must be an integer".to_string()
            ),
            (
                "spec.hard[secrets]".to_string(),
                "Invalid value: \"-1\": must be greater than or equal to 0".to_string()
            ),
        ]
    );
    assert_eq!(
        got(json!({"hard": {"pods": "1"}, "scopes": ["Sometimes"]})),
        vec![(
            "spec.scopes".to_string(),
            "Invalid value: []core.ResourceQuotaScope{\"Sometimes\"}: unsupported scope"
                .to_string()
        )]
    );
    assert_eq!(
        got(json!({"hard": {"configmaps": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}))
            .into_iter()
            .map(|(_, m)| m.rsplit(": ").next().unwrap().to_string())
            .collect::<Vec<_>>(),
        vec![
            "unsupported scope applied to resource",
            "unsupported scope applied to resource",
            "conflicting scopes"
        ]
    );
    let fields: Vec<String> = got(
        json!({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "Terminating", "operator": "In", "values": []},
            {"scopeName": "PriorityClass", "operator": "Exists", "values": ["x"]}
        ]}}),
    )
    .into_iter()
    .map(|(f, _)| f)
    .collect();
    assert_eq!(
        fields,
        vec![
            "spec.scopeSelector.matchExpressions.operator",
            "spec.scopeSelector.matchExpressions.values",
            "spec.scopeSelector.matchExpressions.values"
        ]
    );
}

/// The fields named by the errors of validating `obj` (after defaulting) against `old`.
fn storage_fields(api_version: &str, k: &str, mut obj: Value, old: Option<&Value>) -> Vec<String> {
    let kind = kind(api_version, k);
    crate::defaults::apply(kind, &mut obj);
    match validate(kind, &obj, old) {
        Ok(()) => Vec::new(),
        other => causes(other).into_iter().map(|c| c.1).collect(),
    }
}

#[test]
fn storage_classes_are_validated_as_kubernetes_does() {
    let sc = |extra: Value| {
        let mut o = json!({"metadata": {"name": "fast"}, "provisioner": "skiff.dev/local-path"});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        o
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (sc(json!({})), vec![]),
        (sc(json!({"provisioner": ""})), vec!["provisioner"]),
        (
            sc(json!({"provisioner": "not a name/x/y"})),
            vec!["provisioner"],
        ),
        (
            sc(json!({"reclaimPolicy": "Recycle"})),
            vec!["reclaimPolicy"],
        ),
        (
            sc(json!({"volumeBindingMode": "Later"})),
            vec!["volumeBindingMode"],
        ),
        (
            sc(json!({"allowedTopologies": [{"matchLabelExpressions": [
                {"key": "kubernetes.io/hostname", "values": ["a", "a"]},
                {"key": "bad key", "values": []}
            ]}]})),
            vec![
                "allowedTopologies[0].matchLabelExpressions[0].values[1]",
                "allowedTopologies[0].matchLabelExpressions[1].key",
                "allowedTopologies[0].matchLabelExpressions[1].values",
            ],
        ),
        (
            sc(json!({"allowedTopologies": [{"matchLabelExpressions": []}]})),
            vec!["allowedTopologies[0].matchLabelExpressions"],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(
            storage_fields("storage.k8s.io/v1", "StorageClass", obj.clone(), None),
            want,
            "{obj}"
        );
    }
    // defaults: Delete and Immediate
    let mut d = sc(json!({}));
    crate::defaults::apply(kind("storage.k8s.io/v1", "StorageClass"), &mut d);
    assert_eq!(d["reclaimPolicy"], "Delete");
    assert_eq!(d["volumeBindingMode"], "Immediate");
    // updates: parameters, provisioner, reclaimPolicy and volumeBindingMode are fixed
    let old = d.clone();
    let changed = sc(json!({
        "parameters": {"a": "b"}, "provisioner": "example.com/other",
        "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"
    }));
    assert_eq!(
        storage_fields("storage.k8s.io/v1", "StorageClass", changed, Some(&old)),
        vec![
            "parameters",
            "provisioner",
            "reclaimPolicy",
            "volumeBindingMode"
        ]
    );
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"tier": "fast"});
    labelled["allowVolumeExpansion"] = json!(true);
    assert_eq!(
        storage_fields("storage.k8s.io/v1", "StorageClass", labelled, Some(&old)),
        Vec::<String>::new()
    );
}

#[test]
fn persistent_volumes_are_validated_as_kubernetes_does() {
    let pv = |spec: Value| {
        let mut o = json!({"metadata": {"name": "pv1"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data/pv1"}
        }});
        for (k, v) in spec.as_object().expect("object") {
            if v.is_null() {
                o["spec"].as_object_mut().expect("spec").remove(k);
            } else {
                o["spec"][k] = v.clone();
            }
        }
        o
    };
    let affinity = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (pv(json!({})), vec![]),
        (pv(json!({"capacity": null})), vec!["spec.capacity"]),
        (
            pv(json!({"capacity": {"storage": "0"}})),
            vec!["spec.capacity[storage]"],
        ),
        (
            pv(json!({"capacity": {"storage": "1Gi", "cpu": "1"}})),
            vec!["spec.capacity"],
        ),
        (pv(json!({"accessModes": []})), vec!["spec.accessModes"]),
        (
            pv(json!({"accessModes": ["ReadWriteSometimes"]})),
            vec!["spec.accessModes"],
        ),
        (
            pv(json!({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]})),
            vec!["spec.accessModes"],
        ),
        (pv(json!({"hostPath": null})), vec!["spec"]),
        (
            pv(json!({"nfs": {"server": "s", "path": "/"}})),
            vec!["spec"],
        ),
        (
            pv(json!({"hostPath": {"path": "/data/../etc"}})),
            vec!["spec.hostPath.path"],
        ),
        (
            pv(json!({"hostPath": {"path": "/d", "type": "Pipe"}})),
            vec!["spec.hostPath.type"],
        ),
        (
            pv(json!({"hostPath": null, "local": {"path": "/mnt/disk"}})),
            vec!["spec.nodeAffinity"],
        ),
        (
            pv(json!({"hostPath": null, "local": {"path": "/mnt/disk"}, "nodeAffinity": affinity})),
            vec![],
        ),
        (
            pv(json!({"persistentVolumeReclaimPolicy": "Keep"})),
            vec!["spec.persistentVolumeReclaimPolicy"],
        ),
        (
            pv(json!({"storageClassName": "Not_A_Name"})),
            vec!["spec.storageClassName"],
        ),
        (pv(json!({"volumeMode": "Raw"})), vec!["spec.volumeMode"]),
    ];
    for (obj, want) in cases {
        assert_eq!(
            storage_fields("v1", "PersistentVolume", obj.clone(), None),
            want,
            "{obj}"
        );
    }
    let mut d = pv(json!({}));
    crate::defaults::apply(kind("v1", "PersistentVolume"), &mut d);
    assert_eq!(d["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(d["spec"]["volumeMode"], "Filesystem");
    assert_eq!(d["status"]["phase"], "Pending");
    let moved = pv(json!({"hostPath": {"path": "/data/other"}}));
    assert_eq!(
        storage_fields("v1", "PersistentVolume", moved, Some(&d)),
        vec!["spec.persistentvolumesource"]
    );
    let mut claimed = d.clone();
    claimed["spec"]["claimRef"] = json!({"namespace": "d", "name": "c"});
    assert_eq!(
        storage_fields("v1", "PersistentVolume", claimed, Some(&d)),
        Vec::<String>::new()
    );
}

#[test]
fn claims_are_validated_and_fixed_once_created() {
    let pvc = |spec: Value| {
        let mut o = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}
        }});
        for (k, v) in spec.as_object().expect("object") {
            o["spec"][k] = v.clone();
        }
        o
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (pvc(json!({})), vec![]),
        (
            pvc(json!({"resources": {"requests": {"storage": "0"}}})),
            vec!["spec.resources[storage]"],
        ),
        (
            pvc(json!({"resources": {"requests": {"storage": "lots"}}})),
            vec!["spec.resources[storage]"],
        ),
        (
            pvc(json!({"accessModes": ["Everything"]})),
            vec!["spec.accessModes"],
        ),
        (
            pvc(json!({"storageClassName": "UPPER"})),
            vec!["spec.storageClassName"],
        ),
        (pvc(json!({"volumeMode": "Raw"})), vec!["spec.volumeMode"]),
        (
            pvc(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}})),
            vec!["spec.selector"],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(
            storage_fields("v1", "PersistentVolumeClaim", obj.clone(), None),
            want,
            "{obj}"
        );
    }
    let mut old = pvc(json!({}));
    crate::defaults::apply(kind("v1", "PersistentVolumeClaim"), &mut old);
    assert_eq!(old["spec"]["volumeMode"], "Filesystem");
    assert_eq!(old["status"]["phase"], "Pending");
    let update = |change: Value, old: &Value| {
        let mut new = old.clone();
        for (k, v) in change.as_object().expect("object") {
            new["spec"][k] = v.clone();
        }
        storage_fields("v1", "PersistentVolumeClaim", new, Some(old))
    };
    let none = Vec::<String>::new();
    // a pending claim: the binding and a first class may be set, nothing else changes
    assert_eq!(update(json!({"volumeName": "pv1"}), &old), none);
    assert_eq!(
        update(json!({"storageClassName": "local-path"}), &old),
        none
    );
    assert_eq!(
        update(json!({"accessModes": ["ReadOnlyMany"]}), &old),
        vec!["spec"]
    );
    assert_eq!(
        update(json!({"resources": {"requests": {"storage": "2Gi"}}}), &old),
        vec!["spec"]
    );
    // a bound claim may grow, not shrink below its capacity, and keeps its volume
    let mut bound = old.clone();
    bound["spec"]["volumeName"] = json!("pv1");
    bound["spec"]["storageClassName"] = json!("local-path");
    bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    assert_eq!(
        update(
            json!({"resources": {"requests": {"storage": "2Gi"}}}),
            &bound
        ),
        none
    );
    assert_eq!(
        update(
            json!({"resources": {"requests": {"storage": "512Mi"}}}),
            &bound
        ),
        vec!["spec.resources.requests.storage"]
    );
    assert_eq!(update(json!({"volumeName": "pv2"}), &bound), vec!["spec"]);
    assert_eq!(
        update(json!({"storageClassName": "other"}), &bound),
        vec!["spec"]
    );
}

#[test]
fn hpa_metrics_and_behavior_are_validated_as_kubernetes() {
    let hpa = kind("autoscaling/v2", "HorizontalPodAutoscaler");
    let h = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {
        "minReplicas": 1, "maxReplicas": 5,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10, "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}});
    assert!(validate(hpa, &h, None).is_ok());

    let bad = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {
        "minReplicas": 1, "maxReplicas": 5,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
            {"type": "Nope"},
            {"type": "Pods"},
        ],
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 3601, "selectPolicy": "Most",
            "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}}});
    assert_eq!(
        causes(validate(hpa, &bad, None)),
        vec![
            (
                "FieldValueInvalid".into(),
                "spec.metrics[0].resource.target.averageUtilization".into(),
                "Invalid value: 0: must be greater than 0".into()
            ),
            (
                "FieldValueRequired".into(),
                "spec.metrics[1].resource.target.averageUtilization".into(),
                "Required value: must set either a target raw value or a target utilization"
                    .into()
            ),
            (
                "FieldValueNotSupported".into(),
                "spec.metrics[2].type".into(),
                "Unsupported value: \"Nope\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"".into()
            ),
            (
                "FieldValueRequired".into(),
                "spec.metrics[3].pods".into(),
                "Required value: must populate information for the given metric source".into()
            ),
            (
                "FieldValueInvalid".into(),
                "spec.behavior.scaleUp.stabilizationWindowSeconds".into(),
                "Invalid value: 3601: must be less than or equal to 3600".into()
            ),
            (
                "FieldValueNotSupported".into(),
                "spec.behavior.scaleUp.selectPolicy".into(),
                "Unsupported value: \"Most\": supported values: \"Disabled\", \"Max\", \"Min\"".into()
            ),
            (
                "FieldValueInvalid".into(),
                "spec.behavior.scaleUp.policies[0].value".into(),
                "Invalid value: 0: must be greater than zero".into()
            ),
            (
                "FieldValueInvalid".into(),
                "spec.behavior.scaleUp.policies[0].periodSeconds".into(),
                "Invalid value: 1801: must be less than or equal to 1800".into()
            ),
        ]
    );
}
