//! SIGINT and SIGTERM, the signals that ask a serving Skiff process to shut down cleanly.
//!
//! A serving command calls [`install`] first: from then on the first signal is only recorded,
//! also while the command is still starting, so that what it made on the host (the node's
//! bridge, pods, cgroups) is removed by its clean shutdown instead of being left behind by the
//! default action, which ends the process at once. [`wait_for_shutdown`] resolves on that first
//! signal (at once when it came during start-up). A second signal ends the process immediately
//! (exit 130 for SIGINT, 143 for SIGTERM), for a shutdown that hangs.

use std::sync::OnceLock;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Turns true at the first signal.
static REQUESTED: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Takes over SIGINT and SIGTERM for this process (idempotent; needs the tokio runtime).
pub(crate) fn install() {
    REQUESTED.get_or_init(|| {
        let (tx, rx) = watch::channel(false);
        let handlers = signal(SignalKind::interrupt()).and_then(|int| {
            let term = signal(SignalKind::terminate())?;
            Ok((int, term))
        });
        match handlers {
            Ok((int, term)) => {
                tokio::spawn(listen(int, term, tx));
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGINT/SIGTERM; they stop this process at once");
                // Never requested: the default actions end the process.
                std::mem::forget(tx);
            }
        }
        rx
    });
}

async fn listen(
    mut int: tokio::signal::unix::Signal,
    mut term: tokio::signal::unix::Signal,
    tx: watch::Sender<bool>,
) {
    let mut first = true;
    loop {
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        let name = if code == 130 { "SIGINT" } else { "SIGTERM" };
        if first {
            first = false;
            tracing::info!(
                signal = name,
                "shutting down (a second signal stops at once)"
            );
            let _ = tx.send(true);
        } else {
            tracing::warn!(
                signal = name,
                "second signal: stopping without a clean shutdown"
            );
            std::process::exit(code);
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM since [`install`] (installing it when not yet done);
/// at once if one came already.
pub(crate) async fn wait_for_shutdown() {
    install();
    if let Some(rx) = REQUESTED.get() {
        let mut rx = rx.clone();
        let _ = rx.wait_for(|requested| *requested).await;
    }
}
