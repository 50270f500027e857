//! Unit tests of the OCI runtime config builder, and one `runc run` of a built bundle.

use super::*;
use crate::spec::{Mount as VolumeMount, Resources};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn input() -> SpecInput {
    SpecInput {
        container: ContainerSpec {
            name: "app".into(),
            ..Default::default()
        },
        command: Vec::new(),
        args: Vec::new(),
        image: ImageConfig {
            cmd: s(&["/bin/true"]),
            ..Default::default()
        },
        rootfs: PathBuf::from("/var/lib/skiff/rootfs"),
        hostname: "web-0".into(),
        netns: None,
        cgroups_path: PathBuf::from("/skiff/uid-1/app"),
        cgroup_version: CgroupVersion::V1,
        volume_dirs: BTreeMap::new(),
        etc_files: EtcFiles::default(),
        security: SecurityOptions::default(),
        pids_limit: None,
    }
}

#[test]
fn command_and_args_combine_with_entrypoint_and_cmd_as_kubernetes_documents() {
    // The table of "Define a Command and Arguments for a Container".
    let ep = s(&["/ep-1"]);
    let cmd = s(&["foo", "bar"]);
    let cases: [(&[&str], &[&str], &[&str]); 4] = [
        (&[], &[], &["/ep-1", "foo", "bar"]),
        (&["/ep-2"], &[], &["/ep-2"]),
        (&[], &["zoo", "boo"], &["/ep-1", "zoo", "boo"]),
        (&["/ep-2"], &["zoo", "boo"], &["/ep-2", "zoo", "boo"]),
    ];
    for (command, args, want) in cases {
        let got = process_args(&s(command), &s(args), &ep, &cmd).unwrap();
        assert_eq!(got, s(want), "command {command:?} args {args:?}");
    }
    // An image with only Cmd, and one with only Entrypoint.
    assert_eq!(process_args(&[], &[], &[], &cmd).unwrap(), cmd);
    assert_eq!(process_args(&[], &s(&["x"]), &[], &cmd).unwrap(), s(&["x"]));
    assert_eq!(process_args(&[], &[], &ep, &[]).unwrap(), ep);
    assert!(matches!(
        process_args(&[], &[], &[], &[]),
        Err(SpecError::NoCommand)
    ));
    // Through config_json.
    let mut i = input();
    i.image.entrypoint = ep.clone();
    i.image.cmd = cmd.clone();
    i.args = s(&["zoo"]);
    let spec = config_json(&i).unwrap();
    let got = spec.process().as_ref().unwrap().args().clone().unwrap();
    assert_eq!(got, s(&["/ep-1", "zoo"]));
    i.image = ImageConfig::default();
    i.args.clear();
    let err = config_json(&i).unwrap_err();
    assert!(err.to_string().contains("no command specified"), "{err}");
}

#[test]
fn container_env_overrides_image_env_in_place() {
    let mut i = input();
    i.image.env = s(&["PATH=/img/bin", "A=image", "B=image", "EMPTY"]);
    i.container.env = vec![
        ("B".into(), "container".into()),
        ("C".into(), "new".into()),
        ("A".into(), "container".into()),
    ];
    let spec = config_json(&i).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(
        env,
        s(&[
            "HOSTNAME=web-0",
            "PATH=/img/bin",
            "A=container",
            "B=container",
            "EMPTY=",
            "C=new",
        ])
    );
    // No PATH anywhere: the default one is added.
    let spec = config_json(&input()).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env, s(&["HOSTNAME=web-0", DEFAULT_PATH]));
}

#[test]
fn working_dir_comes_from_the_container_then_the_image_then_root() {
    let cwd = |container: Option<&str>, image: Option<&str>| {
        let mut i = input();
        i.container.working_dir = container.map(String::from);
        i.image.working_dir = image.map(String::from);
        config_json(&i).map(|spec| spec.process().as_ref().unwrap().cwd().clone())
    };
    assert_eq!(cwd(Some("/srv"), Some("/app")).unwrap(), Path::new("/srv"));
    assert_eq!(cwd(None, Some("/app")).unwrap(), Path::new("/app"));
    assert_eq!(cwd(Some(""), Some("/app")).unwrap(), Path::new("/app"));
    assert_eq!(cwd(None, None).unwrap(), Path::new("/"));
    assert!(matches!(
        cwd(Some("rel"), None),
        Err(SpecError::NotAbsolute {
            what: "workingDir",
            ..
        })
    ));
}

#[test]
fn users_parse_numeric_only_and_the_security_context_overrides() {
    type Ids = (u32, Option<u32>);
    let cases: [(Option<&str>, Option<Ids>); 8] = [
        (None, Some((0, None))),
        (Some(""), Some((0, None))),
        (Some("1000"), Some((1000, None))),
        (Some("1000:2000"), Some((1000, Some(2000)))),
        (Some("0:0"), Some((0, Some(0)))),
        (Some("nobody"), None),
        (Some("1000:staff"), None),
        (Some("-1"), None),
    ];
    for (user, want) in cases {
        match (parse_user(user), want) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{user:?}"),
            (Err(SpecError::NonNumericUser(u)), None) => assert_eq!(Some(u.as_str()), user),
            (got, want) => panic!("{user:?}: got {got:?}, want {want:?}"),
        }
    }
    let ids = |i: &SpecInput| {
        config_json(i).map(|spec| {
            let u = spec.process().as_ref().unwrap().user();
            (u.uid(), u.gid())
        })
    };
    let mut i = input();
    i.image.user = Some("1000:2000".into());
    assert_eq!(ids(&i).unwrap(), (1000, 2000));
    i.image.user = Some("1000".into());
    assert_eq!(ids(&i).unwrap(), (1000, 0));
    i.security.run_as_group = Some(3000);
    assert_eq!(ids(&i).unwrap(), (1000, 3000));
    i.image.user = Some("www-data".into());
    let err = ids(&i).unwrap_err();
    assert!(
        err.to_string().contains("\"www-data\" is not numeric"),
        "{err}"
    );
    // runAsUser replaces a named image user.
    i.security.run_as_user = Some(33);
    assert_eq!(ids(&i).unwrap(), (33, 3000));
}

#[test]
fn capabilities_are_the_default_set_minus_drops_plus_adds() {
    use Capability as C;
    let default: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let with = |add: &[&str], drop: &[&str]| {
        capability_set(&SecurityOptions {
            add_capabilities: s(add),
            drop_capabilities: s(drop),
            ..Default::default()
        })
    };
    let minus = |c: &[C]| default.iter().copied().filter(|d| !c.contains(d)).collect();
    let plus = |c: &[C]| default.iter().copied().chain(c.iter().copied()).collect();
    let cases: Vec<(&[&str], &[&str], Capabilities)> = vec![
        (&[], &[], default.clone()),
        (&[], &["NET_RAW"], minus(&[C::NetRaw])),
        (
            &[],
            &["CAP_NET_RAW", "mknod"],
            minus(&[C::NetRaw, C::Mknod]),
        ),
        (&["NET_ADMIN"], &[], plus(&[C::NetAdmin])),
        (&["sys_time"], &["KILL"], {
            let mut c: Capabilities = minus(&[C::Kill]);
            c.insert(C::SysTime);
            c
        }),
        (&[], &["ALL"], Capabilities::new()),
        (&["NET_BIND_SERVICE"], &["ALL"], [C::NetBindService].into()),
        // Dropping a capability that is added keeps it (adds come last).
        (&["CHOWN"], &["CHOWN"], default.clone()),
    ];
    for (add, drop, want) in cases {
        assert_eq!(with(add, drop).unwrap(), want, "add {add:?} drop {drop:?}");
    }
    let all = with(&["ALL"], &[]).unwrap();
    assert!(all.contains(&C::SysAdmin) && all.contains(&C::Bpf) && all.len() == 41);
    assert!(matches!(
        with(&["NOT_A_CAP"], &[]),
        Err(SpecError::UnknownCapability(c)) if c == "NOT_A_CAP"
    ));
    // In the spec: bounding, effective and permitted; none inheritable or ambient.
    let mut i = input();
    i.security.drop_capabilities = s(&["ALL"]);
    i.security.add_capabilities = s(&["KILL"]);
    let spec = config_json(&i).unwrap();
    let caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let kill: Capabilities = [C::Kill].into();
    assert_eq!(caps.bounding().as_ref(), Some(&kill));
    assert_eq!(caps.effective().as_ref(), Some(&kill));
    assert_eq!(caps.permitted().as_ref(), Some(&kill));
    assert_eq!(caps.inheritable().as_ref(), Some(&Capabilities::new()));
    assert_eq!(caps.ambient().as_ref(), Some(&Capabilities::new()));
    assert_eq!(
        spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
}

fn resources_of(r: Resources, version: CgroupVersion) -> serde_json::Value {
    let mut i = input();
    i.container.resources = r;
    i.cgroup_version = version;
    i.pids_limit = Some(64);
    let spec = config_json(&i).unwrap();
    let mut json = serde_json::to_value(spec.linux().as_ref().unwrap().resources()).unwrap();
    json.as_object_mut().unwrap().remove("devices");
    json
}

#[test]
fn resources_map_to_cgroup_v1_as_kubelet_computes_them() {
    use serde_json::json;
    let cases = [
        // Best effort: the minimum shares, no quota, no memory limit.
        (
            Resources::default(),
            json!({"cpu": {"shares": 2}, "pids": {"limit": 64}}),
        ),
        (
            Resources {
                memory_limit: Some(64 << 20),
                memory_request: Some(32 << 20),
                cpu_limit_millis: Some(200),
                cpu_request_millis: Some(100),
            },
            json!({
                "memory": {"limit": 64 << 20},
                "cpu": {"shares": 102, "quota": 20000, "period": 100000},
                "pids": {"limit": 64}
            }),
        ),
        // A limit alone: the request defaults to it.
        (
            Resources {
                cpu_limit_millis: Some(1500),
                ..Default::default()
            },
            json!({"cpu": {"shares": 1536, "quota": 150000, "period": 100000}, "pids": {"limit": 64}}),
        ),
        // A tiny limit: quota at least 1 ms, shares at least 2.
        (
            Resources {
                cpu_limit_millis: Some(1),
                ..Default::default()
            },
            json!({"cpu": {"shares": 2, "quota": 1000, "period": 100000}, "pids": {"limit": 64}}),
        ),
    ];
    for (r, want) in cases {
        assert_eq!(resources_of(r, CgroupVersion::V1), want, "{r:?}");
    }
}

#[test]
fn resources_map_to_cgroup_v2_with_a_cpu_weight() {
    use serde_json::json;
    let r = Resources {
        memory_limit: Some(128 << 20),
        cpu_limit_millis: Some(200),
        cpu_request_millis: Some(1000),
        ..Default::default()
    };
    assert_eq!(
        resources_of(r, CgroupVersion::V2),
        json!({
            "memory": {"limit": 128 << 20},
            "cpu": {"quota": 20000, "period": 100000},
            "pids": {"limit": 64},
            "unified": {"cpu.weight": "39"}
        })
    );
    assert_eq!(
        resources_of(Resources::default(), CgroupVersion::V2),
        json!({"cpu": {}, "pids": {"limit": 64}, "unified": {"cpu.weight": "1"}})
    );
    // The conversion's fixed points (runc's and crun's linear mapping).
    for (shares, weight) in [(0, 0), (2, 1), (102, 4), (1024, 39), (262_144, 10_000)] {
        assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
    }
    for (millis, shares) in [(0, 2), (1, 2), (100, 102), (1000, 1024), (500_000, 262_144)] {
        assert_eq!(milli_cpu_to_shares(millis), shares, "{millis}m");
    }
}

#[test]
fn cgroup_version_is_told_by_cgroup_controllers_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    // Hybrid: controllers below the root and a cgroup2 mount at `unified`.
    std::fs::create_dir_all(dir.path().join("memory")).unwrap();
    std::fs::create_dir_all(dir.path().join("unified")).unwrap();
    std::fs::write(dir.path().join("unified/cgroup.controllers"), "").unwrap();
    assert_eq!(CgroupVersion::detect_at(dir.path()), CgroupVersion::V1);
    std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
    assert_eq!(CgroupVersion::detect_at(dir.path()), CgroupVersion::V2);
    let here = CgroupVersion::detect();
    eprintln!("this host runs cgroup {here:?}");
}

#[test]
fn cgroup_dirs_lists_one_per_controller_on_v1_and_one_on_v2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for c in [
        "memory/skiff/u/c",
        "pids/skiff/u/c",
        "cpu,cpuacct/skiff/u/c",
        "blkio",
    ] {
        std::fs::create_dir_all(root.join(c)).unwrap();
    }
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
    let path = Path::new("/skiff/u/c");
    let got = cgroup_dirs(CgroupVersion::V1, root, path).unwrap();
    let want: Vec<PathBuf> = ["cpu,cpuacct", "memory", "pids"]
        .iter()
        .map(|c| root.join(c).join("skiff/u/c"))
        .collect();
    assert_eq!(got, want);
    assert!(
        cgroup_dirs(CgroupVersion::V2, root, path)
            .unwrap()
            .is_empty()
    );
    std::fs::create_dir_all(root.join("skiff/u/c")).unwrap();
    assert_eq!(
        cgroup_dirs(CgroupVersion::V2, root, path).unwrap(),
        vec![root.join("skiff/u/c")]
    );
    assert_eq!(cgroup_path("u", "c").unwrap(), path);
    for (pod, container) in [("", "c"), ("u", ".."), ("a/b", "c"), ("u", "x/y")] {
        assert!(matches!(
            cgroup_path(pod, container),
            Err(SpecError::BadCgroupName(_))
        ));
    }
}

#[test]
fn root_namespaces_mounts_and_paths() {
    let mut i = input();
    i.security.read_only_root = true;
    i.netns = Some(netns_path("skiff-uid-1"));
    i.volume_dirs = BTreeMap::from([
        (
            "data".to_string(),
            PathBuf::from("/pods/uid-1/volumes/data"),
        ),
        (
            "config".to_string(),
            PathBuf::from("/pods/uid-1/volumes/config"),
        ),
    ]);
    i.container.mounts = vec![
        VolumeMount {
            volume: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        },
        VolumeMount {
            volume: "config".into(),
            mount_path: "/etc/app".into(),
            read_only: true,
            sub_path: Some("app/v1".into()),
        },
    ];
    i.etc_files = EtcFiles {
        hosts: Some("/pods/uid-1/hosts".into()),
        resolv_conf: Some("/pods/uid-1/resolv.conf".into()),
        hostname: None,
    };
    let spec = config_json(&i).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json["root"],
        serde_json::json!({"path": "/var/lib/skiff/rootfs", "readonly": true})
    );
    assert_eq!(json["hostname"], "web-0");
    assert_eq!(
        json["linux"]["namespaces"],
        serde_json::json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/skiff-uid-1"}
        ])
    );
    assert_eq!(json["linux"]["cgroupsPath"], "/skiff/uid-1/app");
    assert_eq!(
        json["linux"]["maskedPaths"],
        serde_json::json!(MASKED_PATHS)
    );
    assert_eq!(
        json["linux"]["readonlyPaths"],
        serde_json::json!(READONLY_PATHS)
    );
    let mounts: Vec<(String, String, String, Vec<String>)> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.typ().clone().unwrap(),
                m.source().as_ref().unwrap().display().to_string(),
                m.options().clone().unwrap(),
            )
        })
        .collect();
    let dests: Vec<&str> = mounts.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/data",
            "/etc/app",
            "/etc/hosts",
            "/etc/resolv.conf"
        ]
    );
    assert!(mounts[5].3.contains(&"ro".to_string()), "/sys is read-only");
    let bind = |m: &(String, String, String, Vec<String>), src: &str, access: &str| {
        assert_eq!(m.1, "bind");
        assert_eq!(m.2, src);
        assert_eq!(m.3, s(&["rbind", "rprivate", access]), "{}", m.0);
    };
    bind(&mounts[6], "/pods/uid-1/volumes/data", "rw");
    bind(&mounts[7], "/pods/uid-1/volumes/config/app/v1", "ro");
    // The /etc files follow readOnlyRootFilesystem.
    bind(&mounts[8], "/pods/uid-1/hosts", "ro");
    bind(&mounts[9], "/pods/uid-1/resolv.conf", "ro");

    // Without a netns the container gets a new, empty one; a writable root by default.
    let spec = config_json(&input()).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json["linux"]["namespaces"][4],
        serde_json::json!({"type": "network"})
    );
    assert_eq!(json["root"]["readonly"], false);
}

#[test]
fn bad_mounts_and_paths_are_refused() {
    let with_mount = |volume: &str, mount_path: &str, sub_path: Option<&str>| {
        let mut i = input();
        i.volume_dirs = BTreeMap::from([("data".to_string(), PathBuf::from("/v/data"))]);
        i.container.mounts = vec![VolumeMount {
            volume: volume.into(),
            mount_path: mount_path.into(),
            read_only: false,
            sub_path: sub_path.map(String::from),
        }];
        config_json(&i)
    };
    assert!(with_mount("data", "/d", Some("a/./b")).is_ok());
    assert!(matches!(
        with_mount("nope", "/d", None),
        Err(SpecError::UnknownVolume { volume, .. }) if volume == "nope"
    ));
    assert!(matches!(
        with_mount("data", "d", None),
        Err(SpecError::NotAbsolute {
            what: "mountPath",
            ..
        })
    ));
    for sub in ["../x", "a/../../x", "/etc"] {
        assert!(
            matches!(
                with_mount("data", "/d", Some(sub)),
                Err(SpecError::BadSubPath(_))
            ),
            "{sub}"
        );
    }
    let mut i = input();
    i.rootfs = PathBuf::from("rootfs");
    assert!(matches!(
        config_json(&i),
        Err(SpecError::NotAbsolute { .. })
    ));
    let mut i = input();
    i.cgroups_path = PathBuf::from("skiff/u/c");
    assert!(matches!(
        config_json(&i),
        Err(SpecError::NotAbsolute { .. })
    ));
    let mut i = input();
    i.container.resources.memory_limit = Some(u64::MAX);
    assert!(matches!(config_json(&i), Err(SpecError::TooLarge(_))));
}

#[test]
fn the_json_round_trips_through_the_runtime_spec_types() {
    let mut i = input();
    i.container.resources.cpu_limit_millis = Some(250);
    let spec = config_json(&i).unwrap();
    let text = serde_json::to_string_pretty(&spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["process"]["noNewPrivileges"], true);
    assert_eq!(
        json["process"]["user"],
        serde_json::json!({"uid": 0, "gid": 0})
    );
    assert_eq!(
        json["linux"]["resources"]["devices"],
        serde_json::json!([{"allow": false, "access": "rwm"}])
    );
}

/// A bundle directory with a busybox-static root, and the runc to run it, when this host can.
struct Runc {
    runc: PathBuf,
    version: CgroupVersion,
    dir: tempfile::TempDir,
    /// Names the container and its pod cgroup (`/skiff/<unique>`).
    unique: String,
}

impl Runc {
    /// `None` (after a `SKIPPED:` line) when not root or runc or busybox is missing.
    fn new() -> Option<Runc> {
        // `/proc/self` is owned by the process's effective uid.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if !root {
            eprintln!("SKIPPED: running an OCI bundle with runc needs root");
            return None;
        }
        let runc = skiff_tools::system("runc", "apt-get install runc")?;
        let busybox = skiff_tools::system("busybox", "apt-get install busybox-static")?;
        let version = CgroupVersion::detect();
        eprintln!("running runc on cgroup {version:?}");
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bundle/rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(&busybox, bin.join("busybox")).unwrap();
        for applet in ["sh", "true", "test", "cat", "grep", "touch"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let unique = format!(
            "spec-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        )
        .to_ascii_lowercase()
        .replace(['.', '_'], "-");
        Some(Runc {
            runc,
            version,
            dir,
            unique,
        })
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// The test input for this bundle, with its limits.
    fn input(&self) -> SpecInput {
        let mut i = input();
        i.rootfs = self.bundle().join("rootfs");
        i.cgroups_path = cgroup_path(&self.unique, "app").unwrap();
        i.cgroup_version = self.version;
        i.container.resources = Resources {
            memory_limit: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(100),
            ..Default::default()
        };
        i.pids_limit = Some(32);
        i
    }

    fn save(&self, spec: &Spec) {
        spec.save(self.bundle().join("config.json")).unwrap();
    }

    /// Runs `runc --root STATE ARGS… <unique>`: stdin empty, stdout and stderr into a file
    /// (never pipes, which a created container's init would hold open); returns the status and
    /// what it wrote.
    fn run(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let log = self.dir.path().join(format!("runc-{}.log", args[0]));
        let file = std::fs::File::create(&log).unwrap();
        let status = std::process::Command::new(&self.runc)
            .arg("--root")
            .arg(self.dir.path().join("state"))
            .args(args)
            .arg(&self.unique)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Deletes the container and its pod cgroup; returns the container cgroup directories
    /// that `runc delete` left behind.
    fn clean_up(&self, cgroups_path: &Path) -> Vec<PathBuf> {
        let _ = self.run(&["delete", "--force"]);
        let root = Path::new("/sys/fs/cgroup");
        let leftover = cgroup_dirs(self.version, root, cgroups_path).unwrap();
        let pod = Path::new("/skiff").join(&self.unique);
        for d in cgroup_dirs(self.version, root, &pod).unwrap() {
            let _ = std::fs::remove_dir(d);
        }
        for d in cgroup_dirs(self.version, root, Path::new("/skiff")).unwrap() {
            // Only succeeds when empty: other pods' cgroups stay.
            let _ = std::fs::remove_dir(d);
        }
        assert!(
            cgroup_dirs(self.version, root, &pod).unwrap().is_empty(),
            "the pod cgroup {pod:?} is still there"
        );
        leftover
    }
}

fn check((status, output): &(std::process::ExitStatus, String), what: &str) {
    assert!(status.success(), "{what}: {status}\n{output}");
}

/// Runs a bundle built by [`config_json`] with `runc run`: a busybox-static root, a read-only
/// root filesystem, a read-only volume, an `/etc/hosts` bind and limits; the container checks
/// its view and exits 0, and no cgroup is left behind.
#[test]
fn runc_runs_a_built_bundle() {
    let Some(runc) = Runc::new() else {
        return;
    };
    let volume = runc.dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("greeting"), "hello").unwrap();
    let hosts = runc.dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut i = runc.input();
    i.command = s(&["/bin/sh", "-c"]);
    i.args = s(&[concat!(
        "test \"$(cat /data/greeting)\" = hello && ",
        "! touch /data/x 2>/dev/null && ! touch /x 2>/dev/null && ",
        "grep -q localhost /etc/hosts && test \"$(cat /proc/sys/kernel/hostname)\" = web-0 && ",
        "/bin/true"
    )]);
    i.security.read_only_root = true;
    i.volume_dirs = BTreeMap::from([("data".to_string(), volume)]);
    i.container.mounts = vec![VolumeMount {
        volume: "data".into(),
        mount_path: "/data".into(),
        read_only: true,
        sub_path: None,
    }];
    i.etc_files.hosts = Some(hosts);
    runc.save(&config_json(&i).unwrap());
    let out = runc.run(&["run", "--bundle", runc.bundle().to_str().unwrap()]);
    let leftover = runc.clean_up(&i.cgroups_path);
    check(&out, "runc run");
    assert!(
        leftover.is_empty(),
        "runc left cgroups behind: {leftover:?}"
    );
}

/// `runc create` of a built bundle writes the limits into the container's cgroup (read back
/// before the container starts; it never runs).
#[test]
fn runc_writes_the_limits_into_the_cgroup() {
    let Some(runc) = Runc::new() else {
        return;
    };
    let i = runc.input();
    runc.save(&config_json(&i).unwrap());
    let out = runc.run(&["create", "--bundle", runc.bundle().to_str().unwrap()]);
    let read = |controller: &str, file: &str| {
        let relative = i.cgroups_path.strip_prefix("/").unwrap();
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(relative)
            .join(file);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("{}: {e}", path.display()))
    };
    let got = match runc.version {
        CgroupVersion::V1 => vec![
            read("memory", "memory.limit_in_bytes"),
            read("cpu", "cpu.cfs_quota_us"),
            read("cpu", "cpu.cfs_period_us"),
            read("cpu", "cpu.shares"),
            read("pids", "pids.max"),
        ],
        CgroupVersion::V2 => vec![
            read("", "memory.max"),
            read("", "cpu.max"),
            read("", "cpu.weight"),
            read("", "pids.max"),
        ],
    };
    let leftover = runc.clean_up(&i.cgroups_path);
    check(&out, "runc create");
    let want = match runc.version {
        CgroupVersion::V1 => s(&["67108864", "50000", "100000", "102", "32"]),
        CgroupVersion::V2 => s(&["67108864", "50000 100000", "4", "32"]),
    };
    assert_eq!(got, want);
    assert!(
        leftover.is_empty(),
        "runc left cgroups behind: {leftover:?}"
    );
}
