//! The shape of the generated schema table (`table.rs`): messages, fields and their types.

/// One protobuf message.
pub(crate) struct Msg {
    /// Full proto name, for error messages.
    pub(crate) name: &'static str,
    /// How the message maps to JSON when it is not a plain object of its fields.
    pub(crate) special: Special,
    /// Fields sorted by number.
    pub(crate) fields: &'static [Field],
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Special {
    /// An object of its fields.
    None,
    /// meta/v1 Time `{seconds, nanos}`: RFC 3339 in UTC with seconds precision; empty is null.
    Time,
    /// meta/v1 MicroTime `{seconds, nanos}`: RFC 3339 in UTC with 6 fractional digits.
    MicroTime,
    /// meta/v1 Duration `{duration}` (nanoseconds): Go's `time.Duration.String()`.
    Duration,
    /// meta/v1 FieldsV1 `{Raw}`: the embedded JSON.
    FieldsV1,
    /// runtime.RawExtension `{raw}`: the embedded JSON (or embedded Kubernetes protobuf).
    RawExtension,
    /// resource.Quantity `{string}`: the string.
    Quantity,
    /// intstr.IntOrString `{type, intVal, strVal}`: a number or a string.
    IntOrString,
    /// A named string slice such as meta/v1 Verbs or ExtraValue `{items}`: the array.
    Items,
}

/// One field of a message.
pub(crate) struct Field {
    pub(crate) num: u32,
    /// The JSON property name; empty for an inline (embedded) struct.
    pub(crate) json: &'static str,
    pub(crate) ty: Ty,
    pub(crate) flags: u8,
}

/// Repeated field.
pub(crate) const R: u8 = 1;
/// A zero value (`""`, 0, false) is dropped, as Go's JSON encoder does for a value field with
/// `omitempty`.
pub(crate) const Z: u8 = 2;
/// Inline (embedded) struct: its fields are properties of the containing object.
pub(crate) const I: u8 = 4;

impl Field {
    pub(crate) fn repeated(&self) -> bool {
        self.flags & R != 0
    }
    pub(crate) fn omit_zero(&self) -> bool {
        self.flags & Z != 0
    }
    pub(crate) fn inline(&self) -> bool {
        self.flags & I != 0
    }
}

/// Builds a [`Field`]; keeps the table short.
pub(crate) const fn f(num: u32, json: &'static str, ty: Ty, flags: u8) -> Field {
    Field {
        num,
        json,
        ty,
        flags,
    }
}

/// A field's type: every proto2 scalar type (the Kubernetes schema uses only some of them).
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    U32,
    U64,
    S32,
    S64,
    Fx32,
    Fx64,
    Sfx32,
    Sfx64,
    Float,
    Double,
    /// A message: index into `MSGS`.
    Msg(u16),
    /// `map<string, V>`.
    Map(MapVal),
}

/// The value type of a `map<string, V>` field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MapVal {
    Str,
    Bytes,
    Msg(u16),
}
