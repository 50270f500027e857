//! Tests of the FieldsV1 encoding and path notation.

use serde_json::json;

use super::*;

#[test]
fn fields_v1_round_trip() {
    let fields = json!({
        "f:metadata": {"f:finalizers": {"v:\"example.com/a\"": {}}, "f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                ".": {},
                "f:image": {},
                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
            }}}},
            "f:args": {"i:0": {}}
        }
    });
    let set = from_fields_v1(&fields).unwrap();
    assert_eq!(set.len(), 9);
    assert_eq!(to_fields_v1(&set), fields);
}

#[test]
fn keys_are_canonical() {
    let a = from_fields_v1(&json!({"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}})).unwrap();
    let b =
        from_fields_v1(&json!({"k:{ \"containerPort\": 80, \"protocol\": \"TCP\" }": {}})).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        to_fields_v1(&a),
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}})
    );
}

#[test]
fn paths_print_like_kubernetes() {
    let path = vec![
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::Key(canonical_json(&json!({"name": "app"}))),
        PathElement::Field("ports".into()),
        PathElement::Key(canonical_json(
            &json!({"protocol": "TCP", "containerPort": 80}),
        )),
        PathElement::Field("name".into()),
    ];
    assert_eq!(
        path_string(&path),
        ".spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"].name"
    );
    let set_item = vec![
        PathElement::Field("metadata".into()),
        PathElement::Field("finalizers".into()),
        PathElement::Value(canonical_json(&json!("example.com/a"))),
    ];
    assert_eq!(
        path_string(&set_item),
        ".metadata.finalizers[=\"example.com/a\"]"
    );
    assert_eq!(
        path_string(&[PathElement::Field("args".into()), PathElement::Index(2)]),
        ".args[2]"
    );
}

#[test]
fn prefix_queries() {
    let set = from_fields_v1(
        &json!({"f:spec": {"f:template": {"f:spec": {"f:replicas": {}}}}, "f:status": {}}),
    )
    .unwrap();
    let spec = vec![PathElement::Field("spec".into())];
    assert!(has_prefix(&set, &spec));
    assert!(has_prefix(&set, &[PathElement::Field("status".into())]));
    assert!(!has_prefix(&set, &[PathElement::Field("metadata".into())]));
    assert!(!has_prefix(
        &set,
        &[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into())
        ]
    ));
}

#[test]
fn malformed_fields_v1_is_rejected() {
    for bad in [
        json!([]),
        json!({"x:foo": {}}),
        json!({"nocolon": {}}),
        json!({"f:spec": "leaf"}),
        json!({"k:[1]": {}}),
        json!({"k:{broken": {}}),
        json!({"i:minus": {}}),
    ] {
        assert!(from_fields_v1(&bad).is_err(), "{bad}");
    }
}
