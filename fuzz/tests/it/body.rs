//! Request body targets: the API server's JSON, YAML and protobuf decoders. Bad bytes are a 400,
//! never a panic; what decodes survives a print→parse round trip.

use skiff_api::body::decode_object;

/// JSON bodies: a decoded object prints and parses back to itself.
#[test]
fn json_body_target() {
    bolero::check!(name = "json_body").for_each(|input: &[u8]| {
        if let Ok(value) = decode_object(input, "application/json") {
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
/// decodes prints as JSON (YAML's subset) and decodes back to itself. One exception: libyaml
/// (like go-yaml, so kube-apiserver too) reads an implicit key of at most 1024 characters, so a
/// JSON object with a longer key is not readable as YAML (`? KEY` in YAML makes one).
#[test]
fn yaml_body_target() {
    bolero::check!(name = "yaml_body").for_each(|input: &[u8]| {
        if let Ok(value) = decode_object(input, "application/apply-patch+yaml") {
            let printed = serde_json::to_vec(&value).unwrap();
            if longest_key(&value) > 1000 {
                return;
            }
            assert_eq!(
                decode_object(&printed, "application/yaml").unwrap(),
                value,
                "YAML round trip through JSON"
            );
        }
    });
}

/// The longest object key in `value`, in bytes (as printed, escapes included at most 6×).
fn longest_key(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.len() * 6).max(longest_key(v)))
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
