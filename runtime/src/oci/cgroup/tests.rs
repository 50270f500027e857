//! The cgroup readers and removal on fake v1 and v2 trees.

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const CG: &str = "/skiff/pod-1/app";

#[test]
fn v1_reads_oom_kills_cpu_throttling_and_the_working_set() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mem = r.join("memory/skiff/pod-1/app");
    write(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    write(&mem.join("memory.usage_in_bytes"), "10485760\n");
    write(
        &mem.join("memory.stat"),
        "cache 0\ninactive_file 5\ntotal_inactive_file 4194304\n",
    );
    write(
        &r.join("cpuacct/skiff/pod-1/app/cpuacct.usage"),
        "123456789\n",
    );
    write(
        &r.join("cpu/skiff/pod-1/app/cpu.stat"),
        "nr_periods 10\nnr_throttled 2\nthrottled_time 5000000\n",
    );
    let cg = Path::new(CG);
    assert!(oom_killed_at(CgroupVersion::V1, r, cg));
    assert_eq!(
        usage_at(CgroupVersion::V1, r, cg),
        CgroupUsage {
            cpu_nanos: 123456789,
            throttled_nanos: 5000000,
            memory_bytes: 10485760 - 4194304,
        }
    );
    write(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    );
    assert!(!oom_killed_at(CgroupVersion::V1, r, cg));
    // A cgroup that is not there: nothing killed, nothing used.
    let gone = Path::new("/skiff/pod-2/app");
    assert!(!oom_killed_at(CgroupVersion::V1, r, gone));
    assert_eq!(usage_at(CgroupVersion::V1, r, gone), CgroupUsage::default());
}

#[test]
fn v2_reads_memory_events_cpu_stat_in_microseconds_and_the_working_set() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let d = r.join("skiff/pod-1/app");
    write(
        &d.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n",
    );
    write(&d.join("memory.current"), "8388608\n");
    write(
        &d.join("memory.stat"),
        "anon 1\nfile 2\ninactive_file 1048576\n",
    );
    write(
        &d.join("cpu.stat"),
        "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 700\n",
    );
    let cg = Path::new(CG);
    assert!(oom_killed_at(CgroupVersion::V2, r, cg));
    assert_eq!(
        usage_at(CgroupVersion::V2, r, cg),
        CgroupUsage {
            cpu_nanos: 2_500_000,
            throttled_nanos: 700_000,
            memory_bytes: 8388608 - 1048576,
        }
    );
    write(&d.join("memory.events"), "oom 1\noom_kill 0\n");
    assert!(!oom_killed_at(CgroupVersion::V2, r, cg));
}

#[test]
fn remove_takes_children_first_in_every_v1_controller_and_a_missing_one_is_ok() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for c in ["memory", "cpu,cpuacct", "pids"] {
        std::fs::create_dir_all(r.join(c).join("skiff/pod-1/app/child")).unwrap();
        std::fs::create_dir_all(r.join(c).join("skiff/pod-1/other")).unwrap();
    }
    // A file where a controller would be is not a hierarchy.
    write(&r.join("release_agent"), "");
    remove_at(CgroupVersion::V1, r, Path::new(CG)).unwrap();
    for c in ["memory", "cpu,cpuacct", "pids"] {
        assert!(!r.join(c).join("skiff/pod-1/app").exists(), "{c}");
        assert!(r.join(c).join("skiff/pod-1/other").is_dir(), "{c}");
    }
    remove_at(CgroupVersion::V1, r, Path::new(CG)).unwrap();
    remove_at(CgroupVersion::V2, r, Path::new(CG)).unwrap();
    std::fs::create_dir_all(r.join("skiff/pod-1/app/sub")).unwrap();
    remove_at(CgroupVersion::V2, r, Path::new("/skiff/pod-1")).unwrap();
    assert!(!r.join("skiff/pod-1").exists());
    // No hierarchy at all.
    remove_at(CgroupVersion::V1, &r.join("nothing"), Path::new(CG)).unwrap();
}
