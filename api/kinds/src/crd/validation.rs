//! Validation of CustomResourceDefinitions, after Kubernetes' `ValidateCustomResourceDefinition`
//! and `ValidateCustomResourceDefinitionUpdate` (apiextensions-apiserver) and its structural
//! schema rules, with their field paths and messages.

use serde_json::{Map, Value, json};

use super::object::{self, Found, go_value};
use super::prune::{apply_defaults, prune_object};
use super::schema::Schema;
use super::{columns, str_at};
use crate::validate::{Cause, Errs, go_str, names};

const PRINTER_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const PRINTER_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "name",
    "password",
];
const OPENAPI_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Keys of a JSON-Schema node that Kubernetes' CRD schema type knows; others are rejected the
/// way its strict decoding rejects them.
const SCHEMA_KEYS: &[&str] = &[
    "id",
    "$schema",
    "$ref",
    "description",
    "type",
    "format",
    "title",
    "default",
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
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "additionalProperties",
    "patternProperties",
    "dependencies",
    "additionalItems",
    "definitions",
    "externalDocs",
    "example",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Keys allowed at the root of a schema when the status subresource is enabled.
const ROOT_KEYS_WITH_STATUS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
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
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

fn dns1035(errs: &mut Errs, field: &str, value: &str) {
    let msgs = names::dns1035_label(value);
    if !msgs.is_empty() {
        errs.invalid(field, &go_str(value), &msgs.join(","));
    }
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The causes for which `crd` (and, on update, the change from `old`) is invalid; empty when
/// valid. Expects `spec.names.singular` and `listKind` defaulted (missing ones are not reported).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Errs::default();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let name = str_at(crd, "/metadata/name");
    if name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    } else {
        let mut msgs = names::dns1123_subdomain(name);
        if name != format!("{plural}.{group}") {
            msgs.push("must be spec.names.plural+\".\"+spec.group".to_string());
        }
        errs.each("metadata.name", name, msgs);
    }
    spec(crd, &mut errs);
    stored_versions(crd, &mut errs);
    if let Some(old) = old {
        immutable(crd, old, "/spec/group", "spec.group", &mut errs);
        immutable(
            crd,
            old,
            "/spec/names/plural",
            "spec.names.plural",
            &mut errs,
        );
        let established = old
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Established")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            });
        if established {
            immutable(crd, old, "/spec/scope", "spec.scope", &mut errs);
            immutable(crd, old, "/spec/names/kind", "spec.names.kind", &mut errs);
        }
    }
    errs.0
}

fn immutable(crd: &Value, old: &Value, ptr: &str, field: &str, errs: &mut Errs) {
    let new = str_at(crd, ptr);
    if new != str_at(old, ptr) {
        errs.invalid(field, &go_str(new), "field is immutable");
    }
}

fn spec(crd: &Value, errs: &mut Errs) {
    let group = str_at(crd, "/spec/group");
    if group.is_empty() {
        errs.required("spec.group", "");
    } else {
        let msgs = names::dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.invalid("spec.group", &go_str(group), &msgs.join(","));
        } else if !group.contains('.') {
            errs.invalid(
                "spec.group",
                &go_str(group),
                "should be a domain with at least one dot",
            );
        }
    }
    match str_at(crd, "/spec/scope") {
        "" => errs.required("spec.scope", ""),
        "Cluster" | "Namespaced" => {}
        other => errs.not_supported("spec.scope", other, &["Cluster", "Namespaced"]),
    }
    if crd
        .pointer("/spec/preserveUnknownFields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        errs.invalid(
            "spec.preserveUnknownFields",
            "true",
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        );
    }
    let vs = versions(crd);
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in vs.iter().enumerate() {
        let vname = str_at(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        if seen.contains(&vname) {
            unique = false;
        }
        seen.push(vname);
        dns1035(errs, &format!("spec.versions[{i}].name"), vname);
        version(v, &format!("spec.versions[{i}]"), errs);
    }
    let shown = format!(
        "[]apiextensions.CustomResourceDefinitionVersion{}",
        if vs.is_empty() { "(nil)" } else { "{...}" }
    );
    if !unique {
        errs.invalid("spec.versions", &shown, "must contain unique version names");
    }
    if storage != 1 {
        errs.invalid(
            "spec.versions",
            &shown,
            "must have exactly one version marked as storage version",
        );
    }
    if str_at(crd, "/spec/names/plural").is_empty() {
        errs.required("spec.names.plural", "");
    }
    if str_at(crd, "/spec/names/kind").is_empty() {
        errs.required("spec.names.kind", "");
    }
    names_rules(crd, errs);
    conversion(crd, errs);
}

fn names_rules(crd: &Value, errs: &mut Errs) {
    let n = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let plural = str_at(&n, "/plural");
    let singular = str_at(&n, "/singular");
    let kind = str_at(&n, "/kind");
    let list_kind = str_at(&n, "/listKind");
    for (field, value) in [("plural", plural), ("singular", singular)] {
        if !value.is_empty() {
            dns1035(errs, &format!("spec.names.{field}"), value);
        }
    }
    for (field, value) in [("kind", kind), ("listKind", list_kind)] {
        let msgs = names::dns1035_label(&value.to_ascii_lowercase());
        if !value.is_empty() && !msgs.is_empty() {
            errs.invalid(
                &format!("spec.names.{field}"),
                &go_str(value),
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    msgs.join(",")
                ),
            );
        }
    }
    for (field, key) in [("shortNames", "/shortNames"), ("categories", "/categories")] {
        let list = n.pointer(key).and_then(Value::as_array).cloned();
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            dns1035(
                errs,
                &format!("spec.names.{field}[{i}]"),
                s.as_str().unwrap_or_default(),
            );
        }
    }
    if !kind.is_empty() && kind == list_kind {
        errs.invalid(
            "spec.names.listKind",
            &go_str(list_kind),
            "kind and listKind may not be the same",
        );
    }
}

fn conversion(crd: &Value, errs: &mut Errs) {
    let Some(c) = crd.pointer("/spec/conversion") else {
        return;
    };
    match str_at(c, "/strategy") {
        "" => errs.required("spec.conversion.strategy", ""),
        "None" => {
            if c.get("webhook").is_some_and(|w| !w.is_null()) {
                errs.forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                );
            }
        }
        "Webhook" => errs.forbidden(
            "spec.conversion.strategy",
            "conversion webhooks are not supported by this server; use strategy None",
        ),
        other => errs.not_supported("spec.conversion.strategy", other, &["None", "Webhook"]),
    }
}

fn version(v: &Value, path: &str, errs: &mut Errs) {
    let deprecated = v.get("deprecated").and_then(Value::as_bool) == Some(true);
    if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
        let field = format!("{path}.deprecationWarning");
        if !deprecated {
            errs.invalid(
                &field,
                &go_str(w),
                "can only be set for deprecated versions",
            );
        } else if w.is_empty() {
            errs.invalid(&field, &go_str(w), "must not be an empty string");
        } else if w.len() > 256 {
            errs.invalid(&field, &go_str(w), "must be <= 256 characters long");
        } else if let Some((i, _)) = w.char_indices().find(|(_, c)| c.is_control()) {
            errs.invalid(
                &field,
                &go_str(w),
                &format!(
                    "must only contain printable UTF-8 characters; control character found at index {i}"
                ),
            );
        }
    }
    let status = v.pointer("/subresources/status").is_some();
    match v.pointer("/schema/openAPIV3Schema") {
        None | Some(Value::Null) => errs.required(
            &format!("{path}.schema.openAPIV3Schema"),
            "schemas are required",
        ),
        Some(s) => schema_root(s, status, &format!("{path}.schema.openAPIV3Schema"), errs),
    }
    if let Some(scale) = v.pointer("/subresources/scale") {
        let sub = format!("{path}.subresources");
        scale_paths(scale, &sub, errs);
    }
    if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
        for (i, c) in cols.iter().enumerate() {
            printer_column(c, &format!("{path}.additionalPrinterColumns[{i}]"), errs);
        }
    }
    if v.get("selectableFields")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        errs.forbidden(
            &format!("{path}.selectableFields"),
            "selectable fields of custom resources are not supported by this server",
        );
    }
}

fn simple_json_path(p: &str, field: &str, errs: &mut Errs) -> bool {
    if p.is_empty() {
        errs.invalid(field, &go_str(p), "must not be empty");
        false
    } else if !p.starts_with('.') {
        errs.invalid(
            field,
            &go_str(p),
            "must be a simple json path starting with .",
        );
        false
    } else {
        true
    }
}

fn scale_paths(scale: &Value, sub: &str, errs: &mut Errs) {
    for (key, prefix, what) in [
        (
            "specReplicasPath",
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            ".status.",
            "should be a json path under .status",
        ),
    ] {
        let field = format!("{sub}.scale.{key}");
        let p = str_at(scale, &format!("/{key}"));
        if p.is_empty() {
            errs.required(&field, "");
        } else if simple_json_path(p, &field, errs) && !p.starts_with(prefix) {
            errs.invalid(&field, &go_str(p), what);
        }
    }
    let p = str_at(scale, "/labelSelectorPath");
    let field = format!("{sub}.scale.labelSelectorPath");
    if !p.is_empty()
        && simple_json_path(p, &field, errs)
        && !p.starts_with(".spec.")
        && !p.starts_with(".status.")
    {
        errs.invalid(
            &field,
            &go_str(p),
            "should be a json path under either .spec or .status",
        );
    }
}

fn printer_column(c: &Value, path: &str, errs: &mut Errs) {
    if str_at(c, "/name").is_empty() {
        errs.required(&format!("{path}.name"), "");
    }
    let t = str_at(c, "/type");
    let types = format!("must be one of {}", PRINTER_TYPES.join(","));
    if t.is_empty() {
        errs.required(&format!("{path}.type"), &types);
    } else if !PRINTER_TYPES.contains(&t) {
        errs.invalid(&format!("{path}.type"), &go_str(t), &types);
    }
    let f = str_at(c, "/format");
    if !f.is_empty() && !PRINTER_FORMATS.contains(&f) {
        errs.invalid(
            &format!("{path}.format"),
            &go_str(f),
            &format!("must be one of {}", PRINTER_FORMATS.join(",")),
        );
    }
    let jp = str_at(c, "/jsonPath");
    let field = format!("{path}.JSONPath");
    if jp.is_empty() {
        errs.required(&field, "");
    } else if simple_json_path(jp, &field, errs) && !columns::valid_json_path(jp) {
        errs.invalid(
            &field,
            &go_str(jp),
            "must be a JSONPath this server can evaluate (fields, [n], [*], [?(@.x==\"y\")])",
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Per-node context of the schema walk.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    level: Level,
    /// Why defaults are forbidden here, if they are.
    no_defaults: Option<&'a str>,
    inside_meta: bool,
}

fn schema_root(raw: &Value, status: bool, path: &str, errs: &mut Errs) {
    let Some(map) = raw.as_object() else {
        errs.invalid(path, &go_value(raw), "must be an object");
        return;
    };
    if status {
        if let Some(t) = map.get("type").and_then(Value::as_str)
            && t != "object"
        {
            errs.invalid(
                &format!("{path}.type"),
                &go_str(t),
                "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
            );
        }
        if map
            .keys()
            .any(|k| !ROOT_KEYS_WITH_STATUS.contains(&k.as_str()))
        {
            errs.invalid(
                path,
                "apiextensions.JSONSchemaProps{...}",
                "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled",
            );
        }
    }
    if map.get("nullable").and_then(Value::as_bool) == Some(true) {
        errs.forbidden(
            &format!("{path}.nullable"),
            "nullable cannot be true at the root",
        );
    }
    let before = errs.0.len();
    node(
        raw,
        path,
        Ctx {
            level: Level::Root,
            no_defaults: None,
            inside_meta: false,
        },
        errs,
    );
    completeness_value(map, map, path, path, errs);
    if errs.0.len() == before {
        defaults(&Schema::parse(raw), path, errs);
    }
}

/// Every field or array a value validation (`allOf`, `anyOf`, `oneOf`, `not`) at the root
/// mentions must be specified outside of it too (Kubernetes' structural completeness).
fn completeness_value(
    v: &Map<String, Value>,
    s: &Map<String, Value>,
    spath: &str,
    vpath: &str,
    errs: &mut Errs,
) {
    if let Some(not) = v.get("not") {
        completeness_nested(not, Some(s), spath, &format!("{vpath}.not"), errs);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let list = v.get(key).and_then(Value::as_array);
        for (i, sub) in list
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            completeness_nested(sub, Some(s), spath, &format!("{vpath}.{key}[{i}]"), errs);
        }
    }
}

fn completeness_nested(
    v: &Value,
    s: Option<&Map<String, Value>>,
    spath: &str,
    vpath: &str,
    errs: &mut Errs,
) {
    let Some(vm) = v.as_object() else {
        return;
    };
    let Some(s) = s else {
        errs.required(spath, &format!("because it is defined in {vpath}"));
        return;
    };
    completeness_value(vm, s, spath, vpath, errs);
    if let Some(items) = vm.get("items") {
        completeness_nested(
            items,
            s.get("items").and_then(Value::as_object),
            &format!("{spath}.items"),
            &format!("{vpath}.items"),
            errs,
        );
    }
    if let Some(props) = vm.get("properties").and_then(Value::as_object) {
        let sprops = s.get("properties").and_then(Value::as_object);
        for (k, vf) in props {
            let sp = format!("{spath}.properties[{k}]");
            let vp = format!("{vpath}.properties[{k}]");
            match sprops.and_then(|p| p.get(k)).and_then(Value::as_object) {
                None => errs.required(&sp, &format!("because it is defined in {vp}")),
                Some(sf) => completeness_nested(vf, Some(sf), &sp, &vp, errs),
            }
        }
    }
}

fn is_true(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool) == Some(true)
}

fn type_of(m: &Map<String, Value>) -> &str {
    m.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// Checks one schema node (and its children): the keys Kubernetes accepts, the structural rules
/// and the `x-kubernetes-*` extensions.
fn node(raw: &Value, path: &str, ctx: Ctx, errs: &mut Errs) {
    let Some(m) = raw.as_object() else {
        errs.invalid(path, &go_value(raw), "must be a JSON object");
        return;
    };
    for k in m.keys() {
        if !SCHEMA_KEYS.contains(&k.as_str()) {
            errs.forbidden(
                &format!("{path}.{k}"),
                &format!("unknown field {}", go_str(k)),
            );
        }
    }
    let t = type_of(m);
    if !t.is_empty() && t != "null" && !OPENAPI_TYPES.contains(&t) {
        errs.not_supported(&format!("{path}.type"), t, OPENAPI_TYPES);
    }
    if t == "null" {
        errs.forbidden(
            &format!("{path}.type"),
            "type cannot be set to null, use nullable as an alternative",
        );
    }
    if m.contains_key("default")
        && let Some(reason) = ctx.no_defaults
    {
        errs.forbidden(
            &format!("{path}.default"),
            &format!("must not be set {reason}"),
        );
    }
    for (key, what) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if m.get(key).is_some_and(|v| !v.is_null()) {
            errs.forbidden(&format!("{path}.{key}"), what);
        }
    }
    if matches!(m.get("items"), Some(Value::Array(_))) {
        errs.forbidden(
            &format!("{path}.items"),
            "items must be a schema object and not an array",
        );
    }
    if ctx.inside_meta && is_true(m, "x-kubernetes-embedded-resource") {
        errs.forbidden(
            &format!("{path}.x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        );
    }
    if is_true(m, "uniqueItems") {
        errs.forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    if m.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        errs.forbidden(
            &format!("{path}.x-kubernetes-validations"),
            "CEL validation rules (x-kubernetes-validations) are not supported by this server",
        );
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        );
    }
    let props = m.get("properties").and_then(Value::as_object);
    let embedded = is_true(m, "x-kubernetes-embedded-resource");
    let preserve = is_true(m, "x-kubernetes-preserve-unknown-fields");
    let int_or_string = is_true(m, "x-kubernetes-int-or-string");
    match m.get("additionalProperties") {
        None | Some(Value::Null) => {}
        Some(ap) => {
            if props.is_some_and(|p| !p.is_empty()) && ap != &Value::Bool(true) {
                errs.forbidden(
                    &format!("{path}.additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                );
            }
            if ctx.level == Level::Root {
                errs.forbidden(
                    &format!("{path}.additionalProperties"),
                    "must not be used at the root",
                );
            }
            if embedded {
                errs.forbidden(
                    &format!("{path}.additionalProperties"),
                    "must not be used if x-kubernetes-embedded-resource is set",
                );
            }
            if ap == &Value::Bool(false) {
                errs.forbidden(
                    &format!("{path}.additionalProperties"),
                    "must not be false: unknown fields are pruned instead",
                );
            }
            if ap.is_object() {
                let no_defaults = if ctx.inside_meta {
                    Some("inside additionalProperties applying to object metadata")
                } else {
                    ctx.no_defaults
                };
                node(
                    ap,
                    &format!("{path}.additionalProperties"),
                    Ctx {
                        level: Level::Field,
                        no_defaults,
                        ..ctx
                    },
                    errs,
                );
            }
        }
    }
    if let Some(props) = props {
        for (k, sub) in props {
            let mut c = Ctx {
                level: Level::Field,
                ..ctx
            };
            if (ctx.level == Level::Root || embedded)
                && matches!(k.as_str(), "metadata" | "kind" | "apiVersion")
            {
                c.inside_meta = true;
                if ctx.level == Level::Root {
                    c.no_defaults = Some(match k.as_str() {
                        "metadata" => "in top-level metadata",
                        "kind" => "in top-level kind",
                        _ => "in top-level apiVersion",
                    });
                }
            }
            node(sub, &format!("{path}.properties[{k}]"), c, errs);
        }
    }
    match m.get("items") {
        Some(items @ Value::Object(_)) => node(
            items,
            &format!("{path}.items"),
            Ctx {
                level: Level::Item,
                ..ctx
            },
            errs,
        ),
        _ if t == "array" => errs.required(&format!("{path}.items"), "must be specified"),
        _ => {}
    }
    // structural: a type everywhere outside int-or-string and preserve-unknown-fields
    if embedded && t != "object" {
        if t.is_empty() {
            errs.required(
                &format!("{path}.type"),
                "must be object if x-kubernetes-embedded-resource is true",
            );
        } else {
            errs.invalid(
                &format!("{path}.type"),
                &go_str(t),
                "must be object if x-kubernetes-embedded-resource is true",
            );
        }
    } else if t.is_empty() && !int_or_string && !preserve {
        let detail = match ctx.level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.required(&format!("{path}.type"), detail);
    }
    if ctx.level == Level::Root && !t.is_empty() && t != "object" {
        errs.invalid(
            &format!("{path}.type"),
            &go_str(t),
            "must be object at the root",
        );
    }
    if int_or_string && preserve {
        errs.invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    if int_or_string && embedded {
        errs.invalid(
            &format!("{path}.x-kubernetes-embedded-resource"),
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    if embedded && !preserve && props.is_none_or(|p| p.is_empty()) {
        errs.required(
            &format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        );
    }
    if ctx.level == Level::Root || embedded {
        for (k, want) in [
            ("kind", "string"),
            ("apiVersion", "string"),
            ("metadata", "object"),
        ] {
            if let Some(sub) = props.and_then(|p| p.get(k)).and_then(Value::as_object) {
                let st = type_of(sub);
                if st != want {
                    errs.invalid(
                        &format!("{path}.properties[{k}].type"),
                        &go_str(st),
                        &format!("must be {want}"),
                    );
                }
            }
        }
    }
    if ctx.level == Level::Root
        && let Some(meta) = props
            .and_then(|p| p.get("metadata"))
            .and_then(Value::as_object)
        && !metadata_only_names(meta)
    {
        errs.forbidden(
            &format!("{path}.properties[metadata]"),
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        );
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        errs.invalid(
            &format!("{path}.pattern"),
            &go_str(p),
            &format!("must be a valid regular expression, but isn't: {e}"),
        );
    }
    junctor_nodes(m, path, ctx, errs);
    extensions(m, path, errs);
}

/// Whether a root `metadata` schema restricts nothing but `name` and `generateName`.
fn metadata_only_names(meta: &Map<String, Value>) -> bool {
    meta.iter().all(|(k, v)| match k.as_str() {
        "type" | "description" => true,
        "properties" => v.as_object().is_some_and(|p| {
            p.keys()
                .all(|name| name == "name" || name == "generateName")
        }),
        _ => false,
    })
}

/// The value validations under `allOf`/`anyOf`/`oneOf`/`not` may not carry structure.
fn junctor_nodes(m: &Map<String, Value>, path: &str, ctx: Ctx, errs: &mut Errs) {
    let int_or_string_any_of = |v: &Value| {
        v.as_array().is_some_and(|a| {
            a.len() == 2 && a[0] == json!({"type": "integer"}) && a[1] == json!({"type": "string"})
        })
    };
    let skip_any_of = m.get("anyOf").is_some_and(int_or_string_any_of);
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(list) = m.get(key).and_then(Value::as_array) else {
            continue;
        };
        if key == "anyOf" && skip_any_of {
            continue;
        }
        for (i, sub) in list.iter().enumerate() {
            if key == "allOf" && i == 0 && sub.get("anyOf").is_some_and(int_or_string_any_of) {
                continue;
            }
            nested(sub, &format!("{path}.{key}[{i}]"), ctx.level, errs);
        }
    }
    if let Some(not) = m.get("not") {
        nested(not, &format!("{path}.not"), ctx.level, errs);
    }
}

fn nested(raw: &Value, path: &str, level: Level, errs: &mut Errs) {
    let Some(m) = raw.as_object() else {
        return;
    };
    for (key, what) in [
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        (
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
    ] {
        if m.contains_key(key) {
            errs.forbidden(&format!("{path}.{key}"), what);
        }
    }
    for key in [
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if is_true(m, key) {
            errs.forbidden(&format!("{path}.{key}"), "must be false to be structural");
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        if props.contains_key("metadata") && level == Level::Root {
            errs.forbidden(
                &format!("{path}.properties[metadata]"),
                "must not be specified in a nested context",
            );
        }
        for (k, sub) in props {
            nested(sub, &format!("{path}.properties[{k}]"), Level::Field, errs);
        }
    }
    if let Some(items) = m.get("items") {
        nested(items, &format!("{path}.items"), level, errs);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in m
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            nested(sub, &format!("{path}.{key}[{i}]"), level, errs);
        }
    }
    if let Some(not) = m.get("not") {
        nested(not, &format!("{path}.not"), level, errs);
    }
}

fn extensions(m: &Map<String, Value>, path: &str, errs: &mut Errs) {
    let t = type_of(m);
    if let Some(mt) = m.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if t != "object" {
            let detail = "must be object if x-kubernetes-map-type is specified";
            if t.is_empty() {
                errs.required(&format!("{path}.type"), detail);
            } else {
                errs.invalid(&format!("{path}.type"), &go_str(t), detail);
            }
        }
        if mt != "atomic" && mt != "granular" {
            errs.not_supported(
                &format!("{path}.x-kubernetes-map-type"),
                mt,
                &["atomic", "granular"],
            );
        }
    }
    let list_type = m.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let items = m.get("items").and_then(Value::as_object);
    if let Some(lt) = list_type {
        if t != "array" {
            let detail = "must be array if x-kubernetes-list-type is specified";
            if t.is_empty() {
                errs.required(&format!("{path}.type"), detail);
            } else {
                errs.invalid(&format!("{path}.type"), &go_str(t), detail);
            }
        } else if lt == "set"
            && let Some(is) = items
        {
            let set_item_error = |errs: &mut Errs, key: &str| {
                errs.invalid(
                    &format!("{path}.items.{key}"),
                    &go_str(lt),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                );
            };
            match type_of(is) {
                "array"
                    if is
                        .get("x-kubernetes-list-type")
                        .and_then(Value::as_str)
                        .is_some_and(|x| x != "atomic") =>
                {
                    set_item_error(errs, "x-kubernetes-list-type")
                }
                "object"
                    if is.get("x-kubernetes-map-type").and_then(Value::as_str)
                        != Some("atomic") =>
                {
                    set_item_error(errs, "x-kubernetes-map-type")
                }
                _ => {}
            }
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            errs.not_supported(
                &format!("{path}.x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            );
        }
    }
    if !keys.is_empty() {
        let detail = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => errs.required(&format!("{path}.x-kubernetes-list-type"), detail),
            Some("map") => {}
            Some(lt) => errs.invalid(
                &format!("{path}.x-kubernetes-list-type"),
                &go_str(lt),
                detail,
            ),
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.required(
                &format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            );
        }
        match items {
            None => errs.required(
                &format!("{path}.items"),
                "must have a schema if x-kubernetes-list-type is map",
            ),
            Some(is) if type_of(is) != "object" => errs.invalid(
                &format!("{path}.items.type"),
                &go_str(type_of(is)),
                "must be object if parent array's x-kubernetes-list-type is map",
            ),
            Some(is) => {
                let props = is.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = is
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let shown = format!(
                    "[]string{{{}}}",
                    keys.iter()
                        .map(|k| go_str(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut seen = Vec::new();
                for k in &keys {
                    match props.and_then(|p| p.get(*k)).and_then(Value::as_object) {
                        Some(ks) => {
                            if matches!(type_of(ks), "array" | "object") {
                                errs.invalid(
                                    &format!("{path}.items.properties[{k}].type"),
                                    &go_str("object"),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                );
                            }
                            if !required.contains(k) && !ks.contains_key("default") {
                                errs.required(
                                    &format!("{path}.items.properties[{k}].default"),
                                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                                );
                            }
                            if is_true(ks, "nullable") {
                                errs.forbidden(
                                    &format!("{path}.items.properties[{k}].nullable"),
                                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                                );
                            }
                        }
                        None => errs.invalid(
                            &format!("{path}.x-kubernetes-list-map-keys"),
                            &shown,
                            "entries must all be names of item properties",
                        ),
                    }
                    if seen.contains(k) {
                        errs.invalid(
                            &format!("{path}.x-kubernetes-list-map-keys"),
                            &shown,
                            "must not contain duplicate entries",
                        );
                    }
                    seen.push(*k);
                }
            }
        }
    }
    if matches!(list_type, Some("set" | "map"))
        && let Some(is) = items
        && is_true(is, "nullable")
    {
        errs.forbidden(
            &format!("{path}.items.nullable"),
            &format!(
                "cannot be nullable when x-kubernetes-list-type is {}",
                list_type.unwrap_or_default()
            ),
        );
    }
}

/// Every `default` must validate against its own schema and survive pruning unchanged
/// (Kubernetes' `ValidateDefaults` with pruned defaults required).
fn defaults(s: &Schema, path: &str, errs: &mut Errs) {
    if let Some(d) = &s.default {
        let field = format!("{path}.default");
        let mut pruned = d.clone();
        // a default is pruned as the value it stands for, not as a resource root
        let removed = prune_value(s, &mut pruned);
        if !removed.is_empty() {
            errs.invalid(&field, &go_value(d), "must not have unknown fields");
        } else {
            let mut defaulted = d.clone();
            apply_defaults(s, &mut defaulted);
            let mut found = Found::default();
            object::value(s, &defaulted, "", &mut found);
            for c in found.0 {
                let f = if c.field.is_empty() {
                    field.clone()
                } else {
                    format!("{field}.{}", c.field)
                };
                errs.0.push(Cause { field: f, ..c });
            }
        }
    }
    for (k, sub) in &s.properties {
        defaults(sub, &format!("{path}.properties[{k}]"), errs);
    }
    if let Some(ap) = &s.additional_properties {
        defaults(ap, &format!("{path}.additionalProperties"), errs);
    }
    if let Some(items) = &s.items {
        defaults(items, &format!("{path}.items"), errs);
    }
}

/// Prunes a value that is not a resource root (a default); returns what was removed.
fn prune_value(s: &Schema, v: &mut Value) -> Vec<String> {
    if s.embedded_resource {
        return prune_object(s, v);
    }
    let wrapper = Schema {
        properties: [("x".to_string(), s.clone())].into_iter().collect(),
        ..Schema::default()
    };
    let mut holder = json!({ "x": v.clone() });
    let removed = prune_object(&wrapper, &mut holder);
    if let Some(x) = holder.get("x") {
        *v = x.clone();
    }
    removed
}

/// `status.storedVersions`, when present, must keep every listed version in `spec.versions` and
/// include the storage version.
fn stored_versions(crd: &Value, errs: &mut Errs) {
    let Some(stored) = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
    else {
        return;
    };
    if stored.is_empty() {
        return;
    }
    let stored: Vec<&str> = stored.iter().filter_map(Value::as_str).collect();
    let shown = format!(
        "[]string{{{}}}",
        stored
            .iter()
            .map(|s| go_str(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let vs = versions(crd);
    for v in vs {
        let name = str_at(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true) && !stored.contains(&name) {
            errs.invalid(
                "status.storedVersions",
                &shown,
                &format!("must have the storage version {name}"),
            );
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !vs.iter().any(|v| str_at(v, "/name") == *s) {
            errs.invalid(
                &format!("status.storedVersions[{i}]"),
                &go_str(s),
                &format!(
                    "missing from spec.versions; {s} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {s} and removes {s} from status.storedVersions"
                ),
            );
        }
    }
}
