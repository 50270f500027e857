//! The repair pass at start, as Kubernetes' allocator repair loops: frees records whose owner is
//! gone or no longer holds the value, and records values whose owner has no record (objects
//! written before allocation existed, or a crash between the record and the object).
//!
//! Other API servers on the same store may be serving while this one starts, so the pass reads
//! one snapshot (owners and records listed at one revision), changes a record only at the
//! revision it read (a record changed since is left alone), and keeps a record younger than
//! [`GRACE`] whose owner is not stored: between taking a value and storing its owner, a write
//! on another server holds a record no stored object names yet.

use std::collections::HashMap;

use super::{Owner, PREFIX, held_keys};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry;
use crate::state::AppState;

/// How long a record whose owner is not stored is kept: longer than any write takes between
/// taking its values and storing its object.
pub(crate) const GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether a record may belong to a write still in flight.
fn young(holder: Option<&Owner>, now: u64) -> bool {
    holder
        .and_then(|h| h.since)
        .is_some_and(|since| now.saturating_sub(since) < GRACE.as_secs())
}

/// Runs once before the server serves (other servers on the store may be serving).
pub(crate) async fn repair(state: &AppState) -> Result<(), ApiError> {
    let list = |prefix: String, revision: Option<u64>| async move {
        state
            .store
            .list(skiff_store::ListOptions {
                prefix,
                revision,
                ..Default::default()
            })
            .await
    };
    let now = super::unix_now();
    // What every owner holds, by record key, all read at one revision.
    let mut wanted: HashMap<String, Owner> = HashMap::new();
    let mut at = None;
    for plural in ["services", "nodes"] {
        let kind = skiff_kinds::find("", "v1", plural).expect("core kinds are known");
        let listed = list(objects::collection_prefix(kind, None), at).await?;
        at = Some(listed.revision);
        for kv in listed.items {
            let obj = objects::from_kv(kind, &kv)?;
            let owner = Owner {
                kind: kind.kind.to_string(),
                namespace: meta_str(&obj, "namespace").map(str::to_string),
                name: meta_str(&obj, "name").unwrap_or_default().to_string(),
                uid: meta_str(&obj, "uid").unwrap_or_default().to_string(),
                since: Some(now),
            };
            for key in held_keys(&state.network, kind, &obj) {
                if let Some(first) = wanted.get(&key) {
                    tracing::warn!(
                        key,
                        holder = %first.name,
                        other = %owner.name,
                        "two objects hold one allocated value"
                    );
                    continue;
                }
                wanted.insert(key, owner.clone());
            }
        }
    }
    let (mut freed, mut recorded) = (0usize, 0usize);
    for kv in list(PREFIX.to_string(), at).await?.items {
        let holder: Option<Owner> = serde_json::from_slice(&kv.value).ok();
        match (wanted.remove(&kv.key), holder) {
            (Some(owner), Some(h)) if owner.uid == h.uid => {}
            (Some(_), h) | (None, h) if young(h.as_ref(), now) => {}
            (Some(owner), _) => {
                // Held by an object, recorded for another: the object wins.
                registry::delete_record(state, &kv.key, kv.mod_revision).await?;
                registry::create_record(state, &kv.key, owner.bytes()).await?;
                recorded += 1;
            }
            (None, _) => {
                registry::delete_record(state, &kv.key, kv.mod_revision).await?;
                freed += 1;
            }
        }
    }
    for (key, owner) in wanted {
        registry::create_record(state, &key, owner.bytes()).await?;
        recorded += 1;
    }
    if freed + recorded > 0 {
        tracing::info!(freed, recorded, "allocation records repaired");
    }
    Ok(())
}
