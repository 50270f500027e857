//! Everything `/openapi/v2` and `/openapi/v3` publish for one set of served custom kinds, built
//! once per set and shared: a server asks [`published`] with its current custom kinds on every
//! request and gets the same [`Published`] back until a CRD changes (custom kinds are interned
//! `&'static Kind` values, so the set of their addresses names the content). The built-in
//! documents are built once per process; the Swagger 2.0 document and its protobuf form are built
//! on first request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::{custom, docs, proto, v2};
use crate::Kind;

/// A document ready to send, with its entity tag (the upper-case hex SHA-512 of the body, as
/// kube-apiserver computes it; quote it for the `ETag` header).
#[derive(Debug)]
pub struct Served {
    /// The encoded document.
    pub body: Vec<u8>,
    /// The content hash.
    pub etag: String,
}

impl Served {
    pub(crate) fn new(body: Vec<u8>) -> Served {
        let etag = hex::encode_upper(Sha512::digest(&body));
        Served { body, etag }
    }
}

/// The OpenAPI documents for one set of custom kinds.
#[derive(Debug)]
pub struct Published {
    custom: Vec<&'static Kind>,
    /// Group-version documents that hold custom kinds, by path (`apis/GROUP/VERSION`); they
    /// replace a built-in document of the same path.
    custom_v3: BTreeMap<String, (Value, Served)>,
    v2_json: OnceLock<Served>,
    v2_protobuf: OnceLock<Served>,
}

/// How many sets of documents are kept (several API servers may share a process).
const KEPT_SETS: usize = 8;

fn key(kinds: &[&'static Kind]) -> Vec<usize> {
    let mut key: Vec<usize> = kinds
        .iter()
        .map(|k| std::ptr::from_ref::<Kind>(k) as usize)
        .collect();
    key.sort_unstable();
    key
}

/// The documents for `custom` (every served custom kind version), from the cache when this set
/// was seen recently.
pub fn published(custom: &[&'static Kind]) -> Arc<Published> {
    static CACHE: Mutex<Vec<(Vec<usize>, Arc<Published>)>> = Mutex::new(Vec::new());
    let wanted = key(custom);
    {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| *k == wanted) {
            let entry = cache.remove(i);
            let found = entry.1.clone();
            cache.push(entry);
            return found;
        }
    }
    let built = Arc::new(Published::build(custom));
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= KEPT_SETS {
        cache.remove(0);
    }
    cache.push((wanted, built.clone()));
    built
}

impl Published {
    /// Builds the documents for `custom` (uncached; prefer [`published`]).
    pub fn build(custom: &[&'static Kind]) -> Published {
        let mut custom: Vec<&'static Kind> = custom.to_vec();
        custom.sort_by(|a, b| (a.group, a.version, a.plural).cmp(&(b.group, b.version, b.plural)));
        custom.dedup_by(|a, b| std::ptr::eq(*a, *b));
        let mut by_path: BTreeMap<String, Vec<&'static Kind>> = BTreeMap::new();
        for k in &custom {
            let path = if k.group.is_empty() {
                format!("api/{}", k.version)
            } else {
                format!("apis/{}/{}", k.group, k.version)
            };
            by_path.entry(path).or_default().push(k);
        }
        let custom_v3 = by_path
            .into_iter()
            .map(|(path, kinds)| {
                let builtin = docs().get(&path).map(|d| &d.value);
                let value = custom::v3_document(&kinds, builtin);
                let served = Served::new(serde_json::to_vec(&value).unwrap_or_default());
                (path, (value, served))
            })
            .collect();
        Published {
            custom,
            custom_v3,
            v2_json: OnceLock::new(),
            v2_protobuf: OnceLock::new(),
        }
    }

    /// The custom kinds these documents describe.
    pub fn custom_kinds(&self) -> &[&'static Kind] {
        &self.custom
    }

    fn paths(&self) -> impl Iterator<Item = (&str, &Served)> {
        let builtin = docs()
            .iter()
            .filter(|(path, _)| !self.custom_v3.contains_key(*path))
            .map(|(path, d)| (path.as_str(), &d.served));
        let custom = self
            .custom_v3
            .iter()
            .map(|(path, (_, served))| (path.as_str(), served));
        builtin.chain(custom)
    }

    /// `/openapi/v3`: `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=…"},…}}`,
    /// the custom group-versions included.
    pub fn v3_index(&self) -> Value {
        let mut entries: Vec<(&str, &Served)> = self.paths().collect();
        entries.sort_by_key(|(path, _)| *path);
        let mut paths = Map::new();
        for (path, served) in entries {
            paths.insert(
                path.to_string(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", served.etag)}),
            );
        }
        json!({ "paths": paths })
    }

    /// The v3 document of `api/v1` or `apis/GROUP/VERSION`, serialized, with its hash.
    pub fn v3_document(&self, group_version_path: &str) -> Option<&Served> {
        let path = group_version_path.trim_matches('/');
        match self.custom_v3.get(path) {
            Some((_, served)) => Some(served),
            None => docs().get(path).map(|d| &d.served),
        }
    }

    /// The same document as a value.
    pub fn v3_document_value(&self, group_version_path: &str) -> Option<&Value> {
        let path = group_version_path.trim_matches('/');
        match self.custom_v3.get(path) {
            Some((value, _)) => Some(value),
            None => docs().get(path).map(|d| &d.value),
        }
    }

    /// The Swagger 2.0 document as a value.
    pub fn v2_value(&self) -> Value {
        let (mut definitions, mut paths) = builtin_v2().clone();
        if !self.custom.is_empty() {
            v2::add_document(
                &mut definitions,
                &mut paths,
                &custom::v2_parts(&self.custom),
            );
        }
        v2::document(definitions, paths)
    }

    /// `/openapi/v2` as JSON.
    pub fn v2_json(&self) -> &Served {
        self.v2_json
            .get_or_init(|| Served::new(serde_json::to_vec(&self.v2_value()).unwrap_or_default()))
    }

    /// `/openapi/v2` as gnostic protobuf.
    pub fn v2_protobuf(&self) -> &Served {
        self.v2_protobuf
            .get_or_init(|| Served::new(proto::encode_document(&self.v2_value())))
    }
}

/// The built-in kinds' Swagger 2.0 definitions and paths, converted once from the v3 documents.
fn builtin_v2() -> &'static (Map<String, Value>, Map<String, Value>) {
    static V2: OnceLock<(Map<String, Value>, Map<String, Value>)> = OnceLock::new();
    V2.get_or_init(|| {
        let mut definitions = Map::new();
        let mut paths = Map::new();
        for doc in docs().values() {
            v2::add_document(&mut definitions, &mut paths, &doc.value);
        }
        (definitions, paths)
    })
}
