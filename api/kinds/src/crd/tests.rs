//! Tests of CRD parsing and validation and of custom resource schemas.

use serde_json::{Value, json};

use super::*;

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "cronSpec": {"type": "string"},
                         "image": {"type": "string"},
                         "replicas": {"type": "integer", "minimum": 1, "default": 1}}},
                     "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                 "additionalPrinterColumns": [
                     {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                     {"name": "Image", "type": "string", "priority": 1, "jsonPath": ".spec.image"}]},
                {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                 "deprecationWarning": "use v1",
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v0", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        }
    })
}

#[test]
fn from_crd_gives_one_kind_per_served_version() {
    let kinds = CustomKind::from_crd(&crontab_crd());
    assert_eq!(kinds.len(), 2);
    let v1 = &kinds[0];
    assert_eq!(v1.crd_name, "crontabs.stable.example.com");
    assert_eq!(v1.version, "v1");
    assert_eq!(v1.storage_version, "v1");
    assert_eq!(v1.served_versions, ["v1", "v1beta1"]);
    assert_eq!(v1.names.list_kind, "CronTabList");
    assert!(v1.namespaced);
    assert!(v1.subresources.status);
    assert_eq!(
        v1.subresources
            .scale
            .as_ref()
            .and_then(|s| s.label_selector_path.as_deref()),
        Some(".status.selector")
    );
    assert_eq!(v1.printer_columns.len(), 3);
    assert_eq!(v1.printer_columns[2].priority, 1);
    assert_eq!(v1.openapi_type(), "com.example.stable.v1.CronTab");
    let beta = &kinds[1];
    assert!(beta.deprecated);
    assert_eq!(beta.deprecation_warning.as_deref(), Some("use v1"));
    assert!(
        beta.schema
            .as_ref()
            .is_some_and(|s| s.preserve_unknown_fields)
    );
}

#[test]
fn leaked_kind_carries_the_custom_kind() {
    let kind = CustomKind::from_crd(&crontab_crd()).remove(0).leak();
    assert_eq!(kind.api_version(), "stable.example.com/v1");
    assert_eq!(kind.subresources, ["scale", "status"]);
    assert_eq!(kind.short_names, ["ct"]);
    assert!(kind.is_custom());
    assert_eq!(kind.storage_version(), "v1");
    assert_eq!(kind.qualified_resource(), "crontabs.stable.example.com");
}

#[test]
fn crd_name_must_be_plural_dot_group() {
    let mut crd = crontab_crd();
    assert_eq!(validate_crd(&crd, None), vec![]);
    crd["metadata"]["name"] = json!("crontab.stable.example.com");
    let causes = validate_crd(&crd, None);
    assert_eq!(
        causes[0].full(),
        "metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group"
    );
}

fn kind_of(crd: &Value) -> &'static crate::Kind {
    CustomKind::from_crd(crd).remove(0).leak()
}

fn schema(v: Value) -> Schema {
    Schema::parse(&v)
}

fn causes(s: &Value, obj: Value) -> Vec<String> {
    validate_object(&schema(s.clone()), &obj)
        .iter()
        .map(|c| c.full())
        .collect()
}

#[test]
fn values_are_checked_with_kubernetes_messages() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["image"], "properties": {
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "multipleOf": 0.5},
        "image": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["Fast", "Slow"]},
        "when": {"type": "string", "format": "date-time"},
        "addr": {"type": "string", "format": "ipv4"},
        "ports": {"type": "array", "maxItems": 1, "items": {"type": "integer"}},
        "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
        "flag": {"type": "boolean"},
        "size": {"x-kubernetes-int-or-string": true},
        "opt": {"type": "string", "nullable": true}}}}});
    let table: Vec<(Value, Vec<&str>)> = vec![
        (json!({"image": "ab"}), vec![]),
        (
            json!({"image": "ab", "replicas": "3"}),
            vec![
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ],
        ),
        (
            json!({"image": "ab", "replicas": 1.5}),
            vec![
                "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
            ],
        ),
        (json!({"image": "ab", "replicas": 2.0}), vec![]),
        (
            json!({"image": "ab", "replicas": 0}),
            vec![
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            ],
        ),
        (
            json!({"image": "ab", "replicas": 11}),
            vec![
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            ],
        ),
        (
            json!({"image": "ab", "ratio": 0}),
            vec!["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"],
        ),
        (
            json!({"image": "ab", "ratio": 0.7}),
            vec!["spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"],
        ),
        (json!({"image": "ab", "ratio": 2}), vec![]),
        (json!({}), vec!["spec.image: Required value"]),
        (
            json!({"image": "a"}),
            vec![
                "spec.image: Invalid value: \"a\": spec.image in body should be at least 2 chars long",
            ],
        ),
        (
            json!({"image": "abcdef"}),
            vec!["spec.image: Too long: must have at most 5 bytes"],
        ),
        (
            json!({"image": "AB"}),
            vec!["spec.image: Invalid value: \"AB\": spec.image in body should match '^[a-z]+$'"],
        ),
        (
            json!({"image": "ab", "mode": "Medium"}),
            vec!["spec.mode: Unsupported value: \"Medium\": supported values: \"Fast\", \"Slow\""],
        ),
        (
            json!({"image": "ab", "when": "yesterday"}),
            vec![
                "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            ],
        ),
        (
            json!({"image": "ab", "when": "2024-01-02T03:04:05Z"}),
            vec![],
        ),
        (
            json!({"image": "ab", "addr": "10.0.0.256"}),
            vec![
                "spec.addr: Invalid value: \"10.0.0.256\": spec.addr in body must be of type ipv4: \"10.0.0.256\"",
            ],
        ),
        (
            json!({"image": "ab", "ports": [1, "x"]}),
            vec![
                "spec.ports: Too many: 2: must have at most 1 item",
                "spec.ports[1]: Invalid value: \"string\": spec.ports[1] in body must be of type integer: \"string\"",
            ],
        ),
        (
            json!({"image": "ab", "tags": []}),
            vec!["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"],
        ),
        (
            json!({"image": "ab", "labels": {"a": "x", "b": 2}}),
            vec![
                "spec.labels: Too many: 2: must have at most 1 item",
                "spec.labels.b: Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\"",
            ],
        ),
        (
            json!({"image": "ab", "flag": "yes"}),
            vec![
                "spec.flag: Invalid value: \"string\": spec.flag in body must be of type boolean: \"string\"",
            ],
        ),
        (json!({"image": "ab", "size": 3}), vec![]),
        (json!({"image": "ab", "size": "50%"}), vec![]),
        (
            json!({"image": "ab", "size": true}),
            vec![
                "spec.size: Invalid value: \"boolean\": spec.size in body must be of type integer,string: \"boolean\"",
            ],
        ),
        (json!({"image": "ab", "opt": null}), vec![]),
    ];
    for (spec, want) in table {
        let got = causes(&s, json!({"spec": spec.clone()}));
        assert_eq!(got, want, "spec {spec}");
    }
}

#[test]
fn causes_carry_kubernetes_reasons() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer"}, "b": {"type": "string", "enum": ["x"]}}}}});
    let got = validate_object(&schema(s), &json!({"spec": {"b": "y"}}));
    let reasons: Vec<&str> = got.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons, ["FieldValueRequired", "FieldValueNotSupported"]);
    assert_eq!(got[0].field, "spec.a");
}

#[test]
fn list_types_and_embedded_resources_are_checked() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}}});
    assert_eq!(
        causes(&s, json!({"spec": {"set": ["a", "b", "a"]}})),
        ["spec.set[2]: Duplicate value: \"a\""]
    );
    assert_eq!(
        causes(
            &s,
            json!({"spec": {"map": [{"name": "x", "v": 1}, {"name": "x", "v": 2}]}})
        ),
        ["spec.map[1]: Duplicate value: map[string]interface {}{\"name\":\"x\"}"]
    );
    assert_eq!(
        causes(
            &s,
            json!({"spec": {"template": {"metadata": {"name": "a/b"}}}})
        ),
        [
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty",
            "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'",
        ]
    );
    assert_eq!(
        causes(
            &s,
            json!({"spec": {"template": {"apiVersion": "", "kind": "My_Kind"}}})
        ),
        [
            "spec.template.apiVersion: Invalid value: \"\": must not be empty",
            "spec.template.kind: Invalid value: \"My_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ]
    );
    assert_eq!(
        causes(
            &s,
            json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "spec": {}}}})
        ),
        Vec::<String>::new()
    );
}

#[test]
fn junctors_are_applied() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
        "not": {"required": ["c"]}}}});
    assert_eq!(
        causes(&s, json!({"spec": {"a": "x"}})),
        Vec::<String>::new()
    );
    assert_eq!(
        causes(&s, json!({"spec": {"a": "x", "b": "y"}})),
        [
            "spec: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
        ]
    );
    assert_eq!(
        causes(&s, json!({"spec": {"a": "x", "c": 1}})),
        ["spec: Invalid value: \"\": \"spec\" must not validate the schema (not)"]
    );
}

#[test]
fn pruning_reports_unknown_fields_and_keeps_resource_meta() {
    let crd = crontab_crd();
    let kind = kind_of(&crd);
    let mut obj = json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1},
        "spec": {"cronSpec": "* * * * *", "extra": {"deep": 1}},
        "top": true,
    });
    let pruned = prune(kind, &mut obj);
    assert_eq!(pruned, ["metadata.bogus", "spec.extra", "top"]);
    assert_eq!(
        obj,
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"cronSpec": "* * * * *"}})
    );
    // the preserve-unknown-fields version keeps everything
    let beta = CustomKind::from_crd(&crd).remove(1).leak();
    let mut obj = json!({"apiVersion": "stable.example.com/v1beta1", "kind": "CronTab", "metadata": {"name": "a"}, "anything": {"x": 1}});
    assert_eq!(prune(beta, &mut obj), Vec::<String>::new());
    assert_eq!(obj["anything"], json!({"x": 1}));
}

#[test]
fn pruning_keeps_embedded_meta_and_preserved_subtrees() {
    let s = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object", "properties": {}}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}}}}}),
    );
    let mut obj = json!({"spec": {
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": "x", "b": "y"}, "status": {}},
        "free": {"anything": 1, "known": {"dropped": 2}},
        "items": [{"n": "a", "m": 1}]}});
    let pruned = prune_object(&s, &mut obj);
    assert_eq!(
        pruned,
        [
            "spec.template.spec.b",
            "spec.template.status",
            "spec.free.known.dropped",
            "spec.items[0].m"
        ]
    );
    assert_eq!(
        obj["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": "x"}})
    );
    assert_eq!(obj["spec"]["free"], json!({"anything": 1, "known": {}}));
}

#[test]
fn defaults_fill_missing_and_null_fields() {
    let s = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
        "replicas": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "Fast"},
        "nullable": {"type": "string", "nullable": true, "default": "d"},
        "gone": {"type": "string"},
        "nested": {"type": "object", "default": {"a": 1}, "properties": {"a": {"type": "integer"}, "b": {"type": "string", "default": "x"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 80}}}}}}}}),
    );
    let mut obj =
        json!({"spec": {"mode": null, "nullable": null, "gone": null, "list": [{}, {"p": 1}]}});
    prune_nulls(&s, &mut obj);
    apply_defaults(&s, &mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"mode": "Fast", "nullable": null, "list": [{"p": 80}, {"p": 1}],
            "replicas": 1, "nested": {"a": 1, "b": "x"}}})
    );
    let mut empty = json!({});
    apply_defaults(&s, &mut empty);
    assert_eq!(empty["spec"]["replicas"], json!(1));
}

#[test]
fn the_write_path_hooks_handle_custom_kinds() {
    use crate::validate::{FieldValidation, decode, decode_bytes};
    let kind = kind_of(&crontab_crd());
    let body = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "a", "namespace": "default"}, "spec": {"cronSpec": "x", "foo": 1}});
    assert_eq!(
        decode(kind, &body, FieldValidation::Warn),
        Ok(vec!["unknown field \"spec.foo\"".to_string()])
    );
    assert_eq!(
        decode(kind, &body, FieldValidation::Strict),
        Err(crate::validate::Error::BadRequest(
            "CronTab in version \"v1\" cannot be handled as a CronTab: strict decoding error: unknown field \"spec.foo\"".to_string()
        ))
    );
    assert_eq!(decode(kind, &body, FieldValidation::Ignore), Ok(vec![]));
    let raw = br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"a"},"spec":{"image":"a","image":"b"}}"#;
    let (_, warnings) = decode_bytes(kind, raw, FieldValidation::Warn).expect("decodes");
    assert_eq!(warnings, ["duplicate field \"spec.image\""]);

    let mut obj = body.clone();
    crate::defaults::apply(kind, &mut obj);
    assert_eq!(obj["spec"], json!({"cronSpec": "x", "replicas": 1}));
    assert_eq!(crate::validate::validate(kind, &obj, None), Ok(()));

    obj["spec"]["replicas"] = json!(0);
    obj["metadata"]["name"] = json!("Bad");
    let Err(crate::validate::Error::Invalid(causes)) = crate::validate::validate(kind, &obj, None)
    else {
        panic!("expected invalid");
    };
    let msg = crate::validate::invalid_message(kind, "Bad", &causes);
    assert!(
        msg.starts_with("CronTab.stable.example.com \"Bad\" is invalid: ["),
        "{msg}"
    );
    assert!(msg.contains("spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"), "{msg}");
    assert!(
        msg.contains("metadata.name: Invalid value: \"Bad\""),
        "{msg}"
    );
}

#[test]
fn storage_conversion_rewrites_api_version_and_defaults_on_read() {
    let kinds: Vec<&'static crate::Kind> = CustomKind::from_crd(&crontab_crd())
        .into_iter()
        .map(CustomKind::leak)
        .collect();
    let beta = kinds[1];
    let obj = json!({"apiVersion": "stable.example.com/v1beta1", "kind": "CronTab", "metadata": {"name": "a"}, "spec": {}});
    let stored = crate::convert::to_storage(beta, &obj);
    assert_eq!(stored["apiVersion"], "stable.example.com/v1");
    let v1 = kinds[0];
    let read = crate::convert::from_storage(v1, &stored);
    assert_eq!(
        read["spec"],
        json!({"replicas": 1}),
        "default applied on read"
    );
    let back = crate::convert::from_storage(beta, &stored);
    assert_eq!(back["apiVersion"], "stable.example.com/v1beta1");
}

#[test]
fn tables_print_printer_columns() {
    let kinds: Vec<&'static crate::Kind> = CustomKind::from_crd(&crontab_crd())
        .into_iter()
        .map(CustomKind::leak)
        .collect();
    let now: jiff::Timestamp = "2024-01-01T01:00:00Z".parse().expect("time");
    let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"cronSpec": "*/5 * * * *", "replicas": 2}});
    let t = crate::table::table(kinds[0], std::slice::from_ref(&obj), "None", now);
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["Name", "Spec", "Replicas", "Image"]);
    assert_eq!(t["columnDefinitions"][3]["priority"], 1);
    assert_eq!(
        t["columnDefinitions"][1]["description"],
        "Custom resource definition column (in JSONPath format): .spec.cronSpec"
    );
    assert_eq!(t["rows"][0]["cells"], json!(["a", "*/5 * * * *", 2, null]));
    // a version without columns gets Kubernetes' Age column
    let t = crate::table::table(kinds[1], &[obj], "None", now);
    assert_eq!(t["columnDefinitions"][1]["name"], "Age");
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(t["rows"][0]["cells"], json!(["a", "60m"]));
}

fn crd_causes(crd: &Value) -> Vec<String> {
    validate_crd(crd, None).iter().map(|c| c.full()).collect()
}

#[test]
fn crd_spec_rules() {
    let base = crontab_crd();
    let table: Vec<(&str, Value, &str)> = vec![
        (
            "/spec/group",
            json!("example"),
            "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
        ),
        (
            "/spec/scope",
            json!("Global"),
            "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
        ),
        (
            "/spec/names/kind",
            json!("Cron_Tab"),
            "spec.names.kind: Invalid value: \"Cron_Tab\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        (
            "/spec/names/listKind",
            json!("CronTab"),
            "spec.names.listKind: Invalid value: \"CronTab\": kind and listKind may not be the same",
        ),
        (
            "/spec/versions/1/storage",
            json!(true),
            "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version",
        ),
        (
            "/spec/versions/1/name",
            json!("v1"),
            "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must contain unique version names",
        ),
        (
            "/spec/versions/2/name",
            json!("V0"),
            "spec.versions[2].name: Invalid value: \"V0\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        (
            "/spec/versions/2/schema",
            Value::Null,
            "spec.versions[2].schema.openAPIV3Schema: Required value: schemas are required",
        ),
        (
            "/spec/versions/0/deprecationWarning",
            json!("old"),
            "spec.versions[0].deprecationWarning: Invalid value: \"old\": can only be set for deprecated versions",
        ),
        (
            "/spec/versions/0/subresources/scale/specReplicasPath",
            json!(".status.replicas"),
            "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
        ),
        (
            "/spec/versions/0/additionalPrinterColumns/0/type",
            json!("text"),
            "spec.versions[0].additionalPrinterColumns[0].type: Invalid value: \"text\": must be one of boolean,date,integer,number,string",
        ),
        (
            "/spec/versions/0/additionalPrinterColumns/0/jsonPath",
            json!("spec.cronSpec"),
            "spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: \"spec.cronSpec\": must be a simple json path starting with .",
        ),
        (
            "/spec/conversion",
            json!({"strategy": "Webhook"}),
            "spec.conversion.strategy: Forbidden: conversion webhooks are not supported by this server; use strategy None",
        ),
    ];
    for (ptr, value, want) in table {
        let mut crd = base.clone();
        let (parent, key) = ptr.rsplit_once('/').expect("pointer");
        crd.pointer_mut(parent).expect("parent")[key] = value;
        let got = crd_causes(&crd);
        assert!(got.contains(&want.to_string()), "{ptr}: {got:#?}");
    }
}

fn with_schema(s: Value) -> Value {
    let mut crd = crontab_crd();
    crd["spec"]["versions"] =
        json!([{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": s}}]);
    crd
}

#[test]
fn crd_schemas_must_be_structural() {
    let table: Vec<(Value, &str)> = vec![
        (
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array"}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].items: Required value: must be specified",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"$ref": "#/definitions/x"}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].$ref: Forbidden: $ref is not supported",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        ),
        (
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}]}),
            "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations: Forbidden: CEL validation rules (x-kubernetes-validations) are not supported by this server",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "anyOf": [{"type": "object"}]}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "integer", "default": "x"}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].default: Invalid value: \"string\":  in body must be of type integer: \"string\"",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "default": {"b": 1}, "properties": {"a": {"type": "integer"}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].default: Invalid value: map[string]interface {}{\"b\":1}: must not have unknown fields",
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[metadata].default: Forbidden: must not be set in top-level metadata",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "string", "pattern": "("}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].pattern: Invalid value: \"(\"",
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object"}}, "anyOf": [{"properties": {"spec": {"properties": {"x": {"minLength": 1}}}}}]}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x]: Required value: because it is defined in spec.versions[0].schema.openAPIV3Schema.anyOf[0].properties[spec].properties[x]",
        ),
        (
            json!({"type": "string"}),
            "spec.versions[0].schema.openAPIV3Schema.type: Invalid value: \"string\": must be object at the root",
        ),
    ];
    for (s, want) in table {
        let got = crd_causes(&with_schema(s.clone()));
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "{s}: want {want}\n got {got:#?}"
        );
    }
    let ok = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"x-kubernetes-preserve-unknown-fields": true},
        "keys": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                 "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
        "n": {"type": "integer", "default": 3, "minimum": 1}},
        "oneOf": [{"required": ["port"]}, {"required": ["free"]}]}}});
    assert_eq!(crd_causes(&with_schema(ok)), Vec::<String>::new());
}

#[test]
fn crd_updates_keep_group_plural_and_stored_versions() {
    let old = crontab_crd();
    let mut new = old.clone();
    new["spec"]["group"] = json!("other.example.com");
    new["metadata"]["name"] = json!("crontabs.other.example.com");
    let got: Vec<String> = validate_crd(&new, Some(&old))
        .iter()
        .map(|c| c.full())
        .collect();
    assert!(
        got.contains(
            &"spec.group: Invalid value: \"other.example.com\": field is immutable".to_string()
        ),
        "{got:?}"
    );

    let mut new = old.clone();
    new["status"] = json!({"storedVersions": ["v0", "v1"]});
    new["spec"]["versions"]
        .as_array_mut()
        .expect("versions")
        .remove(2);
    let got: Vec<String> = validate_crd(&new, Some(&old))
        .iter()
        .map(|c| c.full())
        .collect();
    assert_eq!(
        got,
        [
            "status.storedVersions[0]: Invalid value: \"v0\": missing from spec.versions; v0 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v0 and removes v0 from status.storedVersions"
        ]
    );
}

#[test]
fn updates_ratchet_unchanged_invalid_values() {
    let s = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 5},
        "b": {"type": "string", "maxLength": 2},
        "list": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer", "maximum": 1}}}}}}}}),
    );
    let old = json!({"spec": {"a": 1, "b": "ok", "list": [{"name": "x", "v": 9}]}});
    // the stored invalid values stay acceptable while unchanged
    let new = json!({"spec": {"a": 1, "b": "no", "list": [{"name": "y", "v": 0}, {"name": "x", "v": 9}]}});
    assert_eq!(validate_object_update(&s, &new, &old), vec![]);
    // a changed value is checked
    let new = json!({"spec": {"a": 2, "b": "long", "list": [{"name": "x", "v": 8}]}});
    let got: Vec<String> = validate_object_update(&s, &new, &old)
        .iter()
        .map(|c| c.full())
        .collect();
    assert_eq!(
        got,
        [
            "spec.a: Invalid value: 2: spec.a in body should be greater than or equal to 5",
            "spec.b: Too long: must have at most 2 bytes",
            "spec.list[0].v: Invalid value: 8: spec.list[0].v in body should be less than or equal to 1",
        ]
    );
    assert_eq!(
        validate_object(&s, &old).len(),
        2,
        "a create checks everything"
    );
}

#[test]
fn crds_get_kubernetes_defaults() {
    let mut crd = crontab_crd();
    crd["spec"]["names"] = json!({"plural": "crontabs", "kind": "CronTab"});
    let kind = crate::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("the CRD kind");
    crate::defaults::apply(kind, &mut crd);
    assert_eq!(
        crd["spec"]["names"],
        json!({"plural": "crontabs", "kind": "CronTab", "singular": "crontab", "listKind": "CronTabList"})
    );
    assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
    assert_eq!(validate_crd(&crd, None), vec![]);
}

/// A CRD the way kube's `#[derive(CustomResource)]` (with schemars) writes it.
fn derived_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "greetings.samples.skiff.dev"},
        "spec": {
            "group": "samples.skiff.dev",
            "names": {"categories": [], "kind": "Greeting", "plural": "greetings", "shortNames": ["gr"], "singular": "greeting"},
            "scope": "Namespaced",
            "versions": [{
                "additionalPrinterColumns": [{"jsonPath": ".spec.message", "name": "Message", "type": "string"}],
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "description": "Auto-generated derived type for GreetingSpec via `CustomResource`",
                    "properties": {
                        "spec": {"description": "What a Greeting asks for", "properties": {
                            "message": {"type": "string"},
                            "replicas": {"format": "int32", "type": "integer"}},
                            "required": ["message", "replicas"], "type": "object"},
                        "status": {"nullable": true, "properties": {
                            "configMap": {"nullable": true, "type": "string"},
                            "observedGeneration": {"format": "int64", "nullable": true, "type": "integer"}},
                            "type": "object"}},
                    "required": ["spec"], "title": "Greeting", "type": "object"}},
                "subresources": {"status": {}}
            }]
        }
    })
}

#[test]
fn derived_crds_are_accepted_and_enforced() {
    let crd = derived_crd();
    assert_eq!(crd_causes(&crd), Vec::<String>::new());
    let kind = kind_of(&crd);
    let mut obj = json!({"apiVersion": "samples.skiff.dev/v1", "kind": "Greeting",
        "metadata": {"name": "hi", "namespace": "default"},
        "spec": {"message": "hello", "replicas": "3"},
        "status": {"configMap": null, "observedGeneration": 1}});
    crate::defaults::apply(kind, &mut obj);
    assert_eq!(
        obj["status"]["configMap"],
        Value::Null,
        "nullable nulls stay"
    );
    let Err(crate::validate::Error::Invalid(causes)) = crate::validate::validate(kind, &obj, None)
    else {
        panic!("expected invalid");
    };
    assert_eq!(
        crate::validate::invalid_message(kind, "hi", &causes),
        "Greeting.samples.skiff.dev \"hi\" is invalid: spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
    );
}
