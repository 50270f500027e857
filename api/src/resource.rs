//! Reading resources: keys and names of a request, loading one object, selectors and paged lists.

use base64::Engine as _;
use serde_json::Value;
use skiff_kinds::Kind;
use skiff_store::{KeyValue, ListOptions};

use crate::error::ApiError;
use crate::objects::{self};
use crate::request::ResourceRequest;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::AppState;

pub(crate) fn name_of(req: &ResourceRequest) -> &str {
    req.name.as_deref().unwrap_or_default()
}

pub(crate) fn key_of(req: &ResourceRequest) -> String {
    objects::key(req.kind, req.namespace.as_deref(), name_of(req))
}

pub(crate) fn not_found(req: &ResourceRequest) -> ApiError {
    ApiError::not_found(req.kind.group, req.kind.plural, name_of(req))
}

pub(crate) async fn load(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<(Value, KeyValue), ApiError> {
    check_namespace_param(req)?;
    let kv = state
        .store
        .get(&key_of(req))
        .await?
        .ok_or_else(|| not_found(req))?;
    Ok((objects::from_kv(req.kind, &kv)?, kv))
}

pub(crate) fn check_namespace_param(req: &ResourceRequest) -> Result<(), ApiError> {
    if req.kind.namespaced && req.namespace.is_none() && req.name.is_some() {
        return Err(ApiError::no_route(&format!(
            "{} without a namespace",
            req.kind.plural
        )));
    }
    Ok(())
}

/// The continue token: the revision of the first page and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ContinueToken {
    pub(crate) rv: u64,
    pub(crate) start: String,
}

pub(crate) fn encode_continue(rv: u64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken, ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: the token is malformed");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let token: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !token.start.starts_with(prefix) {
        return Err(bad());
    }
    Ok(token)
}

/// Objects of a collection that pass the selectors, read at one revision.
pub(crate) struct Listed {
    /// The stored objects that matched, in key order.
    pub(crate) items: Vec<KeyValue>,
    pub(crate) revision: u64,
    pub(crate) continue_token: Option<String>,
    pub(crate) remaining: Option<u64>,
}

pub(crate) struct Selectors {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selectors {
    pub(crate) fn from_request(req: &ResourceRequest) -> Result<Self, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(req.query.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(req.query.get("fieldSelector").unwrap_or(""), req.kind)?,
        })
    }

    pub(crate) fn matches(&self, kind: &Kind, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(kind, obj)
    }

    /// Whether a stored object matches, decoding only what the selectors look at.
    pub(crate) fn matches_stored(&self, kind: &Kind, kv: &KeyValue) -> Result<bool, ApiError> {
        if self.fields.is_empty() && !objects::converts(kind) {
            if self.labels.is_empty() {
                return Ok(true);
            }
            return Ok(self.labels.matches(&objects::stored_labels(&kv.value)?));
        }
        Ok(self.matches(kind, &objects::from_kv(kind, kv)?))
    }
}

pub(crate) async fn list_objects(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Listed, ApiError> {
    let prefix = objects::collection_prefix(req.kind, req.namespace.as_deref());
    let selectors = Selectors::from_request(req)?;
    let limit = req
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let (mut revision, mut start_after) = (None, None);
    if let Some(token) = req.query.get("continue") {
        let t = decode_continue(token, &prefix)?;
        revision = Some(t.rv);
        start_after = Some(t.start);
    } else if req.query.get("resourceVersionMatch") == Some("Exact") {
        let rv = req.query.get("resourceVersion").ok_or_else(|| {
            ApiError::bad_request("resourceVersionMatch=Exact requires a resourceVersion")
        })?;
        revision = Some(parse_rv(rv)?);
    }
    // A field selector on the name reads one key instead of the collection.
    if let (Some(name), None) = (selectors.fields.exact_name(), &start_after)
        && (req.namespace.is_some() || !req.kind.namespaced)
    {
        let key = objects::key(req.kind, req.namespace.as_deref(), name);
        let current = state.store.current_revision().await?;
        let mut items = Vec::new();
        if revision.is_none()
            && let Some(kv) = state.store.get(&key).await?
        {
            let revision = current.max(kv.mod_revision);
            if selectors.matches_stored(req.kind, &kv)? {
                items.push(kv);
            }
            return Ok(Listed {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        } else if revision.is_none() {
            return Ok(Listed {
                items,
                revision: current,
                continue_token: None,
                remaining: None,
            });
        }
    }
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more;
    let page = limit.map(|l| (l * 2).max(256)).unwrap_or(0);
    let mut read_revision;
    loop {
        let result = state
            .store
            .list(ListOptions {
                prefix: prefix.clone(),
                start_after: start_after.clone(),
                limit: (page > 0).then_some(page),
                revision,
            })
            .await?;
        read_revision = result.revision;
        revision = Some(result.revision);
        more = result.more;
        let mut cut = false;
        let last_in_page = result.items.last().map(|k| k.key.clone());
        for kv in result.items {
            start_after = Some(kv.key.clone());
            if !selectors.matches_stored(req.kind, &kv)? {
                continue;
            }
            last_key = Some(kv.key.clone());
            // More may follow this key in this page or later pages.
            let not_last = last_in_page.as_ref() != Some(&kv.key);
            items.push(kv);
            if limit.is_some_and(|l| items.len() >= l) {
                cut = true;
                more = more || not_last;
                break;
            }
        }
        if cut || !more {
            break;
        }
    }
    let continue_token = match (more, &last_key, limit) {
        (true, Some(k), Some(l)) if items.len() >= l => Some(encode_continue(read_revision, k)),
        _ => None,
    };
    Ok(Listed {
        items,
        revision: read_revision,
        continue_token,
        remaining: None,
    })
}

pub(crate) fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}
