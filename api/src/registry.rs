//! The write path, in the role of Kubernetes' generic registry `Store`: every write to the store
//! goes through this module. It owns creation (defaults, managedFields, the namespace check),
//! encoding, dry-run, retry on conflict (`guaranteed_update`, the one read-modify-write loop),
//! the delete-during-update rule, and the admission seam. Kind rules come from `strategy`; values
//! the server hands out (ClusterIPs, NodePorts, pod CIDRs) from `alloc`, whose records are written
//! here too (`create_record`, `delete_record`).

use serde_json::{Value, json};
use skiff_kinds::Kind;
use skiff_kinds::validate::FieldValidation;
use skiff_store::KeyValue;

use crate::alloc;
use crate::error::{ApiError, Cause, StatusReason};
use crate::objects::{self, meta_mut};
use crate::state::AppState;
use crate::state::UserInfo;
use crate::strategy;

/// How many times a read-modify-write retries after losing a race to another writer.
const MAX_RETRIES: usize = 8;

/// The field manager of what the server writes itself (the namespaces it bootstraps).
const SERVER_FIELD_MANAGER: &str = "kube-apiserver";

/// The object one write is about, and on whose behalf it is made.
pub(crate) struct Write<'a> {
    pub(crate) kind: &'static Kind,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) user: &'a UserInfo,
    /// `dryRun=All`: everything but the store write happens.
    pub(crate) dry_run: bool,
    /// The subresource written (`status`, `scale`, `binding`, `eviction`), as admission sees it
    /// (NodeRestriction lets a node write only its own pods' `status`).
    #[allow(dead_code)]
    pub(crate) subresource: Option<&'a str>,
}

impl Write<'_> {
    fn key(&self) -> String {
        objects::key(self.kind, self.namespace, self.name)
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(self.kind.group, self.kind.plural, self.name)
    }

    fn conflict(&self) -> ApiError {
        ApiError::conflict(self.kind.group, self.kind.plural, self.name)
    }
}

/// What a write does to the store, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

/// What an admission plugin's check returns.
pub(crate) type Admitted<'a> = futures::future::BoxFuture<'a, Result<(), ApiError>>;

/// Admission, as Kubernetes' admission chain: after the strategy prepared a write and before it
/// is stored, each plugin may change the object (mutating: a pod's priority) and refuse the write
/// (validating: quota); a plugin may read the store and write through this module (quota charges
/// `status.used` with `guaranteed_update`). This is also where the authorization result of the
/// write's user and write metrics hook in. On delete, `obj` is the object as stored.
pub(crate) trait Admission: Sync {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a>;
}

/// The admission chain, in order: namespace lifecycle and LimitRanger first, as Kubernetes, so
/// every later plugin sees the defaulted pod; priority before quota, so quota scopes see the
/// pod's class; pod security before quota, so a refused pod is never charged. Quota comes last,
/// outside the list: what it charges stays held (`quota::Held`) until the write is stored.
const ADMISSION: &[&dyn Admission] = &[
    &crate::admission::namespace::NamespaceLifecycle,
    &crate::admission::limitranger::LimitRanger,
    &crate::admission::serviceaccount::ServiceAccount,
    &crate::admission::noderestriction::NodeRestriction,
    &crate::admission::priority::Priority,
    &crate::admission::defaultstorageclass::DefaultStorageClass,
    &crate::admission::podsecurity::PodSecurity,
    &crate::admission::wit::WitImports,
    &crate::rbac::escalation::Escalation,
];

async fn admit(
    state: &AppState,
    op: Operation,
    write: &Write<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<crate::admission::quota::Held, ApiError> {
    tracing::trace!(?op, user = %write.user.name, kind = write.kind.kind, name = write.name, "write");
    for plugin in ADMISSION {
        plugin.admit(state, op, write, obj, old).await?;
    }
    // Boxed: quota charges through `guaranteed_update`, which admits again.
    Box::pin(crate::admission::quota::admit(state, op, write, obj, old)).await
}

/// What a `guaranteed_update` step decides from the object as it is now.
pub(crate) enum Change {
    /// Store this object in place of the current one; removed instead when the strategy says
    /// the update completes its deletion (Kubernetes' `ShouldDeleteDuringUpdate`).
    Update(Value),
    /// Store this object as it is: a deletion mark (grace period or finalizers pending), a new
    /// scale or a binding.
    Store(Value),
    /// Remove the object; the answer is the object as it was.
    Delete,
    /// Nothing to write; the answer is this object.
    Keep(Value),
    /// There is no object: create this one (server-side apply). Loses to a concurrent create by
    /// retrying against the object that won.
    Create(Value),
}

/// One attempt's outcome: written, or lost a race and worth another read.
enum Attempt {
    Done(Value),
    Raced,
}

/// Reads the object, lets `step` decide the change, and writes it against the revision read,
/// retrying from a fresh read when another writer got there first. `step` gets `None` when the
/// object does not exist. Returns the object as stored (with its new resourceVersion), as it
/// was when deleted, or as `Keep` gave it.
pub(crate) async fn guaranteed_update(
    state: &AppState,
    write: &Write<'_>,
    mut step: impl FnMut(Option<(&Value, &KeyValue)>) -> Result<Change, ApiError>,
) -> Result<Value, ApiError> {
    let key = write.key();
    for _ in 0..MAX_RETRIES {
        let kv = state.store.get(&key).await?;
        let current = match &kv {
            Some(kv) => Some((objects::from_kv(write.kind, kv)?, kv)),
            None => None,
        };
        let change = step(current.as_ref().map(|(obj, kv)| (obj, *kv)))?;
        let attempt = match (change, current) {
            (Change::Keep(obj), _) => return Ok(obj),
            (Change::Create(obj), None) => match create(state, write, obj).await {
                Err(e) if e.reason == StatusReason::AlreadyExists => Attempt::Raced,
                other => Attempt::Done(other?),
            },
            (Change::Create(_), Some(_)) => Attempt::Raced,
            (_, None) => return Err(write.not_found()),
            (Change::Update(obj), Some((old, kv))) => {
                let finished = strategy::for_kind(write.kind).should_delete_during_update(&obj);
                if finished {
                    remove(state, write, &key, kv.mod_revision, obj, &old).await?
                } else {
                    store(state, write, &key, kv.mod_revision, obj, &old).await?
                }
            }
            (Change::Store(obj), Some((old, kv))) => {
                store(state, write, &key, kv.mod_revision, obj, &old).await?
            }
            (Change::Delete, Some((old, kv))) => {
                remove(state, write, &key, kv.mod_revision, old.clone(), &old).await?
            }
        };
        match attempt {
            Attempt::Done(obj) => return Ok(obj),
            Attempt::Raced => continue,
        }
    }
    Err(write.conflict())
}

/// Stores a new object (unless dry-run) and returns it as stored. The namespace must exist and
/// not be terminating.
pub(crate) async fn create(
    state: &AppState,
    write: &Write<'_>,
    obj: Value,
) -> Result<Value, ApiError> {
    let kind = write.kind;
    crate::admission::namespace::check_open(state, write).await?;
    let mut obj = obj;
    crate::crd::before_write(state, kind, &mut obj, None)?;
    strategy::for_kind(kind).prepare_for_create(&mut obj, write.user);
    let taken = alloc::before_create(state, write, &mut obj).await?;
    let written = async {
        // Held until the object is stored (or refused), so a quota status write never releases
        // what this write was charged before the object is there to be counted.
        let _charged = admit(state, Operation::Create, write, &mut obj, None).await?;
        if write.dry_run {
            return Ok(None);
        }
        let bytes = objects::encode(kind, &obj)?;
        let kv = state
            .store
            .create(&write.key(), bytes)
            .await
            .map_err(|e| match e {
                skiff_store::Error::AlreadyExists(_) => {
                    ApiError::already_exists(kind.group, kind.plural, write.name)
                }
                other => other.into(),
            })?;
        Ok(Some(kv))
    }
    .await;
    match written {
        Ok(Some(kv)) => {
            let stored = as_stored(kind, obj, &kv)?;
            crate::crd::after_write(state, kind, &stored);
            if kind.group.is_empty() && kind.kind == "Namespace" {
                // Every namespace has its `default` ServiceAccount and `kube-root-ca.crt` from
                // the start (the controllers repair them later if this fails).
                if let Err(err) = crate::serviceaccount::namespace_objects(state, write.name).await
                {
                    tracing::warn!(namespace = write.name, error = %err, "namespace service account");
                }
            }
            crate::nodeauthz::after_write(&state.store, kind, &stored);
            crate::rbac::after_write(state, kind, &stored);
            Ok(stored)
        }
        Ok(None) => {
            alloc::release_taken(state, taken).await;
            Ok(obj)
        }
        Err(e) => {
            alloc::release_taken(state, taken).await;
            Err(e)
        }
    }
}

/// Creates an allocation record (`alloc`) unless the key exists: `Ok(false)` when it does.
pub(crate) async fn create_record(
    state: &AppState,
    key: &str,
    value: Vec<u8>,
) -> Result<bool, ApiError> {
    match state.store.create(key, value).await {
        Ok(_) => Ok(true),
        Err(skiff_store::Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes a record of the server's own (`apiservers`: this server's liveness) whatever it held.
pub(crate) async fn put_record(
    state: &AppState,
    key: &str,
    value: Vec<u8>,
) -> Result<(), ApiError> {
    match state.store.get(key).await? {
        Some(kv) => match state.store.update(key, value, Some(kv.mod_revision)).await {
            Ok(_)
            | Err(skiff_store::Error::Conflict { .. })
            | Err(skiff_store::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        },
        None => create_record(state, key, value).await.map(drop),
    }
}

/// Removes an allocation record at revision `expected`; gone or changed meanwhile is no error.
pub(crate) async fn delete_record(
    state: &AppState,
    key: &str,
    expected: u64,
) -> Result<(), ApiError> {
    match state.store.delete(key, Some(expected)).await {
        Ok(_) | Err(skiff_store::Error::NotFound(_)) | Err(skiff_store::Error::Conflict { .. }) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The object just written, as a read would give it: the written value with its revision,
/// without decoding the bytes again — unless the kind is stored in another version.
fn as_stored(kind: &Kind, mut obj: Value, kv: &KeyValue) -> Result<Value, ApiError> {
    if objects::converts(kind) {
        return objects::from_kv(kind, kv);
    }
    objects::set_type_meta(kind, &mut obj);
    Ok(with_rv(obj, kv.mod_revision))
}

/// Writes `obj` over revision `expected`.
async fn store(
    state: &AppState,
    write: &Write<'_>,
    key: &str,
    expected: u64,
    mut obj: Value,
    old: &Value,
) -> Result<Attempt, ApiError> {
    meta_mut(&mut obj).remove("resourceVersion");
    crate::crd::before_write(state, write.kind, &mut obj, Some(old))?;
    let taken = alloc::before_update(state, write, &mut obj, old).await?;
    let written = async {
        let _charged = admit(state, Operation::Update, write, &mut obj, Some(old)).await?;
        if write.dry_run {
            return Ok(None);
        }
        let bytes = objects::encode(write.kind, &obj)?;
        match state.store.update(key, bytes, Some(expected)).await {
            Ok(kv) => Ok(Some(Some(kv))),
            Err(skiff_store::Error::Conflict { .. }) => Ok(Some(None)),
            Err(skiff_store::Error::NotFound(_)) => Err(write.not_found()),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    match written {
        Ok(Some(Some(kv))) => {
            alloc::after_update(state, write, &obj, old).await;
            let stored = as_stored(write.kind, obj, &kv)?;
            crate::crd::after_write(state, write.kind, &stored);
            crate::nodeauthz::after_write(&state.store, write.kind, &stored);
            crate::rbac::after_write(state, write.kind, &stored);
            Ok(Attempt::Done(stored))
        }
        Ok(Some(None)) => {
            alloc::release_taken(state, taken).await;
            Ok(Attempt::Raced)
        }
        Ok(None) => {
            alloc::release_taken(state, taken).await;
            Ok(Attempt::Done(with_rv(obj, expected)))
        }
        Err(e) => {
            alloc::release_taken(state, taken).await;
            Err(e)
        }
    }
}

/// Removes the object at revision `expected`; answers with `answer` at the deletion's revision.
async fn remove(
    state: &AppState,
    write: &Write<'_>,
    key: &str,
    expected: u64,
    answer: Value,
    old: &Value,
) -> Result<Attempt, ApiError> {
    let mut answer = answer;
    admit(state, Operation::Delete, write, &mut answer, Some(old)).await?;
    if write.dry_run {
        return Ok(Attempt::Done(with_rv(answer, expected)));
    }
    match state.store.delete(key, Some(expected)).await {
        Ok(kv) => {
            alloc::after_delete(state, write, old).await;
            crate::crd::after_remove(state, write.kind, old, kv.mod_revision);
            crate::nodeauthz::after_remove(&state.store, write.kind, old, kv.mod_revision);
            crate::rbac::after_remove(state, write.kind, old, kv.mod_revision);
            Ok(Attempt::Done(with_rv(answer, kv.mod_revision)))
        }
        Err(skiff_store::Error::Conflict { .. }) => Ok(Attempt::Raced),
        Err(skiff_store::Error::NotFound(_)) => Err(write.not_found()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn with_rv(mut obj: Value, rev: u64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
    obj
}

/// Everything between a decoded body and a storable new object.
pub(crate) struct Prepared {
    pub(crate) obj: Value,
    pub(crate) warnings: Vec<String>,
}

/// Kubernetes' `BeforeCreate`: type and namespace checks, generated name, system fields,
/// defaults, validation and the field manager's managedFields entry.
pub(crate) fn prepare_create(
    kind: &'static Kind,
    namespace: Option<&str>,
    mut obj: Value,
    validation: FieldValidation,
    manager: &str,
    applied: bool,
) -> Result<Prepared, ApiError> {
    objects::check_type_meta(kind, &mut obj)?;
    objects::check_namespace(kind, &mut obj, namespace)?;
    objects::generate_name(&mut obj);
    let name = objects::require_name(kind, &obj)?;
    let warnings = skiff_kinds::validate::decode(kind, &obj, validation)
        .map_err(|e| map_validation(kind, &name, e))?;
    {
        let meta = meta_mut(&mut obj);
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
        if objects::tracks_generation(kind) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        if !applied {
            meta.remove("managedFields");
        }
    }
    if kind.has_status()
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    skiff_kinds::defaults::apply(kind, &mut obj);
    skiff_kinds::validate::validate(kind, &obj, None)
        .map_err(|e| map_validation(kind, &name, e))?;
    if !applied {
        skiff_patch::apply::record_update(
            None,
            &mut obj,
            manager,
            kind.openapi_type,
            &objects::now_rfc3339(),
        );
    }
    Ok(Prepared { obj, warnings })
}

/// A validation failure as the API reports it.
pub(crate) fn map_validation(
    kind: &Kind,
    name: &str,
    err: skiff_kinds::validate::Error,
) -> ApiError {
    match err {
        skiff_kinds::validate::Error::BadRequest(msg) => ApiError::bad_request(msg),
        skiff_kinds::validate::Error::Invalid(causes) => {
            let message = skiff_kinds::validate::invalid_message(kind, name, &causes);
            let causes = causes
                .into_iter()
                .map(|c| Cause {
                    reason: c.reason,
                    message: c.message,
                    field: c.field,
                })
                .collect();
            ApiError::invalid(kind.group, kind.kind, kind.plural, name, causes)
                .with_message(message)
        }
    }
}

/// Creates a namespace the server needs (`default`, `kube-system`, ...) unless it exists, through
/// the same preparation as a client's create.
pub(crate) async fn ensure_namespace(
    state: &AppState,
    user: &UserInfo,
    name: &str,
) -> Result<(), ApiError> {
    let kind = skiff_kinds::find("", "v1", "namespaces").expect("namespaces are a known kind");
    let write = Write {
        kind,
        namespace: None,
        name,
        user,
        dry_run: false,
        subresource: None,
    };
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let prepared = prepare_create(
        kind,
        None,
        obj,
        FieldValidation::Strict,
        SERVER_FIELD_MANAGER,
        false,
    )?;
    guaranteed_update(state, &write, |current| {
        Ok(match current {
            Some((obj, _)) => Change::Keep(obj.clone()),
            None => Change::Create(prepared.obj.clone()),
        })
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Regression: the server's own namespaces skipped defaults and managedFields, because they
    /// were written to the store directly.
    #[tokio::test]
    async fn system_namespaces_go_through_the_write_path() {
        let state = AppState::new(Arc::new(skiff_store::MemoryStore::new()), Vec::new());
        let user = UserInfo::new("system:apiserver", &[crate::state::MASTERS]);
        ensure_namespace(&state, &user, "kube-system")
            .await
            .unwrap();
        let kind = skiff_kinds::find("", "v1", "namespaces").unwrap();
        let kv = state
            .store
            .get(&objects::key(kind, None, "kube-system"))
            .await
            .unwrap()
            .expect("created");
        let ns = objects::from_kv(kind, &kv).unwrap();
        assert_eq!(
            ns["metadata"]["managedFields"][0]["manager"],
            "kube-apiserver"
        );
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        assert_eq!(ns["spec"]["finalizers"][0], "kubernetes");
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(ns["metadata"]["uid"].is_string());
        // A second start keeps what is there.
        ensure_namespace(&state, &user, "kube-system")
            .await
            .unwrap();
        let again = state
            .store
            .get(&objects::key(kind, None, "kube-system"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.mod_revision, kv.mod_revision);
    }
}
