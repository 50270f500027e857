//! The protobuf form of `/openapi/v2` (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`):
//! the Swagger 2.0 JSON document encoded as gnostic's `openapi.v2.Document` message (field numbers
//! from gnostic's `openapiv2/OpenAPIv2.proto`), which client-go and kubectl request. Hand-written
//! proto3 wire encoding: only the messages a Kubernetes document uses. Every `Any` (defaults,
//! enums, examples, vendor extensions) carries its value as YAML text, as gnostic does; JSON text
//! is valid YAML.

use serde_json::{Map, Value};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// One message being encoded.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from((field << 3) | wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A singular string: omitted when empty (proto3).
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn double(&mut self, field: u32, x: f64) {
        if x != 0.0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }

    fn int64(&mut self, field: u32, i: i64) {
        if i != 0 {
            self.key(field, VARINT);
            self.varint(i as u64);
        }
    }

    // Typed helpers reading from a JSON object.

    fn str_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        if let Some(s) = o.get(key).and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    fn bool_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        if let Some(b) = o.get(key).and_then(Value::as_bool) {
            self.bool(field, b);
        }
    }

    fn double_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        if let Some(x) = o.get(key).and_then(Value::as_f64) {
            self.double(field, x);
        }
    }

    fn int64_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        if let Some(i) = o.get(key).and_then(Value::as_i64) {
            self.int64(field, i);
        }
    }

    /// A repeated string field.
    fn strings_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        for s in o
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            self.bytes(field, s.as_bytes());
        }
    }

    fn any_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        if let Some(v) = o.get(key) {
            self.message(field, any(v));
        }
    }

    fn anys_of(&mut self, field: u32, o: &Map<String, Value>, key: &str) {
        for v in o.get(key).and_then(Value::as_array).into_iter().flatten() {
            self.message(field, any(v));
        }
    }

    /// `repeated NamedAny vendor_extension`: every `x-` key.
    fn extensions(&mut self, field: u32, o: &Map<String, Value>) {
        for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
            let mut named = Msg::default();
            named.string(1, k);
            named.message(2, any(v));
            self.message(field, named);
        }
    }
}

/// `Any { string yaml = 2; }`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    let text = serde_json::to_string(v).unwrap_or_default();
    m.bytes(2, text.as_bytes());
    m
}

fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// `Schema`.
fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = obj(v) else {
        return m;
    };
    m.str_of(1, o, "$ref");
    m.str_of(2, o, "format");
    m.str_of(3, o, "title");
    m.str_of(4, o, "description");
    m.any_of(5, o, "default");
    m.double_of(6, o, "multipleOf");
    m.double_of(7, o, "maximum");
    m.bool_of(8, o, "exclusiveMaximum");
    m.double_of(9, o, "minimum");
    m.bool_of(10, o, "exclusiveMinimum");
    m.int64_of(11, o, "maxLength");
    m.int64_of(12, o, "minLength");
    m.str_of(13, o, "pattern");
    m.int64_of(14, o, "maxItems");
    m.int64_of(15, o, "minItems");
    m.bool_of(16, o, "uniqueItems");
    m.int64_of(17, o, "maxProperties");
    m.int64_of(18, o, "minProperties");
    m.strings_of(19, o, "required");
    m.anys_of(20, o, "enum");
    match o.get("additionalProperties") {
        // AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2; } }: a oneof
        // member is written even when false.
        Some(Value::Bool(b)) => {
            let mut item = Msg::default();
            item.key(2, VARINT);
            item.varint(u64::from(*b));
            m.message(21, item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.message(1, schema(s));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = o.get("type").and_then(Value::as_str) {
        let mut item = Msg::default();
        item.bytes(1, t.as_bytes());
        m.message(22, item);
    }
    if let Some(items) = o.get("items").filter(|i| i.is_object()) {
        let mut item = Msg::default();
        item.message(1, schema(items));
        m.message(23, item);
    }
    for s in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, s) in props {
            p.message(1, named(name, schema(s)));
        }
        m.message(25, p);
    }
    m.str_of(26, o, "discriminator");
    m.bool_of(27, o, "readOnly");
    m.any_of(30, o, "example");
    m.extensions(31, o);
    m
}

/// A `Named*` pair: `string name = 1; T value = 2;`.
fn named(name: &str, value: Msg) -> Msg {
    let mut m = Msg::default();
    m.string(1, name);
    m.message(2, value);
    m
}

/// `QueryParameterSubSchema` (`in: query`) and the path and header sub-schemas, which share
/// their layout apart from `allow_empty_value` (query only, field 5; the others start their
/// shared fields at 5 instead of 6).
fn non_body_sub_schema(o: &Map<String, Value>, query: bool) -> Msg {
    let mut m = Msg::default();
    m.bool_of(1, o, "required");
    m.str_of(2, o, "in");
    m.str_of(3, o, "description");
    m.str_of(4, o, "name");
    let shift = if query {
        m.bool_of(5, o, "allowEmptyValue");
        1
    } else {
        0
    };
    m.str_of(5 + shift, o, "type");
    m.str_of(6 + shift, o, "format");
    m.str_of(8 + shift, o, "collectionFormat");
    m.any_of(9 + shift, o, "default");
    m.double_of(10 + shift, o, "maximum");
    m.bool_of(11 + shift, o, "exclusiveMaximum");
    m.double_of(12 + shift, o, "minimum");
    m.bool_of(13 + shift, o, "exclusiveMinimum");
    m.int64_of(14 + shift, o, "maxLength");
    m.int64_of(15 + shift, o, "minLength");
    m.str_of(16 + shift, o, "pattern");
    m.int64_of(17 + shift, o, "maxItems");
    m.int64_of(18 + shift, o, "minItems");
    m.bool_of(19 + shift, o, "uniqueItems");
    m.anys_of(20 + shift, o, "enum");
    m.double_of(21 + shift, o, "multipleOf");
    m.extensions(22 + shift, o);
    m
}

/// `ParametersItem`: a `Parameter` or a `JsonReference`.
fn parameters_item(v: &Value) -> Msg {
    let mut item = Msg::default();
    let Some(o) = obj(v) else {
        return item;
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let mut reference = Msg::default();
        reference.string(1, r);
        reference.str_of(2, o, "description");
        item.message(2, reference);
        return item;
    }
    let mut parameter = Msg::default();
    match o.get("in").and_then(Value::as_str).unwrap_or_default() {
        "body" => {
            let mut body = Msg::default();
            body.str_of(1, o, "description");
            body.str_of(2, o, "name");
            body.str_of(3, o, "in");
            body.bool_of(4, o, "required");
            if let Some(s) = o.get("schema") {
                body.message(5, schema(s));
            }
            body.extensions(6, o);
            parameter.message(1, body);
        }
        location => {
            let mut non_body = Msg::default();
            let field = match location {
                "header" => 1,
                "formData" => 2,
                "query" => 3,
                _ => 4,
            };
            // The form-data sub-schema has the query layout (with allow_empty_value).
            non_body.message(field, non_body_sub_schema(o, matches!(field, 2 | 3)));
            parameter.message(2, non_body);
        }
    }
    item.message(1, parameter);
    item
}

/// `Operation`.
fn operation(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = obj(v) else {
        return m;
    };
    m.strings_of(1, o, "tags");
    m.str_of(2, o, "summary");
    m.str_of(3, o, "description");
    m.str_of(5, o, "operationId");
    m.strings_of(6, o, "produces");
    m.strings_of(7, o, "consumes");
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(rs) = o.get("responses").and_then(Value::as_object) {
        let mut responses = Msg::default();
        for (code, r) in rs.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let Some(ro) = obj(r) else { continue };
            let mut response = Msg::default();
            response.str_of(1, ro, "description");
            if let Some(s) = ro.get("schema") {
                let mut item = Msg::default();
                item.message(1, schema(s));
                response.message(2, item);
            }
            response.extensions(5, ro);
            let mut value = Msg::default();
            value.message(1, response);
            responses.message(1, named(code, value));
        }
        responses.extensions(2, rs);
        m.message(9, responses);
    }
    m.strings_of(10, o, "schemes");
    m.bool_of(11, o, "deprecated");
    m.extensions(13, o);
    m
}

/// `PathItem`.
fn path_item(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = obj(v) else {
        return m;
    };
    m.str_of(1, o, "$ref");
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = o.get(method) {
            m.message(field, operation(op));
        }
    }
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    m.extensions(10, o);
    m
}

/// The gnostic `openapi.v2.Document` for a Swagger 2.0 JSON document.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    let Some(o) = obj(doc) else {
        return m.0;
    };
    m.str_of(1, o, "swagger");
    if let Some(info) = o.get("info").and_then(Value::as_object) {
        let mut i = Msg::default();
        i.str_of(1, info, "title");
        i.str_of(2, info, "version");
        i.str_of(3, info, "description");
        i.extensions(7, info);
        m.message(2, i);
    }
    m.str_of(3, o, "host");
    m.str_of(4, o, "basePath");
    m.strings_of(5, o, "schemes");
    m.strings_of(6, o, "consumes");
    m.strings_of(7, o, "produces");
    if let Some(paths) = o.get("paths").and_then(Value::as_object) {
        let mut p = Msg::default();
        p.extensions(1, paths);
        for (name, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
            p.message(2, named(name, path_item(item)));
        }
        m.message(8, p);
    }
    if let Some(defs) = o.get("definitions").and_then(Value::as_object) {
        let mut d = Msg::default();
        for (name, s) in defs {
            d.message(1, named(name, schema(s)));
        }
        m.message(9, d);
    }
    for requirement in o
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = Msg::default();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut array = Msg::default();
            for s in scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                array.bytes(1, s.as_bytes());
            }
            r.message(1, named(name, array));
        }
        m.message(12, r);
    }
    if let Some(defs) = o.get("securityDefinitions").and_then(Value::as_object) {
        let mut d = Msg::default();
        for (name, def) in defs {
            let Some(so) = obj(def) else { continue };
            // Only API-key schemes (the bearer token) are published.
            let mut key = Msg::default();
            key.str_of(1, so, "type");
            key.str_of(2, so, "name");
            key.str_of(3, so, "in");
            key.str_of(4, so, "description");
            key.extensions(5, so);
            let mut item = Msg::default();
            item.message(2, key);
            d.message(1, named(name, item));
        }
        m.message(13, d);
    }
    m.extensions(16, o);
    m.0
}
