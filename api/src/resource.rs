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

/// Keys a list reads from the store at a time: besides the items it returns (none, when its
/// body is streamed), a list holds at most one such page of stored objects.
pub(crate) const STORE_PAGE: usize = 500;

/// What a list request reads: the collection, the selectors, the limit, and where it starts.
pub(crate) struct ListPlan {
    pub(crate) prefix: String,
    pub(crate) selectors: Selectors,
    pub(crate) limit: Option<usize>,
    /// The revision to read at (a continue token's, or `resourceVersionMatch=Exact`); `None`:
    /// the current one.
    pub(crate) revision: Option<u64>,
    /// The last key of the previous page (a continue token's).
    pub(crate) start_after: Option<String>,
}

impl ListPlan {
    pub(crate) fn from_request(req: &ResourceRequest) -> Result<Self, ApiError> {
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
        Ok(ListPlan {
            prefix,
            selectors,
            limit,
            revision,
            start_after,
        })
    }

    /// Every object under `prefix`, from the current revision.
    pub(crate) fn everything(prefix: String, kind: &Kind) -> Result<Self, ApiError> {
        Ok(ListPlan {
            prefix,
            selectors: Selectors {
                labels: LabelSelector::parse("")?,
                fields: FieldSelector::parse("", kind)?,
            },
            limit: None,
            revision: None,
            start_after: None,
        })
    }

    /// The one name a field selector asks for, when that reads one key instead of the
    /// collection (a first page of a collection within one namespace, or cluster-scoped).
    fn exact_key(&self, req: &ResourceRequest) -> Option<String> {
        let name = self.selectors.fields.exact_name()?;
        (self.start_after.is_none() && (req.namespace.is_some() || !req.kind.namespaced))
            .then(|| objects::key(req.kind, req.namespace.as_deref(), name))
    }

    /// Whether the whole result may be streamed page by page: no limit (so no continue token to
    /// compute first) and a read of the collection (not of one key).
    pub(crate) fn streams(&self, req: &ResourceRequest) -> bool {
        self.limit.is_none() && self.exact_key(req).is_none()
    }
}

/// A collection read one store page at a time, every page at the revision of the first, keeping
/// the items that pass the selectors: a list's memory is one page, whatever the collection's
/// size.
pub(crate) struct Pages {
    store: std::sync::Arc<dyn skiff_store::Store>,
    kind: &'static Kind,
    plan: ListPlan,
    done: bool,
}

impl Pages {
    pub(crate) fn new(
        store: std::sync::Arc<dyn skiff_store::Store>,
        kind: &'static Kind,
        plan: ListPlan,
    ) -> Self {
        Pages {
            store,
            kind,
            plan,
            done: false,
        }
    }

    /// The revision read at, once the first page is read.
    pub(crate) fn revision(&self) -> Option<u64> {
        self.plan.revision
    }

    /// The matching items of the next page of at most `STORE_PAGE` keys (possibly none);
    /// `None` once the collection is read.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<KeyValue>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let result = self
            .store
            .list(ListOptions {
                prefix: self.plan.prefix.clone(),
                start_after: self.plan.start_after.clone(),
                limit: Some(STORE_PAGE),
                revision: self.plan.revision,
            })
            .await?;
        self.plan.revision = Some(result.revision);
        match result.items.last() {
            Some(last) => self.plan.start_after = Some(last.key.clone()),
            None => self.done = true,
        }
        self.done |= !result.more;
        let mut items = Vec::with_capacity(result.items.len());
        for kv in result.items {
            if self.plan.selectors.matches_stored(self.kind, &kv)? {
                items.push(kv);
            }
        }
        Ok(Some(items))
    }
}

/// The objects a list request asks for, all in memory (a page of them, with a limit). A list
/// served whole without a limit streams through `Pages` instead (`verbs::list`).
pub(crate) async fn list_objects(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Listed, ApiError> {
    let plan = ListPlan::from_request(req)?;
    // A field selector on the name reads one key instead of the collection.
    if let Some(key) = plan.exact_key(req) {
        let current = state.store.current_revision().await?;
        let mut items = Vec::new();
        if plan.revision.is_none() {
            let mut revision = current;
            if let Some(kv) = state.store.get(&key).await? {
                revision = current.max(kv.mod_revision);
                if plan.selectors.matches_stored(req.kind, &kv)? {
                    items.push(kv);
                }
            }
            return Ok(Listed {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        }
    }
    let ListPlan {
        prefix,
        selectors,
        limit,
        mut revision,
        mut start_after,
    } = plan;
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more;
    let page = limit.map_or(STORE_PAGE, |l| l.saturating_mul(2).clamp(256, STORE_PAGE));
    let mut read_revision;
    loop {
        let result = state
            .store
            .list(ListOptions {
                prefix: prefix.clone(),
                start_after: start_after.clone(),
                limit: Some(page),
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
