//! kubectl against a real `skiff server` for the storage kinds: the default `local-path` class
//! in `kubectl get sc` and `describe sc`, the PersistentVolume and claim columns of
//! `kubectl get pv,pvc`, `kubectl describe pvc`, `kubectl apply` of a StorageClass and
//! Kubernetes' refusals.

use std::path::Path;

use skiff_tests::{Server, tools};

const VOLUME: &str = r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: manual-1
spec:
  storageClassName: manual
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/manual-1}
"#;

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
"#;

const CLASS: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: slow
  labels: {tier: TIER}
provisioner: example.com/disk
allowVolumeExpansion: true
"#;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The column names of kubectl's header line (separated by at least two spaces).
fn columns(out: &str) -> Vec<&str> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The whitespace-separated words of the line of `out` starting with `name`.
fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in {out}"))
        .split_whitespace()
        .collect()
}

fn scenario(kubectl: &Path) {
    let server = Server::start().expect("server starts");
    let run = |args: &[&str], input: Option<&str>| {
        server
            .kubectl_stdin(kubectl, args, input)
            .expect("kubectl runs")
    };
    let k = |args: &[&str]| {
        let out = run(args, None);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        text(&out)
    };
    let k_in = |args: &[&str], input: &str| {
        let out = run(args, Some(input));
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        text(&out)
    };

    // The class every cluster starts with, marked default as kubectl shows it.
    let out = k(&["get", "sc"]);
    assert_eq!(
        columns(&out),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(
        row(&out, "local-path")[..6],
        [
            "local-path",
            "(default)",
            "skiff.dev/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{out}"
    );
    let out = k(&["describe", "sc", "local-path"]);
    for (field, value) in [
        ("IsDefaultClass:", "Yes"),
        ("Provisioner:", "skiff.dev/local-path"),
        ("ReclaimPolicy:", "Delete"),
        ("VolumeBindingMode:", "WaitForFirstConsumer"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(field) && l.split_whitespace().nth(1) == Some(value)),
            "{field} {value}: {out}"
        );
    }
    let out = k(&["get", "storageclass", "local-path", "-o", "name"]);
    assert_eq!(out.trim(), "storageclass.storage.k8s.io/local-path");

    // apply creates, then patches a class; a new provisioner is refused.
    let out = k_in(&["apply", "-f", "-"], &CLASS.replace("TIER", "one"));
    assert!(
        out.contains("storageclass.storage.k8s.io/slow created"),
        "{out}"
    );
    let out = k_in(&["apply", "-f", "-"], &CLASS.replace("TIER", "two"));
    assert!(
        out.contains("storageclass.storage.k8s.io/slow configured"),
        "{out}"
    );
    let out = k(&[
        "get",
        "sc",
        "slow",
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ]);
    assert_eq!(out.trim(), "two");
    let changed = CLASS
        .replace("TIER", "two")
        .replace("example.com/disk", "example.com/other");
    let out = run(&["apply", "-f", "-"], Some(&changed));
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("provisioner: Forbidden: updates to provisioner are forbidden."),
        "{err}"
    );

    // A volume and a claim: kubectl's columns; the claim got the default class.
    k_in(&["apply", "-f", "-"], VOLUME);
    k_in(&["apply", "-f", "-"], CLAIM);
    let out = k(&["get", "pv"]);
    assert_eq!(
        columns(&out),
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ],
        "{out}"
    );
    let cells = row(&out, "manual-1");
    assert_eq!(cells[..4], ["manual-1", "2Gi", "RWO", "Retain"], "{out}");
    assert!(cells.contains(&"manual"), "{out}");

    let out = k(&["get", "pvc"]);
    assert_eq!(
        columns(&out),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{out}"
    );
    let cells = row(&out, "data");
    assert_eq!(
        cells[..4],
        ["data", "Pending", "local-path", "<unset>"],
        "{out}"
    );

    let out = k(&["get", "pv,pvc"]);
    assert!(out.contains("persistentvolume/manual-1"), "{out}");
    assert!(out.contains("persistentvolumeclaim/data"), "{out}");

    let out = k(&["describe", "pvc", "data"]);
    for (field, value) in [
        ("Name:", "data"),
        ("Namespace:", "default"),
        ("StorageClass:", "local-path"),
        ("Status:", "Pending"),
        ("VolumeMode:", "Filesystem"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(field) && l.split_whitespace().nth(1) == Some(value)),
            "{field} {value}: {out}"
        );
    }

    // Kubernetes' refusals, as kubectl prints them.
    let bad = CLAIM.replace("ReadWriteOnce", "ReadWriteAlways");
    let out = run(&["create", "-f", "-"], Some(&bad));
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("spec.accessModes: Unsupported value: \"ReadWriteAlways\""),
        "{err}"
    );
    let out = run(
        &[
            "patch",
            "pvc",
            "data",
            "--type=merge",
            "-p",
            r#"{"spec":{"accessModes":["ReadOnlyMany"]}}"#,
        ],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("spec is immutable after creation"), "{err}");
}

#[test]
fn kubectl_1_37_storage() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    scenario(&kubectl);
}

#[test]
fn kubectl_1_32_storage() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    scenario(&kubectl);
}
