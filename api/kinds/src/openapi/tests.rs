//! Tests for the OpenAPI documents: v3, the Swagger 2.0 conversion, custom kinds and the cache.

use super::*;

#[test]
fn index_lists_every_group_version_with_a_hash() {
    let index = v3_index();
    let paths = index["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), discovery::group_version_paths().len());
    let hash = v3_hash("apis/apps/v1").expect("hash");
    assert_eq!(
        paths["apis/apps/v1"]["serverRelativeURL"],
        format!("/openapi/v3/apis/apps/v1?hash={hash}")
    );
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/autoscaling/v1"));
    assert!(v3_document("apis/nope/v1").is_none());
}

#[test]
fn documents_carry_group_version_kinds_and_patch_operations() {
    let doc = v3_document("apis/apps/v1").expect("apps doc");
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    for ct in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(ct), "{ct}");
    }
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    // Every $ref resolves inside the document.
    let text = serde_json::to_string(&doc).expect("json");
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').expect("end")];
        assert!(schemas.get(name).is_some(), "dangling ref {name}");
    }
}

#[test]
fn schemas_carry_strategic_merge_metadata() {
    let doc = v3_document("api/v1").expect("core doc");
    let schemas = &doc["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    // A described reference is wrapped in allOf, as Kubernetes publishes it.
    let meta = &schemas["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
    assert_eq!(
        meta["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
    assert!(doc["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
}

#[test]
fn documents_are_deterministic() {
    let a = serde_json::to_string(&build_document("apis/batch/v1")).expect("json");
    let b = serde_json::to_string(&build_document("apis/batch/v1")).expect("json");
    assert_eq!(a, b);
}

fn widget_kind(version: &str, schema: Value) -> &'static Kind {
    let crd = json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}, "subresources": {"scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}}],
        },
    });
    let mut kinds = crate::crd::CustomKind::from_crd(&crd);
    kinds.remove(0).leak()
}

#[test]
fn swagger_2_drops_what_it_cannot_say() {
    let v3 = json!({
        "type": "object",
        "nullable": true,
        "oneOf": [{"type": "string"}],
        "properties": {
            "$ref": {"type": "string"},
            "meta": {"allOf": [{"$ref": "#/components/schemas/M"}], "description": "d", "default": {}},
            "list": {"type": "array", "items": {"$ref": "#/components/schemas/I"}},
            "map": {"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}},
        },
        "x-kubernetes-map-type": "atomic",
    });
    assert_eq!(
        v2::schema(&v3),
        json!({
            "type": "object",
            "properties": {
                "$ref": {"type": "string"},
                "meta": {"$ref": "#/definitions/M", "description": "d", "default": {}},
                "list": {"type": "array", "items": {"$ref": "#/definitions/I"}},
                "map": {"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}},
            },
            "x-kubernetes-map-type": "atomic",
        })
    );
}

#[test]
fn custom_kinds_get_documents_and_swagger_2_definitions() {
    let kind = widget_kind(
        "v2",
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["replicas", "note"], "properties": {
                "replicas": {"type": "integer", "default": 1},
                "note": {"type": "string", "nullable": true},
                "tags": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
                "pod": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true},
            }},
        }}),
    );
    let published = published(&[kind]);
    let index = published.v3_index();
    assert!(index["paths"]["apis/example.com/v2"]["serverRelativeURL"].is_string());
    let doc = published
        .v3_document_value("apis/example.com/v2")
        .expect("doc");
    let schema = &doc["components"]["schemas"]["com.example.v2.Widget"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "kind": "Widget", "version": "v2"}])
    );
    let pod = &schema["properties"]["spec"]["properties"]["pod"]["properties"];
    assert_eq!(pod["apiVersion"]["type"], "string");
    assert!(pod["metadata"]["allOf"].is_array());
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    let text = serde_json::to_string(doc).expect("json");
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').expect("end")];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling ref {name}"
        );
    }
    let v2 = published.v2_value();
    let spec = &v2["definitions"]["com.example.v2.Widget"]["properties"]["spec"];
    assert_eq!(spec["required"], json!(["replicas"]));
    assert_eq!(spec["properties"]["note"], json!({}));
    assert_eq!(
        spec["properties"]["tags"],
        json!({"x-kubernetes-preserve-unknown-fields": true})
    );
    assert!(
        v2["paths"]["/apis/example.com/v2/namespaces/{namespace}/widgets/{name}/scale"]["patch"]
            .is_object()
    );
    // The same set of kinds gets the same documents; no custom kinds, the built-in ones.
    assert!(std::sync::Arc::ptr_eq(
        &published,
        &super::published(&[kind])
    ));
    assert!(
        super::published(&[])
            .v3_document("apis/example.com/v2")
            .is_none()
    );
    assert_eq!(
        super::published(&[])
            .v3_document("apis/apps/v1")
            .map(|s| s.etag.clone()),
        v3_hash("apis/apps/v1")
    );
}

#[test]
fn a_root_preserving_unknown_fields_is_a_bare_object_in_swagger_2() {
    let kind = widget_kind(
        "v3",
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    let v2 = Published::build(&[kind]).v2_value();
    assert_eq!(
        v2["definitions"]["com.example.v3.Widget"],
        json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Widget", "version": "v3"}]})
    );
}
