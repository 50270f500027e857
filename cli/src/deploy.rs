//! `skiff deploy`: the serverless one-liner. Pushes an HTTP component to the cluster's registry
//! by content, server-side applies (field manager `skiff`) a Deployment, a Service and an
//! Ingress named after the app, watches the rollout, then asks the ingress until the app answers
//! 200 and prints its URL. `skiff deploy --delete --name NAME` removes the three objects.
//!
//! How a client finds the cluster's registry and ingress: `skiff up` publishes them in the
//! ConfigMap `kube-public/skiff-info` (keys `registry`, `ingress`) and the registry's push token
//! in the Secret `kube-system/skiff-registry` (key `token`); an operator of a split cluster can
//! create the same two objects. `--registry`, `--registry-token` (`SKIFF_REGISTRY_TOKEN`) and
//! `--ingress` override them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;
use skiff_registry::wasm::{WasmKind, inspect};

/// The field manager of everything `skiff deploy` applies.
pub(crate) const FIELD_MANAGER: &str = "skiff";
/// Namespace and name of the ConfigMap that tells clients where the cluster's registry and
/// ingress are (keys [`INFO_REGISTRY`], [`INFO_INGRESS`]).
pub(crate) const INFO_CONFIGMAP: (&str, &str) = ("kube-public", "skiff-info");
/// Key of [`INFO_CONFIGMAP`]: the registry pods pull from, `HOST:PORT`.
pub(crate) const INFO_REGISTRY: &str = "registry";
/// Key of [`INFO_CONFIGMAP`]: the ingress address, `HOST:PORT` (plain HTTP).
pub(crate) const INFO_INGRESS: &str = "ingress";
/// Namespace and name of the Secret holding the registry's push token (key `token`).
pub(crate) const REGISTRY_SECRET: (&str, &str) = ("kube-system", "skiff-registry");
/// The port a deployed component serves on inside its pod (the Service's target port).
const COMPONENT_PORT: u16 = 8080;
/// The export that makes a component an HTTP service.
const HTTP_EXPORT: &str = "wasi:http/incoming-handler";
/// Container waiting reasons that mean a rollout will not finish by itself.
const FAILED_WAITING: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

#[derive(clap::Args)]
pub(crate) struct DeployArgs {
    /// The HTTP component to deploy (exports wasi:http/incoming-handler). Without it, the app
    /// that ./skiff.toml (or -f FILE) describes is deployed.
    #[arg(conflicts_with_all = ["delete", "manifest"])]
    file: Option<PathBuf>,
    /// The app manifest to deploy (default: ./skiff.toml).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "MANIFEST",
        conflicts_with = "delete"
    )]
    manifest: Option<PathBuf>,
    /// With a manifest: push the components and print the objects instead of applying them.
    #[arg(long, conflicts_with = "delete")]
    dry_run: bool,
    /// With --dry-run: print the objects as YAML (`kubectl apply -f -` takes it).
    #[arg(short = 'o', long, value_name = "yaml", requires = "dry_run")]
    output: Option<String>,
    /// Name of the app: its Deployment, Service and Ingress, and label `app: NAME` (default:
    /// the file's name without `.wasm`).
    #[arg(long)]
    name: Option<String>,
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Number of pods (default 1 when the Deployment is created; left alone afterwards).
    #[arg(long, conflicts_with = "scale_to_zero")]
    replicas: Option<i32>,
    /// Let the app sit at zero pods when idle; the first request starts one.
    #[arg(long)]
    scale_to_zero: bool,
    /// With --scale-to-zero: how long without a request before it goes to zero (a Go duration
    /// such as 90s or 5m; the cluster's default is 60s).
    #[arg(long, requires = "scale_to_zero", value_name = "DURATION", value_parser = parse_idle)]
    scale_to_zero_idle: Option<String>,
    /// Environment variable of the component (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Host the Ingress routes (default NAME.localhost; `*.localhost` resolves to loopback);
    /// `--host ''` routes every host.
    #[arg(long)]
    host: Option<String>,
    /// Path prefix the Ingress routes.
    #[arg(long, visible_alias = "route", default_value = "/")]
    path: String,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, then the one `skiff up` writes).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Registry to push to, HOST:PORT (default: from ConfigMap kube-public/skiff-info).
    #[arg(long)]
    registry: Option<String>,
    /// Registry push token (default: Secret kube-system/skiff-registry).
    #[arg(long, env = "SKIFF_REGISTRY_TOKEN", hide_env_values = true)]
    registry_token: Option<String>,
    /// Ingress address to ask, HOST:PORT (default: from ConfigMap kube-public/skiff-info).
    #[arg(long)]
    ingress: Option<String>,
    /// How long to wait for the rollout and the first answer (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    timeout: Duration,
    /// Local blob cache for the push (default: $XDG_CACHE_HOME/skiff/registry).
    #[arg(long, env = "SKIFF_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Remove the app's Deployment, Service and Ingress instead.
    #[arg(long)]
    delete: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

fn parse_idle(s: &str) -> Result<String, String> {
    skiff_meta::duration::parse_go_duration(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not a duration like 90s or 5m: {e}"))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration like 90s or 5m")),
    }
}

/// The app name a file suggests: its stem, lowercased, other characters as `-`.
fn name_from_file(file: &Path) -> anyhow::Result<String> {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let name: String = name.chars().take(63).collect();
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        bail!(
            "cannot name the app after {}: pass --name NAME",
            file.display()
        );
    }
    Ok(name)
}

/// Checks `name` is a DNS-1035 label, as a Service name must be.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "--name {name:?} is not a valid name: use at most 63 lowercase letters, digits and \
             '-', starting with a letter and ending with a letter or digit"
        );
    }
    Ok(())
}

/// Reads `file` and checks it is a component that serves HTTP.
fn read_component(file: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: no such file", file.display()),
        _ => anyhow!("reading {}: {e}", file.display()),
    })?;
    match inspect(&bytes) {
        Err(e) => bail!("{} is not a wasm component: {e}", file.display()),
        Ok(WasmKind::Module) => bail!(
            "{} is a core wasm module, not a component: skiff deploy runs wasi:http components \
             (build for wasm32-wasip2, or wrap a module with `wasm-tools component new`)",
            file.display()
        ),
        Ok(WasmKind::Component(info)) => {
            if !info.exports.iter().any(|e| e.starts_with(HTTP_EXPORT)) {
                bail!(
                    "{} does not export {HTTP_EXPORT}, so it serves no HTTP (it exports: {}); \
                     run a command component as a Pod or Job instead",
                    file.display(),
                    if info.exports.is_empty() {
                        "nothing".to_string()
                    } else {
                        info.exports.join(", ")
                    }
                );
            }
        }
    }
    Ok(bytes)
}

/// The kube-rs configuration: `--kubeconfig`, else `KUBECONFIG` or `~/.kube/config` as
/// kubectl, else the admin kubeconfig of `skiff up` in its default data directory.
pub(crate) async fn kube_config(flag: Option<&Path>) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions::default();
    let read = |path: &Path| -> anyhow::Result<Kubeconfig> {
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))
    };
    if let Some(path) = flag {
        if !path.exists() {
            bail!(
                "no kubeconfig at {}: give the admin.kubeconfig `skiff up` prints (or one from \
                 `skiff kubeconfig`)",
                path.display()
            );
        }
        return Ok(kube::Config::from_custom_kubeconfig(read(path)?, &options).await?);
    }
    let home_config = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || home_config.as_ref().is_some_and(|p| p.exists())
    {
        return Ok(kube::Config::from_kubeconfig(&options).await?);
    }
    let up = crate::up::default_data_dir().join("admin.kubeconfig");
    if up.exists() {
        return Ok(kube::Config::from_custom_kubeconfig(read(&up)?, &options).await?);
    }
    bail!(
        "no cluster: no kubeconfig in --kubeconfig, $KUBECONFIG, ~/.kube/config or {} \
         (start one with `skiff up`)",
        up.display()
    )
}

/// What a client needs to know about the cluster beyond its API.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ClusterInfo {
    /// The registry pods pull from, `HOST:PORT`.
    pub(crate) registry: Option<String>,
    /// The ingress, `HOST:PORT`.
    pub(crate) ingress: Option<String>,
}

/// Publishes `info` and the registry push token for clients (`skiff up` calls it).
pub(crate) async fn publish_cluster_info(
    client: kube::Client,
    info: &ClusterInfo,
    registry_token: &str,
) -> anyhow::Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut data = BTreeMap::new();
    if let Some(r) = &info.registry {
        data.insert(INFO_REGISTRY, r.clone());
    }
    if let Some(i) = &info.ingress {
        data.insert(INFO_INGRESS, i.clone());
    }
    let (ns, name) = INFO_CONFIGMAP;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns},
                "data": data,
            })),
        )
        .await
        .with_context(|| format!("writing ConfigMap {ns}/{name}"))?;
    let (ns, name) = REGISTRY_SECRET;
    Api::<Secret>::namespaced(client, ns)
        .patch(
            name,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": ns},
                "type": "Opaque",
                "stringData": {"token": registry_token},
            })),
        )
        .await
        .with_context(|| format!("writing Secret {ns}/{name}"))?;
    Ok(())
}

/// Reads what [`publish_cluster_info`] wrote; empty when nothing was published.
async fn read_cluster_info(client: &kube::Client) -> anyhow::Result<(ClusterInfo, Option<String>)> {
    let (ns, name) = INFO_CONFIGMAP;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading ConfigMap {ns}/{name}"))?;
    let data = cm.and_then(|c| c.data).unwrap_or_default();
    let info = ClusterInfo {
        registry: data.get(INFO_REGISTRY).cloned().filter(|s| !s.is_empty()),
        ingress: data.get(INFO_INGRESS).cloned().filter(|s| !s.is_empty()),
    };
    let (ns, name) = REGISTRY_SECRET;
    // A user who may not read the Secret pushes anonymously (or with --registry-token).
    let token = match Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(s)) => s.data.and_then(|d| {
            d.get("token")
                .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        }),
        _ => None,
    };
    Ok((info, token))
}

use crate::progress::Steps as Progress;

pub(crate) async fn run(args: DeployArgs) -> anyhow::Result<()> {
    if args.file.is_none() && !args.delete {
        return crate::app::run_deploy(crate::app::DeployOptions {
            manifest: args.manifest,
            dry_run: args.dry_run,
            output: args.output,
            kubeconfig: args.kubeconfig,
            registry: args.registry,
            registry_token: args.registry_token,
            ingress: args.ingress,
            timeout: args.timeout,
            cache_dir: args.cache_dir,
        })
        .await;
    }
    if args.dry_run {
        bail!("--dry-run is supported for an app manifest (skiff.toml), not for a single FILE");
    }
    let name = match (&args.name, &args.file) {
        (Some(name), _) => name.clone(),
        (None, Some(file)) => name_from_file(file)?,
        (None, None) => bail!("--delete needs --name NAME"),
    };
    check_name(&name)?;
    if !args.path.starts_with('/') {
        bail!("--path {:?} must start with '/'", args.path);
    }
    if let Some(r) = args.replicas
        && r < 0
    {
        bail!("--replicas must not be negative");
    }
    let wasm = match (&args.file, args.delete) {
        (Some(file), false) => Some(read_component(file)?),
        _ => None,
    };
    let config = kube_config(args.kubeconfig.as_deref()).await?;
    let api_url = config.cluster_url.to_string();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).context("creating the API client")?;
    client.apiserver_version().await.map_err(|e| {
        anyhow!(
            "no cluster at {api_url}: {e} (start one with `skiff up`, or point --kubeconfig or \
             KUBECONFIG at a running one)"
        )
    })?;
    if args.delete {
        return delete(&client, &namespace, &name).await;
    }
    let Some(wasm) = wasm else {
        bail!("a FILE.wasm to deploy is needed unless --delete is given");
    };
    if Api::<Namespace>::all(client.clone())
        .get_opt(&namespace)
        .await
        .with_context(|| format!("reading namespace {namespace}"))?
        .is_none()
    {
        bail!(
            "namespace {namespace} does not exist (create it with `kubectl create namespace {namespace}`)"
        );
    }
    let (info, published_token) = read_cluster_info(&client).await?;
    let registry = args.registry.clone().or(info.registry).ok_or_else(|| {
        anyhow!(
            "this cluster publishes no registry (ConfigMap {}/{}): pass --registry HOST:PORT",
            INFO_CONFIGMAP.0,
            INFO_CONFIGMAP.1
        )
    })?;
    let ingress = args.ingress.clone().or(info.ingress);
    let token = args
        .registry_token
        .clone()
        .filter(|t| !t.is_empty())
        .or(published_token);

    let deadline = Instant::now() + args.timeout;
    let mut progress = Progress::new();
    let started = Instant::now();

    // Push by content: a changed file gets a new tag and a new digest, so applying it rolls out.
    progress.start_quiet("push");
    let layer = skiff_registry::Digest::sha256_of(&wasm);
    let tag = format!("sha256-{}", &layer.hex()[..16]);
    let reference = format!("{registry}/{namespace}/{name}:{tag}");
    progress.update(&reference);
    let image = match push(&reference, wasm, token, args.cache_dir.clone(), &name).await {
        Ok(pinned) => pinned,
        Err(e) => {
            progress.fail();
            return Err(e);
        }
    };
    progress.done(&image);

    progress.start("apply");
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| format!("{name}.localhost"));
    let spec = AppSpec {
        name: &name,
        namespace: &namespace,
        image: &image,
        replicas: args.replicas,
        scale_to_zero: args.scale_to_zero,
        scale_to_zero_idle: args.scale_to_zero_idle.as_deref(),
        env: &args.env,
        host: &host,
        path: &args.path,
    };
    if let Err(e) = apply(&client, &spec).await {
        progress.fail();
        return Err(e);
    }
    progress.done(&format!(
        "deployment.apps/{name}, service/{name}, ingress.networking.k8s.io/{name} in namespace {namespace}"
    ));

    progress.start("rollout");
    if let Err(e) = wait_rollout(&client, &namespace, &name, &image, deadline, &progress).await {
        progress.fail();
        return Err(e);
    }
    progress.done("every pod runs the new version and is ready");

    if args.replicas == Some(0) {
        eprintln!("--replicas 0: no pod to answer, so the URL is not asked");
        println!(
            "{}",
            app_url(&host, ingress.as_deref().unwrap_or(":80"), &args.path)
        );
        return Ok(());
    }
    let Some(ingress) = ingress else {
        eprintln!(
            "the cluster publishes no ingress address (ConfigMap {}/{}); pass --ingress HOST:PORT \
             to have the answer checked",
            INFO_CONFIGMAP.0, INFO_CONFIGMAP.1
        );
        if host.is_empty() {
            println!("{}", args.path);
        } else {
            println!("http://{host}{}", args.path);
        }
        return Ok(());
    };
    let url = app_url(&host, &ingress, &args.path);
    progress.start("first answer");
    progress.update(&url);
    let host_header = if host.is_empty() { &ingress } else { &host };
    match first_answer(&ingress, host_header, &args.path, deadline).await {
        Ok(()) => progress.done(&format!(
            "200 from {url} ({:.1}s after the push began)",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => {
            progress.fail();
            return Err(e);
        }
    }
    println!("{url}");
    Ok(())
}

/// The URL an app answers on: `http://HOST:PORT/PATH`, the port that of the ingress (for an
/// Ingress rule of every host, the ingress's own address).
fn app_url(host: &str, ingress: &str, path: &str) -> String {
    if host.is_empty() {
        return format!("http://{ingress}{path}");
    }
    let port = ingress.rsplit_once(':').map(|(_, p)| p).unwrap_or("80");
    if port == "80" {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    }
}

async fn push(
    reference: &str,
    wasm: Vec<u8>,
    token: Option<String>,
    cache_dir: Option<PathBuf>,
    label: &str,
) -> anyhow::Result<String> {
    let mut opts = skiff_registry::ClientOptions::new(
        cache_dir.unwrap_or_else(crate::registry::default_cache_dir),
    );
    opts.token = token;
    let client = skiff_registry::RegistryClient::new(opts)
        .context("creating the registry client")?
        .with_push_progress(std::sync::Arc::new(crate::progress::PushBars::new(label)));
    let pushed = client
        .push_wasm(reference, wasm.into())
        .await
        .with_context(|| format!("pushing to {reference}"))?;
    Ok(pushed.pinned)
}

/// What [`apply`] writes.
struct AppSpec<'a> {
    name: &'a str,
    namespace: &'a str,
    image: &'a str,
    replicas: Option<i32>,
    scale_to_zero: bool,
    scale_to_zero_idle: Option<&'a str>,
    env: &'a [(String, String)],
    host: &'a str,
    path: &'a str,
}

impl AppSpec<'_> {
    fn deployment(&self) -> serde_json::Value {
        let mut env: Vec<serde_json::Value> = self
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        if !self.env.iter().any(|(k, _)| k == "POD_NAME") {
            env.push(json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
        }
        let mut annotations = serde_json::Map::new();
        if self.scale_to_zero {
            annotations.insert(skiff_meta::names::SCALE_TO_ZERO.into(), "true".into());
            if let Some(idle) = self.scale_to_zero_idle {
                annotations.insert(skiff_meta::names::SCALE_TO_ZERO_IDLE.into(), idle.into());
            }
        }
        let mut spec = json!({
            "selector": {"matchLabels": {"app": self.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": {"app": self.name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": self.image,
                    "ports": [{"name": "http", "containerPort": COMPONENT_PORT}],
                    "env": env,
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": COMPONENT_PORT},
                        "periodSeconds": 1,
                    },
                }]},
            },
        });
        if let Some(r) = self.replicas {
            spec["replicas"] = r.into();
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": self.name, "namespace": self.namespace,
                "labels": {"app": self.name, "app.kubernetes.io/managed-by": FIELD_MANAGER},
                "annotations": annotations,
            },
            "spec": spec,
        })
    }

    fn service(&self) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": self.name, "namespace": self.namespace,
                "labels": {"app": self.name, "app.kubernetes.io/managed-by": FIELD_MANAGER},
            },
            "spec": {
                "selector": {"app": self.name},
                "ports": [{"name": "http", "port": 80, "targetPort": COMPONENT_PORT}],
            },
        })
    }

    fn ingress(&self) -> serde_json::Value {
        let mut rule = json!({
            "http": {"paths": [{
                "path": self.path,
                "pathType": "Prefix",
                "backend": {"service": {"name": self.name, "port": {"number": 80}}},
            }]},
        });
        if !self.host.is_empty() {
            rule["host"] = self.host.into();
        }
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": self.name, "namespace": self.namespace,
                "labels": {"app": self.name, "app.kubernetes.io/managed-by": FIELD_MANAGER},
            },
            "spec": {
                "ingressClassName": skiff_meta::names::INGRESS_CLASS,
                "rules": [rule],
            },
        })
    }
}

async fn apply(client: &kube::Client, spec: &AppSpec<'_>) -> anyhow::Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let ns = spec.namespace;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(spec.name, &pp, &Patch::Apply(spec.deployment()))
        .await
        .with_context(|| format!("applying deployment.apps/{}", spec.name))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(spec.name, &pp, &Patch::Apply(spec.service()))
        .await
        .with_context(|| format!("applying service/{}", spec.name))?;
    Api::<Ingress>::namespaced(client.clone(), ns)
        .patch(spec.name, &pp, &Patch::Apply(spec.ingress()))
        .await
        .with_context(|| format!("applying ingress.networking.k8s.io/{}", spec.name))?;
    Ok(())
}

/// How far a rollout is, as `kubectl rollout status` tells it: `Ok(None)` while it goes on,
/// `Ok(Some(summary))` once done, `Err` when the Deployment says it failed.
fn rollout_state(d: &Deployment) -> anyhow::Result<Option<String>> {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return Ok(None);
    };
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        bail!(
            "the rollout failed: {}",
            c.message.as_deref().unwrap_or("progress deadline exceeded")
        );
    }
    if status.observed_generation.unwrap_or(0) < generation {
        return Ok(None);
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want || total > updated || available < updated {
        return Ok(None);
    }
    Ok(Some(format!("{available} of {want} pods available")))
}

fn rollout_message(d: &Deployment) -> String {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    format!(
        "{} of {want} updated, {} available, {} old",
        s.updated_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        (s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0)).max(0)
    )
}

/// Why a pod of the new version will not become ready by itself, if it will not.
fn pod_failure(p: &Pod) -> Option<String> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let status = p.status.as_ref()?;
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && FAILED_WAITING.contains(&reason)
        {
            let mut why = format!("pod {name}: container {}: {reason}", c.name);
            if let Some(m) = &w.message {
                why.push_str(": ");
                why.push_str(m);
            }
            if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                why.push_str(&format!(
                    " (last exit: {} {})",
                    t.reason.as_deref().unwrap_or("code"),
                    t.exit_code
                ));
                if let Some(m) = &t.message {
                    why.push_str(&format!(": {m}"));
                }
            }
            return Some(why);
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!(
            "pod {name} failed: {}",
            status
                .message
                .as_deref()
                .or(status.reason.as_deref())
                .unwrap_or("no reason given")
        ));
    }
    None
}

/// Why a pod has not become ready yet, for a timeout's message.
fn pod_pending_reason(p: &Pod) -> String {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let status = p.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten() {
        if c.status == "False"
            && let Some(m) = c.message.as_deref().or(c.reason.as_deref())
        {
            return format!("pod {name}: {}: {m}", c.type_);
        }
    }
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            return format!(
                "pod {name}: container {}: {}",
                c.name,
                w.reason.as_deref().unwrap_or("waiting")
            );
        }
    }
    format!(
        "pod {name}: {}",
        status.phase.as_deref().unwrap_or("not reported yet")
    )
}

/// The message of the latest Warning Event about pod `p` (a failing probe, a pull error).
fn last_warning(events: &[Event], p: &Pod) -> Option<String> {
    let name = p.metadata.name.as_deref()?;
    events
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.involved_object.kind.as_deref() == Some("Pod")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        })
        .and_then(|e| e.message.clone())
}

/// Watches the Deployment until its rollout is done, and its new pods for a failure that will
/// not heal (a crash loop, an image that cannot be pulled); fails at `deadline` saying why.
async fn wait_rollout(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    image: &str,
    deadline: Instant,
    progress: &Progress,
) -> anyhow::Result<()> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut rollout = watcher(
        deployments,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .boxed();
    let mut pod_events = watcher(
        pods.clone(),
        watcher::Config::default().labels(&format!("app={name}")),
    )
    .boxed();
    let new_version = |p: &Pod| {
        p.spec.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .any(|c| c.image.as_deref() == Some(image))
        })
    };
    let watch = async {
        loop {
            tokio::select! {
                event = rollout.try_next() => {
                    match event.context("watching the Deployment")? {
                        Some(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                            if rollout_state(&d)?.is_some() {
                                return Ok(());
                            }
                            progress.update(&rollout_message(&d));
                        }
                        Some(watcher::Event::Delete(_)) => bail!("deployment.apps/{name} was deleted"),
                        Some(_) => {}
                        None => bail!("the watch of deployment.apps/{name} ended"),
                    }
                }
                event = pod_events.try_next() => {
                    if let Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) =
                        event.context("watching the pods")?
                        && new_version(&p)
                        && let Some(why) = pod_failure(&p)
                    {
                        bail!("the rollout failed: {why}");
                    }
                }
            }
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, watch).await {
        Ok(result) => result,
        Err(_) => {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let events = Api::<Event>::namespaced(client.clone(), namespace)
                .list(&kube::api::ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let reasons: Vec<String> = list
                .iter()
                .filter(|p| new_version(p) && !skiff_meta::pod::is_pod_ready(p))
                .map(|p| {
                    let mut why = pod_pending_reason(p);
                    if let Some(warning) = last_warning(&events, p) {
                        why.push_str(&format!(" (last warning: {warning})"));
                    }
                    why
                })
                .collect();
            bail!(
                "the rollout did not finish in time{}",
                if reasons.is_empty() {
                    " (no pod of the new version exists yet)".to_string()
                } else {
                    format!(": {}", reasons.join("; "))
                }
            )
        }
    }
}

/// Asks the ingress at `ingress` for `http://HOST/PATH` until it answers 200.
async fn first_answer(
    ingress: &str,
    host: &str,
    path: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut last = String::from("no answer yet");
    loop {
        let req = http::Request::get(format!("http://{ingress}{path}"))
            .header(http::header::HOST, host)
            .body(Empty::new())
            .context("building the request")?;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.request(req)).await {
            Err(_) => break,
            Ok(Ok(resp)) if resp.status() == http::StatusCode::OK => return Ok(()),
            Ok(Ok(resp)) => {
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                    .unwrap_or_default();
                last = format!("{status} {body}");
            }
            Ok(Err(e)) => last = format!("{e}"),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the app did not answer 200 through the ingress at {ingress} in time (last: {last})")
}

/// Deletes the app's Ingress, Service and Deployment, saying what went.
async fn delete(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let dp = DeleteParams::background();
    let mut found = false;
    let results = [
        (
            "ingress.networking.k8s.io",
            Api::<Ingress>::namespaced(client.clone(), namespace)
                .delete(name, &dp)
                .await
                .map(|_| ()),
        ),
        (
            "service",
            Api::<Service>::namespaced(client.clone(), namespace)
                .delete(name, &dp)
                .await
                .map(|_| ()),
        ),
        (
            "deployment.apps",
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .delete(name, &dp)
                .await
                .map(|_| ()),
        ),
    ];
    for (kind, result) in results {
        match result {
            Ok(()) => {
                found = true;
                println!("{kind}/{name} deleted");
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                println!("{kind}/{name} not found");
            }
            Err(e) => return Err(e).with_context(|| format!("deleting {kind}/{name}")),
        }
    }
    if !found {
        bail!("nothing called {name} in namespace {namespace} to delete");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(env: &'a [(String, String)], scale_to_zero: bool) -> AppSpec<'a> {
        AppSpec {
            name: "hello",
            namespace: "apps",
            image: "127.0.0.1:5000/apps/hello@sha256:00",
            replicas: None,
            scale_to_zero,
            scale_to_zero_idle: Some("90s"),
            env,
            host: "hello.localhost",
            path: "/",
        }
    }

    #[test]
    fn the_name_defaults_to_the_file_stem() {
        assert_eq!(name_from_file(Path::new("/x/hello.wasm")).unwrap(), "hello");
        assert_eq!(
            name_from_file(Path::new("My_App.v2.wasm")).unwrap(),
            "my-app-v2"
        );
        assert_eq!(name_from_file(Path::new("2fast.wasm")).unwrap(), "fast");
        assert!(name_from_file(Path::new("123.wasm")).is_err());
    }

    #[test]
    fn an_empty_host_routes_every_host() {
        let mut s = spec(&[], false);
        s.host = "";
        let i: Ingress = serde_json::from_value(s.ingress()).unwrap();
        assert_eq!(i.spec.unwrap().rules.unwrap()[0].host, None);
        assert_eq!(
            app_url("", "127.0.0.1:8080", "/hello"),
            "http://127.0.0.1:8080/hello"
        );
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("hello-2").is_ok());
        for bad in ["", "Hello", "2hello", "hello-", "a_b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_and_timeouts_parse() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err() && parse_env("x").is_err());
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_timeout("5y").is_err());
    }

    #[test]
    fn the_deployment_rolls_out_without_losing_capacity() {
        let env = [("GREETING".to_string(), "hi".to_string())];
        let d: Deployment = serde_json::from_value(spec(&env, false).deployment()).unwrap();
        let spec = d.spec.unwrap();
        assert_eq!(
            spec.replicas, None,
            "replicas are left to the cluster unless asked"
        );
        let ru = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(
            ru.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
        );
        let c = &spec.template.spec.unwrap().containers[0];
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/"));
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].value.as_deref(), Some("hi"));
        assert_eq!(env[1].name, "POD_NAME");
        assert!(d.metadata.annotations.unwrap_or_default().is_empty());
    }

    #[test]
    fn scale_to_zero_is_an_annotation_and_leaves_replicas_alone() {
        let d: Deployment = serde_json::from_value(spec(&[], true).deployment()).unwrap();
        let annotations = d.metadata.annotations.unwrap();
        assert_eq!(annotations[skiff_meta::names::SCALE_TO_ZERO], "true");
        assert_eq!(annotations[skiff_meta::names::SCALE_TO_ZERO_IDLE], "90s");
        assert!(parse_idle("5m").is_ok() && parse_idle("5 minutes").is_err());
        assert_eq!(d.spec.unwrap().replicas, None);
    }

    #[test]
    fn the_ingress_routes_the_host_and_prefix_to_the_service() {
        let i: Ingress = serde_json::from_value(spec(&[], false).ingress()).unwrap();
        let spec = i.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("skiff"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("hello.localhost"));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(path.path_type, "Prefix");
        let backend = path.backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "hello");
        assert_eq!(backend.port.as_ref().unwrap().number, Some(80));
        let s: Service = serde_json::from_value(spec_service()).unwrap();
        assert_eq!(s.spec.unwrap().ports.unwrap()[0].port, 80);
    }

    fn spec_service() -> serde_json::Value {
        spec(&[], false).service()
    }

    #[test]
    fn urls_name_the_ingress_port() {
        assert_eq!(
            app_url("hello.localhost", "127.0.0.1:8080", "/"),
            "http://hello.localhost:8080/"
        );
        assert_eq!(
            app_url("a.example", "10.0.0.1:80", "/x"),
            "http://a.example/x"
        );
    }

    #[test]
    fn a_rollout_is_done_when_every_pod_is_new_and_available() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "hello", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2},
        }))
        .unwrap();
        assert!(rollout_state(&d).unwrap().is_none(), "an old pod remains");
        d.status.as_mut().unwrap().replicas = Some(2);
        assert!(rollout_state(&d).unwrap().is_some());
        d.status.as_mut().unwrap().observed_generation = Some(1);
        assert!(rollout_state(&d).unwrap().is_none(), "not observed yet");
    }

    #[test]
    fn a_crash_loop_is_a_failed_rollout_with_its_reason() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "hello-1"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }]},
        }))
        .unwrap();
        let why = pod_failure(&p).unwrap();
        assert!(
            why.contains("CrashLoopBackOff") && why.contains("hello-1"),
            "{why}"
        );
    }

    #[test]
    fn only_http_components_are_deployed() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let err = read_component(&file("text.wasm", b"this is not wasm\n")).unwrap_err();
        assert!(err.to_string().contains("not a wasm component"), "{err}");
        let err = read_component(&file("module.wasm", b"\0asm\x01\0\0\0")).unwrap_err();
        assert!(err.to_string().contains("core wasm module"), "{err}");
        let command = include_bytes!("../../samples/env-reader/env-reader.wasm");
        let err = read_component(&file("command.wasm", command)).unwrap_err();
        assert!(err.to_string().contains("does not export"), "{err}");
        let err = read_component(&dir.path().join("nope.wasm")).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        let http = include_bytes!("../../samples/hello-http/hello-http.wasm");
        assert!(read_component(&file("http.wasm", http)).is_ok());
    }
}
