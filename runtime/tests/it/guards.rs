//! Guest limits (`GuestLimits`) on a runtime of their own with small limits: recursion and
//! table growth end the run with their reason; the instance cap, the response deadline and
//! the log rate hold per pod and are reported as limit events.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Result;
use skiff_runtime::{
    ContainerSpec, GuestLimits, INSTANCE_LIMIT_EXCEEDED, Image, LOG_RATE_LIMITED, LimitEvent,
    Network, PodSandbox, PodSpec, REQUEST_TIMEOUT, Runtime, RuntimeConfig, TerminationReason,
    full_body,
};

use super::{container, exit_of, get, logs, sample, terminated, unique};

/// The runtime of these tests: at most 4 instances per pod, 1 s to answer, 4 KiB/s of log.
fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("skiff-runtime-guards")
            .tempdir()
            .expect("tempdir")
            .keep();
        let mut config = RuntimeConfig::new(dir);
        config.max_instances = 32;
        config.limits = GuestLimits {
            max_instances_per_pod: 4,
            request_timeout: Some(Duration::from_secs(1)),
            log_bytes_per_second: 4096,
            ..GuestLimits::default()
        };
        Runtime::new(config, Network::new()).expect("runtime")
    })
}

async fn pod_with(spec: ContainerSpec) -> Result<Arc<dyn PodSandbox>> {
    let id = unique("guarded");
    let pod = rt()
        .create_pod(PodSpec {
            id: id.clone(),
            name: format!("default/{id}"),
            ..Default::default()
        })
        .await?;
    let name = spec.name.clone();
    pod.create_container(spec).await?;
    pod.start_container(&name).await?;
    Ok(pod)
}

/// Waits (with a hang guard) until the pod has recorded an event with `reason`.
async fn event(pod: &Arc<dyn PodSandbox>, reason: &str) -> LimitEvent {
    let mut rx = pod
        .watch_limit_events()
        .expect("the wasm backend records limit events");
    let mut seen = Vec::new();
    let wait = async {
        loop {
            seen.extend(pod.take_limit_events());
            if let Some(e) = seen.iter().find(|e| e.reason == reason) {
                return e.clone();
            }
            rx.changed().await.expect("the pod lives");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no {reason} event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursion_and_table_growth_end_the_run_with_their_reason() -> Result<()> {
    let recurse = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func $down (param i64) (result i64)
               (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (local.get 0)))
             (func (export "_start") (drop (call $down (i64.const 0)))))"#,
    )?;
    let grow = wat::parse_str(
        r#"(module (table $t 1 funcref) (memory (export "memory") 1)
             (func (export "_start")
               (loop (drop (table.grow $t (ref.null func) (i32.const 65536))) (br 0))))"#,
    )?;
    for (bytes, reason, exit, needle) in [
        (
            recurse,
            TerminationReason::StackOverflow,
            134,
            "call stack exhausted",
        ),
        (
            grow,
            TerminationReason::TableLimitExceeded,
            137,
            "table limit of 100000 elements",
        ),
    ] {
        let pod = pod_with(container("c", Image::Bytes(bytes.into()))).await?;
        let (code, got, message) = exit_of(&terminated(&pod, "c").await?);
        assert_eq!((code, got), (exit, reason), "{message}");
        assert!(message.contains(needle), "{message}");
        pod.remove(Duration::ZERO).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_cap_and_the_response_deadline_hold_per_pod() -> Result<()> {
    let Some(image) = sample("testdata/abuse-http.wasm") else {
        return Ok(());
    };
    let pod = pod_with(ContainerSpec {
        ports: vec![8080],
        ..container("c", image)
    })
    .await?;
    // The fork bomb ends: its children past 4 instances answer 503.
    let (status, body) = get(&pod, 8080, "/bomb").await?;
    assert_eq!(status, 200, "{body}");
    let e = event(&pod, INSTANCE_LIMIT_EXCEEDED).await;
    assert!(e.message.contains("4 instances"), "{e:?}");
    // A handler that never answers (nor reads its body) is killed at the deadline: 504.
    let req = http::Request::post("/stall")
        .header("host", "test.local")
        .body(full_body(vec![b'x'; 1 << 20]))?;
    let resp = pod.handle_http(8080, req).await?;
    assert_eq!(resp.status().as_u16(), 504);
    let e = event(&pod, REQUEST_TIMEOUT).await;
    assert!(e.message.contains("504"), "{e:?}");
    // And the pod serves again: the killed instance gave back its slot.
    assert_eq!(get(&pod, 8080, "/").await?, (200, "ok\n".to_string()));
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_cut_to_the_rate_and_noted() -> Result<()> {
    let Some(image) = sample("testdata/log-flood.wasm") else {
        return Ok(());
    };
    let pod = pod_with(container("c", image)).await?;
    let e = event(&pod, LOG_RATE_LIMITED).await;
    assert!(e.message.contains("4096 bytes/s"), "{e:?}");
    let log = logs(&pod, "c", false).await?;
    assert!(log.contains("[skiff] log rate limit of 4096 bytes/s exceeded"));
    pod.remove(Duration::ZERO).await?;
    Ok(())
}
