//! Usage accounting against the `samples/load` guest: CPU time charged to the container whose
//! instance burned it (and agreeing with what the process spent), an idle container near zero,
//! requests counted, and memory following a guest that grows its heap.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use skiff_runtime::{ContainerSpec, ContainerUsage, HttpOptions, PodSandbox, PodSpec};

use super::{container, eventually, get, rt, sample, unique};

/// This process's CPU time (all threads), in nanoseconds, as the kernel counts it.
fn process_cpu_nanos() -> u64 {
    // utime and stime of /proc/self/stat, in clock ticks (fields 14 and 15).
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = clock_ticks();
    ticks * (1_000_000_000 / hz)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn of(pod: &Arc<dyn PodSandbox>, name: &str) -> ContainerUsage {
    pod.usage()
        .containers
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no usage for container {name}"))
}

async fn load_pod(reuse: bool) -> Result<Option<Arc<dyn PodSandbox>>> {
    let Some(image) = sample("load/load.wasm") else {
        return Ok(None);
    };
    let pod = rt()
        .create_pod(PodSpec {
            id: unique("usage"),
            http: HttpOptions {
                reuse_instances: reuse,
                max_idle_instances: 2,
            },
            ..Default::default()
        })
        .await?;
    for (name, port) in [("busy", 8080), ("idle", 8081)] {
        pod.create_container(ContainerSpec {
            ports: vec![port],
            ..container(name, image.clone())
        })
        .await?;
        pod.start_container(name).await?;
    }
    Ok(Some(pod))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_container_is_charged_what_the_process_spent_and_an_idle_one_nothing() -> Result<()>
{
    let Some(pod) = load_pod(false).await? else {
        return Ok(());
    };
    // Compiled and warmed up outside the measured interval.
    assert_eq!(get(&pod, 8080, "/").await?.0, 200);
    assert_eq!(get(&pod, 8081, "/").await?.0, 200);
    // A request is counted once its instance is done, which may be just after its answer.
    assert!(eventually(|| of(&pod, "busy").requests_total == 1).await);
    assert!(eventually(|| of(&pod, "idle").requests_total == 1).await);
    let idle0 = of(&pod, "idle");

    let idle_pod = pod.clone();
    let sleeping = tokio::spawn(async move { get(&idle_pod, 8081, "/sleep?ms=1500").await });
    assert!(eventually(|| of(&pod, "idle").requests_in_flight == 1).await);
    let process0 = process_cpu_nanos();
    let cpu0 = of(&pod, "busy").cpu_nanos;
    for _ in 0..3 {
        let (status, body) = get(&pod, 8080, "/burn?ms=400").await?;
        assert_eq!(status, 200, "{body}");
    }
    let busy = of(&pod, "busy");
    let process = process_cpu_nanos() - process0;
    let charged = busy.cpu_nanos - cpu0;
    println!(
        "busy container charged {} ms; the process spent {} ms",
        charged / 1_000_000,
        process / 1_000_000
    );
    // The one busy instance is what this process spent its CPU on.
    let ratio = charged as f64 / process as f64;
    assert!((0.8..=1.2).contains(&ratio), "ratio {ratio}");
    assert!(eventually(|| of(&pod, "busy").requests_total == 4).await);
    assert_eq!(of(&pod, "busy").requests_in_flight, 0);

    assert_eq!(sleeping.await??.0, 200);
    let idle = of(&pod, "idle");
    println!("idle container charged {} µs", idle.cpu_nanos / 1000);
    assert!(
        idle.cpu_nanos - idle0.cpu_nanos < charged / 20,
        "idle {} ns against busy {charged} ns",
        idle.cpu_nanos - idle0.cpu_nanos
    );
    assert!(eventually(|| of(&pod, "idle").requests_total == 2).await);
    assert_eq!(of(&pod, "idle").requests_in_flight, 0);
    let usage = pod.usage();
    assert_eq!(usage.requests_total, 6);
    assert!(usage.cpu_nanos >= busy.cpu_nanos + idle.cpu_nanos);
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

fn grown(body: &str) -> u64 {
    body.trim().parse().expect("a byte count")
}

/// Waits until the container's last request is done (its instance back among the idle ones).
async fn idle(pod: &Arc<dyn PodSandbox>, name: &str) {
    assert!(eventually(|| of(pod, name).requests_in_flight == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_follows_a_guest_that_grows_its_heap() -> Result<()> {
    let Some(pod) = load_pod(true).await? else {
        return Ok(());
    };
    assert_eq!(get(&pod, 8080, "/").await?.0, 200);
    idle(&pod, "busy").await;
    assert!(of(&pod, "busy").memory_bytes > 0);
    let before = of(&pod, "busy").memory_bytes;
    let idle_before = of(&pod, "idle").memory_bytes;

    // The reused instance keeps its buffer: 8 MiB, then 16 MiB.
    let (status, body) = get(&pod, 8080, "/grow?kib=8192").await?;
    assert_eq!((status, grown(&body)), (200, 8 << 20));
    idle(&pod, "busy").await;
    assert!(of(&pod, "busy").memory_bytes >= before + (8 << 20));
    let (status, body) = get(&pod, 8080, "/grow?kib=8192").await?;
    assert_eq!((status, grown(&body)), (200, 16 << 20));
    idle(&pod, "busy").await;
    assert!(of(&pod, "busy").memory_bytes >= before + (16 << 20));
    let busy = of(&pod, "busy").memory_bytes;
    println!(
        "busy container holds {} KiB after growing 16 MiB",
        busy / 1024
    );
    // Not much more than what was asked for (the guest allocator doubles its vector at most).
    assert!(busy < before + (40 << 20), "{busy}");
    // The other container is not charged for it, and the pod is the sum.
    assert_eq!(of(&pod, "idle").memory_bytes, idle_before);
    assert_eq!(pod.usage().memory_bytes, busy + idle_before);

    // A linear memory never shrinks: the instance's memory stays until the instance goes.
    assert_eq!(get(&pod, 8080, "/shrink").await?, (200, "0\n".into()));
    idle(&pod, "busy").await;
    assert!(of(&pod, "busy").memory_bytes >= before + (16 << 20));
    pod.stop_container("busy", Duration::from_secs(5)).await?;
    assert!(eventually(|| of(&pod, "busy").memory_bytes == 0).await);
    assert_eq!(pod.usage().memory_bytes, idle_before);
    pod.remove(Duration::ZERO).await?;
    assert_eq!(pod.usage().memory_bytes, 0);
    Ok(())
}
