//! Custom resources: what a CustomResourceDefinition says about one served version
//! ([`CustomKind`]), CRD validation ([`validate_crd`]) and the schema work Kubernetes does for
//! custom resources — validation against the structural schema, pruning, defaulting, printer
//! columns. Pure functions over JSON; the API server keeps the CRDs and builds the kinds.

mod columns;
mod formats;
mod object;
mod prune;
mod schema;
mod validation;

use serde_json::{Value, json};

use crate::Kind;
use crate::validate::Cause;

pub use columns::{cells, column_definitions, json_path_value, valid_json_path};
pub use object::{validate_object, validate_object_update};
pub use prune::{apply_defaults, prune_nulls, prune_object};
pub use schema::Schema;
pub use validation::validate_crd;

/// Kubernetes' defaults for an apiextensions.k8s.io/v1 CustomResourceDefinition:
/// `spec.names.singular` (the lowercased kind), `spec.names.listKind` (kind + `List`) and
/// `spec.conversion.strategy: None`. [`crate::defaults::apply`] calls it.
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
        if !kind.is_empty() && empty(names.get("singular")) {
            names.insert("singular".into(), json!(kind.to_ascii_lowercase()));
        }
        if !kind.is_empty() && empty(names.get("listKind")) {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}

/// Removes the fields of `obj` (a custom resource of `kind`) its schema does not specify and
/// returns their paths (`spec.foo`); nothing for built-in kinds or versions without a schema.
pub fn prune(kind: &Kind, obj: &mut Value) -> Vec<String> {
    match kind.custom.and_then(|c| c.schema.as_ref()) {
        Some(s) => prune_object(s, obj),
        None => Vec::new(),
    }
}

/// The paths [`prune`] would remove, leaving `obj` as it is.
pub fn unknown_fields(kind: &Kind, obj: &Value) -> Vec<String> {
    let mut copy = obj.clone();
    prune(kind, &mut copy)
}

/// What kube-apiserver does to a custom resource it decodes, in its order: prunes unknown
/// fields, drops non-nullable nulls that have no default, applies the schema's defaults. Used on
/// writes (through [`crate::defaults::apply`]) and on reads ([`default_on_read`]).
pub fn apply_schema(kind: &Kind, obj: &mut Value) {
    if let Some(s) = kind.custom.and_then(|c| c.schema.as_ref()) {
        prune_object(s, obj);
        prune_nulls(s, obj);
        apply_defaults(s, obj);
    }
}

/// Applies the schema to an object read from storage, so that objects stored before a default
/// (or before a field was removed from the schema) are served as Kubernetes serves them.
/// [`crate::convert::from_storage`] calls it for custom kinds.
pub fn default_on_read(kind: &Kind, obj: &mut Value) {
    apply_schema(kind, obj);
}

/// The schema's causes against `obj` (a custom resource of `kind`, already pruned and defaulted);
/// on update (`old` given) values unchanged from the old object are not checked again (see
/// [`validate_object_update`]). Empty for built-in kinds.
pub fn validate(kind: &Kind, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    match (kind.custom.and_then(|c| c.schema.as_ref()), old) {
        (Some(s), Some(old)) => validate_object_update(s, obj, old),
        (Some(s), None) => validate_object(s, obj),
        (None, _) => Vec::new(),
    }
}

/// The names of a custom resource (`spec.names` of its CRD).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    /// Resource name used in URLs, e.g. `"crontabs"`.
    pub plural: String,
    /// Singular name, e.g. `"crontab"` (the lowercased kind when the CRD leaves it empty).
    pub singular: String,
    /// Kind, e.g. `"CronTab"`.
    pub kind: String,
    /// List kind, e.g. `"CronTabList"` (kind + `List` when the CRD leaves it empty).
    pub list_kind: String,
    /// Short names kubectl accepts.
    pub short_names: Vec<String>,
    /// Categories, e.g. `["all"]`.
    pub categories: Vec<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    /// Optional format, e.g. `int32`, `name`.
    pub format: String,
    /// Column description.
    pub description: String,
    /// 0 for columns shown by default; greater for `-o wide` only.
    pub priority: i32,
    /// JSONPath (simple subset) into the object, e.g. `.spec.replicas`.
    pub json_path: String,
}

/// The scale subresource's paths (`subresources.scale`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScalePaths {
    /// e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// e.g. `.status.selector`, if the CRD sets one.
    pub label_selector_path: Option<String>,
}

/// The subresources a version serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subresources {
    /// `status` subresource enabled.
    pub status: bool,
    /// `scale` subresource, if enabled.
    pub scale: Option<ScalePaths>,
}

/// What the server knows of one served version of a CustomResourceDefinition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomKind {
    /// The CRD's name, `<plural>.<group>`.
    pub crd_name: String,
    /// API group.
    pub group: String,
    /// Names.
    pub names: Names,
    /// `scope: Namespaced`.
    pub namespaced: bool,
    /// This version's name.
    pub version: String,
    /// The version objects are stored in (`storage: true`).
    pub storage_version: String,
    /// Every served version, in the CRD's order.
    pub served_versions: Vec<String>,
    /// This version's raw `schema.openAPIV3Schema`.
    pub raw_schema: Option<Value>,
    /// The parsed structural schema.
    pub schema: Option<Schema>,
    /// `additionalPrinterColumns`.
    pub printer_columns: Vec<PrinterColumn>,
    /// `subresources`.
    pub subresources: Subresources,
    /// `deprecated`.
    pub deprecated: bool,
    /// `deprecationWarning`.
    pub deprecation_warning: Option<String>,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn strings_at(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl CustomKind {
    /// One `CustomKind` per served version of `crd` (an apiextensions.k8s.io/v1
    /// CustomResourceDefinition that passed [`validate_crd`]), in the CRD's order.
    pub fn from_crd(crd: &Value) -> Vec<CustomKind> {
        let group = str_at(crd, "/spec/group").to_string();
        let kind = str_at(crd, "/spec/names/kind").to_string();
        let singular = match str_at(crd, "/spec/names/singular") {
            "" => kind.to_ascii_lowercase(),
            s => s.to_string(),
        };
        let list_kind = match str_at(crd, "/spec/names/listKind") {
            "" => format!("{kind}List"),
            s => s.to_string(),
        };
        let names = Names {
            plural: str_at(crd, "/spec/names/plural").to_string(),
            singular,
            kind,
            list_kind,
            short_names: strings_at(crd, "/spec/names/shortNames"),
            categories: strings_at(crd, "/spec/names/categories"),
        };
        let versions: &[Value] = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let served = |v: &Value| v.get("served").and_then(Value::as_bool) == Some(true);
        let served_versions: Vec<String> = versions
            .iter()
            .filter(|v| served(v))
            .map(|v| str_at(v, "/name").to_string())
            .collect();
        let storage_version = versions
            .iter()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .map(|v| str_at(v, "/name").to_string())
            .unwrap_or_default();
        versions
            .iter()
            .filter(|v| served(v))
            .map(|v| {
                let raw_schema = v.pointer("/schema/openAPIV3Schema").cloned();
                let schema = raw_schema.as_ref().map(Schema::parse);
                let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
                    spec_replicas_path: str_at(s, "/specReplicasPath").to_string(),
                    status_replicas_path: str_at(s, "/statusReplicasPath").to_string(),
                    label_selector_path: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
                // Kubernetes serves an Age column for versions that declare no columns
                let printer_columns =
                    match v.get("additionalPrinterColumns").and_then(Value::as_array) {
                        Some(cols) if !cols.is_empty() => cols.iter().map(printer_column).collect(),
                        _ => vec![printer_column(&json!({
                            "name": "Age",
                            "type": "date",
                            "description": crate::table::AGE_DESC,
                            "jsonPath": ".metadata.creationTimestamp",
                        }))],
                    };
                CustomKind {
                    crd_name: str_at(crd, "/metadata/name").to_string(),
                    group: group.clone(),
                    names: names.clone(),
                    namespaced: str_at(crd, "/spec/scope") != "Cluster",
                    version: str_at(v, "/name").to_string(),
                    storage_version: storage_version.clone(),
                    served_versions: served_versions.clone(),
                    raw_schema,
                    schema,
                    printer_columns,
                    subresources: Subresources {
                        status: v.pointer("/subresources/status").is_some(),
                        scale,
                    },
                    deprecated: v.get("deprecated").and_then(Value::as_bool) == Some(true),
                    deprecation_warning: v
                        .get("deprecationWarning")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            })
            .collect()
    }

    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The OpenAPI definition name Kubernetes gives the kind: the reversed group, the version and
    /// the kind, e.g. `com.example.stable.v1.CronTab`.
    pub fn openapi_type(&self) -> String {
        let mut parts: Vec<&str> = self.group.split('.').collect();
        parts.reverse();
        format!("{}.{}.{}", parts.join("."), self.version, self.names.kind)
    }

    /// A [`Kind`] for this version, leaking its strings and the `CustomKind` itself. The caller
    /// interns the result (one leak per distinct CRD version content).
    pub fn leak(self) -> &'static Kind {
        fn leak_str(s: &str) -> &'static str {
            Box::leak(s.to_string().into_boxed_str())
        }
        fn leak_strs(v: &[String]) -> &'static [&'static str] {
            Box::leak(
                v.iter()
                    .map(|s| leak_str(s))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        }
        let subresources: &'static [&'static str] =
            match (self.subresources.scale.is_some(), self.subresources.status) {
                (true, true) => &["scale", "status"],
                (true, false) => &["scale"],
                (false, true) => &["status"],
                (false, false) => &[],
            };
        let custom: &'static CustomKind = Box::leak(Box::new(self));
        Box::leak(Box::new(Kind {
            group: leak_str(&custom.group),
            version: leak_str(&custom.version),
            kind: leak_str(&custom.names.kind),
            plural: leak_str(&custom.names.plural),
            singular: leak_str(&custom.names.singular),
            namespaced: custom.namespaced,
            short_names: leak_strs(&custom.names.short_names),
            categories: leak_strs(&custom.names.categories),
            subresources,
            openapi_type: leak_str(&custom.openapi_type()),
            verbs: &[
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ],
            custom: Some(custom),
        }))
    }
}

fn printer_column(c: &Value) -> PrinterColumn {
    PrinterColumn {
        name: str_at(c, "/name").to_string(),
        type_: str_at(c, "/type").to_string(),
        format: str_at(c, "/format").to_string(),
        description: str_at(c, "/description").to_string(),
        priority: c
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
        json_path: str_at(c, "/jsonPath").to_string(),
    }
}

#[cfg(test)]
mod tests;
