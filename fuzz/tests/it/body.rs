//! Request body targets: the API server's JSON, YAML and protobuf decoders. Bad bytes are a 400,
//! never a panic; what decodes is an object and survives a print→parse round trip.

use skiff_api::body::decode_object;

/// JSON bodies: a decoded object prints and parses back to itself.
#[test]
fn json_body_target() {
    bolero::check!(name = "json_body").for_each(|input: &[u8]| {
        if let Ok(value) = decode_object(input, "application/json") {
            assert!(value.is_object(), "decoded a non-object: {value}");
            let printed = serde_json::to_vec(&value).unwrap();
            assert_eq!(
                decode_object(&printed, "application/json").unwrap(),
                value,
                "JSON round trip"
            );
        }
    });
}

/// YAML bodies (kubectl's `apply -f` of a YAML file, `application/apply-patch+yaml`): what
/// decodes prints as JSON and decodes back to itself as YAML. JSON is a subset of YAML 1.2, but
/// libyaml (like go-yaml, so kube-apiserver too) reads YAML 1.1, which differs twice: U+2028,
/// U+2029 and U+0085 are line breaks, even in a quoted string (so the JSON is printed with them
/// escaped, as Go's encoder prints them), and an implicit key has at most 1024 characters (so a
/// longer one, which `? KEY` in YAML makes, is not checked).
#[test]
fn yaml_body_target() {
    bolero::check!(name = "yaml_body").for_each(|input: &[u8]| {
        if let Ok(value) = decode_object(input, "application/apply-patch+yaml") {
            assert!(value.is_object(), "decoded a non-object: {value}");
            if longest_key(&value) > 1024 {
                return;
            }
            let printed = serde_json::to_string(&value)
                .unwrap()
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029")
                .replace('\u{85}', "\\u0085");
            assert_eq!(
                decode_object(printed.as_bytes(), "application/yaml").unwrap(),
                value,
                "YAML round trip through JSON"
            );
        }
    });
}

/// The longest object key in `value` as printed (quoted and escaped), in bytes.
fn longest_key(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| printed_len(k).max(longest_key(v)))
            .max()
            .unwrap_or(0),
        serde_json::Value::Array(items) => items.iter().map(longest_key).max().unwrap_or(0),
        _ => 0,
    }
}

/// Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`, what client-go sends for
/// built-in kinds): any bytes decode to an object or fail with an error.
#[test]
fn protobuf_body_target() {
    bolero::check!(name = "protobuf_body").for_each(|input: &[u8]| {
        if let Ok(value) = skiff_proto::decode(input) {
            assert!(value.is_object(), "a protobuf body decodes to an object");
            serde_json::to_vec(&value).expect("a decoded object prints as JSON");
        }
        // With the magic prepended, random bytes reach the envelope decoder.
        let mut framed = b"k8s\0".to_vec();
        framed.extend_from_slice(input);
        let _ = skiff_proto::decode(&framed);
    });
}

/// `key`'s length as the round trip prints it.
fn printed_len(key: &str) -> usize {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    let wide = key
        .chars()
        .filter(|c| matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}'))
        .count();
    // Each of those prints as 6 bytes (`\u2028`) instead of its 2 or 3.
    quoted.len() + wide * 4
}
