//! CronJob end to end: with the controllers on a fake clock (running in this process as a client
//! of a real `skiff server`), an every-minute CronJob applied with kubectl gets the Job of the
//! latest minute on that clock at once — no wait for a wall-clock minute — the Job completes on
//! a simulated node, and an invalid schedule is rejected. The schedule arithmetic itself is
//! unit-tested in `controllers/src/cron.rs`, the reconciler on the in-process tier in
//! `testkit/tests/it`.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use skiff_controllers::{Clock, Options};
use skiff_tests::cluster::Cluster;
use skiff_tests::wait::wait_object;

const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {skiff.dev/fake-exit-code: "0"}
        spec:
          restartPolicy: Never
          containers:
          - {name: work, image: example.com/work:v1}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_minute_cronjob_creates_jobs() {
    // Ten minutes and a half ahead of the wall clock, so the Job's time can only come from it.
    let fake_now = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(10 * 60 + 30))
        .unwrap();
    let opts = Options {
        clock: Clock::fake(fake_now),
        ..Options::default()
    };
    let Some(c) = Cluster::builder()
        .kubectl()
        .fake_zones(&["a"])
        .controllers_in_process(opts)
        .start()
        .await
    else {
        return;
    };
    let bad = CRONJOB.replace("* * * * *", "every minute please");
    let out = c.try_k_stdin(&["apply", "-f", "-"], &bad);
    assert!(!out.status.success(), "an invalid schedule is rejected");

    c.apply(CRONJOB);
    let minute = fake_now.as_second() / 60;
    let name = format!("tick-{minute}");
    let jobs = c.api::<Job>("default");
    wait_object(
        &jobs,
        &name,
        "the Job of the fake clock's minute",
        Duration::from_secs(60),
        |j| j.is_some(),
    )
    .await
    .unwrap();
    c.k(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=60s",
    ]);
    let cronjobs = c.api::<CronJob>("default");
    let st = cronjobs.get("tick").await.unwrap().status.unwrap();
    assert_eq!(
        st.last_schedule_time.map(|t| t.0.as_second()),
        Some(minute * 60)
    );
}
