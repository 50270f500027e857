//! The verbs on resources: get, list, create, update, patch, delete, deletecollection.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};
use skiff_kinds::Kind;
use skiff_kinds::validate::FieldValidation;
use skiff_store::{KeyValue, ListOptions};

use crate::app::{AppState, json_response, table_response};
use crate::body::{Wanted, content_type, decode_object, decode_yaml, negotiate};
use crate::error::{ApiError, Cause, StatusReason};
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::{self, Change, Prepared, Write, map_validation};
use crate::request::ResourceRequest;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::strategy;

pub(crate) async fn handle(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
    let sub = req.subresource.clone();
    match (req.method.clone(), req.name.is_some(), sub.as_deref()) {
        (Method::GET, false, None) => {
            if req.legacy_watch || req.query.flag("watch") {
                crate::watch::watch(state, req).await
            } else {
                list(state, &req).await
            }
        }
        (Method::GET, true, None) if req.legacy_watch || req.query.flag("watch") => {
            crate::watch::watch(state, req).await
        }
        (Method::GET, true, None) => get(state, &req).await,
        (Method::POST, false, None) => create(state, &req).await,
        (Method::PUT, true, None) => update(state, &req, Target::Main).await,
        (Method::PATCH, true, None) => patch(state, &req, Target::Main).await,
        (Method::DELETE, true, None) => delete(state, &req).await,
        (Method::DELETE, false, None) => delete_collection(state, &req).await,
        (_, true, Some(_)) => crate::subresources::handle(state, req).await,
        (method, _, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {} {}",
            req.kind.plural,
            if req.name.is_some() {
                "objects"
            } else {
                "collections"
            }
        ))),
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The object, except `status` for kinds with a status subresource.
    Main,
    /// Only `status` (the status subresource).
    Status,
}

impl Target {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Target::Main => None,
            Target::Status => Some("status"),
        }
    }
}

pub(crate) fn name_of(req: &ResourceRequest) -> &str {
    req.name.as_deref().unwrap_or_default()
}

fn key_of(req: &ResourceRequest) -> String {
    objects::key(req.kind, req.namespace.as_deref(), name_of(req))
}

fn not_found(req: &ResourceRequest) -> ApiError {
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

fn check_namespace_param(req: &ResourceRequest) -> Result<(), ApiError> {
    if req.kind.namespaced && req.namespace.is_none() && req.name.is_some() {
        return Err(ApiError::no_route(&format!(
            "{} without a namespace",
            req.kind.plural
        )));
    }
    Ok(())
}

/// Renders one object as JSON or as a one-row Table.
pub(crate) fn respond_object(req: &ResourceRequest, code: StatusCode, obj: &Value) -> Response {
    match negotiate(&req.headers) {
        Wanted::Table => {
            let include = req.query.get("includeObject").unwrap_or("Metadata");
            let table = skiff_kinds::table::table(
                req.kind,
                std::slice::from_ref(obj),
                include,
                jiff::Timestamp::now(),
            );
            table_response(code, &table)
        }
        _ => json_response(code, obj),
    }
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

async fn get(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (obj, _) = load(state, req).await?;
    Ok(respond_object(req, StatusCode::OK, &obj))
}

/// The continue token: the revision of the first page and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

fn encode_continue(rv: u64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken, ApiError> {
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

async fn list(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let listed = list_objects(state, req).await?;
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = &listed.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(rem) = listed.remaining {
        metadata["remainingItemCount"] = json!(rem);
    }
    if negotiate(&req.headers) == Wanted::Table {
        let items = listed
            .items
            .iter()
            .map(|kv| objects::from_kv(req.kind, kv))
            .collect::<Result<Vec<_>, _>>()?;
        let include = req.query.get("includeObject").unwrap_or("Metadata");
        let mut table =
            skiff_kinds::table::table(req.kind, &items, include, jiff::Timestamp::now());
        table["metadata"] = metadata;
        return Ok(table_response(StatusCode::OK, &table));
    }
    // The list is written directly from the stored bytes: only each object's top level and
    // metadata are decoded, to set its resourceVersion.
    let total: usize = listed.items.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 256);
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, &req.kind.list_kind())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut out, &req.kind.api_version())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut out, &metadata).map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"items\":[");
    for (i, kv) in listed.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if objects::converts(req.kind) {
            let mut obj = objects::from_kv(req.kind, kv)?;
            if let Some(m) = obj.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            serde_json::to_writer(&mut out, &obj).map_err(|e| ApiError::internal(e.to_string()))?;
        } else {
            objects::write_list_item(kv, &mut out)?;
        }
    }
    out.extend_from_slice(b"]}");
    let mut response = Response::new(axum::body::Body::from(out));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn field_validation(req: &ResourceRequest) -> Result<FieldValidation, ApiError> {
    match req.query.get("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other:?}: must be Ignore, Warn or Strict"
        ))),
    }
}

/// Keys that occur twice in one object of a JSON body: an error under Strict, warnings under Warn.
fn duplicate_fields(req: &ResourceRequest) -> Result<Vec<String>, ApiError> {
    let media = content_type(&req.headers);
    let json = media.is_empty() || media == "application/json";
    let mode = field_validation(req)?;
    if !json || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    // A body that does not parse is reported by the decoder with its own message.
    let found: Vec<String> = skiff_kinds::validate::duplicate_fields(&req.body)
        .unwrap_or_default()
        .iter()
        .map(|p| format!("duplicate field {}", Value::String(p.clone())))
        .collect();
    if mode == FieldValidation::Strict && !found.is_empty() {
        let kind = req.kind;
        return Err(ApiError::bad_request(format!(
            "{} in version {} cannot be handled as a {}: strict decoding error: {}",
            kind.kind,
            Value::String(kind.version.to_string()),
            kind.kind,
            found.join(", ")
        )));
    }
    Ok(found)
}

/// The field manager of a write: the query parameter, else the user agent's program name.
fn field_manager(req: &ResourceRequest) -> Result<String, ApiError> {
    if let Some(m) = req.query.get("fieldManager") {
        if m.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager must be at most 128 characters",
            ));
        }
        return Ok(m.to_string());
    }
    let agent = req
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    Ok(agent
        .split('/')
        .next()
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect())
}

/// The write of one request's object.
fn write_of<'a>(req: &'a ResourceRequest, name: &'a str) -> Result<Write<'a>, ApiError> {
    Ok(Write {
        kind: req.kind,
        namespace: req.namespace.as_deref(),
        name,
        user: &req.user,
        dry_run: req.query.dry_run()?,
    })
}

fn prepare_create(
    req: &ResourceRequest,
    obj: Value,
    manager: &str,
    applied: bool,
) -> Result<Prepared, ApiError> {
    registry::prepare_create(
        req.kind,
        req.namespace.as_deref(),
        obj,
        field_validation(req)?,
        manager,
        applied,
    )
}

async fn create(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    if req.kind.namespaced && req.namespace.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "{} must be created in a namespace",
            req.kind.plural
        )));
    }
    let obj = decode_object(&req.body, &content_type(&req.headers))?;
    let duplicates = duplicate_fields(req)?;
    let manager = field_manager(req)?;
    let mut prepared = prepare_create(req, obj, &manager, false)?;
    prepared.warnings.splice(0..0, duplicates);
    let name = meta_str(&prepared.obj, "name")
        .unwrap_or_default()
        .to_string();
    let obj = registry::create(state, &write_of(req, &name)?, prepared.obj).await?;
    Ok(with_warnings(
        respond_object(req, StatusCode::CREATED, &obj),
        &prepared.warnings,
    ))
}

/// Builds the object an update stores from the stored one and the client's version.
fn prepare_update(
    req: &ResourceRequest,
    old: &Value,
    mut new: Value,
    target: Target,
    manager: &str,
    applied: bool,
) -> Result<Prepared, ApiError> {
    let kind = req.kind;
    let name = name_of(req).to_string();
    objects::check_type_meta(kind, &mut new)?;
    if let Some(body_name) = meta_str(&new, "name")
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if kind.namespaced
        && let Some(ns) = meta_str(&new, "namespace").filter(|n| !n.is_empty())
        && Some(ns) != req.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let warnings = skiff_kinds::validate::decode(kind, &new, field_validation(req)?)
        .map_err(|e| map_validation(kind, &name, e))?;
    let mut new = match target {
        Target::Status => strategy::for_kind(kind).prepare_for_status_update(old, new),
        Target::Main => {
            if kind.has_status()
                && let Some(m) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            new
        }
    };
    objects::carry_system_fields(old, &mut new);
    skiff_kinds::defaults::apply_update(kind, &mut new, old);
    objects::bump_generation(kind, old, &mut new);
    skiff_kinds::validate::validate(kind, &new, Some(old))
        .map_err(|e| map_validation(kind, &name, e))?;
    if !applied {
        skiff_patch::apply::record_update_subresource(
            Some(old),
            &mut new,
            manager,
            kind.openapi_type,
            &objects::now_rfc3339(),
            target.subresource(),
        );
    }
    Ok(Prepared { obj: new, warnings })
}

/// The `metadata.resourceVersion` a client sent as a precondition, if any.
fn precondition(obj: &Value) -> Result<Option<u64>, ApiError> {
    match meta_str(obj, "resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => parse_rv(rv).map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: Invalid value: {rv:?}: must be an integer"
            ))
        }),
        None => Ok(None),
    }
}

pub(crate) async fn update(
    state: &AppState,
    req: &ResourceRequest,
    target: Target,
) -> Result<Response, ApiError> {
    let body = decode_object(&req.body, &content_type(&req.headers))?;
    let duplicates = duplicate_fields(req)?;
    let manager = field_manager(req)?;
    let wanted = precondition(&body)?;
    check_namespace_param(req)?;
    let write = write_of(req, name_of(req))?;
    let mut warnings = Vec::new();
    let obj = registry::guaranteed_update(state, &write, |current| {
        let Some((old, kv)) = current else {
            return Err(not_found(req));
        };
        if let Some(w) = wanted
            && w != kv.mod_revision
        {
            return Err(ApiError::conflict(
                req.kind.group,
                req.kind.plural,
                name_of(req),
            ));
        }
        let prepared = prepare_update(req, old, body.clone(), target, &manager, false)?;
        warnings = prepared.warnings;
        Ok(Change::Update(prepared.obj))
    })
    .await?;
    warnings.splice(0..0, duplicates);
    Ok(with_warnings(
        respond_object(req, StatusCode::OK, &obj),
        &warnings,
    ))
}

/// The patch formats Kubernetes accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub(crate) fn patch_type(req: &ResourceRequest) -> Result<PatchType, ApiError> {
    let ct = content_type(&req.headers);
    match ct.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(crate) fn map_patch_error(kind: &Kind, name: &str, err: skiff_patch::Error) -> ApiError {
    match err {
        skiff_patch::Error::Conflict(ref conflicts) => {
            let causes: Vec<Cause> = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.message.clone(),
                    field: c.field.clone(),
                })
                .collect();
            ApiError::conflict_message(kind.group, kind.plural, name, err.to_string())
                .with_causes(causes)
        }
        skiff_patch::Error::Invalid(msg) => ApiError::new(422, StatusReason::Invalid, msg)
            .with_details(kind.group, kind.plural, name),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// A decoded patch and how to apply it.
pub(crate) struct PatchInput<'a> {
    pub(crate) ptype: PatchType,
    pub(crate) doc: &'a Value,
    pub(crate) manager: &'a str,
    pub(crate) force: bool,
    pub(crate) subresource: Option<&'a str>,
}

/// Applies a patch document of the given type to an object.
pub(crate) fn apply_patch(
    kind: &Kind,
    name: &str,
    old: &Value,
    input: &PatchInput<'_>,
) -> Result<Value, ApiError> {
    let PatchInput {
        ptype,
        doc: patch_doc,
        manager,
        force,
        subresource,
    } = *input;
    let result = match ptype {
        PatchType::Json => skiff_patch::json_patch(old, patch_doc),
        PatchType::Merge => skiff_patch::merge_patch(old, patch_doc),
        PatchType::Strategic => {
            skiff_patch::strategic_merge_patch(old, patch_doc, kind.openapi_type)
        }
        PatchType::Apply => skiff_patch::apply::apply_subresource(
            Some(old),
            patch_doc,
            manager,
            force,
            kind.openapi_type,
            &objects::now_rfc3339(),
            subresource,
        ),
    };
    result.map_err(|e| map_patch_error(kind, name, e))
}

pub(crate) fn decode_patch(req: &ResourceRequest, ptype: PatchType) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    let doc = match ptype {
        PatchType::Apply => decode_yaml(&req.body)?,
        _ => serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (ptype, &doc) {
        (PatchType::Json, Value::Array(_)) => Ok(doc),
        (PatchType::Json, _) => Err(ApiError::bad_request(
            "a JSON patch must be an array of operations",
        )),
        (_, Value::Object(_)) => Ok(doc),
        _ => Err(ApiError::bad_request("the patch must be a JSON object")),
    }
}

pub(crate) async fn patch(
    state: &AppState,
    req: &ResourceRequest,
    target: Target,
) -> Result<Response, ApiError> {
    let ptype = patch_type(req)?;
    let doc = decode_patch(req, ptype)?;
    let manager = match ptype {
        PatchType::Apply => req
            .query
            .get("fieldManager")
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH with the apply patch type requires a fieldManager parameter",
                )
            })?,
        _ => field_manager(req)?,
    };
    let force = req.query.flag("force");
    if force && ptype != PatchType::Apply {
        return Err(ApiError::bad_request(
            "force is only allowed with the apply patch type",
        ));
    }
    let name = name_of(req).to_string();
    check_namespace_param(req)?;
    let write = write_of(req, &name)?;
    let mut warnings = Vec::new();
    let mut created = false;
    let obj = registry::guaranteed_update(state, &write, |current| {
        let Some((old, kv)) = current else {
            if ptype == PatchType::Apply && target == Target::Main {
                let prepared = apply_create(req, &doc, &manager, force)?;
                warnings = prepared.warnings;
                created = true;
                return Ok(Change::Create(prepared.obj));
            }
            return Err(not_found(req));
        };
        created = false;
        let input = PatchInput {
            ptype,
            doc: &doc,
            manager: &manager,
            force,
            subresource: target.subresource(),
        };
        let patched = apply_patch(req.kind, &name, old, &input)?;
        let wanted =
            precondition(&patched)?.filter(|rv| Some(*rv) != precondition(old).ok().flatten());
        if let Some(w) = wanted
            && w != kv.mod_revision
        {
            return Err(ApiError::conflict(req.kind.group, req.kind.plural, &name));
        }
        let prepared = prepare_update(
            req,
            old,
            patched,
            target,
            &manager,
            ptype == PatchType::Apply,
        )?;
        warnings = prepared.warnings;
        Ok(Change::Update(prepared.obj))
    })
    .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(respond_object(req, code, &obj), &warnings))
}

/// Server-side apply of an object that does not exist yet creates it.
fn apply_create(
    req: &ResourceRequest,
    doc: &Value,
    manager: &str,
    force: bool,
) -> Result<Prepared, ApiError> {
    let mut obj = doc.clone();
    objects::check_type_meta(req.kind, &mut obj)?;
    if let Some(body_name) = meta_str(&obj, "name")
        && body_name != name_of(req)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            name_of(req)
        )));
    }
    meta_mut(&mut obj).insert("name".into(), json!(name_of(req)));
    let applied = skiff_patch::apply::apply(
        None,
        &obj,
        manager,
        force,
        req.kind.openapi_type,
        &objects::now_rfc3339(),
    )
    .map_err(|e| map_patch_error(req.kind, name_of(req), e))?;
    prepare_create(req, applied, manager, true)
}

/// `DeleteOptions` from the body and the query.
#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    pub(crate) grace_period_seconds: Option<i64>,
    pub(crate) propagation_policy: Option<String>,
    pub(crate) precondition_uid: Option<String>,
    pub(crate) precondition_rv: Option<String>,
    pub(crate) dry_run: bool,
}

pub(crate) fn delete_options(req: &ResourceRequest) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        dry_run: req.query.dry_run()?,
        ..Default::default()
    };
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        let body = decode_object(&req.body, &content_type(&req.headers))?;
        opts.grace_period_seconds = body.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_rv = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"))
        {
            opts.dry_run = true;
        }
    }
    if let Some(g) = req.query.int("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = req.query.get("propagationPolicy") {
        opts.propagation_policy = Some(p.to_string());
    }
    if let Some(p) = &opts.propagation_policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::new(
            422,
            StatusReason::Invalid,
            format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        ));
    }
    if opts.grace_period_seconds.is_some_and(|g| g < 0) {
        opts.grace_period_seconds = Some(0);
    }
    Ok(opts)
}

async fn delete(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let opts = delete_options(req)?;
    let obj = delete_object(state, req, name_of(req), &opts).await?;
    Ok(respond_object(req, StatusCode::OK, &obj))
}

/// Deletes one object honouring finalizers, graceful pod termination and preconditions; returns
/// the object as deleted (or as marked for deletion).
pub(crate) async fn delete_object(
    state: &AppState,
    req: &ResourceRequest,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let kind = req.kind;
    let nf = || ApiError::not_found(kind.group, kind.plural, name);
    let write = Write {
        kind,
        namespace: req.namespace.as_deref(),
        name,
        user: &req.user,
        dry_run: opts.dry_run,
    };
    let strategy = strategy::for_kind(kind);
    registry::guaranteed_update(state, &write, |current| {
        let Some((old, kv)) = current else {
            return Err(nf());
        };
        if let Some(uid) = &opts.precondition_uid
            && meta_str(old, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict_message(
                kind.group,
                kind.plural,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(old, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict_message(
                kind.group,
                kind.plural,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        let mut marked = old.clone();
        let mut needs_mark = false;
        match opts.propagation_policy.as_deref() {
            Some("Foreground") => {
                objects::add_finalizer(&mut marked, "foregroundDeletion");
                needs_mark = true;
            }
            Some("Orphan") => {
                objects::add_finalizer(&mut marked, "orphan");
                needs_mark = true;
            }
            _ => {}
        }
        // The kind's rules: a namespace is always marked; a pod on a node waits for it.
        let rule = strategy.before_delete(old, opts.grace_period_seconds);
        if rule.mark {
            needs_mark = true;
            strategy.mark_for_delete(&mut marked);
        }
        let grace = rule.grace_seconds;
        needs_mark |= !objects::finalizers(&marked).is_empty();
        if !needs_mark {
            return Ok(Change::Delete);
        }
        if objects::is_deleting(old) {
            // Already terminating: a shorter grace period may still be requested (the
            // node's final delete asks for 0).
            if !shortens_grace(old, grace.unwrap_or(0)) {
                return Ok(Change::Keep(old.clone()));
            }
        }
        let meta = meta_mut(&mut marked);
        let now = jiff::Timestamp::now();
        let grace_secs = grace.unwrap_or(0);
        let at = now
            .checked_add(jiff::SignedDuration::from_secs(grace_secs))
            .unwrap_or(now);
        meta.insert(
            "deletionTimestamp".into(),
            json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace_secs));
        Ok(Change::Store(marked))
    })
    .await
}

fn shortens_grace(old: &Value, grace: i64) -> bool {
    objects::meta(old)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .is_some_and(|g| grace < g)
}

async fn delete_collection(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let opts = delete_options(req)?;
    let listed = list_objects(state, req).await?;
    let mut deleted = Vec::new();
    for kv in &listed.items {
        let item = objects::from_kv(req.kind, kv)?;
        let name = meta_str(&item, "name").unwrap_or_default().to_string();
        let ns = meta_str(&item, "namespace").map(str::to_string);
        let scoped = ResourceRequest {
            method: req.method.clone(),
            user: req.user.clone(),
            kind: req.kind,
            namespace: ns.or_else(|| req.namespace.clone()),
            name: Some(name.clone()),
            subresource: None,
            rest: None,
            query: req.query.clone(),
            raw_query: None,
            headers: req.headers.clone(),
            body: bytes::Bytes::new(),
            legacy_watch: false,
            http2: req.http2,
        };
        match delete_object(state, &scoped, &name, &opts).await {
            Ok(obj) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": req.kind.list_kind(),
        "apiVersion": req.kind.api_version(),
        "metadata": {"resourceVersion": listed.revision.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &body))
}
