//! The structural schema of a custom resource version, parsed from `openAPIV3Schema`.

use std::collections::BTreeMap;

use serde_json::{Number, Value};

/// One node of a structural schema (the subset of JSON-Schema Kubernetes keeps for custom
/// resources, with its `x-kubernetes-*` extensions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// `type`: `object`, `array`, `string`, `integer`, `number`, `boolean`, or empty.
    pub type_: String,
    /// `format`.
    pub format: String,
    /// `nullable`.
    pub nullable: bool,
    /// `default`.
    pub default: Option<Value>,
    /// `enum`.
    pub enum_: Vec<Value>,
    /// `maximum`.
    pub maximum: Option<Number>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `minimum`.
    pub minimum: Option<Number>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `multipleOf`.
    pub multiple_of: Option<Number>,
    /// `maxLength`.
    pub max_length: Option<u64>,
    /// `minLength`.
    pub min_length: Option<u64>,
    /// `pattern` (ECMA/RE2 syntax).
    pub pattern: Option<String>,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `maxProperties`.
    pub max_properties: Option<u64>,
    /// `minProperties`.
    pub min_properties: Option<u64>,
    /// `required`.
    pub required: Vec<String>,
    /// `properties`.
    pub properties: BTreeMap<String, Schema>,
    /// `additionalProperties` given as a schema (`true` parses as a schema preserving anything).
    pub additional_properties: Option<Box<Schema>>,
    /// `items`.
    pub items: Option<Box<Schema>>,
    /// `x-kubernetes-preserve-unknown-fields: true`.
    pub preserve_unknown_fields: bool,
    /// `x-kubernetes-embedded-resource: true`.
    pub embedded_resource: bool,
    /// `x-kubernetes-int-or-string: true`.
    pub int_or_string: bool,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`: `atomic` or `granular`.
    pub map_type: Option<String>,
    /// `allOf` (value validations only in a structural schema).
    pub all_of: Vec<Schema>,
    /// `anyOf`.
    pub any_of: Vec<Schema>,
    /// `oneOf`.
    pub one_of: Vec<Schema>,
    /// `not`.
    pub not: Option<Box<Schema>>,
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn num_at(v: &Value, key: &str) -> Option<Number> {
    match v.get(key) {
        Some(Value::Number(n)) => Some(n.clone()),
        _ => None,
    }
}

fn schemas_at(v: &Value, key: &str) -> Vec<Schema> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Schema::parse).collect())
        .unwrap_or_default()
}

fn bool_at(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Schema {
    /// The schema of property `name` of an object node: from `properties`, else from
    /// `additionalProperties`.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .get(name)
            .or(self.additional_properties.as_deref())
    }

    /// Parses a JSON-Schema node; keys outside the structural subset are ignored (CRD
    /// validation rejects them).
    pub fn parse(v: &Value) -> Schema {
        let properties = v
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, s)| (k.clone(), Schema::parse(s)))
                    .collect()
            })
            .unwrap_or_default();
        let additional_properties = match v.get("additionalProperties") {
            Some(Value::Object(_)) => v.get("additionalProperties").map(Schema::parse),
            Some(Value::Bool(true)) => Some(Schema {
                preserve_unknown_fields: true,
                ..Schema::default()
            }),
            _ => None,
        }
        .map(Box::new);
        let items = match v.get("items") {
            Some(i @ Value::Object(_)) => Some(Box::new(Schema::parse(i))),
            _ => None,
        };
        Schema {
            type_: str_at(v, "type"),
            format: str_at(v, "format"),
            nullable: bool_at(v, "nullable"),
            default: v.get("default").cloned(),
            enum_: v
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            maximum: num_at(v, "maximum"),
            exclusive_maximum: bool_at(v, "exclusiveMaximum"),
            minimum: num_at(v, "minimum"),
            exclusive_minimum: bool_at(v, "exclusiveMinimum"),
            multiple_of: num_at(v, "multipleOf"),
            max_length: u64_at(v, "maxLength"),
            min_length: u64_at(v, "minLength"),
            pattern: v.get("pattern").and_then(Value::as_str).map(str::to_string),
            max_items: u64_at(v, "maxItems"),
            min_items: u64_at(v, "minItems"),
            max_properties: u64_at(v, "maxProperties"),
            min_properties: u64_at(v, "minProperties"),
            required: v
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            properties,
            additional_properties,
            items,
            preserve_unknown_fields: bool_at(v, "x-kubernetes-preserve-unknown-fields"),
            embedded_resource: bool_at(v, "x-kubernetes-embedded-resource"),
            int_or_string: bool_at(v, "x-kubernetes-int-or-string"),
            list_type: v
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(str::to_string),
            list_map_keys: v
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            map_type: v
                .get("x-kubernetes-map-type")
                .and_then(Value::as_str)
                .map(str::to_string),
            all_of: schemas_at(v, "allOf"),
            any_of: schemas_at(v, "anyOf"),
            one_of: schemas_at(v, "oneOf"),
            not: match v.get("not") {
                Some(n @ Value::Object(_)) => Some(Box::new(Schema::parse(n))),
                _ => None,
            },
        }
    }
}
