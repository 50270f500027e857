//! Request bodies and content negotiation: JSON/YAML decoding, the 3 MiB limit, Accept parsing.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::{ApiError, StatusReason};

/// Largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Past the limit the rest of a body is still read (and dropped) up to this much, so that the
/// client finishes sending and reads the 413 instead of seeing its connection reset.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads the whole body, answering 413 past the limit.
pub async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        } else {
            buf.clear();
            if total > DRAIN_BYTES {
                break;
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(buf.freeze())
}

/// The media type of the request body, without parameters, lower-cased.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes a JSON or YAML object body. Anything but a single object is a 400.
pub fn decode_object(bytes: &[u8], media_type: &str) -> Result<Value, ApiError> {
    let value = decode_body(bytes, media_type)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    Ok(value)
}

/// Decodes a JSON, YAML or protobuf body, whatever its shape (a JSON patch is an array): for the
/// audit log, which records request bodies as they came.
pub fn decode_body(bytes: &[u8], media_type: &str) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; an object was expected",
        ));
    }
    let value = if is_yaml(media_type) {
        decode_yaml(bytes)?
    } else if media_type.is_empty()
        || media_type == "application/json"
        || media_type.ends_with("+json")
        || media_type == "*/*"
    {
        serde_json::from_slice::<Value>(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    } else if media_type == skiff_proto::MEDIA_TYPE {
        skiff_proto::decode(bytes)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode the protobuf body: {e}")))?
    } else {
        return Err(ApiError::new(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {media_type:?}"
            ),
        ));
    };
    Ok(value)
}

pub fn is_yaml(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/yaml" | "application/x-yaml" | "text/yaml"
    ) || media_type.ends_with("+yaml")
}

/// The deepest flow nesting (`[`, `{`) a YAML body may reach before it is parsed. libyaml's
/// scanner takes time quadratic in the flow depth (32 000 levels: seconds; 100 000: minutes of a
/// server thread), so a deeper body is refused (400) unparsed. Brackets are counted over the raw
/// bytes, quoted ones included: only a body with more than this many unclosed at once is
/// refused; serde_yaml refuses nesting past 128 levels anyway.
pub const MAX_YAML_FLOW_DEPTH: usize = 1000;

/// Whether `bytes` open more than `max` brackets or braces without closing them.
fn flow_depth_over(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    for &b in bytes {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// YAML (which includes JSON) into a JSON value; non-string keys and non-finite numbers are errors.
pub fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    if flow_depth_over(bytes, MAX_YAML_FLOW_DEPTH) {
        return Err(ApiError::bad_request(format!(
            "error converting YAML to JSON: nested deeper than {MAX_YAML_FLOW_DEPTH} levels"
        )));
    }
    let error =
        |e: serde_yaml::Error| ApiError::bad_request(format!("error converting YAML to JSON: {e}"));
    let mut yaml: serde_yaml::Value = serde_yaml::from_slice(bytes).map_err(error)?;
    untag(&mut yaml);
    serde_json::to_value(&yaml)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
}

/// Drops the YAML tags the parser left, as Kubernetes' YAML decoder (go-yaml through
/// sigs.k8s.io/yaml) ignores tags it does not know: a tagged collection is the collection, a
/// tagged scalar is its text (`!foo 123` is `"123"`); serde_yaml would turn a tagged value into
/// a one-entry map `{tag: value}`. The core schema's tags (`!!str 123`) are resolved by the
/// parser already.
fn untag(value: &mut serde_yaml::Value) {
    use serde_yaml::Value;
    match value {
        Value::Tagged(tagged) => {
            *value = match std::mem::take(&mut tagged.value) {
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::String(String::new()),
                other => other,
            };
            untag(value);
        }
        Value::Sequence(items) => items.iter_mut().for_each(untag),
        Value::Mapping(map) => {
            for (mut key, mut item) in std::mem::take(map) {
                untag(&mut key);
                untag(&mut item);
                map.insert(key, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// What the client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Json,
    Table,
    /// Aggregated discovery, with its version ("v2" or "v2beta1").
    AggregatedDiscovery(&'static str),
}

pub fn negotiate(headers: &HeaderMap) -> Wanted {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first clause we can serve wins, as the client ordered them by preference.
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let param = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.as_str())
        };
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        match (param("as"), param("g"), param("v")) {
            (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => return Wanted::Table,
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                return Wanted::AggregatedDiscovery("v2");
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2beta1")) => {
                return Wanted::AggregatedDiscovery("v2beta1");
            }
            (None, _, _) => return Wanted::Json,
            _ => continue,
        }
    }
    Wanted::Json
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    /// Found by the json_body fuzz target: serde_json's default float parsing is not correctly
    /// rounded, so a number the server printed read back as another (each read-modify-write
    /// moved 7.777777777777778e96 down one unit in the last place). Go parses exactly.
    #[test]
    fn a_decoded_float_prints_and_reads_back_unchanged() {
        for body in [
            "{\"n\":7777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777772}",
            "{\"n\":7.777777777777778e96}",
            "{\"n\":[0.1,1e-300,1.7976931348623157e308,123456789012345678901234567890]}",
        ] {
            let value = decode_object(body.as_bytes(), "application/json").unwrap();
            let printed = serde_json::to_vec(&value).unwrap();
            let again = decode_object(&printed, "application/json").unwrap();
            assert_eq!(again, value, "{body}");
        }
        let value = decode_object(b"{\"n\":7.777777777777778e96}", "application/json").unwrap();
        assert_eq!(value["n"].as_f64(), Some(7.777777777777778e96));
    }

    /// Found by the yaml_body fuzz target: a tag (`!t {a: 1}`) made the object `{"!t": {...}}`.
    /// Kubernetes ignores tags it does not know; a tagged scalar is its text.
    #[test]
    fn yaml_tags_are_dropped() {
        for (yaml, json) in [
            ("a: !foo bar", serde_json::json!({"a": "bar"})),
            (
                "!t {a: !!str 1, !k b: [!x 2, !y true, 3]}",
                serde_json::json!({"a": "1", "b": ["2", "true", 3]}),
            ),
            // A `<<` key stays a key (kubectl's server-side apply sends JSON as YAML).
            ("{\"<<\": {\"x\": 1}}", serde_json::json!({"<<": {"x": 1}})),
        ] {
            assert_eq!(decode_yaml(yaml.as_bytes()).unwrap(), json, "{yaml}");
        }
    }

    #[test]
    fn kubectl_get_asks_for_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(negotiate(&h), Wanted::Table);
    }

    #[test]
    fn protobuf_first_gets_json() {
        let h = accept("application/vnd.kubernetes.protobuf,application/json");
        assert_eq!(negotiate(&h), Wanted::Json);
        assert_eq!(negotiate(&HeaderMap::new()), Wanted::Json);
    }

    #[test]
    fn aggregated_discovery_only_when_asked_exactly() {
        let h = accept(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        );
        assert_eq!(negotiate(&h), Wanted::AggregatedDiscovery("v2"));
        let h = accept(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        );
        assert_eq!(negotiate(&h), Wanted::AggregatedDiscovery("v2beta1"));
        let h = accept(
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
        );
        assert_eq!(negotiate(&h), Wanted::Json);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            decode_object(b"{\"a\":1}", "application/json").unwrap()["a"],
            1
        );
        assert_eq!(
            decode_object(b"a: 1\n", "application/yaml").unwrap()["a"],
            1
        );
        assert_eq!(
            decode_object(b"{\"a\":", "application/json")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            decode_object(b"a: [", "application/yaml").unwrap_err().code,
            400
        );
        assert_eq!(decode_object(b"", "").unwrap_err().code, 400);
        // Well-formed, but not an object.
        for (doc, media_type) in [
            (&b"[1]"[..], "application/json"),
            (b"\"pod\"", "application/json"),
            (b"just text\n", "application/yaml"),
            (b"- a\n", "application/yaml"),
        ] {
            let err = decode_object(doc, media_type).unwrap_err();
            assert_eq!(err.code, 400, "{media_type}");
            assert!(
                err.message.contains("must be a JSON or YAML object"),
                "{}",
                err.message
            );
        }
        // Deep nesting is a 400, at once (libyaml would take minutes over the YAML one).
        let (open, close) = ("[".repeat(100_000), "]".repeat(100_000));
        for (doc, media_type) in [
            (format!("a: {open}{close}\n"), "application/yaml"),
            (format!("{{\"a\":{open}{close}}}"), "application/json"),
        ] {
            let err = decode_object(doc.as_bytes(), media_type).unwrap_err();
            assert_eq!(err.code, 400, "{media_type}: {}", err.message);
        }
        // Many balanced brackets are fine.
        let wide = format!("a: |\n  {}\n", "[x]".repeat(10_000));
        assert!(decode_object(wide.as_bytes(), "application/yaml").is_ok());
        assert_eq!(decode_object(b"x", "text/csv").unwrap_err().code, 415);
    }
}
