//! Deploying an app to a cluster: push its components (tag = the app's version, the source's
//! digest in an annotation), server-side apply its objects (field manager `skiff`), prune the
//! objects of the app it no longer declares, wait for the rollouts; and deleting and listing
//! apps. Progress goes to a callback as [`Event`]s.
//!
//! How the SDK finds the cluster's registry and ingress: the ConfigMap `kube-public/skiff-info`
//! (keys `registry`, `ingress`) and the push token in the Secret `kube-system/skiff-registry`
//! (key `token`), which `skiff up` writes; [`Deployer`]'s setters override them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use skiff_registry::wasm::{WasmKind, inspect};

use crate::model::{App, Source};
use crate::render::{Kind, Object, render};
use crate::{Error, FIELD_MANAGER, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PART_OF, Result};

/// Namespace and name of the ConfigMap telling clients the cluster's registry and ingress.
pub const INFO_CONFIGMAP: (&str, &str) = ("kube-public", "skiff-info");
/// Namespace and name of the Secret holding the registry's push token (key `token`).
pub const REGISTRY_SECRET: (&str, &str) = ("kube-system", "skiff-registry");
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

/// What the SDK is doing, for a progress display.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A build command starts.
    Building {
        /// The component.
        component: String,
        /// The command.
        command: String,
    },
    /// A build command succeeded.
    Built {
        /// The component.
        component: String,
    },
    /// A build was skipped: the source is newer than its watched files.
    BuildSkipped {
        /// The component.
        component: String,
        /// Why.
        reason: String,
    },
    /// A component is being pushed.
    Pushing {
        /// The component.
        component: String,
        /// The reference pushed to.
        reference: String,
    },
    /// A component's image is known: pushed, or given as an OCI reference.
    Pushed {
        /// The component.
        component: String,
        /// The image pods run, pinned by digest when pushed.
        image: String,
    },
    /// The app's namespace was created.
    NamespaceCreated {
        /// The namespace.
        namespace: String,
    },
    /// An object was applied.
    Applied {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// An object the app no longer declares was deleted.
    Pruned {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// A component's rollout is under way.
    RollingOut {
        /// The component.
        component: String,
        /// How far it is.
        message: String,
    },
    /// A component's rollout is done.
    RolledOut {
        /// The component.
        component: String,
        /// Its pods.
        message: String,
    },
    /// An object was deleted (by [`delete`]).
    Deleted {
        /// Its kind.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Building { component, command } => write!(f, "build {component}: {command}"),
            Event::Built { component } => write!(f, "build {component}: done"),
            Event::BuildSkipped { component, reason } => {
                write!(f, "build {component}: up to date ({reason})")
            }
            Event::Pushing {
                component,
                reference,
            } => write!(f, "push {component}: {reference}"),
            Event::Pushed { component, image } => write!(f, "push {component}: {image}"),
            Event::NamespaceCreated { namespace } => write!(f, "namespace/{namespace} created"),
            Event::Applied { kind, name } => write!(f, "{kind}/{name} applied"),
            Event::Pruned { kind, name } => write!(f, "{kind}/{name} pruned"),
            Event::RollingOut { component, message } => {
                write!(f, "rollout {component}: {message}")
            }
            Event::RolledOut { component, message } => {
                write!(f, "rollout {component}: done, {message}")
            }
            Event::Deleted {
                kind,
                namespace,
                name,
            } => write!(f, "{kind}/{name} deleted (namespace {namespace})"),
        }
    }
}

/// A progress callback.
pub type Progress<'a> = dyn FnMut(&Event) + Send + 'a;

/// What the cluster publishes for clients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterInfo {
    /// The registry pods pull from, `HOST:PORT`.
    pub registry: Option<String>,
    /// The ingress, `HOST:PORT`.
    pub ingress: Option<String>,
    /// The registry push token, if this user may read it.
    pub token: Option<String>,
}

impl ClusterInfo {
    /// Reads `kube-public/skiff-info` and the push token (empty when not published).
    pub async fn discover(client: &kube::Client) -> Result<ClusterInfo> {
        let (ns, name) = INFO_CONFIGMAP;
        let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(crate::kube_err(format!("reading ConfigMap {ns}/{name}")))?;
        let data = cm.and_then(|c| c.data).unwrap_or_default();
        let (ns, name) = REGISTRY_SECRET;
        // A user who may not read the Secret pushes anonymously.
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
        Ok(ClusterInfo {
            registry: data.get("registry").cloned().filter(|s| !s.is_empty()),
            ingress: data.get("ingress").cloned().filter(|s| !s.is_empty()),
            token: token.filter(|t| !t.is_empty()),
        })
    }
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The objects applied.
    pub objects: Vec<Object>,
    /// The objects pruned.
    pub pruned: Vec<(Kind, String)>,
    /// The URL of each routed component, in manifest order.
    pub urls: Vec<String>,
}

/// Pushes, applies, prunes and waits, against one cluster.
pub struct Deployer {
    client: kube::Client,
    info: ClusterInfo,
    cache_dir: PathBuf,
    timeout: Duration,
    wait: bool,
    push_progress: Option<std::sync::Arc<dyn skiff_registry::PushProgress>>,
}

impl Deployer {
    /// A deployer for `client` with what the cluster publishes ([`ClusterInfo::discover`]).
    pub async fn discover(client: kube::Client) -> Result<Deployer> {
        let info = ClusterInfo::discover(&client).await?;
        Ok(Deployer::new(client, info))
    }

    /// A deployer for `client` with the given registry and ingress.
    pub fn new(client: kube::Client, info: ClusterInfo) -> Deployer {
        Deployer {
            client,
            info,
            cache_dir: default_cache_dir(),
            timeout: Duration::from_secs(300),
            wait: true,
            push_progress: None,
        }
    }

    /// Reports the bytes of every blob pushed to `progress` (a byte bar, say).
    pub fn push_progress(
        mut self,
        progress: std::sync::Arc<dyn skiff_registry::PushProgress>,
    ) -> Deployer {
        self.push_progress = Some(progress);
        self
    }

    /// The registry to push to, `HOST:PORT`.
    pub fn registry(mut self, registry: impl Into<String>) -> Deployer {
        self.info.registry = Some(registry.into());
        self
    }

    /// The registry push token.
    pub fn token(mut self, token: impl Into<String>) -> Deployer {
        self.info.token = Some(token.into()).filter(|t: &String| !t.is_empty());
        self
    }

    /// The ingress address URLs are made from, `HOST:PORT`.
    pub fn ingress(mut self, ingress: impl Into<String>) -> Deployer {
        self.info.ingress = Some(ingress.into());
        self
    }

    /// The local blob cache of pushes.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Deployer {
        self.cache_dir = dir.into();
        self
    }

    /// How long [`Deployer::deploy`] waits for the rollouts (default 5 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Deployer {
        self.timeout = timeout;
        self
    }

    /// Whether [`Deployer::deploy`] waits for the rollouts (default yes).
    pub fn wait(mut self, wait: bool) -> Deployer {
        self.wait = wait;
        self
    }

    /// What the cluster publishes (and the overrides).
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// Pushes every file component; returns each component's image (pinned by digest).
    pub async fn push(
        &self,
        app: &App,
        progress: &mut Progress<'_>,
    ) -> Result<BTreeMap<String, String>> {
        app.validate()?;
        let mut images = BTreeMap::new();
        let mut client = None;
        for c in &app.components {
            let path = match &c.source {
                Source::Image(r) => {
                    progress(&Event::Pushed {
                        component: c.name.clone(),
                        image: r.clone(),
                    });
                    images.insert(c.name.clone(), r.clone());
                    continue;
                }
                Source::File(p) => app.source_path(p),
            };
            let wasm = read_component(&c.name, &path)?;
            let registry = self.info.registry.as_deref().ok_or_else(|| {
                Error::Cluster(format!(
                    "this cluster publishes no registry (ConfigMap {}/{}): give one to push {} to",
                    INFO_CONFIGMAP.0,
                    INFO_CONFIGMAP.1,
                    path.display()
                ))
            })?;
            let reference = format!(
                "{registry}/{}/{}:{}",
                app.namespace_name(),
                c.name,
                app.version_name()
            );
            progress(&Event::Pushing {
                component: c.name.clone(),
                reference: reference.clone(),
            });
            if client.is_none() {
                let mut opts = skiff_registry::ClientOptions::new(self.cache_dir.clone());
                opts.token = self.info.token.clone();
                let mut c = skiff_registry::RegistryClient::new(opts).map_err(|e| Error::Push {
                    reference: reference.clone(),
                    source: e,
                })?;
                if let Some(p) = &self.push_progress {
                    c = c.with_push_progress(p.clone());
                }
                client = Some(c);
            }
            let Some(registry_client) = client.as_ref() else {
                unreachable!("set just above")
            };
            let pushed = push_component(registry_client, &reference, wasm, app, &c.name)
                .await
                .map_err(|e| Error::Push {
                    reference: reference.clone(),
                    source: e,
                })?;
            progress(&Event::Pushed {
                component: c.name.clone(),
                image: pushed.clone(),
            });
            images.insert(c.name.clone(), pushed);
        }
        Ok(images)
    }

    /// Pushes the components and renders the objects, applying nothing (`--dry-run`).
    pub async fn plan(&self, app: &App, progress: &mut Progress<'_>) -> Result<Vec<Object>> {
        let images = self.push(app, progress).await?;
        render(app, &images)
    }

    /// Pushes, applies, prunes and (unless told not to) waits for every rollout.
    pub async fn deploy(&self, app: &App, progress: &mut Progress<'_>) -> Result<Deployed> {
        let objects = self.plan(app, progress).await?;
        let ns = app.namespace_name().to_string();
        self.check_routes(&ns, &objects).await?;
        if app.app.namespace.is_some() {
            self.ensure_namespace(&ns, progress).await?;
        }
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        for o in &objects {
            let api = self.api(o.kind, o.namespace.as_deref());
            let dynamic = o.dynamic()?;
            api.patch(&o.name, &pp, &Patch::Apply(&dynamic))
                .await
                .map_err(crate::kube_err(format!("applying {}/{}", o.kind, o.name)))?;
            progress(&Event::Applied {
                kind: o.kind,
                name: o.name.clone(),
            });
        }
        let pruned = self.prune(app, &objects, progress).await?;
        if self.wait {
            self.wait_rollouts(app, &objects, progress).await?;
        }
        Ok(Deployed {
            urls: urls(app, self.info.ingress.as_deref()),
            objects,
            pruned,
        })
    }

    /// Refuses a route that an Ingress of another app (or another Ingress of the cluster's
    /// class) already serves with the same host and path: the ingress keeps routing to the
    /// older one, so the URL printed would answer for something else. Ingresses being deleted,
    /// or in a namespace being deleted, do not count.
    async fn check_routes(&self, ns: &str, objects: &[Object]) -> Result<()> {
        let mut ours = Vec::new();
        for o in objects.iter().filter(|o| o.kind == Kind::Ingress) {
            ours.extend(
                routes(&o.value)
                    .into_iter()
                    .map(|route| (o.name.clone(), route)),
            );
        }
        if ours.is_empty() {
            return Ok(());
        }
        let all = Api::<Ingress>::all(self.client.clone())
            .list(&Default::default())
            .await
            .map_err(crate::kube_err("listing Ingresses"))?;
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());
        for theirs in all.items {
            let (their_ns, their_name) = (
                theirs.metadata.namespace.clone().unwrap_or_default(),
                theirs.metadata.name.clone().unwrap_or_default(),
            );
            let class = theirs
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref());
            if their_ns == ns
                || theirs.metadata.deletion_timestamp.is_some()
                || class.is_some_and(|c| c != skiff_meta::names::INGRESS_CLASS)
            {
                continue;
            }
            let value = serde_json::to_value(&theirs).map_err(|e| Error::Encode {
                what: format!("Ingress {their_ns}/{their_name}"),
                message: e.to_string(),
            })?;
            let taken = routes(&value);
            let Some((component, (host, path))) = ours.iter().find(|(_, r)| taken.contains(r))
            else {
                continue;
            };
            let going = namespaces
                .get_opt(&their_ns)
                .await
                .map_err(crate::kube_err(format!("reading namespace {their_ns}")))?
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
            if going {
                continue;
            }
            let host = host.as_deref().unwrap_or("any host");
            return Err(Error::RouteTaken(format!(
                "component {component:?}: route {path} on {host} is already served by Ingress \
                 {their_ns}/{their_name}; give the component a `host` or another path, or delete \
                 that Ingress"
            )));
        }
        Ok(())
    }

    fn api(&self, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = kind.api_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    async fn ensure_namespace(&self, ns: &str, progress: &mut Progress<'_>) -> Result<()> {
        let api = Api::<Namespace>::all(self.client.clone());
        if api
            .get_opt(ns)
            .await
            .map_err(crate::kube_err(format!("reading namespace {ns}")))?
            .is_some()
        {
            return Ok(());
        }
        let created = api
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: kube::api::ObjectMeta {
                        name: Some(ns.to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => {
                progress(&Event::NamespaceCreated {
                    namespace: ns.to_string(),
                });
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(crate::kube_err(format!("creating namespace {ns}"))(e)),
        }
    }

    /// Deletes the app's objects in its namespace that `objects` does not hold.
    async fn prune(
        &self,
        app: &App,
        objects: &[Object],
        progress: &mut Progress<'_>,
    ) -> Result<Vec<(Kind, String)>> {
        let ns = app.namespace_name();
        let keep: BTreeSet<(Kind, &str)> =
            objects.iter().map(|o| (o.kind, o.name.as_str())).collect();
        let selector = app_selector(app.name());
        let mut pruned = Vec::new();
        for kind in Kind::PRUNED {
            let api = self.api(kind, Some(ns));
            let list = api
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map_err(crate::kube_err(format!(
                    "listing {kind} of app {}",
                    app.name()
                )))?;
            for item in list.items {
                let Some(name) = item.metadata.name else {
                    continue;
                };
                if keep.contains(&(kind, name.as_str())) {
                    continue;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => continue,
                    Err(e) => return Err(crate::kube_err(format!("pruning {kind}/{name}"))(e)),
                }
                progress(&Event::Pruned {
                    kind,
                    name: name.clone(),
                });
                pruned.push((kind, name));
            }
        }
        Ok(pruned)
    }

    /// Waits until every Deployment's new pods are all available (a component scaled to zero
    /// is done once its Deployment is observed), failing on a pod that will not start.
    async fn wait_rollouts(
        &self,
        app: &App,
        objects: &[Object],
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let ns = app.namespace_name();
        let deadline = Instant::now() + self.timeout;
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), ns);
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns);
        for o in objects.iter().filter(|o| o.kind == Kind::Deployment) {
            let mut last = String::new();
            loop {
                let d = deployments
                    .get(&o.name)
                    .await
                    .map_err(crate::kube_err(format!(
                        "reading deployment.apps/{}",
                        o.name
                    )))?;
                let (done, message) = rollout_state(&d);
                if done {
                    progress(&Event::RolledOut {
                        component: o.name.clone(),
                        message,
                    });
                    break;
                }
                let selector = format!(
                    "{LABEL_PART_OF}={},{LABEL_COMPONENT}={}",
                    app.name(),
                    o.name
                );
                let list = pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(crate::kube_err(format!("listing the pods of {}", o.name)))?;
                if let Some(why) = list.items.iter().find_map(pod_failure) {
                    return Err(Error::Rollout(format!(
                        "component {:?} does not start: {why}",
                        o.name
                    )));
                }
                if message != last {
                    progress(&Event::RollingOut {
                        component: o.name.clone(),
                        message: message.clone(),
                    });
                    last = message.clone();
                }
                if Instant::now() >= deadline {
                    return Err(Error::Rollout(format!(
                        "component {:?} did not roll out in {:?}: {message}",
                        o.name, self.timeout
                    )));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        Ok(())
    }
}

/// The label selector of an app's objects: `part-of=APP,managed-by=skiff`.
pub fn app_selector(app: &str) -> String {
    format!("{LABEL_PART_OF}={app},{LABEL_MANAGED_BY}={FIELD_MANAGER}")
}

/// `(done, summary)` of a Deployment's rollout, as `kubectl rollout status` tells it.
fn rollout_state(d: &Deployment) -> (bool, String) {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    let observed = s.observed_generation.unwrap_or(0) >= generation;
    let updated = s.updated_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let message = format!(
        "{updated} of {want} updated, {available} available, {} old",
        (total - updated).max(0)
    );
    let done = observed && updated >= want && total <= updated && available >= updated;
    (
        done,
        if done {
            format!("{available} of {want} pods available")
        } else {
            message
        },
    )
}

/// Why a pod will not become ready by itself, if it will not.
fn pod_failure(p: &Pod) -> Option<String> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let status = p.status.as_ref()?;
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && FAILED_WAITING.contains(&reason)
        {
            let mut why = format!("pod {name}: {reason}");
            if let Some(m) = &w.message {
                why.push_str(": ");
                why.push_str(m);
            }
            return Some(why);
        }
    }
    (status.phase.as_deref() == Some("Failed")).then(|| {
        format!(
            "pod {name} failed: {}",
            status
                .message
                .as_deref()
                .or(status.reason.as_deref())
                .unwrap_or("no reason given")
        )
    })
}

/// Reads a component's file and checks it is a component serving HTTP.
fn read_component(component: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    let bad = |message: String| Error::Source {
        component: component.to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(format!(
            "{}: no such file (run `skiff build` first?)",
            path.display()
        )),
        _ => bad(format!("reading {}: {e}", path.display())),
    })?;
    match inspect(&bytes) {
        Err(e) => Err(bad(format!(
            "{} is not a wasm component: {e}",
            path.display()
        ))),
        Ok(WasmKind::Module) => Err(bad(format!(
            "{} is a core wasm module, not a component: components serve wasi:http (build for \
             wasm32-wasip2, or wrap the module with `wasm-tools component new`)",
            path.display()
        ))),
        Ok(WasmKind::Component(info))
            if !info.exports.iter().any(|e| e.starts_with(HTTP_EXPORT)) =>
        {
            Err(bad(format!(
                "{} does not export {HTTP_EXPORT}, so it serves no HTTP",
                path.display()
            )))
        }
        Ok(WasmKind::Component(_)) => Ok(bytes),
    }
}

/// Pushes one component with the SDK's annotations; returns the digest-pinned reference.
async fn push_component(
    client: &skiff_registry::RegistryClient,
    reference: &str,
    wasm: Vec<u8>,
    app: &App,
    component: &str,
) -> Result<String, skiff_registry::ClientError> {
    let annotations = BTreeMap::from([
        (
            crate::SOURCE_DIGEST_ANNOTATION.to_string(),
            skiff_registry::Digest::sha256_of(&wasm).to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            app.version_name().to_string(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            format!("{}/{component}", app.name()),
        ),
    ]);
    let pushed = client
        .push_wasm_annotated(reference, wasm.into(), annotations)
        .await?;
    Ok(pushed.pinned)
}

/// The URL of each routed component: `http://HOST[:PORT]/PATH` through the ingress.
pub fn urls(app: &App, ingress: Option<&str>) -> Vec<String> {
    app.components
        .iter()
        .filter_map(|c| c.route.as_ref())
        .map(|r| url(r.host(), ingress, r.path()))
        .collect()
}

/// The URL of a route on the ingress at `ingress` (`HOST:PORT`).
pub fn url(host: Option<&str>, ingress: Option<&str>, path: &str) -> String {
    match (host, ingress) {
        (None, Some(ingress)) => format!("http://{ingress}{path}"),
        (None, None) => path.to_string(),
        (Some(host), ingress) => {
            let port = ingress
                .and_then(|i| i.rsplit_once(':'))
                .map(|(_, p)| p)
                .unwrap_or("80");
            if port == "80" {
                format!("http://{host}{path}")
            } else {
                format!("http://{host}:{port}{path}")
            }
        }
    }
}

/// An app found in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct AppStatus {
    /// The app's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its version label.
    pub version: String,
    /// Its components: name, ready pods, wanted pods.
    pub components: Vec<(String, i32, i32)>,
    /// Its URLs.
    pub urls: Vec<String>,
}

/// The apps deployed by the SDK (Deployments labelled `part-of` and `managed-by=skiff`), in
/// every namespace, with their URLs through the ingress at `ingress`.
pub async fn list(client: &kube::Client, ingress: Option<&str>) -> Result<Vec<AppStatus>> {
    let selector = format!("{LABEL_PART_OF},{LABEL_MANAGED_BY}={FIELD_MANAGER}");
    let lp = ListParams::default().labels(&selector);
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&lp)
        .await
        .map_err(crate::kube_err("listing deployments"))?;
    let ingresses = Api::<Ingress>::all(client.clone())
        .list(&lp)
        .await
        .map_err(crate::kube_err("listing ingresses"))?;
    let mut apps: BTreeMap<(String, String), AppStatus> = BTreeMap::new();
    let key = |m: &kube::api::ObjectMeta| {
        let labels = m.labels.clone().unwrap_or_default();
        (
            m.namespace.clone().unwrap_or_default(),
            labels.get(LABEL_PART_OF).cloned().unwrap_or_default(),
        )
    };
    for d in &deployments.items {
        let (ns, name) = key(&d.metadata);
        let labels = d.metadata.labels.clone().unwrap_or_default();
        let entry = apps
            .entry((ns.clone(), name.clone()))
            .or_insert_with(|| AppStatus {
                name,
                namespace: ns,
                version: labels
                    .get(crate::LABEL_VERSION)
                    .cloned()
                    .unwrap_or_default(),
                components: Vec::new(),
                urls: Vec::new(),
            });
        let (ready, want) = readiness(d);
        entry
            .components
            .push((d.metadata.name.clone().unwrap_or_default(), ready, want));
    }
    for i in &ingresses.items {
        let Some(entry) = apps.get_mut(&key(&i.metadata)) else {
            continue;
        };
        entry.urls.extend(ingress_urls(i, ingress));
    }
    Ok(apps.into_values().collect())
}

/// A Deployment's ready replicas and the replicas it asks for.
pub fn readiness(d: &Deployment) -> (i32, i32) {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (ready, want)
}

/// The URLs an Ingress's rules route, on the ingress at `ingress` (`HOST:PORT`).
pub fn ingress_urls(i: &Ingress, ingress: Option<&str>) -> Vec<String> {
    let mut urls = Vec::new();
    for rule in i.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            urls.push(url(
                rule.host.as_deref(),
                ingress,
                p.path.as_deref().unwrap_or("/"),
            ));
        }
    }
    urls
}

/// Deletes every object of app `name` (in `namespace`, or in every namespace), and the app's
/// own namespace when the SDK created it. Returns how many objects went; none found is not an
/// error here (the caller decides).
pub async fn delete(
    client: &kube::Client,
    name: &str,
    namespace: Option<&str>,
    progress: &mut Progress<'_>,
) -> Result<usize> {
    let selector = app_selector(name);
    let lp = ListParams::default().labels(&selector);
    let mut count = 0;
    for kind in Kind::PRUNED.iter().rev() {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let list = api
            .list_metadata(&lp)
            .await
            .map_err(crate::kube_err(format!("listing {kind} of app {name}")))?;
        for item in list.items {
            let (Some(obj), Some(ns)) = (item.metadata.name, item.metadata.namespace) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            match api.delete(&obj, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(crate::kube_err(format!("deleting {kind}/{obj}"))(e)),
            }
            count += 1;
            progress(&Event::Deleted {
                kind: *kind,
                namespace: ns,
                name: obj,
            });
        }
    }
    // The app's own namespace: named after it and labelled as the SDK renders it.
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespace.is_none_or(|ns| ns == name)
        && let Some(ns) = namespaces
            .get_opt(name)
            .await
            .map_err(crate::kube_err(format!("reading namespace {name}")))?
        && ns.metadata.labels.as_ref().is_some_and(|l| {
            l.get(LABEL_PART_OF).map(String::as_str) == Some(name)
                && l.get(LABEL_MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER)
        })
    {
        match namespaces.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                count += 1;
                progress(&Event::Deleted {
                    kind: Kind::Namespace,
                    namespace: name.to_string(),
                    name: name.to_string(),
                });
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(crate::kube_err(format!("deleting namespace {name}"))(e)),
        }
    }
    Ok(count)
}

/// The local blob cache: `$XDG_CACHE_HOME/skiff/registry`, else `~/.cache/skiff/registry`
/// (`SKIFF_CACHE_DIR` overrides both), as `skiff push` uses.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SKIFF_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("skiff/registry");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache/skiff/registry");
    }
    std::env::temp_dir().join("skiff-registry-cache")
}

/// The (host, path) pairs an Ingress routes (`None`: every host).
fn routes(ingress: &serde_json::Value) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for rule in ingress
        .pointer("/spec/rules")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = rule
            .get("host")
            .and_then(serde_json::Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_string);
        for p in rule
            .pointer("/http/paths")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = p
                .get("path")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("/");
            out.push((host.clone(), path.to_string()));
        }
    }
    out
}
