//! Following a key prefix of the store into a server's in-memory cache (served CRDs, RBAC):
//! the one watch loop, which lists again when the watch falls behind or ends, and stops when the
//! server's state is dropped or it shuts down.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use futures::future::BoxFuture;
use skiff_store::Event;

use crate::error::ApiError;
use crate::state::AppState;

/// What a followed cache does: apply one event, and list everything again (returning the
/// list's revision) after the watch fell behind.
pub(crate) trait Follower: Send + Sync + 'static {
    /// What is followed, for log lines ("CustomResourceDefinitions").
    const WHAT: &'static str;
    fn prefix(&self) -> String;
    fn apply(&self, state: &Arc<AppState>, event: &Event);
    fn load<'a>(&'a self, state: &'a AppState) -> BoxFuture<'a, Result<u64, ApiError>>;
}

/// Follows `follower`'s prefix from `rev` until the state is dropped or the server shuts down.
pub(crate) async fn follow<F: Follower>(follower: F, state: Weak<AppState>, mut rev: u64) {
    loop {
        let (store, mut shutdown) = match state.upgrade() {
            Some(s) => (s.store.clone(), s.shutdown.clone()),
            None => return,
        };
        match store.watch(&follower.prefix(), rev).await {
            Ok(mut stream) => {
                drop(store);
                loop {
                    let event = tokio::select! {
                        e = stream.next() => e,
                        _ = shutdown.wait_for(|stopped| *stopped) => return,
                    };
                    let Some(state) = state.upgrade() else {
                        return;
                    };
                    match event {
                        Some(Ok(event)) => {
                            rev = rev.max(event.kv.mod_revision);
                            follower.apply(&state, &event);
                        }
                        Some(Err(skiff_store::Error::Closed)) | None => {
                            if *state.shutdown.borrow() {
                                return;
                            }
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "watch of {} ended; listing again", F::WHAT);
                            break;
                        }
                    }
                }
            }
            Err(skiff_store::Error::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "watching {}; listing again", F::WHAT);
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        match follower.load(&state).await {
            Ok(r) => rev = r,
            Err(e) => {
                tracing::warn!(error = %e.message, "listing {}", F::WHAT);
                return;
            }
        }
    }
}
