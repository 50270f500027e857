//! CronJob end to end: an every-minute CronJob creates a Job at the next minute boundary (one
//! real tick, so this test takes up to a minute), the Job completes on a simulated node, and an
//! invalid schedule is rejected. The schedule arithmetic itself is unit-tested in
//! `controllers/src/cron.rs`.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams};
use skiff_testkit::fake::{FakeNodeSpec, FakeNodes};
use skiff_tests::{Server, ok, tools, wait_for};

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
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    let server = Server::start().expect("server starts");
    let client = server.client().await.expect("client");
    let fake = FakeNodes::start(client.clone()).await;
    fake.add(&[FakeNodeSpec::new("node-a", "zone-a")])
        .await
        .unwrap();
    let bad = CRONJOB.replace("* * * * *", "every minute please");
    let out = server
        .kubectl_stdin(&kubectl, &["apply", "-f", "-"], Some(&bad))
        .unwrap();
    assert!(!out.status.success(), "an invalid schedule is rejected");

    ok(&server
        .kubectl_stdin(&kubectl, &["apply", "-f", "-"], Some(CRONJOB))
        .unwrap());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = wait_for(
        "a Job from the CronJob",
        Duration::from_secs(90),
        || async {
            jobs.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("tick-"))
                })
        },
    )
    .await
    .unwrap();
    let name = job.metadata.name.unwrap();
    ok(&server
        .kubectl(
            &kubectl,
            &[
                "wait",
                "--for=condition=complete",
                &format!("job/{name}"),
                "--timeout=60s",
            ],
        )
        .unwrap());
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let st = cronjobs.get("tick").await.unwrap().status.unwrap();
    assert!(st.last_schedule_time.is_some());
    fake.shutdown().await;
}
