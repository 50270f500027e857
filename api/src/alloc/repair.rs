//! The repair pass at start, as Kubernetes' allocator repair loops: frees records whose owner is
//! gone or no longer holds the value, and records values whose owner has no record (objects
//! written before allocation existed, or a crash between the record and the object).

use std::collections::HashMap;

use super::{Owner, PREFIX, held_keys};
use crate::error::ApiError;
use crate::objects::{self, meta_str};
use crate::registry;
use crate::state::AppState;

/// Runs once before the server serves: nothing else allocates meanwhile.
pub(crate) async fn repair(state: &AppState) -> Result<(), ApiError> {
    let list = |prefix: String| async move {
        state
            .store
            .list(skiff_store::ListOptions {
                prefix,
                ..Default::default()
            })
            .await
    };
    // What every owner holds, by record key.
    let mut wanted: HashMap<String, Owner> = HashMap::new();
    for plural in ["services", "nodes"] {
        let kind = skiff_kinds::find("", "v1", plural).expect("core kinds are known");
        for kv in list(objects::collection_prefix(kind, None)).await?.items {
            let obj = objects::from_kv(kind, &kv)?;
            let owner = Owner {
                kind: kind.kind.to_string(),
                namespace: meta_str(&obj, "namespace").map(str::to_string),
                name: meta_str(&obj, "name").unwrap_or_default().to_string(),
                uid: meta_str(&obj, "uid").unwrap_or_default().to_string(),
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
    for kv in list(PREFIX.to_string()).await?.items {
        let holder: Option<Owner> = serde_json::from_slice(&kv.value).ok();
        match (wanted.remove(&kv.key), holder) {
            (Some(owner), Some(h)) if owner.uid == h.uid => {}
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
