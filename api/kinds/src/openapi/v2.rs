//! OpenAPI v2 (Swagger 2.0): the single `/openapi/v2` document, converted from the v3 group-version
//! documents so both describe the same kinds — `#/components/schemas/` references become
//! `#/definitions/`, request bodies become `in: body` parameters, response content becomes a
//! response `schema`, and what Swagger 2.0 cannot say (`nullable`, `oneOf`, `anyOf`, `not`) is
//! dropped, as kube-openapi does.

use serde_json::{Map, Value, json};

const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

/// The JSON-Schema keywords Swagger 2.0 keeps, copied as they are.
const KEPT: &[&str] = &[
    "description",
    "format",
    "title",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "discriminator",
    "readOnly",
    "example",
    "externalDocs",
];

fn rewrite_ref(r: &Value) -> Value {
    match r.as_str() {
        Some(s) => match s.strip_prefix(V3_REF) {
            Some(name) => json!(format!("{V2_REF}{name}")),
            None => r.clone(),
        },
        None => r.clone(),
    }
}

/// One schema in Swagger 2.0 form.
pub(crate) fn schema(v: &Value) -> Value {
    let Some(o) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (key, x) in o {
        match key.as_str() {
            "$ref" => {
                out.insert(key.clone(), rewrite_ref(x));
            }
            "allOf" => match x.as_array().map(Vec::as_slice) {
                // A described reference (`allOf: [{$ref}]` beside a description) is a plain
                // `$ref` with siblings in Swagger 2.0, as Kubernetes publishes it.
                Some([only])
                    if only.get("$ref").is_some() && only.as_object().map(Map::len) == Some(1) =>
                {
                    out.insert("$ref".into(), rewrite_ref(&only["$ref"]));
                }
                Some(all) => {
                    out.insert(key.clone(), Value::Array(all.iter().map(schema).collect()));
                }
                None => {}
            },
            "type" if x.is_string() => {
                out.insert(key.clone(), x.clone());
            }
            "properties" => {
                if let Some(props) = x.as_object() {
                    let props: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), schema(s)))
                        .collect();
                    out.insert(key.clone(), Value::Object(props));
                }
            }
            "additionalProperties" => {
                let converted = if x.is_boolean() { x.clone() } else { schema(x) };
                out.insert(key.clone(), converted);
            }
            "items" if x.is_object() => {
                out.insert(key.clone(), schema(x));
            }
            k if k.starts_with("x-") || KEPT.contains(&k) => {
                out.insert(key.clone(), x.clone());
            }
            // nullable, oneOf, anyOf, not, writeOnly, deprecated, ...: not in Swagger 2.0.
            _ => {}
        }
    }
    Value::Object(out)
}

/// The definitions Kubernetes publishes with a fixed Swagger 2.0 form (no `x-kubernetes-int-or-string`
/// in Swagger 2.0).
pub(crate) fn fix_definition(name: &str, def: &mut Value) {
    let Some(o) = def.as_object_mut() else {
        return;
    };
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            o.insert("type".into(), json!("string"));
            o.insert("format".into(), json!("int-or-string"));
            o.remove("x-kubernetes-int-or-string");
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            o.insert("type".into(), json!("string"));
            o.remove("x-kubernetes-int-or-string");
        }
        _ => {}
    }
}

fn parameter(p: &Value) -> Value {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        return json!({"$ref": r.replace("#/components/parameters/", "#/parameters/")});
    }
    let mut out = Map::new();
    for key in ["name", "in", "description", "required"] {
        if let Some(v) = p.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(s) = p.get("schema").and_then(Value::as_object) {
        for (key, v) in s {
            if matches!(
                key.as_str(),
                "type" | "format" | "uniqueItems" | "enum" | "default"
            ) {
                out.insert(key.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn parameters(ps: Option<&Value>) -> Vec<Value> {
    ps.and_then(Value::as_array)
        .map(|a| a.iter().map(parameter).collect())
        .unwrap_or_default()
}

const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fn operation(op: &Value) -> Value {
    let Some(o) = op.as_object() else {
        return op.clone();
    };
    let mut out = Map::new();
    for (key, v) in o {
        if matches!(
            key.as_str(),
            "tags" | "summary" | "description" | "operationId"
        ) || key.starts_with("x-")
        {
            out.insert(key.clone(), v.clone());
        }
    }
    let mut params = parameters(o.get("parameters"));
    if let Some(body) = o.get("requestBody") {
        let content = body.get("content").and_then(Value::as_object);
        let consumes: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
        let body_schema = content
            .and_then(|c| c.values().next())
            .and_then(|m| m.get("schema"))
            .map(schema)
            .unwrap_or_else(|| json!({"type": "object"}));
        let mut param = json!({"name": "body", "in": "body", "schema": body_schema});
        if body.get("required").and_then(Value::as_bool) == Some(true) {
            param["required"] = json!(true);
        }
        params.insert(0, param);
        out.insert("consumes".into(), json!(consumes));
    } else {
        out.insert("consumes".into(), json!(["*/*"]));
    }
    out.insert("produces".into(), json!(PRODUCES));
    out.insert("schemes".into(), json!(["https"]));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let mut responses = Map::new();
    if let Some(rs) = o.get("responses").and_then(Value::as_object) {
        for (code, r) in rs {
            let mut resp = Map::new();
            resp.insert(
                "description".into(),
                r.get("description").cloned().unwrap_or_else(|| json!("")),
            );
            if let Some(s) = r
                .get("content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|m| m.get("schema"))
            {
                resp.insert("schema".into(), schema(s));
            }
            responses.insert(code.clone(), Value::Object(resp));
        }
    }
    out.insert("responses".into(), Value::Object(responses));
    Value::Object(out)
}

/// One path item in Swagger 2.0 form.
pub(crate) fn path_item(item: &Value) -> Value {
    let Some(o) = item.as_object() else {
        return item.clone();
    };
    let mut out = Map::new();
    for (key, v) in o {
        match key.as_str() {
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch" => {
                out.insert(key.clone(), operation(v));
            }
            "parameters" => {
                out.insert(key.clone(), Value::Array(parameters(Some(v))));
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// Adds a v3 group-version document's schemas and paths to a Swagger 2.0 document's
/// `definitions` and `paths`.
pub(crate) fn add_document(
    definitions: &mut Map<String, Value>,
    paths: &mut Map<String, Value>,
    v3: &Value,
) {
    if let Some(schemas) = v3.pointer("/components/schemas").and_then(Value::as_object) {
        for (name, s) in schemas {
            let mut def = schema(s);
            fix_definition(name, &mut def);
            match definitions.get_mut(name) {
                Some(existing) => merge_group_version_kinds(existing, &def),
                None => {
                    definitions.insert(name.clone(), def);
                }
            }
        }
    }
    if let Some(ps) = v3.get("paths").and_then(Value::as_object) {
        for (path, item) in ps {
            paths.insert(path.clone(), path_item(item));
        }
    }
}

/// A definition published by several group-versions (the one holding the kind, and those only
/// referring to it) keeps every `x-kubernetes-group-version-kind` any of them gives it.
fn merge_group_version_kinds(existing: &mut Value, other: &Value) {
    const GVK: &str = "x-kubernetes-group-version-kind";
    let Some(more) = other.get(GVK).and_then(Value::as_array) else {
        return;
    };
    let Some(o) = existing.as_object_mut() else {
        return;
    };
    let list = o.entry(GVK).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        for gvk in more {
            if !list.contains(gvk) {
                list.push(gvk.clone());
            }
        }
    }
}

/// A whole Swagger 2.0 document from its definitions and paths, both sorted by name.
pub(crate) fn document(definitions: Map<String, Value>, paths: Map<String, Value>) -> Value {
    let mut definitions: Vec<(String, Value)> = definitions.into_iter().collect();
    definitions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut paths: Vec<(String, Value)> = paths.into_iter().collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::kubernetes_version()},
        "paths": Map::from_iter(paths),
        "definitions": Map::from_iter(definitions),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [{"BearerToken": []}],
    })
}
