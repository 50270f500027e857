//! OpenAPI: the `/openapi/v3` index and one document per group-version, with component schemas
//! generated from the k8s-openapi types (through their `schemars` implementations) and annotated with
//! `x-kubernetes-group-version-kind` and the strategic-merge-patch metadata from `skiff-patch`;
//! the custom kinds' documents (`custom`); the Swagger 2.0 `/openapi/v2` converted from them
//! (`v2`) and its protobuf form ([`proto`]); and [`published`], which builds and caches all of
//! them for a server's current set of custom kinds.

mod custom;
pub mod proto;
mod published;
mod v2;

pub use published::{Published, Served, published};

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::discovery;
use crate::typed::with_type;
use crate::{Kind, kinds};

/// The Kubernetes version the OpenAPI documents name (`v1.MINOR.0`, from `skiff_meta::KUBERNETES_MINOR`).
pub fn kubernetes_version() -> String {
    format!("v1.{}.0", skiff_meta::KUBERNETES_MINOR)
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

struct Doc {
    value: Value,
    served: Served,
}

fn docs() -> &'static BTreeMap<String, Doc> {
    static DOCS: OnceLock<BTreeMap<String, Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        discovery::group_version_paths()
            .into_iter()
            .map(|path| {
                let value = build_document(&path);
                let served = Served::new(serde_json::to_vec(&value).unwrap_or_default());
                (path, Doc { value, served })
            })
            .collect()
    })
}

/// `/openapi/v3`: `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=…"},…}}`.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (path, doc) in docs() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.served.etag)}),
        );
    }
    json!({ "paths": paths })
}

/// The document for `api/v1` or `apis/{group}/{version}`.
pub fn v3_document(group_version_path: &str) -> Option<Value> {
    docs()
        .get(group_version_path.trim_matches('/'))
        .map(|d| d.value.clone())
}

/// The same document, borrowed (it is large; prefer this for serving).
pub fn v3_document_ref(group_version_path: &str) -> Option<&'static Value> {
    docs()
        .get(group_version_path.trim_matches('/'))
        .map(|d| &d.value)
}

/// The same document serialized as JSON, ready to send.
pub fn v3_document_json(group_version_path: &str) -> Option<&'static [u8]> {
    docs()
        .get(group_version_path.trim_matches('/'))
        .map(|d| d.served.body.as_slice())
}

/// The content hash of a document, as used in the index's `?hash=`.
pub fn v3_hash(group_version_path: &str) -> Option<String> {
    docs()
        .get(group_version_path.trim_matches('/'))
        .map(|d| d.served.etag.clone())
}

fn split_path(path: &str) -> Option<(&str, &str)> {
    if path == "api/v1" {
        return Some(("", "v1"));
    }
    let rest = path.strip_prefix("apis/")?;
    rest.rsplit_once('/')
}

fn gvk(k: &Kind) -> Value {
    json!({"group": k.group, "kind": k.kind, "version": k.version})
}

fn build_document(path: &str) -> Value {
    let Some((group, version)) = split_path(path) else {
        return Value::Null;
    };
    let kinds_here: Vec<&Kind> = discovery::kinds_in(group, version);
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
    if kinds_here.iter().any(|k| k.has_scale()) {
        generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    }
    if group.is_empty() {
        generator.subschema_for::<k8s_openapi::api::core::v1::Binding>();
        generator.subschema_for::<k8s_openapi::api::policy::v1::Eviction>();
    }
    for k in &kinds_here {
        let _ = with_type!(k.openapi_type, T => generator.subschema_for::<T>());
    }
    let mut schemas = generator.take_definitions(true);
    finish_schemas(&mut schemas);
    for k in &kinds_here {
        if let Some(s) = schemas
            .get_mut(k.openapi_type)
            .and_then(Value::as_object_mut)
        {
            s.insert("x-kubernetes-group-version-kind".into(), json!([gvk(k)]));
        }
        let list_name = format!("{}List", k.openapi_type);
        schemas.insert(list_name, list_schema(k));
    }
    let schemas: BTreeMap<String, Value> = schemas.into_iter().collect();
    let mut paths = BTreeMap::new();
    for k in &kinds_here {
        add_paths(&mut paths, k);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": kubernetes_version()},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// What every generated set of schemas gets: `Patch` typed as an object, and the
/// strategic-merge metadata.
fn finish_schemas(schemas: &mut Map<String, Value>) {
    if let Some(s) = schemas
        .get_mut(&format!("{META}.Patch"))
        .and_then(Value::as_object_mut)
    {
        s.insert("type".into(), json!("object"));
    }
    annotate_patch_metadata(schemas);
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_schema(k: &Kind) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", k.kind, k.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {}.", k.plural), "type": "array", "items": {"allOf": [reference(k.openapi_type)], "default": {}}},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"allOf": [reference(&format!("{META}.ListMeta"))], "default": {}, "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": k.group, "kind": k.list_kind(), "version": k.version}],
    })
}

/// Adds `x-kubernetes-patch-strategy`, `-patch-merge-key`, `-list-type`, `-list-map-keys` and
/// `-map-type` to every property that skiff-patch knows metadata for.
fn annotate_patch_metadata(schemas: &mut Map<String, Value>) {
    use skiff_patch::schema::{self, ListStrategy};
    for (type_name, def) in schemas.iter_mut() {
        let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, prop) in props.iter_mut() {
            let Some(info) = schema::field(type_name, field) else {
                continue;
            };
            let Some(p) = prop.as_object_mut() else {
                continue;
            };
            let mut strategies = Vec::new();
            match info.list {
                Some(ListStrategy::Merge { key }) => {
                    strategies.push("merge");
                    p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                }
                Some(ListStrategy::Set) => strategies.push("merge"),
                Some(ListStrategy::Atomic) | None => {}
            }
            if info.retain_keys {
                strategies.push("retainKeys");
            }
            if info.replace {
                strategies.push("replace");
            }
            if !strategies.is_empty() {
                p.insert(
                    "x-kubernetes-patch-strategy".into(),
                    json!(strategies.join(",")),
                );
            }
            if let Some(lt) = info.list_type {
                p.insert("x-kubernetes-list-type".into(), json!(lt));
            }
            if !info.map_keys.is_empty() {
                p.insert("x-kubernetes-list-map-keys".into(), json!(info.map_keys));
            }
            if let Some(mt) = info.map_type
                && !p.contains_key("allOf")
                && !p.contains_key("$ref")
            {
                p.insert("x-kubernetes-map-type".into(), json!(mt));
            }
        }
        if schema::is_atomic_type(type_name)
            && let Some(d) = def.as_object_mut()
        {
            d.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
}

fn param(name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({
        "name": name,
        "in": location,
        "description": description,
        "schema": {"type": ty, "uniqueItems": true},
    });
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn q_dry_run() -> Value {
    param(
        "dryRun",
        "query",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    )
}
fn q_field_manager() -> Value {
    param(
        "fieldManager",
        "query",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}
fn q_field_validation() -> Value {
    param(
        "fieldValidation",
        "query",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict",
    )
}
fn q_force() -> Value {
    param(
        "force",
        "query",
        "boolean",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        param(
            "allowWatchBookmarks",
            "query",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        param(
            "continue",
            "query",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        param(
            "fieldSelector",
            "query",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        param(
            "labelSelector",
            "query",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        param(
            "limit",
            "query",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        param(
            "resourceVersion",
            "query",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        param(
            "resourceVersionMatch",
            "query",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        param(
            "sendInitialEvents",
            "query",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ),
        param(
            "timeoutSeconds",
            "query",
            "integer",
            "Timeout for the list/watch call.",
        ),
        param(
            "watch",
            "query",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
    ]
}

fn content(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema.clone()},
        "application/yaml": {"schema": schema},
    })
}

fn responses(codes: &[(&str, &str)], schema: &Value) -> Value {
    let mut r = Map::new();
    for (code, desc) in codes {
        r.insert(
            (*code).to_string(),
            json!({"description": desc, "content": content(schema.clone())}),
        );
    }
    r.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(r)
}

fn op_id(verb: &str, k: &Kind, namespaced: bool, suffix: &str) -> String {
    let mut gv = String::new();
    let group = if k.group.is_empty() {
        "core"
    } else {
        k.group.trim_end_matches(".k8s.io")
    };
    for part in group.split('.') {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            gv.extend(f.to_uppercase());
            gv.push_str(c.as_str());
        }
    }
    let mut v = k.version.chars();
    if let Some(f) = v.next() {
        gv.extend(f.to_uppercase());
        gv.push_str(v.as_str());
    }
    let ns = if namespaced { "Namespaced" } else { "" };
    format!("{verb}{gv}{ns}{}{suffix}", k.kind)
}

fn tag(k: &Kind) -> String {
    let group = if k.group.is_empty() {
        "core"
    } else {
        k.group.trim_end_matches(".k8s.io")
    };
    format!("{}_{}", group.replace('.', "_"), k.version)
}

fn operation(k: &Kind, action: &str, id: String, description: String, extra: Value) -> Value {
    let mut op = json!({
        "tags": [tag(k)],
        "description": description,
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(k),
    });
    if let (Some(o), Some(e)) = (op.as_object_mut(), extra.as_object()) {
        for (key, v) in e {
            o.insert(key.clone(), v.clone());
        }
    }
    op
}

fn patch_body() -> Value {
    let patch = reference(&format!("{META}.Patch"));
    json!({
        "content": {
            "application/apply-patch+yaml": {"schema": patch},
            "application/json-patch+json": {"schema": patch},
            "application/merge-patch+json": {"schema": patch},
            "application/strategic-merge-patch+json": {"schema": patch},
        },
        "required": true,
    })
}

fn item_ops(k: &Kind, sub: Option<(&str, &str)>, namespaced: bool) -> Map<String, Value> {
    let (schema_name, suffix, what) = match sub {
        None => (
            k.openapi_type.to_string(),
            String::new(),
            format!("the specified {}", k.kind),
        ),
        Some(("scale", _)) => (
            "io.k8s.api.autoscaling.v1.Scale".to_string(),
            "Scale".to_string(),
            format!("scale of the specified {}", k.kind),
        ),
        Some((name, _)) => (
            k.openapi_type.to_string(),
            name[..1].to_uppercase() + &name[1..],
            format!("{name} of the specified {}", k.kind),
        ),
    };
    let schema = reference(&schema_name);
    let mut ops = Map::new();
    ops.insert(
        "get".into(),
        operation(
            k,
            "get",
            op_id("read", k, namespaced, &suffix),
            format!("read {what}"),
            json!({"responses": responses(&[("200", "OK")], &schema)}),
        ),
    );
    ops.insert(
        "put".into(),
        operation(
            k,
            "put",
            op_id("replace", k, namespaced, &suffix),
            format!("replace {what}"),
            json!({
                "parameters": [q_dry_run(), q_field_manager(), q_field_validation()],
                "requestBody": {"content": {"*/*": {"schema": schema}}, "required": true},
                "responses": responses(&[("200", "OK"), ("201", "Created")], &schema),
            }),
        ),
    );
    ops.insert(
        "patch".into(),
        operation(
            k,
            "patch",
            op_id("patch", k, namespaced, &suffix),
            format!("partially update {what}"),
            json!({
                "parameters": [q_dry_run(), q_field_manager(), q_field_validation(), q_force()],
                "requestBody": patch_body(),
                "responses": responses(&[("200", "OK"), ("201", "Created")], &schema),
            }),
        ),
    );
    if matches!(sub, Some(("scale", _))) {
        for op in ops.values_mut() {
            op["x-kubernetes-group-version-kind"] =
                json!({"group": "autoscaling", "kind": "Scale", "version": "v1"});
        }
    }
    if sub.is_none() {
        let status = reference(&format!("{META}.Status"));
        ops.insert(
            "delete".into(),
            operation(k, "delete", op_id("delete", k, namespaced, ""), format!("delete {what}"), json!({
                "parameters": [
                    q_dry_run(),
                    param("gracePeriodSeconds", "query", "integer", "The duration in seconds before the object should be deleted."),
                    param("propagationPolicy", "query", "string", "Whether and how garbage collection will be performed."),
                ],
                "requestBody": {"content": {"*/*": {"schema": reference(&format!("{META}.DeleteOptions"))}}},
                "responses": responses(&[("200", "OK"), ("202", "Accepted")], &status),
            })),
        );
    }
    ops
}

fn add_paths(paths: &mut BTreeMap<String, Value>, k: &Kind) {
    let prefix = if k.group.is_empty() {
        format!("/api/{}", k.version)
    } else {
        format!("/apis/{}/{}", k.group, k.version)
    };
    let pretty = param(
        "pretty",
        "query",
        "string",
        "If 'true', then the output is pretty printed.",
    );
    let name_p = param("name", "path", "string", &format!("name of the {}", k.kind));
    let ns_p = param(
        "namespace",
        "path",
        "string",
        "object name and auth scope, such as for teams and projects",
    );
    let collection = if k.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", k.plural)
    } else {
        format!("{prefix}/{}", k.plural)
    };
    let scope_params = |with_name: bool| {
        let mut v = Vec::new();
        if with_name {
            v.push(name_p.clone());
        }
        if k.namespaced {
            v.push(ns_p.clone());
        }
        v.push(pretty.clone());
        Value::Array(v)
    };
    let list_schema = reference(&format!("{}List", k.openapi_type));
    let schema = reference(k.openapi_type);
    let mut coll = Map::new();
    coll.insert(
        "get".into(),
        operation(
            k,
            "list",
            op_id("list", k, k.namespaced, ""),
            format!("list or watch objects of kind {}", k.kind),
            json!({
                "parameters": list_params(),
                "responses": responses(&[("200", "OK")], &list_schema),
            }),
        ),
    );
    coll.insert(
        "post".into(),
        operation(k, "post", op_id("create", k, k.namespaced, ""), format!("create a {}", k.kind), json!({
            "parameters": [q_dry_run(), q_field_manager(), q_field_validation()],
            "requestBody": {"content": {"*/*": {"schema": schema}}, "required": true},
            "responses": responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], &schema),
        })),
    );
    if k.verbs.contains(&"deletecollection") {
        coll.insert(
            "delete".into(),
            operation(
                k,
                "deletecollection",
                op_id("deleteCollection", k, k.namespaced, ""),
                format!("delete collection of {}", k.kind),
                json!({
                    "parameters": list_params(),
                    "responses": responses(&[("200", "OK")], &reference(&format!("{META}.Status"))),
                }),
            ),
        );
    }
    coll.insert("parameters".into(), scope_params(false));
    paths.insert(collection.clone(), Value::Object(coll));

    let mut item = item_ops(k, None, k.namespaced);
    item.insert("parameters".into(), scope_params(true));
    paths.insert(format!("{collection}/{{name}}"), Value::Object(item));

    for sub in ["status", "scale"] {
        if k.subresources.contains(&sub) {
            let mut ops = item_ops(k, Some((sub, sub)), k.namespaced);
            ops.insert("parameters".into(), scope_params(true));
            paths.insert(format!("{collection}/{{name}}/{sub}"), Value::Object(ops));
        }
    }
    if k.namespaced {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            operation(
                k,
                "list",
                op_id("list", k, false, "ForAllNamespaces"),
                format!("list or watch objects of kind {}", k.kind),
                json!({
                    "parameters": list_params(),
                    "responses": responses(&[("200", "OK")], &list_schema),
                }),
            ),
        );
        all.insert("parameters".into(), json!([pretty]));
        paths.insert(format!("{prefix}/{}", k.plural), Value::Object(all));
    }
}

/// The OpenAPI definition names of every kind (for callers that need to map kinds to schemas).
pub fn kind_types() -> impl Iterator<Item = (&'static Kind, &'static str)> {
    kinds().iter().map(|k| (k, k.openapi_type))
}

#[cfg(test)]
mod tests;
