//! `/openapi/v2` and `/openapi/v3` through the router: the Swagger 2.0 document's shape, its
//! protobuf form read back with a protobuf wire-format reader written here (independent of the
//! encoder), `Accept` negotiation with q-values, ETags and `If-None-Match`, the v3 hash redirect,
//! and custom resources appearing in, following and leaving both documents.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Api, TOKEN};

const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_RETURNED: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

struct Got {
    status: StatusCode,
    content_type: String,
    etag: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn get(api: &Api, path: &str, headers: &[(header::HeaderName, &str)]) -> Got {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("Authorization", format!("Bearer {TOKEN}"));
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let resp = api.request(req.body(Body::empty()).unwrap()).await;
    let header_of = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let status = resp.status();
    let content_type = header_of(header::CONTENT_TYPE);
    let etag = header_of(header::ETAG);
    let location = header_of(header::LOCATION);
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let body = if status == StatusCode::MOVED_PERMANENTLY {
        location.into_bytes()
    } else {
        body
    };
    Got {
        status,
        content_type,
        etag,
        body,
    }
}

/// A protobuf field as read from the wire: a varint, a 64-bit value, or bytes (a string or an
/// embedded message).
#[derive(Debug, Clone)]
enum Field {
    Varint(u64),
    /// A 64-bit value (a double in these documents), not read by the tests.
    Fixed64,
    Bytes(Vec<u8>),
}

/// Reads one message's fields by number, in order; `None` on malformed input.
fn read_message(mut b: &[u8]) -> Option<BTreeMap<u32, Vec<Field>>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut fields: BTreeMap<u32, Vec<Field>> = BTreeMap::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let number = u32::try_from(key >> 3).ok()?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut b)?),
            1 => {
                b = b.get(8..)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                let (bytes, rest) = b.split_at_checked(len)?;
                b = rest;
                Field::Bytes(bytes.to_vec())
            }
            _ => return None,
        };
        fields.entry(number).or_default().push(field);
    }
    Some(fields)
}

/// A decoded message with typed accessors.
struct Msg(BTreeMap<u32, Vec<Field>>);

impl Msg {
    fn parse(b: &[u8]) -> Msg {
        Msg(read_message(b).expect("a well-formed protobuf message"))
    }

    fn all(&self, n: u32) -> Vec<&Field> {
        self.0
            .get(&n)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }

    fn string(&self, n: u32) -> String {
        match self.all(n).last() {
            Some(Field::Bytes(b)) => String::from_utf8(b.clone()).expect("UTF-8"),
            None => String::new(),
            other => panic!("field {n} is not a string: {other:?}"),
        }
    }

    fn varint(&self, n: u32) -> u64 {
        match self.all(n).last() {
            Some(Field::Varint(v)) => *v,
            None => 0,
            other => panic!("field {n} is not a varint: {other:?}"),
        }
    }

    fn strings(&self, n: u32) -> Vec<String> {
        self.all(n)
            .into_iter()
            .map(|f| match f {
                Field::Bytes(b) => String::from_utf8(b.clone()).expect("UTF-8"),
                other => panic!("field {n} is not a string: {other:?}"),
            })
            .collect()
    }

    fn messages(&self, n: u32) -> Vec<Msg> {
        self.all(n)
            .into_iter()
            .map(|f| match f {
                Field::Bytes(b) => Msg::parse(b),
                other => panic!("field {n} is not a message: {other:?}"),
            })
            .collect()
    }

    fn message(&self, n: u32) -> Msg {
        self.messages(n)
            .pop()
            .unwrap_or_else(|| panic!("no field {n}"))
    }

    /// A `repeated Named* { string name = 1; T value = 2; }` field, by name.
    fn named(&self, n: u32) -> BTreeMap<String, Msg> {
        self.messages(n)
            .into_iter()
            .map(|m| (m.string(1), m.message(2)))
            .collect()
    }

    /// `repeated NamedAny vendor_extension`: name to the YAML of its `Any`.
    fn extensions(&self, n: u32) -> BTreeMap<String, String> {
        self.named(n)
            .into_iter()
            .map(|(name, any)| (name, any.string(2)))
            .collect()
    }
}

#[tokio::test]
async fn v2_json_describes_every_kind_with_operations_kubectl_reads() {
    let api = Api::new().await;
    let got = get(&api, "/openapi/v2", &[(header::ACCEPT, "application/json")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, "application/json");
    let doc = got.json();
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["info"]["version"],
        skiff_kinds::openapi::kubernetes_version()
    );
    let defs = doc["definitions"].as_object().expect("definitions");
    for kind in skiff_kinds::kinds() {
        let def = &defs[kind.openapi_type];
        assert!(
            def["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|gvks| gvks.iter().any(|g| g["kind"] == kind.kind)),
            "{} has no group-version-kind",
            kind.openapi_type
        );
        assert!(defs.contains_key(&format!("{}List", kind.openapi_type)));
    }
    for name in [
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.api.policy.v1.Eviction",
        "io.k8s.api.core.v1.Binding",
    ] {
        assert!(defs.contains_key(name), "{name}");
    }
    // Swagger 2.0 forms: described references as $ref siblings, no nullable/oneOf, IntOrString.
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    let text = serde_json::to_string(&doc).unwrap();
    assert!(!text.contains("#/components/"), "a v3 reference is left");
    let or_bool =
        &defs["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"];
    assert!(or_bool.get("oneOf").is_none(), "oneOf is not Swagger 2.0");
    for piece in text.split("\"$ref\":\"#/definitions/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(defs.contains_key(name), "dangling reference {name}");
    }
    // The PATCH operation kubectl's query-parameter check looks for.
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let params = patch["parameters"].as_array().unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
    for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
        let p = param(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(p["in"], "query");
        assert!(p["type"].is_string(), "{p}");
    }
    let body = param("body").expect("a body parameter");
    assert_eq!(body["in"], "body");
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/strategic-merge-patch+json"))
    );
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let list = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["x-kubernetes-action"], "list");
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["parameters"][0]["in"],
        "path"
    );
}

#[tokio::test]
async fn v2_protobuf_reads_back_as_the_json_document() {
    let api = Api::new().await;
    let json_doc = get(&api, "/openapi/v2", &[(header::ACCEPT, "application/json")])
        .await
        .json();
    let got = get(&api, "/openapi/v2", &[(header::ACCEPT, PROTOBUF)]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, PROTOBUF_RETURNED);
    let doc = Msg::parse(&got.body);
    // Document: swagger = 1, info = 2, paths = 8, definitions = 9.
    assert_eq!(doc.string(1), "2.0");
    assert_eq!(
        doc.message(2).string(2),
        skiff_kinds::openapi::kubernetes_version()
    );
    let definitions = doc.message(9).named(1);
    assert_eq!(
        definitions.len(),
        json_doc["definitions"].as_object().unwrap().len()
    );
    // Schema: description = 4, required = 19, type = 22 (TypeItem.value = 1),
    // properties = 25 (NamedSchema = 1), _ref = 1, vendor_extension = 31.
    let deployment = &definitions["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(deployment.message(22).strings(1), ["object"]);
    let gvk = &deployment.extensions(31)["x-kubernetes-group-version-kind"];
    let gvk: Value = serde_json::from_str(gvk).expect("the extension's YAML is JSON here");
    assert_eq!(
        gvk,
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let props = deployment.message(25).named(1);
    assert_eq!(
        props["metadata"].string(1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        props["spec"].string(4),
        json_doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["description"]
    );
    let spec = &definitions["io.k8s.api.apps.v1.DeploymentSpec"];
    assert!(spec.strings(19).contains(&"selector".to_string()));
    // int32 replicas: format = 2.
    assert_eq!(spec.message(25).named(1)["replicas"].string(2), "int32");
    // An array: items = 23 (ItemsItem.schema = 1).
    let containers = &definitions["io.k8s.api.core.v1.PodSpec"]
        .message(25)
        .named(1)["containers"];
    assert_eq!(containers.message(22).strings(1), ["array"]);
    assert_eq!(
        containers.message(23).message(1).string(1),
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    // A map: additionalProperties = 21 (AdditionalPropertiesItem.schema = 1).
    let labels = &definitions["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
        .message(25)
        .named(1)["labels"];
    assert_eq!(
        labels.message(21).message(1).message(22).strings(1),
        ["string"]
    );

    // Paths = 8 (NamedPathItem = 2); PathItem.patch = 8; Operation: parameters = 8,
    // vendor_extension = 13; ParametersItem.parameter = 1; Parameter.non_body_parameter = 2;
    // NonBodyParameter.query_parameter_sub_schema = 3 (name = 4, type = 6).
    let paths = doc.message(8).named(2);
    assert_eq!(paths.len(), json_doc["paths"].as_object().unwrap().len());
    let patch = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].message(8);
    assert_eq!(patch.extensions(13)["x-kubernetes-action"], "\"patch\"");
    let query: Vec<(String, String)> = patch
        .messages(8)
        .iter()
        .filter_map(|item| item.messages(1).pop())
        .filter_map(|p| p.messages(2).pop())
        .filter_map(|nb| nb.messages(3).pop())
        .map(|q| (q.string(4), q.string(6)))
        .collect();
    assert!(
        query.contains(&("fieldValidation".to_string(), "string".to_string())),
        "{query:?}"
    );
    // The path item's parameters = 9; PathParameterSubSchema = 4 (required = 1, name = 4).
    let item_params = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].messages(9);
    let name = item_params
        .iter()
        .filter_map(|item| item.messages(1).pop())
        .filter_map(|p| p.messages(2).pop())
        .filter_map(|nb| nb.messages(4).pop())
        .find(|p| p.string(4) == "name")
        .expect("the name path parameter");
    assert_eq!(name.varint(1), 1, "a path parameter is required");
    // The body parameter: Parameter.body_parameter = 1 (name = 2, schema = 5).
    let body = patch
        .messages(8)
        .iter()
        .filter_map(|item| item.messages(1).pop())
        .find_map(|p| p.messages(1).pop())
        .expect("a body parameter");
    assert_eq!(body.string(2), "body");
    assert_eq!(
        body.message(5).string(1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    // Responses = 9 (NamedResponseValue = 1, ResponseValue.response = 1, Response.schema = 2,
    // SchemaItem.schema = 1).
    let ok = &patch.message(9).named(1)["200"];
    assert_eq!(
        ok.message(1).message(2).message(1).string(1),
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
}

#[tokio::test]
async fn v2_honours_accept_and_etags() {
    let api = Api::new().await;
    let json_ct = "application/json";
    for (accept, expected) in [
        ("", json_ct),
        ("*/*", json_ct),
        ("application/*", json_ct),
        (PROTOBUF, PROTOBUF_RETURNED),
        (PROTOBUF_RETURNED, PROTOBUF_RETURNED),
        (
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            PROTOBUF_RETURNED,
        ),
        (
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.1, application/json;q=0.9",
            json_ct,
        ),
        ("text/html, application/json;q=0.2", json_ct),
        ("application/json;q=0, application/*;q=0.1", json_ct),
    ] {
        let got = get(&api, "/openapi/v2", &[(header::ACCEPT, accept)]).await;
        assert_eq!(got.status, 200, "{accept}");
        assert_eq!(got.content_type, expected, "{accept}");
    }
    for accept in ["text/html", "application/yaml", "application/json;q=0"] {
        let got = get(&api, "/openapi/v2", &[(header::ACCEPT, accept)]).await;
        assert_eq!(got.status, 406, "{accept}");
    }

    // One ETag (the JSON document's) for both forms; a matching If-None-Match is a 304.
    let json = get(&api, "/openapi/v2", &[(header::ACCEPT, json_ct)]).await;
    let proto = get(&api, "/openapi/v2", &[(header::ACCEPT, PROTOBUF)]).await;
    assert!(json.etag.starts_with('"') && json.etag.ends_with('"') && json.etag.len() > 100);
    assert_eq!(json.etag, proto.etag);
    for inm in [
        json.etag.as_str(),
        "*",
        &format!("\"other\", W/{}", json.etag),
    ] {
        let got = get(
            &api,
            "/openapi/v2",
            &[(header::ACCEPT, PROTOBUF), (header::IF_NONE_MATCH, inm)],
        )
        .await;
        assert_eq!(got.status, 304, "{inm}");
        assert!(got.body.is_empty());
        assert_eq!(got.etag, json.etag);
    }
    let got = get(
        &api,
        "/openapi/v2",
        &[
            (header::ACCEPT, json_ct),
            (header::IF_NONE_MATCH, "\"other\""),
        ],
    )
    .await;
    assert_eq!(got.status, 200);

    // v3: the index's hash is the document's ETag; an old hash redirects to the current one.
    let index = get(&api, "/openapi/v3", &[]).await.json();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let hash = url.split("hash=").nth(1).unwrap();
    let got = get(&api, &url, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.etag, format!("\"{hash}\""));
    let got = get(
        &api,
        &url,
        &[(header::IF_NONE_MATCH, &format!("\"{hash}\""))],
    )
    .await;
    assert_eq!(got.status, 304);
    let got = get(&api, "/openapi/v3/apis/apps/v1?hash=0123", &[]).await;
    assert_eq!(got.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(String::from_utf8(got.body).unwrap(), url);
    let got = get(&api, "/openapi/v3/apis/nothing/v1", &[]).await;
    assert_eq!(got.status, 404);
    let got = get(
        &api,
        &url,
        &[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
        )],
    )
    .await;
    assert_eq!(got.status, 406, "v3 is served as JSON only");
}

fn gadget_crd(versions: &[(&str, bool)], extra_field: bool) -> Value {
    let mut spec_props = json!({
        "size": {"type": "string", "description": "How big the gadget is."},
        "labels": {"type": "object", "nullable": true, "additionalProperties": {"type": "string"}},
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
    });
    if extra_field {
        spec_props["shade"] = json!({"type": "string", "description": "The shade."});
    }
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "description": "What the gadget should be.",
                "required": ["size", "labels"], "properties": spec_props},
        },
    });
    let versions: Vec<Value> = versions
        .iter()
        .map(|(name, storage)| {
            json!({"name": name, "served": true, "storage": storage,
                "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}}})
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": versions},
    })
}

async fn v3_index(api: &Api) -> Value {
    get(api, "/openapi/v3", &[]).await.json()
}

async fn v2_definitions(api: &Api) -> Value {
    get(api, "/openapi/v2", &[(header::ACCEPT, "application/json")])
        .await
        .json()["definitions"]
        .clone()
}

#[tokio::test]
async fn custom_resources_appear_follow_and_leave_the_documents() {
    let api = Api::new().await;
    let before = get(&api, "/openapi/v2", &[(header::ACCEPT, "application/json")]).await;
    let index = v3_index(&api).await;
    assert!(index["paths"].get("apis/example.com/v1").is_none());
    assert!(index["paths"].get("apis/example.com/v2beta1").is_none());

    let (code, body) = api
        .call(
            Method::POST,
            CRDS,
            Some(gadget_crd(&[("v1", true), ("v1beta1", false)], false)),
        )
        .await;
    assert_eq!(code, 201, "{body}");

    // v3: a document per served version, listed with its hash.
    let index = v3_index(&api).await;
    for version in ["v1", "v1beta1"] {
        let url = index["paths"][format!("apis/example.com/{version}")]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{version} is not listed: {index}"));
        let doc = get(&api, url, &[]).await.json();
        let schema = &doc["components"]["schemas"][format!("com.example.{version}.Gadget")];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "kind": "Gadget", "version": version}])
        );
        assert_eq!(
            schema["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(schema["properties"]["apiVersion"]["type"], "string");
        assert!(schema["properties"]["kind"]["description"].is_string());
        assert_eq!(
            schema["properties"]["spec"]["properties"]["size"]["description"],
            "How big the gadget is."
        );
        assert_eq!(
            schema["properties"]["spec"]["properties"]["labels"]["nullable"],
            true
        );
        let patch = &doc["paths"]
            [format!("/apis/example.com/{version}/namespaces/{{namespace}}/gadgets/{{name}}")]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "example.com", "kind": "Gadget", "version": version})
        );
        assert!(
            doc["paths"][format!(
                "/apis/example.com/{version}/namespaces/{{namespace}}/gadgets/{{name}}/status"
            )]
            .is_object()
        );
        let text = serde_json::to_string(&doc).unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling {name}"
            );
        }
    }

    // v2: converted as Kubernetes does for Swagger 2.0.
    let with_crd = get(&api, "/openapi/v2", &[(header::ACCEPT, "application/json")]).await;
    assert_ne!(with_crd.etag, before.etag);
    let defs = with_crd.json()["definitions"].clone();
    let gadget = &defs["com.example.v1.Gadget"];
    assert_eq!(
        gadget["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "kind": "Gadget", "version": "v1"}])
    );
    assert_eq!(
        gadget["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let spec = &gadget["properties"]["spec"];
    assert_eq!(spec["description"], "What the gadget should be.");
    assert_eq!(
        spec["required"],
        json!(["size"]),
        "a nullable field is not required in v2"
    );
    assert_eq!(
        spec["properties"]["labels"],
        json!({"additionalProperties": {"type": "string"}}),
        "nullable drops type, items and properties"
    );
    assert_eq!(
        spec["properties"]["port"],
        json!({"x-kubernetes-int-or-string": true})
    );
    assert_eq!(
        spec["properties"]["free"],
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    );
    assert!(defs["com.example.v1beta1.Gadget"].is_object());
    assert!(defs["com.example.v1.GadgetList"].is_object());
    let protobuf = get(&api, "/openapi/v2", &[(header::ACCEPT, PROTOBUF)]).await;
    let definitions = Msg::parse(&protobuf.body).message(9).named(1);
    assert!(definitions.contains_key("com.example.v1.Gadget"));

    // A new field and a removed version show at once.
    let (_, current) = api
        .call(Method::GET, &format!("{CRDS}/gadgets.example.com"), None)
        .await;
    let mut updated = gadget_crd(&[("v1", true)], true);
    updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CRDS}/gadgets.example.com"),
            Some(updated),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let index = v3_index(&api).await;
    assert!(
        index["paths"].get("apis/example.com/v1beta1").is_none(),
        "{index}"
    );
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let doc = get(&api, url, &[]).await.json();
    assert_eq!(
        doc["components"]["schemas"]["com.example.v1.Gadget"]["properties"]["spec"]["properties"]["shade"]
            ["description"],
        "The shade."
    );
    assert_eq!(
        get(&api, "/openapi/v3/apis/example.com/v1beta1", &[])
            .await
            .status,
        404
    );
    let defs = v2_definitions(&api).await;
    assert!(defs.get("com.example.v1beta1.Gadget").is_none());
    assert_eq!(
        defs["com.example.v1.Gadget"]["properties"]["spec"]["properties"]["shade"]["type"],
        "string"
    );

    // A version under a new name: published at once, beside the storage version.
    let (_, current) = api
        .call(Method::GET, &format!("{CRDS}/gadgets.example.com"), None)
        .await;
    let mut renamed = gadget_crd(&[("v1", true), ("v2beta1", false)], true);
    renamed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CRDS}/gadgets.example.com"),
            Some(renamed),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let defs = v2_definitions(&api).await;
    assert_eq!(
        defs["com.example.v2beta1.Gadget"]["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "kind": "Gadget", "version": "v2beta1"}])
    );
    let index = v3_index(&api).await;
    assert!(
        index["paths"]["apis/example.com/v2beta1"].is_object(),
        "{index}"
    );
    assert!(index["paths"].get("apis/example.com/v1beta1").is_none());

    // Deleted: gone from both.
    let (_, list) = api.call(Method::GET, CRDS, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = api
        .call(Method::DELETE, &format!("{CRDS}/gadgets.example.com"), None)
        .await;
    assert!(code == 200 || code == 202, "{code} {body}");
    let mut events = Box::pin(
        api.watch(&format!("{CRDS}?watch=1&resourceVersion={rv}"))
            .await,
    );
    let gone = async {
        while let Some(event) = events.next().await {
            if event["type"] == "DELETED" {
                return;
            }
        }
        panic!("the watch ended before the CRD was deleted");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), gone)
        .await
        .expect("the CRD is removed");
    let index = v3_index(&api).await;
    assert!(index["paths"].get("apis/example.com/v1").is_none());
    assert!(index["paths"].get("apis/example.com/v2beta1").is_none());
    assert!(
        v2_definitions(&api)
            .await
            .get("com.example.v1.Gadget")
            .is_none()
    );
    let after = get(&api, "/openapi/v2", &[(header::ACCEPT, "application/json")]).await;
    assert_eq!(after.etag, before.etag, "the built-in document is back");
}
