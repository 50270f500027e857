//! Helm 3 against a Skiff cluster (server, registry, one real node): `helm install --wait` of
//! the chart `samples/charts/hello` (a CRD, a Deployment of the hello-http sample, a Service, a
//! ConfigMap, a Secret, a custom resource), `helm test`, `helm upgrade` with a changed value,
//! `helm history`, `helm rollback`, `helm uninstall`; after each, the cluster holds what Helm
//! expects, its releases kept as Secrets `sh.helm.release.v1.NAME.vN` labelled `owner=helm`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use skiff_tests::{Cluster, ok, repo_root, tools, wait_object, wait_object_map};

const RELEASE: &str = "demo";
/// The name of every object of the release (the chart's `hello.fullname`).
const NAME: &str = "demo-hello";
const CRD: &str = "greetings.hello.samples.skiff.dev";
/// How long `helm --wait` and pods may take.
const WAIT: Duration = Duration::from_secs(180);

/// Runs helm with its homes in `home` and the cluster's kubeconfig.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
    kubeconfig: PathBuf,
    values: Vec<String>,
}

impl Helm {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        for (var, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
            ("HOME", "home"),
            ("KUBECACHEDIR", "kube-cache"),
        ] {
            cmd.env(var, self.home.join(dir));
        }
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_NAMESPACE", "default")
            .env("HELM_DRIVER", "secret")
            .args(args)
            .output()
            .expect("helm runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args))
    }

    /// `helm VERB RELEASE CHART` with this cluster's images and `extra` flags.
    fn chart_verb(&self, verb: &str, extra: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![verb, RELEASE, chart.to_str().expect("a UTF-8 path")];
        for v in &self.values {
            args.extend(["--set", v.as_str()]);
        }
        args.extend(extra);
        self.ok(&args)
    }
}

fn chart_dir() -> PathBuf {
    repo_root().join("samples/charts/hello")
}

/// The release Secrets of `RELEASE`: version → labels.
async fn releases(c: &Cluster) -> BTreeMap<String, BTreeMap<String, String>> {
    let secrets: Api<Secret> = c.api("default");
    let lp = ListParams::default().labels(&format!("owner=helm,name={RELEASE}"));
    let mut out = BTreeMap::new();
    for s in secrets.list(&lp).await.expect("list secrets").items {
        let name = s.metadata.name.clone().unwrap_or_default();
        assert_eq!(s.type_.as_deref(), Some("helm.sh/release.v1"), "{name}");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        let version = labels.get("version").cloned().unwrap_or_default();
        assert_eq!(name, format!("sh.helm.release.v1.{RELEASE}.v{version}"));
        assert!(s.data.is_some_and(|d| d.contains_key("release")), "{name}");
        out.insert(version, labels);
    }
    out
}

/// The `status` label of each release version, in version order.
async fn release_statuses(c: &Cluster) -> Vec<(String, String)> {
    releases(c)
        .await
        .into_iter()
        .map(|(v, l)| (v, l.get("status").cloned().unwrap_or_default()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `helm history -o json`: (revision, status, description) of each revision.
fn history(helm: &Helm) -> Vec<(u64, String, String)> {
    let out = helm.ok(&["history", RELEASE, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("helm history JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_string(),
                r["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The greeting the ConfigMap holds.
async fn greeting(c: &Cluster) -> String {
    let cm = c
        .api::<ConfigMap>("default")
        .get(NAME)
        .await
        .expect("the ConfigMap");
    cm.data.unwrap_or_default()["greeting"].clone()
}

/// The Deployment once rolled out as `kubectl rollout status` sees it: its generation
/// observed, its one replica updated and available, no old pod left. `helm --wait` returns
/// once the new ReplicaSet is ready, which the Deployment's status may show a moment later.
async fn rolled_out(c: &Cluster) -> Deployment {
    let api = c.api::<Deployment>("default");
    wait_object_map(&api, NAME, "rolled out", WAIT, |d: &Deployment| {
        let s = d.status.as_ref()?;
        let done = s.observed_generation >= d.metadata.generation
            && s.replicas == Some(1)
            && s.updated_replicas == Some(1)
            && s.available_replicas == Some(1);
        done.then(|| d.clone())
    })
    .await
    .expect("the Deployment rolls out")
}

fn config_checksum(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("checksum/config").cloned())
        .unwrap_or_default()
}

fn greetings(c: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("hello.samples.skiff.dev", "v1", "Greeting");
    Api::namespaced_with(
        c.client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "greetings"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_upgrade_rollback_uninstall() {
    let Some(bin) = tools::helm() else {
        return;
    };
    let c = Cluster::builder()
        .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
        .push("fileserver/puller.wasm", "samples/fileserver-puller:1.0")
        .node("node-1", &[])
        .start()
        .await
        .expect("no tool but helm is needed");
    let home = tempfile::tempdir().expect("a temp dir");
    let registry = &c.registry().addr;
    let helm = Helm {
        bin,
        home: home.path().to_path_buf(),
        kubeconfig: c.server.kubeconfig.clone(),
        values: vec![
            format!("image.repository={registry}/samples/hello-http"),
            format!("testImage.repository={registry}/samples/fileserver-puller"),
        ],
    };
    let timeout = format!("--timeout={}s", WAIT.as_secs());

    // install --wait: the CRD first, then every template; the Deployment ready.
    let out = helm.chart_verb("install", &["--wait", &timeout]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 1"), "{out}");
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.get(CRD).await.expect("helm installed the chart's CRD");
    let first = rolled_out(&c).await;
    assert_eq!(greeting(&c).await, "Hello from Helm");
    let secret = c
        .api::<Secret>("default")
        .get(NAME)
        .await
        .expect("the chart's Secret");
    assert_eq!(
        secret.data.unwrap_or_default()["token"].0,
        b"change-me".to_vec()
    );
    let svc = c
        .api::<Service>("default")
        .get(NAME)
        .await
        .expect("the Service");
    assert!(
        svc.spec
            .and_then(|s| s.cluster_ip)
            .is_some_and(|ip| !ip.is_empty()),
        "the Service has a ClusterIP"
    );
    let greeting_cr = greetings(&c).get(NAME).await.expect("the Greeting");
    assert_eq!(greeting_cr.data["spec"]["message"], "Hello from Helm");
    assert_eq!(
        greeting_cr.data["spec"]["language"], "en",
        "the CRD's default"
    );
    let annotations = greeting_cr.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["meta.helm.sh/release-name"], RELEASE);
    assert_eq!(annotations["meta.helm.sh/release-namespace"], "default");
    assert_eq!(
        greeting_cr.metadata.labels.clone().unwrap_or_default()["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_eq!(release_statuses(&c).await, pairs(&[("1", "deployed")]));
    let labels = &releases(&c).await["1"];
    assert_eq!(labels["owner"], "helm");
    assert_eq!(labels["name"], RELEASE);
    let list = helm.ok(&["list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).expect("helm list JSON");
    assert_eq!(list[0]["name"], RELEASE, "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");
    assert_eq!(list[0]["revision"], "1", "{list}");

    // helm test: a pod of the chart reaches the Service from inside the cluster.
    let out = helm.ok(&["test", RELEASE, &timeout]);
    let phase = out
        .lines()
        .find_map(|l| l.strip_prefix("Phase:"))
        .map(str::trim);
    assert_eq!(phase, Some("Succeeded"), "{out}");
    assert!(out.contains("TEST SUITE:     demo-hello-test"), "{out}");

    // upgrade with a changed value: the ConfigMap changes, the Deployment rolls.
    let out = helm.chart_verb(
        "upgrade",
        &["--set", "greeting=Bonjour", "--wait", &timeout],
    );
    assert!(out.contains("has been upgraded"), "{out}");
    assert_eq!(greeting(&c).await, "Bonjour");
    let second = rolled_out(&c).await;
    assert_ne!(config_checksum(&first), config_checksum(&second));
    assert!(
        second.metadata.generation > first.metadata.generation,
        "the pod template changed"
    );
    let sets = c
        .api::<ReplicaSet>("default")
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
        .await
        .expect("list replicasets")
        .items;
    assert_eq!(sets.len(), 2, "a new ReplicaSet for the new template");
    assert_eq!(
        greetings(&c).get(NAME).await.expect("the Greeting").data["spec"]["message"],
        "Bonjour"
    );
    assert_eq!(
        release_statuses(&c).await,
        pairs(&[("1", "superseded"), ("2", "deployed")])
    );

    // history, then rollback to the first revision (a third revision).
    let h = history(&helm);
    assert_eq!(
        h.iter()
            .map(|(r, s, _)| (*r, s.as_str()))
            .collect::<Vec<_>>(),
        [(1, "superseded"), (2, "deployed")],
        "{h:?}"
    );
    assert_eq!(h[0].2, "Install complete");
    assert_eq!(h[1].2, "Upgrade complete");
    let out = helm.ok(&["rollback", RELEASE, "1", "--wait", &timeout]);
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(greeting(&c).await, "Hello from Helm");
    let third = rolled_out(&c).await;
    assert_eq!(config_checksum(&third), config_checksum(&first));
    assert_eq!(
        release_statuses(&c).await,
        pairs(&[("1", "superseded"), ("2", "superseded"), ("3", "deployed")])
    );
    let h = history(&helm);
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[2].1, "deployed");
    assert_eq!(h[2].2, "Rollback to 1");

    // uninstall: the release's objects and its Secrets go; Helm keeps the CRD.
    let out = helm.ok(&["uninstall", RELEASE, "--wait", &timeout]);
    assert!(
        out.contains(&format!("release \"{RELEASE}\" uninstalled")),
        "{out}"
    );
    assert!(releases(&c).await.is_empty(), "no release Secret is left");
    let gone = |what: &str, found: bool| assert!(!found, "{what} {NAME} is left");
    gone(
        "Deployment",
        c.api::<Deployment>("default")
            .get_opt(NAME)
            .await
            .expect("get")
            .is_some(),
    );
    gone(
        "Service",
        c.api::<Service>("default")
            .get_opt(NAME)
            .await
            .expect("get")
            .is_some(),
    );
    gone(
        "ConfigMap",
        c.api::<ConfigMap>("default")
            .get_opt(NAME)
            .await
            .expect("get")
            .is_some(),
    );
    gone(
        "Secret",
        c.api::<Secret>("default")
            .get_opt(NAME)
            .await
            .expect("get")
            .is_some(),
    );
    gone(
        "Greeting",
        greetings(&c).get_opt(NAME).await.expect("get").is_some(),
    );
    crds.get(CRD).await.expect("helm keeps CRDs on uninstall");
    let list = helm.ok(&["list", "-q"]);
    assert_eq!(list.trim(), "", "{list}");
    // The Deployment's pods go with it (garbage collection).
    let pods: Api<Pod> = c.pods("default");
    let left = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo,pod-template-hash"))
        .await
        .expect("list pods")
        .items;
    for p in left {
        let name = p.metadata.name.unwrap_or_default();
        wait_object(&pods, &name, "deleted with its Deployment", WAIT, |p| {
            p.is_none()
        })
        .await
        .expect("the release's pods are removed");
    }
    drop(home);
}
