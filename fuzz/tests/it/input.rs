//! Turning fuzz bytes into inputs: Kubernetes-shaped JSON built from a small vocabulary, so that
//! random bytes reach the patch code's directives and merge keys instead of failing to parse.

use serde_json::{Map, Value, json};

/// Keys a Kubernetes object and its patches use, directives included.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "spec",
    "status",
    "replicas",
    "template",
    "containers",
    "initContainers",
    "image",
    "env",
    "value",
    "ports",
    "containerPort",
    "protocol",
    "volumes",
    "volumeMounts",
    "mountPath",
    "tolerations",
    "key",
    "conditions",
    "type",
    "strategy",
    "rollingUpdate",
    "selector",
    "matchLabels",
    "managedFields",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList/finalizers",
    "op",
    "path",
    "from",
    "",
    "a",
    "b",
];

/// Strings, including the directive values and JSON pointer paths.
const STRINGS: &[&str] = &[
    "",
    "a",
    "b",
    "nginx",
    "delete",
    "replace",
    "merge",
    "retainKeys",
    "TCP",
    "/",
    "/spec",
    "/spec/replicas",
    "/metadata/labels/a",
    "/spec/template/spec/containers/0",
    "/spec/template/spec/containers/-",
    "/a/~1b",
    "/a/~0",
    "add",
    "remove",
    "replace",
    "move",
    "copy",
    "test",
    "op",
    "path",
    "from",
    "value",
    "v1",
    "apps/v1",
    "Deployment",
    "Pod",
];

/// A cursor over the fuzz bytes; reads past the end give zeros.
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    pub(crate) fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn pick<'b>(&mut self, items: &'b [&'b str]) -> &'b str {
        items[self.byte() as usize % items.len()]
    }

    /// A JSON value at most `depth` levels deep.
    pub(crate) fn value(&mut self, depth: u32) -> Value {
        let tag = self.byte();
        let leaf = depth == 0 || self.exhausted();
        match tag % if leaf { 5 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(tag & 0x80 != 0),
            2 => json!(i64::from(self.byte() as i8) * i64::from(self.byte())),
            3 | 4 => Value::String(self.pick(STRINGS).to_owned()),
            5 => {
                let n = self.byte() % 5;
                Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
            }
            _ => self.object(depth - 1),
        }
    }

    /// A JSON object with up to six members.
    pub(crate) fn object(&mut self, depth: u32) -> Value {
        let n = self.byte() % 7;
        let mut map = Map::new();
        for _ in 0..n {
            let key = self.pick(KEYS).to_owned();
            let value = self.value(depth);
            map.insert(key, value);
        }
        Value::Object(map)
    }
}

/// Two JSON documents from one input: `DOC\0PATCH` as text when the input is text (the form of
/// the committed corpus, captured objects and patches), built from the bytes otherwise.
pub(crate) fn two_documents(input: &[u8]) -> Option<(Value, Value)> {
    if input.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
        let split = input.iter().position(|b| *b == 0)?;
        let doc = serde_json::from_slice(&input[..split]).ok()?;
        let patch = serde_json::from_slice(&input[split + 1..]).ok()?;
        return Some((doc, patch));
    }
    let mut bytes = Bytes::new(input);
    let doc = bytes.object(4);
    let patch = if bytes.byte().is_multiple_of(3) {
        bytes.value(4)
    } else {
        bytes.object(4)
    };
    Some((doc, patch))
}

/// Input bytes as text, lossily (most parsers take `&str`).
pub(crate) fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}
