//! Leader election: two controller managers against one API server; only the Lease holder acts,
//! and the standby takes over when the leader stops.

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use skiff_controllers::leader::ElectionOptions;
use skiff_tests::fixtures::deployment;
use skiff_tests::{Cluster, wait_object};

fn election(identity: &str) -> ElectionOptions {
    ElectionOptions {
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    }
}

/// The condition "the Lease names `identity` as its holder".
fn held_by(identity: &str) -> impl Fn(Option<&Lease>) -> bool + '_ {
    move |l| l.and_then(|l| l.spec.as_ref()?.holder_identity.as_deref()) == Some(identity)
}

async fn lease_transitions(api: &Api<Lease>) -> Option<i32> {
    api.get(skiff_controllers::leader::NAME)
        .await
        .ok()?
        .spec?
        .lease_transitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_when_the_leader_stops() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .server_args(&["--no-controllers", "--no-scheduler"])
        .fake_zones(&["a"])
        .start()
        .await
    else {
        return;
    };
    let client = c.client.clone();
    let opts = skiff_controllers::Options::default;
    let first = skiff_controllers::start_elected(client.clone(), opts(), election("first"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    wait_object(
        &leases,
        skiff_controllers::leader::NAME,
        "first to lead",
        Duration::from_secs(20),
        held_by("first"),
    )
    .await
    .unwrap();
    let transitions = lease_transitions(&leases).await;
    // The standby campaigns every retry period (500 ms) from its start on. Watch the Lease
    // while the leader renews it four times (two seconds of the standby's attempts): every
    // version must still name the leader.
    let mut versions = std::pin::pin!(kube::runtime::watcher::watch_object(
        leases.clone(),
        skiff_controllers::leader::NAME,
    ));
    let mut renewals = 0;
    let mut last_renewal = leases
        .get(skiff_controllers::leader::NAME)
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.renew_time);
    let second = skiff_controllers::start_elected(client.clone(), opts(), election("second"));
    tokio::time::timeout(Duration::from_secs(30), async {
        while renewals < 4 {
            let lease = versions
                .try_next()
                .await
                .expect("the Lease watch")
                .flatten()
                .expect("the Lease exists");
            let spec = lease.spec.expect("a Lease spec");
            assert_eq!(
                spec.holder_identity.as_deref(),
                Some("first"),
                "the leader keeps the lease while the standby campaigns"
            );
            if spec.renew_time != last_renewal {
                renewals += 1;
                last_renewal = spec.renew_time;
            }
        }
    })
    .await
    .expect("the leader renews its lease");
    assert_eq!(
        lease_transitions(&leases).await,
        transitions,
        "the standby never took the lease"
    );
    c.apply(&deployment("web", 2));
    let status = ["rollout", "status", "deployment/web", "--timeout=60s"];
    c.k(&status);

    first.shutdown().await;
    wait_object(
        &leases,
        skiff_controllers::leader::NAME,
        "second to take over",
        Duration::from_secs(30),
        held_by("second"),
    )
    .await
    .unwrap();
    c.k(&["scale", "deployment/web", "--replicas=3"]);
    c.k(&status);
    second.shutdown().await;
    c.shutdown().await;
}
