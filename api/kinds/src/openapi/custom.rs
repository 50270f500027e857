//! OpenAPI for custom resources: the schema Kubernetes publishes for a served CRD version (its
//! `openAPIV3Schema` with `metadata` referring to ObjectMeta, `apiVersion` and `kind` described and
//! `x-kubernetes-group-version-kind` set), the group-version documents holding them, and the
//! Swagger 2.0 form of such a schema (apiextensions-apiserver's `ToStructuralOpenAPIV2`).

use std::collections::BTreeMap;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{add_paths, finish_schemas, gvk, kubernetes_version, list_schema, reference};
use crate::Kind;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

fn is_true(o: &Map<String, Value>, key: &str) -> bool {
    o.get(key).and_then(Value::as_bool) == Some(true)
}

fn type_meta_property(description: &str) -> Value {
    json!({"description": description, "type": "string"})
}

fn metadata_property() -> Value {
    json!({"allOf": [reference(OBJECT_META)], "description": METADATA_DESCRIPTION})
}

/// Adds `apiVersion`, `kind` and `metadata` to every `x-kubernetes-embedded-resource` below the root.
fn add_embedded(s: &mut Value) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    if is_true(o, "x-kubernetes-embedded-resource") {
        let props = o
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props
                .entry("apiVersion")
                .or_insert_with(|| type_meta_property(API_VERSION_DESCRIPTION));
            props
                .entry("kind")
                .or_insert_with(|| type_meta_property(KIND_DESCRIPTION));
            props.entry("metadata").or_insert_with(metadata_property);
        }
    }
    for_each_child(o, add_embedded);
}

fn for_each_child(o: &mut Map<String, Value>, f: fn(&mut Value)) {
    if let Some(props) = o.get_mut("properties").and_then(Value::as_object_mut) {
        props.values_mut().for_each(f);
    }
    if let Some(items) = o.get_mut("items").filter(|i| i.is_object()) {
        f(items);
    }
    if let Some(additional) = o.get_mut("additionalProperties").filter(|a| a.is_object()) {
        f(additional);
    }
}

/// What Swagger 2.0 (and kubectl's reading of it) cannot take, removed as
/// apiextensions-apiserver does: `allOf`/`oneOf`/`anyOf`/`not`; a nullable value loses its type,
/// items and properties and leaves its parent's `required`; a value preserving unknown fields
/// loses items and properties; an array without items loses its type.
fn to_structural_v2(s: &mut Value) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    for key in ["allOf", "oneOf", "anyOf", "not"] {
        o.remove(key);
    }
    if is_true(o, "nullable") {
        for key in ["type", "nullable", "items", "properties"] {
            o.remove(key);
        }
    }
    o.remove("nullable");
    if is_true(o, "x-kubernetes-preserve-unknown-fields") {
        o.remove("items");
        o.remove("properties");
    }
    if !o.contains_key("items") && o.get("type").and_then(Value::as_str) == Some("array") {
        o.remove("type");
    }
    let nullable: Vec<String> = o
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p.get("nullable").and_then(Value::as_bool) == Some(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    if !nullable.is_empty()
        && let Some(required) = o.get_mut("required").and_then(Value::as_array_mut)
    {
        required.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
    }
    for_each_child(o, to_structural_v2);
}

fn raw_schema(k: &Kind) -> Option<&Value> {
    k.custom.and_then(|c| c.raw_schema.as_ref())
}

fn kube_native(mut schema: Value) -> Value {
    add_embedded(&mut schema);
    if let Some(o) = schema.as_object_mut() {
        o.insert("type".into(), json!("object"));
        let props = o
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props.insert(
                "apiVersion".into(),
                type_meta_property(API_VERSION_DESCRIPTION),
            );
            props.insert("kind".into(), type_meta_property(KIND_DESCRIPTION));
            props.insert("metadata".into(), metadata_property());
        }
    }
    schema
}

/// The OpenAPI v3 component schema of a custom kind version.
pub(crate) fn v3_kind_schema(k: &Kind) -> Value {
    let mut schema = match raw_schema(k) {
        Some(raw) => kube_native(raw.clone()),
        None => json!({"type": "object"}),
    };
    schema["x-kubernetes-group-version-kind"] = json!([gvk(k)]);
    schema
}

/// The Swagger 2.0 definition of a custom kind version (still with v3 references, converted with
/// the rest of the document). A schema preserving unknown fields at its root is published as a
/// bare object, since kubectl would otherwise reject every field it does not list.
pub(crate) fn v2_kind_schema(k: &Kind) -> Value {
    let preserves = raw_schema(k)
        .and_then(Value::as_object)
        .is_some_and(|o| is_true(o, "x-kubernetes-preserve-unknown-fields"));
    let mut schema = match raw_schema(k) {
        Some(raw) if !preserves => {
            let mut raw = raw.clone();
            to_structural_v2(&mut raw);
            kube_native(raw)
        }
        _ => json!({"type": "object"}),
    };
    schema["x-kubernetes-group-version-kind"] = json!([gvk(k)]);
    schema
}

fn custom_list_schema(k: &Kind) -> Value {
    let mut list = list_schema(k);
    if let Some(c) = k.custom {
        list["x-kubernetes-group-version-kind"] =
            json!([{"group": k.group, "kind": c.names.list_kind, "version": k.version}]);
    }
    list
}

/// The schemas a custom kind's paths refer to besides its own: the meta types, and Scale for a
/// kind with a scale subresource.
fn meta_schemas(kinds: &[&'static Kind]) -> Map<String, Value> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    generator.subschema_for::<meta::ObjectMeta>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
    if kinds.iter().any(|k| k.has_scale()) {
        generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    }
    let mut schemas = generator.take_definitions(true);
    finish_schemas(&mut schemas);
    schemas
}

/// The v3 document of one group-version holding custom kinds (`kinds`, all of that
/// group-version); `builtin` is the built-in document of the same path, if there is one, which
/// the custom kinds join.
pub(crate) fn v3_document(kinds: &[&'static Kind], builtin: Option<&Value>) -> Value {
    let mut schemas: BTreeMap<String, Value> = builtin
        .and_then(|d| d.pointer("/components/schemas"))
        .and_then(Value::as_object)
        .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (name, s) in meta_schemas(kinds) {
        schemas.entry(name).or_insert(s);
    }
    let mut paths: BTreeMap<String, Value> = builtin
        .and_then(|d| d.get("paths"))
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for k in kinds {
        schemas.insert(k.openapi_type.to_string(), v3_kind_schema(k));
        schemas.insert(format!("{}List", k.openapi_type), custom_list_schema(k));
        add_paths(&mut paths, k);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": kubernetes_version()},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The v2 definitions and paths (still in v3 form, converted by the caller) of custom kinds.
pub(crate) fn v2_parts(kinds: &[&'static Kind]) -> Value {
    let mut schemas = meta_schemas(kinds);
    let mut paths = BTreeMap::new();
    for k in kinds {
        schemas.insert(k.openapi_type.to_string(), v2_kind_schema(k));
        schemas.insert(format!("{}List", k.openapi_type), custom_list_schema(k));
        add_paths(&mut paths, k);
    }
    json!({"paths": paths, "components": {"schemas": schemas}})
}
