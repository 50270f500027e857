//! Leader election through a coordination.k8s.io Lease (`kube-system/skiff-controller-manager`):
//! only the holder runs the scheduler and controllers; a standby takes over once the holder
//! stops renewing for the lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, Options, Running};

/// Namespace of the election Lease.
pub const NAMESPACE: &str = "kube-system";
/// Name of the election Lease.
pub const NAME: &str = "skiff-controller-manager";

/// Timings of the election.
#[derive(Clone, Debug)]
pub struct ElectionOptions {
    /// This candidate's identity.
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and a standby retries).
    pub retry_period: Duration,
}

impl Default for ElectionOptions {
    fn default() -> Self {
        ElectionOptions {
            identity: format!(
                "skiff-{}-{}",
                std::process::id(),
                jiff::Timestamp::now().as_millisecond()
            ),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Tries once to take or renew the lease; returns whether we hold it.
pub async fn try_acquire(api: &Api<Lease>, opts: &ElectionOptions) -> Result<bool, Error> {
    let now = jiff::Timestamp::now();
    let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(opts.identity.clone()),
        lease_duration_seconds: Some(opts.lease_duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: acquired.or(Some(MicroTime(now))),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(NAME).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(mine(0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let expired = now.as_second() > renewed + duration;
            let transitions = spec.lease_transitions.unwrap_or(0);
            let new_spec = if holder == opts.identity {
                mine(transitions, spec.acquire_time.clone())
            } else if holder.is_empty() || expired {
                mine(transitions + 1, None)
            } else {
                return Ok(false);
            };
            lease.spec = Some(new_spec);
            // resourceVersion in the body makes this a compare-and-swap.
            match api.replace(NAME, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Gives the lease up if this candidate holds it (client-go's `ReleaseOnCancel`): no holder,
/// renewed now for one second, so a standby takes over at its next try instead of waiting for
/// the lease to expire. Returns whether it was released.
pub async fn release(api: &Api<Lease>, opts: &ElectionOptions) -> Result<bool, Error> {
    let Some(mut lease) = api.get_opt(NAME).await? else {
        return Ok(false);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(opts.identity.as_str()) {
        return Ok(false);
    }
    let now = MicroTime(jiff::Timestamp::now());
    lease.spec = Some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(now.clone()),
        acquire_time: Some(now),
        lease_transitions: spec.lease_transitions,
        ..Default::default()
    });
    // resourceVersion in the body: a lease taken meanwhile is left alone.
    match api.replace(NAME, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Campaigns until `stop` turns true: runs the controllers while leading, stops them when
/// leadership is lost; at `stop`, stops them and releases the lease.
pub async fn run_elected(
    client: Client,
    opts: Options,
    election: ElectionOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let mut running: Option<Running> = None;
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let held = match try_acquire(&api, &election).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "leader election");
                // Keep leading until the lease would have expired.
                running.is_some() && last_renewal.elapsed() < election.lease_duration
            }
        };
        if held {
            last_renewal = tokio::time::Instant::now();
            if running.is_none() {
                tracing::info!(identity = %election.identity, "became leader; starting controllers");
                running = Some(crate::start(client.clone(), opts.clone()));
            }
        } else if let Some(r) = running.take() {
            tracing::warn!(identity = %election.identity, "lost leadership; stopping controllers");
            r.shutdown().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(election.retry_period) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if let Some(r) = running.take() {
        r.shutdown().await;
        match release(&api, &election).await {
            Ok(true) => {
                tracing::info!(identity = %election.identity, "released the leader lease")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "releasing the leader lease"),
        }
    }
}
