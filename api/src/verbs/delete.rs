//! `delete` and `deletecollection`, honouring finalizers, grace periods and preconditions.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::body::{content_type, decode_body};
use crate::error::{ApiError, StatusReason};
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::{self, Change, Write};
use crate::request::ResourceRequest;
use crate::resource::{list_objects, name_of};
use crate::respond::{json_response, respond_object};
use crate::state::AppState;
use crate::strategy;

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
        // `null` is no options, as Go's decoder reads it into DeleteOptions.
        let body = decode_body(&req.body, &content_type(&req.headers))?;
        if !(body.is_object() || body.is_null()) {
            return Err(ApiError::bad_request(
                "the request body must be a DeleteOptions object",
            ));
        }
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

pub(crate) async fn delete(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
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
        subresource: None,
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

pub(crate) fn shortens_grace(old: &Value, grace: i64) -> bool {
    objects::meta(old)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .is_some_and(|g| grace < g)
}

pub(crate) async fn delete_collection(
    state: &AppState,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
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
            upgrade: None,
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
