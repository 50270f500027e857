//! Walks the protobuf encoding of one message with the schema table and builds its Kubernetes
//! JSON, including the special JSON forms of Time, Quantity, IntOrString, RawExtension and the
//! other apimachinery types.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::schema::{Field, MapVal, Msg, Special, Ty};
use crate::table::MSGS;
use crate::wire::{FIXED32, FIXED64, LEN, Reader, VARINT};
use crate::{Error, MAGIC, gotime};

/// Deepest nesting of messages accepted (a Pod is about 12 levels deep).
pub(crate) const MAX_DEPTH: usize = 100;

/// What has been read so far for one field.
enum Acc<'a> {
    Empty,
    /// A singular scalar: the last one on the wire wins.
    Scalar(Value),
    /// A repeated field.
    List(Vec<Value>),
    /// A singular message: its occurrences are merged, which for protobuf is concatenation.
    Parts(Vec<&'a [u8]>),
    Map(Map<String, Value>),
}

fn msg_at(idx: u16) -> &'static Msg {
    // The generator checks every index; a test walks the whole table.
    &MSGS[usize::from(idx)]
}

/// The wire type a field's values use (unpacked).
fn wire_type_of(ty: Ty) -> u8 {
    match ty {
        Ty::Bool | Ty::I32 | Ty::I64 | Ty::U32 | Ty::U64 | Ty::S32 | Ty::S64 => VARINT,
        Ty::Fx32 | Ty::Sfx32 | Ty::Float => FIXED32,
        Ty::Fx64 | Ty::Sfx64 | Ty::Double => FIXED64,
        Ty::Str | Ty::Bytes | Ty::Msg(_) | Ty::Map(_) => LEN,
    }
}

fn wrong(msg: &Msg, field: &Field, got: u8) -> Error {
    Error::WrongWireType {
        message: msg.name,
        field: field.json,
        got,
    }
}

fn string(bytes: &[u8], msg: &Msg, field: &Field) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidUtf8 {
        message: msg.name,
        field: field.json,
    })
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn float(v: f64, msg: &Msg, field: &Field) -> Result<Value, Error> {
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or(Error::NotFinite {
            message: msg.name,
            field: field.json,
        })
}

/// Reads one scalar value of wire type `wire_type(ty)`.
fn scalar(r: &mut Reader<'_>, ty: Ty, msg: &Msg, field: &Field) -> Result<Value, Error> {
    Ok(match ty {
        Ty::Bool => Value::Bool(r.varint()? != 0),
        Ty::I32 => Value::from(r.varint()? as i32),
        Ty::I64 => Value::from(r.varint()? as i64),
        Ty::U32 => Value::from(r.varint()? as u32),
        Ty::U64 => Value::from(r.varint()?),
        Ty::S32 => {
            let n = r.varint()? as u32;
            Value::from(((n >> 1) as i32) ^ -((n & 1) as i32))
        }
        Ty::S64 => {
            let n = r.varint()?;
            Value::from(((n >> 1) as i64) ^ -((n & 1) as i64))
        }
        Ty::Fx32 => Value::from(r.fixed32()?),
        Ty::Sfx32 => Value::from(r.fixed32()? as i32),
        Ty::Float => {
            // Go prints a float32 with the shortest decimal that round-trips as float32.
            let v = f32::from_bits(r.fixed32()?);
            let shortest: f64 = v.to_string().parse().unwrap_or(f64::NAN);
            float(shortest, msg, field)?
        }
        Ty::Fx64 => Value::from(r.fixed64()?),
        Ty::Sfx64 => Value::from(r.fixed64()? as i64),
        Ty::Double => float(f64::from_bits(r.fixed64()?), msg, field)?,
        Ty::Str => Value::String(string(r.len_delimited()?, msg, field)?),
        Ty::Bytes => base64(r.len_delimited()?),
        Ty::Msg(_) | Ty::Map(_) => return Err(wrong(msg, field, LEN)),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn joined<'a>(parts: &[&'a [u8]]) -> Cow<'a, [u8]> {
    match parts {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    }
}

/// Decodes one `map<string, V>` entry.
fn map_entry(
    data: &[u8],
    val: MapVal,
    msg: &Msg,
    field: &Field,
    depth: usize,
) -> Result<(String, Value), Error> {
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let (num, wt) = r.key()?;
        match (num, wt) {
            (1, LEN) => key = string(r.len_delimited()?, msg, field)?,
            (2, LEN) => match val {
                MapVal::Str => value = Some(Value::String(string(r.len_delimited()?, msg, field)?)),
                MapVal::Bytes => value = Some(base64(r.len_delimited()?)),
                MapVal::Msg(_) => parts.push(r.len_delimited()?),
            },
            (1 | 2, got) => return Err(wrong(msg, field, got)),
            (_, other) => r.skip(other)?,
        }
    }
    let value = match val {
        MapVal::Str | MapVal::Bytes => value.unwrap_or_else(|| Value::String(String::new())),
        MapVal::Msg(m) => message(&joined(&parts), m, depth + 1)?,
    };
    Ok((key, value))
}

/// Reads every field of one message into accumulators parallel to `msg.fields`.
fn collect<'a>(data: &'a [u8], msg: &Msg, depth: usize) -> Result<Vec<Acc<'a>>, Error> {
    let mut accs: Vec<Acc<'a>> = msg.fields.iter().map(|_| Acc::Empty).collect();
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let (num, wt) = r.key()?;
        let Ok(i) = msg.fields.binary_search_by_key(&num, |f| f.num) else {
            r.skip(wt)?;
            continue;
        };
        let (Some(field), Some(acc)) = (msg.fields.get(i), accs.get_mut(i)) else {
            r.skip(wt)?;
            continue;
        };
        let expected = wire_type_of(field.ty);
        match field.ty {
            Ty::Msg(m) => {
                if wt != LEN {
                    return Err(wrong(msg, field, wt));
                }
                let bytes = r.len_delimited()?;
                if field.repeated() {
                    let v = message(bytes, m, depth + 1)?;
                    push(acc, v);
                } else {
                    match acc {
                        Acc::Parts(parts) => parts.push(bytes),
                        _ => *acc = Acc::Parts(vec![bytes]),
                    }
                }
            }
            Ty::Map(val) => {
                if wt != LEN {
                    return Err(wrong(msg, field, wt));
                }
                let (k, v) = map_entry(r.len_delimited()?, val, msg, field, depth)?;
                match acc {
                    Acc::Map(map) => {
                        map.insert(k, v);
                    }
                    _ => {
                        let mut map = Map::new();
                        map.insert(k, v);
                        *acc = Acc::Map(map);
                    }
                }
            }
            ty if field.repeated() && wt == LEN && expected != LEN => {
                // Packed repeated scalars.
                let mut packed = Reader::new(r.len_delimited()?);
                if !matches!(acc, Acc::List(_)) {
                    *acc = Acc::List(Vec::new());
                }
                while !packed.is_empty() {
                    let v = scalar(&mut packed, ty, msg, field)?;
                    push(acc, v);
                }
            }
            ty => {
                if wt != expected {
                    return Err(wrong(msg, field, wt));
                }
                let v = scalar(&mut r, ty, msg, field)?;
                if field.repeated() {
                    push(acc, v);
                } else {
                    *acc = Acc::Scalar(v);
                }
            }
        }
    }
    Ok(accs)
}

fn push(acc: &mut Acc<'_>, v: Value) {
    match acc {
        Acc::List(list) => list.push(v),
        _ => *acc = Acc::List(vec![v]),
    }
}

/// Decodes the protobuf encoding of message `idx` into its Kubernetes JSON.
pub(crate) fn message(data: &[u8], idx: u16, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let msg = msg_at(idx);
    let accs = collect(data, msg, depth)?;
    if msg.special != Special::None {
        return special(msg, data, accs, depth);
    }
    let mut out = Map::new();
    for (field, acc) in msg.fields.iter().zip(accs) {
        let value = match acc {
            Acc::Empty => continue,
            Acc::Scalar(v) => {
                if field.omit_zero() && is_zero(&v) {
                    continue;
                }
                v
            }
            Acc::List(list) => {
                if list.is_empty() {
                    continue;
                }
                Value::Array(list)
            }
            Acc::Map(map) => Value::Object(map),
            Acc::Parts(parts) => {
                let Ty::Msg(m) = field.ty else { continue };
                let v = message(&joined(&parts), m, depth + 1)?;
                if field.inline() {
                    if let Value::Object(inner) = v {
                        out.extend(inner);
                    }
                    continue;
                }
                if v.is_null() {
                    // A zero Time (or an empty RawExtension): Kubernetes (`omitzero`, 1.35+)
                    // leaves the property out; older versions wrote null, which means the same.
                    continue;
                }
                v
            }
        };
        out.insert(field.json.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// The accumulated value of the field named `json`.
fn take<'a, 'b>(msg: &Msg, accs: &'b [Acc<'a>], json: &str) -> &'b Acc<'a> {
    msg.fields
        .iter()
        .position(|f| f.json == json)
        .and_then(|i| accs.get(i))
        .unwrap_or(&Acc::Empty)
}

fn int_of(acc: &Acc<'_>) -> i64 {
    match acc {
        Acc::Scalar(v) => v.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn str_of<'b>(acc: &'b Acc<'_>) -> Option<&'b str> {
    match acc {
        Acc::Scalar(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The raw bytes of a `bytes` field of a special message, read again from the wire (the
/// accumulator holds base64).
fn raw_bytes(data: &[u8], num: u32) -> Result<Option<&[u8]>, Error> {
    let mut out = None;
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let (n, wt) = r.key()?;
        if n == num && wt == LEN {
            out = Some(r.len_delimited()?);
        } else {
            r.skip(wt)?;
        }
    }
    Ok(out)
}

fn embedded_json(msg: &Msg, raw: Option<&[u8]>, depth: usize) -> Result<Value, Error> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(raw) if raw.starts_with(MAGIC) => crate::decode_at_depth(raw, depth + 1),
        Some(raw) => serde_json::from_slice(raw).map_err(|source| Error::InvalidEmbeddedJson {
            message: msg.name,
            source,
        }),
    }
}

fn special(msg: &Msg, data: &[u8], accs: Vec<Acc<'_>>, depth: usize) -> Result<Value, Error> {
    let opt = |s: Option<String>| s.map(Value::String).unwrap_or(Value::Null);
    Ok(match msg.special {
        Special::None => Value::Null,
        Special::Time => {
            if data.is_empty() {
                Value::Null
            } else {
                // Kubernetes keeps only the seconds of a Time.
                opt(gotime::time(int_of(take(msg, &accs, "seconds")))?)
            }
        }
        Special::MicroTime => {
            if data.is_empty() {
                Value::Null
            } else {
                opt(gotime::micro_time(
                    int_of(take(msg, &accs, "seconds")),
                    int_of(take(msg, &accs, "nanos")),
                )?)
            }
        }
        Special::Duration => Value::String(gotime::duration(int_of(take(msg, &accs, "duration")))),
        Special::Quantity => match take(msg, &accs, "string") {
            Acc::Empty => Value::String("0".into()),
            acc => match str_of(acc) {
                Some(s) if !s.is_empty() => Value::String(s.to_string()),
                _ => return Err(Error::EmptyQuantity),
            },
        },
        Special::IntOrString => match int_of(take(msg, &accs, "type")) {
            0 => Value::from(int_of(take(msg, &accs, "intVal"))),
            1 => Value::String(str_of(take(msg, &accs, "strVal")).unwrap_or("").to_string()),
            other => return Err(Error::InvalidIntOrString(other)),
        },
        Special::RawExtension | Special::FieldsV1 => {
            let num = msg.fields.first().map_or(1, |f| f.num);
            embedded_json(msg, raw_bytes(data, num)?, depth)?
        }
        Special::Items => match take(msg, &accs, "items") {
            Acc::List(items) if !items.is_empty() => Value::Array(items.clone()),
            _ => Value::Null,
        },
    })
}
