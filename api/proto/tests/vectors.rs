//! Decodes Kubernetes protobuf bodies and compares them with the JSON Go produces for the same
//! object:
//! - `NAME.pb` / `NAME-1.37.pb`: the bodies kubectl 1.32 / 1.37 sent for `kubectl create ...`
//!   (recorded by gen/capture.py); the JSON is kubectl's `--dry-run=client -o json` output;
//! - `go-{zero,one}-KIND-1.37.pb`: bodies with every field of KIND set (to its zero value, or to
//!   1/"x"/true), served to kubectl 1.37 by gen/probe_zero.py; the JSON is what kubectl printed
//!   after decoding them.
//!
//! Rule: equal after dropping properties whose value is `null` on both sides. Go writes `null`
//! for a nil slice or map without `omitempty` and (before Kubernetes 1.35's `omitzero`) for the
//! zero time, as in kubectl 1.32's `"creationTimestamp": null`; the decoder leaves such
//! properties out, which means the same to every Kubernetes client.

use std::path::PathBuf;

use serde_json::Value;

fn data_dir() -> PathBuf {
    // At run time: a test binary reused from a shared target directory must read this checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/data")
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

/// The JSON paths where `got` and `want` differ.
fn diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}/{k}"), gv, wv, out),
                    None => out.push(format!("{path}/{k}: missing, want {wv}")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}/{k}: unexpected {gv}"));
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                diff(&format!("{path}/{i}"), gv, wv, out);
            }
        }
        _ if got != want => out.push(format!("{path}: got {got}, want {want}")),
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
        let mut got = match skiff_proto::decode(&body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        drop_nulls(&mut expected);
        drop_nulls(&mut got);
        let mut diffs = Vec::new();
        diff("", &got, &expected, &mut diffs);
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
        }
        let kind = expected["kind"].as_str().unwrap();
        let api_version = expected["apiVersion"].as_str().unwrap();
        assert!(skiff_proto::supports(api_version, kind), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncated_bodies_are_errors() {
    for (name, body, _) in vectors() {
        // A body cut at a boundary between the envelope's fields (after typeMeta, after raw,
        // after contentEncoding) is still well-formed; every other cut must fail.
        let mut well_formed = 0;
        for len in 0..body.len() {
            if skiff_proto::decode(&body[..len]).is_ok() {
                well_formed += 1;
            }
        }
        assert!(
            well_formed <= 3,
            "{name}: {well_formed} truncations decoded"
        );
        assert!(
            skiff_proto::decode(&body[..4]).is_err(),
            "{name}: magic only"
        );
    }
}

/// A small deterministic PRNG (xorshift64*), so the mutation test is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(7) {
            0 if !b.is_empty() => b[at] = rng.next() as u8,
            1 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            2 => b.insert(at, rng.next() as u8),
            3 if !b.is_empty() => {
                b.remove(at);
            }
            4 => b.truncate(at),
            5 => {
                // A huge or overlong varint where a length or key may be.
                let junk: &[u8] = match rng.below(3) {
                    0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    1 => &[0xff; 11],
                    _ => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                };
                let at = at.min(b.len());
                b.splice(at..at, junk.iter().copied());
            }
            _ => {
                // Duplicate a slice (repeated fields, merged messages).
                let end = (at + rng.below(32)).min(b.len());
                let piece = b[at.min(end)..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, piece);
            }
        }
    }
    b
}

#[test]
fn mutated_bodies_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut ok, mut err) = (0, 0);
    for (_, body, _) in vectors() {
        for _ in 0..400 {
            match skiff_proto::decode(&mutate(&mut rng, &body)) {
                Ok(v) => {
                    assert!(v.is_object());
                    ok += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    err += 1;
                }
            }
        }
    }
    // Both outcomes occur, so the mutations reach past the envelope.
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
