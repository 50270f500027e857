//! Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the
//! Kubernetes JSON of the same object.
//!
//! kubectl sends the objects it builds itself (`kubectl create configmap|secret|namespace|
//! deployment|service|job|cronjob|...`, `kubectl run`, the Eviction of `kubectl drain`) as
//! protobuf. A body is the magic `k8s\0`, then a `runtime.Unknown` envelope
//! `{typeMeta{apiVersion, kind}, raw, contentEncoding, contentType}` whose `raw` is the object's
//! protobuf encoding. [`decode`] walks `raw` with a schema table generated from the Kubernetes
//! `generated.proto` files (see `gen/gen_table.py`) and returns the object exactly as its JSON
//! wire form would be, with `apiVersion` and `kind` from the envelope.
//!
//! JSON mapping: field names are the Kubernetes JSON names; only fields on the wire appear; a
//! zero value of a Go value field with `omitempty` (an empty string, `generation: 0`, ...) is
//! dropped like Go's JSON encoder drops it; meta/v1 Time, MicroTime and Duration become strings,
//! Quantity its string, IntOrString a number or a string, RawExtension and FieldsV1 the embedded
//! JSON, `bytes` base64; embedded (inline) Go structs are merged into their parent object.

mod decode;
mod gotime;
mod schema;
mod table;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The 4-byte prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a kubernetes protobuf body: it does not start with the magic \"k8s\\0\"")]
    BadMagic,
    #[error("the protobuf data ends in the middle of a value")]
    Truncated,
    #[error("a protobuf varint is longer than 64 bits")]
    VarintOverflow,
    #[error("a protobuf length prefix of {len} bytes exceeds the {remaining} bytes that remain")]
    LengthOutOfRange { len: u64, remaining: usize },
    #[error("invalid protobuf field number {0}")]
    InvalidFieldNumber(u64),
    #[error("protobuf wire type {0} is not supported")]
    UnsupportedWireType(u8),
    #[error("wrong wire type {got} for field {message}.{field}")]
    WrongWireType {
        message: &'static str,
        field: &'static str,
        got: u8,
    },
    #[error("field {message}.{field} is not valid utf-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("the protobuf envelope has no kind")]
    MissingKind,
    #[error("the protobuf envelope's {0} is not valid utf-8")]
    InvalidEnvelope(&'static str),
    #[error("content encoding {0:?} is not supported")]
    UnsupportedContentEncoding(String),
    #[error("content type {0:?} inside the protobuf envelope is not supported")]
    UnsupportedContentType(String),
    #[error("decoding {kind} in {api_version} from protobuf is not supported")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("the embedded JSON of {message} is invalid: {source}")]
    InvalidEmbeddedJson {
        message: &'static str,
        source: serde_json::Error,
    },
    #[error("the JSON inside the protobuf envelope is invalid: {0}")]
    InvalidJson(serde_json::Error),
    #[error("the time {seconds}s is out of the supported range")]
    TimeOutOfRange { seconds: i64 },
    #[error("intstr.IntOrString has an impossible type {0}")]
    InvalidIntOrString(i64),
    #[error("resource.Quantity is empty")]
    EmptyQuantity,
    #[error("field {message}.{field} is not a finite number")]
    NotFinite {
        message: &'static str,
        field: &'static str,
    },
    #[error("the object is nested more than {0} levels deep")]
    TooDeep(usize),
}

/// Decodes a Kubernetes protobuf body: the 4-byte magic "k8s\0", then a runtime.Unknown
/// envelope {typeMeta{apiVersion,kind}, raw, contentEncoding, contentType} whose `raw` is the
/// object's protobuf encoding. Returns the object as Kubernetes JSON (exactly what the JSON
/// wire form of that object would be), with apiVersion and kind set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    decode_at_depth(body, 0)
}

/// Whether this group/version/kind can be decoded.
pub fn supports(api_version: &str, kind: &str) -> bool {
    message_for(api_version, kind).is_some()
}

/// The message index of a kind.
fn message_for(api_version: &str, kind: &str) -> Option<u16> {
    table::KINDS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()
        .and_then(|i| table::KINDS.get(i))
        .map(|(_, _, m)| *m)
}

/// The envelope of a protobuf body.
#[derive(Default)]
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

fn envelope_string(bytes: &[u8], what: &'static str) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidEnvelope(what))
}

fn parse_unknown(data: &[u8]) -> Result<Unknown<'_>, Error> {
    let mut out = Unknown::default();
    let mut r = wire::Reader::new(data);
    while !r.is_empty() {
        let (num, wt) = r.key()?;
        match (num, wt) {
            (1, wire::LEN) => {
                let mut tm = wire::Reader::new(r.len_delimited()?);
                while !tm.is_empty() {
                    match tm.key()? {
                        (1, wire::LEN) => {
                            out.api_version = envelope_string(tm.len_delimited()?, "apiVersion")?
                        }
                        (2, wire::LEN) => {
                            out.kind = envelope_string(tm.len_delimited()?, "kind")?;
                        }
                        (1 | 2, got) => return Err(envelope_wire_type("typeMeta", got)),
                        (_, other) => tm.skip(other)?,
                    }
                }
            }
            (2, wire::LEN) => out.raw = r.len_delimited()?,
            (3, wire::LEN) => {
                out.content_encoding = envelope_string(r.len_delimited()?, "contentEncoding")?
            }
            (4, wire::LEN) => {
                out.content_type = envelope_string(r.len_delimited()?, "contentType")?;
            }
            (1..=4, got) => return Err(envelope_wire_type("Unknown", got)),
            (_, other) => r.skip(other)?,
        }
    }
    Ok(out)
}

fn envelope_wire_type(field: &'static str, got: u8) -> Error {
    Error::WrongWireType {
        message: "k8s.io.apimachinery.pkg.runtime.Unknown",
        field,
        got,
    }
}

pub(crate) fn decode_at_depth(body: &[u8], depth: usize) -> Result<Value, Error> {
    let data = body.strip_prefix(MAGIC).ok_or(Error::BadMagic)?;
    let unknown = parse_unknown(data)?;
    if !unknown.content_encoding.is_empty() {
        return Err(Error::UnsupportedContentEncoding(unknown.content_encoding));
    }
    if unknown.kind.is_empty() {
        return Err(Error::MissingKind);
    }
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(unknown.kind.clone()));
    object.insert(
        "apiVersion".into(),
        Value::String(unknown.api_version.clone()),
    );
    let fields = match unknown.content_type.as_str() {
        "" | MEDIA_TYPE => {
            let Some(msg) = message_for(&unknown.api_version, &unknown.kind) else {
                return Err(Error::UnsupportedKind {
                    api_version: unknown.api_version,
                    kind: unknown.kind,
                });
            };
            decode::message(unknown.raw, msg, depth + 1)?
        }
        "application/json" => match serde_json::from_slice(unknown.raw) {
            Ok(Value::Object(map)) => Value::Object(map),
            Ok(_) => return Err(Error::UnsupportedContentType(unknown.content_type)),
            Err(e) => return Err(Error::InvalidJson(e)),
        },
        _ => return Err(Error::UnsupportedContentType(unknown.content_type)),
    };
    if let Value::Object(map) = fields {
        for (k, v) in map {
            if k != "kind" && k != "apiVersion" {
                object.insert(k, v);
            }
        }
    }
    Ok(Value::Object(object))
}
