//! Decodes the protobuf bodies real kubectl sent (tests/data/*.pb, recorded by gen/capture.py)
//! and compares them with the JSON kubectl produces for the same object (tests/data/*.json).
//!
//! Rule: the decoded JSON must equal kubectl's JSON after dropping properties whose value is
//! `null`. kubectl 1.37 (`NAME-1.37.json`) writes no such property, so its JSON must match
//! exactly; kubectl 1.32 (`NAME.json`) writes `"creationTimestamp": null` for the zero time,
//! which the decoder leaves out like newer Kubernetes does (`omitzero`).

use std::path::PathBuf;

use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn vectors() -> Vec<(String, Vec<u8>, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir()).expect("tests/data exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("pb") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&path).unwrap();
        let json_path = path.with_extension("json");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(&json_path).unwrap_or_else(|e| {
                panic!("{}: {e}", json_path.display());
            }))
            .unwrap();
        out.push((name, body, expected));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn kubectl_bodies_decode_to_kubectl_json() {
    let vectors = vectors();
    assert!(
        vectors.len() >= 30,
        "expected the recorded vectors, found {}",
        vectors.len()
    );
    let mut failures = Vec::new();
    for (name, body, mut expected) in vectors {
        let exact = name.ends_with("-1.37");
        let got = match skiff_proto::decode(&body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if !exact {
            drop_nulls(&mut expected);
        }
        if got != expected {
            failures.push(format!(
                "{name}:\n got:  {}\n want: {}",
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&expected).unwrap()
            ));
        }
        let kind = expected["kind"].as_str().unwrap();
        let api_version = expected["apiVersion"].as_str().unwrap();
        assert!(skiff_proto::supports(api_version, kind), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_truncation_of_a_kubectl_body_is_an_error() {
    for (name, body, _) in vectors() {
        for len in 0..body.len() {
            // A cut at a field boundary of the envelope can still be a valid (shorter) body;
            // everything else must fail, and nothing may panic.
            if let Ok(v) = skiff_proto::decode(&body[..len]) {
                assert!(v.is_object(), "{name} cut at {len}");
            }
        }
        assert!(
            skiff_proto::decode(&body[..4]).is_err(),
            "{name}: magic only"
        );
    }
}
