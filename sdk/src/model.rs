//! The app model: an [`App`] of [`Component`]s, read from `skiff.toml` or built in Rust code, and
//! the rules both ways of writing it must follow ([`App::validate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The app version used when `[app] version` is not given (the artifacts' tag and the
/// `app.kubernetes.io/version` label).
pub const DEFAULT_VERSION: &str = "latest";
/// The size of the keyvalue claim when `[app] keyvalue_size` is not given.
pub const DEFAULT_KEYVALUE_SIZE: &str = "1Gi";

/// An app: a set of components deployed together into one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMeta {
    /// The app's name: a DNS label (the `app.kubernetes.io/name` and `part-of` labels).
    pub name: String,
    /// The namespace the app lives in (default: the app's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The app's version: the tag of its pushed components and the `app.kubernetes.io/version`
    /// label (default [`DEFAULT_VERSION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Size of the app's keyvalue volume, a Kubernetes quantity (default
    /// [`DEFAULT_KEYVALUE_SIZE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyvalue_size: Option<String>,
}

/// An app as `skiff.toml` describes it: `[app]` and its `[[component]]`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The `[app]` table.
    pub app: AppMeta,
    /// The `[[component]]` tables, in order.
    #[serde(default, rename = "component")]
    pub components: Vec<Component>,
    /// The directory relative `source` paths and build commands start from (the manifest's
    /// directory; the current directory for an app built in code).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One wasm component of an app: its Deployment, Service and the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The component's name: a DNS label; its Deployment and Service are called so, and other
    /// components reach it at `http://NAME`.
    pub name: String,
    /// What runs: a `.wasm` file (relative to the manifest) or an OCI reference.
    pub source: Source,
    /// How to build the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Where the cluster's ingress routes to it; none for an internal component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// A fixed number of pods (default: 1 when first deployed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Scale to zero pods when idle; the first request starts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<ScaleToZero>,
    /// A HorizontalPodAutoscaler on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `wasi:config/store` values: plain values or references to Secret/ConfigMap keys. Declaring
    /// any gives the component `wasi:config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, ConfigValue>,
    /// Give the component `wasi:keyvalue`, stored on the app's volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyvalue: bool,
    /// Further WASI packages to give the component (e.g. `wasi:config`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// What the component may call: component names of this app, or CIDRs. Absent: anything;
    /// present (even empty): only these, through a NetworkPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_outbound: Option<Vec<String>>,
}

/// Where a component's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Source {
    /// A wasm file, relative to the app's base directory unless absolute.
    File(PathBuf),
    /// An OCI reference (`registry/name:tag` or `…@sha256:…`), used as is.
    Image(String),
}

impl Source {
    /// A source from text: a `.wasm` path, else an OCI reference (it has a `/` and a tag or
    /// digest).
    pub fn parse(s: &str) -> Result<Source, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.ends_with(".wasm") {
            return Ok(Source::File(PathBuf::from(s)));
        }
        let last = s.rsplit('/').next().unwrap_or(s);
        if s.contains('/') && (last.contains(':') || last.contains('@')) && !s.contains(' ') {
            return Ok(Source::Image(s.to_string()));
        }
        Err(format!(
            "{s:?} is neither a .wasm file nor an OCI reference like registry/name:tag"
        ))
    }
}

impl TryFrom<String> for Source {
    type Error = String;
    fn try_from(s: String) -> Result<Source, String> {
        Source::parse(&s)
    }
}

impl From<Source> for String {
    fn from(s: Source) -> String {
        match s {
            Source::File(p) => p.display().to_string(),
            Source::Image(r) => r,
        }
    }
}

/// `[component.build]`: how `skiff build` makes the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A shell command (`sh -c`), run in the app's base directory.
    pub command: String,
    /// Globs of the files the build reads (relative to the base directory): when none is newer
    /// than the source, `skiff build` skips the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
}

/// An ingress route: a path prefix, with an optional host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Route {
    /// `route = "/api"`: a path prefix on every host.
    Path(String),
    /// `route = { host = "shop.example", path = "/" }`.
    Full {
        /// The host to match (none: every host).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The path prefix (default `/`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

impl Route {
    /// The host, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Route::Path(_) => None,
            Route::Full { host, .. } => host.as_deref().filter(|h| !h.is_empty()),
        }
    }

    /// The path prefix.
    pub fn path(&self) -> &str {
        match self {
            Route::Path(p) => p,
            Route::Full { path, .. } => path.as_deref().unwrap_or("/"),
        }
    }
}

/// `scale_to_zero = true` or `scale_to_zero = { idle = "5m" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScaleToZero {
    /// On (with the cluster's default idle period) or off.
    Enabled(bool),
    /// On, with an idle period.
    Idle {
        /// How long without a request before the component goes to zero (`90s`, `5m`).
        idle: String,
    },
}

impl ScaleToZero {
    /// Whether scaling to zero is on.
    pub fn enabled(&self) -> bool {
        !matches!(self, ScaleToZero::Enabled(false))
    }

    /// The idle period, if given.
    pub fn idle(&self) -> Option<&str> {
        match self {
            ScaleToZero::Idle { idle } => Some(idle),
            ScaleToZero::Enabled(_) => None,
        }
    }
}

/// `[component.autoscale]`: a HorizontalPodAutoscaler on CPU utilisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    /// Fewest pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    /// Most pods.
    pub max: i32,
    /// Target average CPU utilisation, percent of the request (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
}

/// A config value: plain, or a key of a Secret or ConfigMap in the app's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A plain value.
    Value(String),
    /// `{ secret = "NAME", key = "KEY" }`.
    Secret {
        /// The Secret's name.
        secret: String,
        /// The key in it.
        key: String,
    },
    /// `{ config_map = "NAME", key = "KEY" }`.
    ConfigMap {
        /// The ConfigMap's name.
        config_map: String,
        /// The key in it.
        key: String,
    },
}

/// `[component.resources]`: requests and limits (Kubernetes quantities).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Quantities>,
    /// What the component may use at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Quantities>,
}

/// CPU and memory quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    /// CPU (`100m`, `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A rule of the model broken, with where: the component (if any) and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Index of the component in [`App::components`], or none for `[app]`.
    pub component: Option<usize>,
    /// The field's path inside the component or `[app]`, e.g. `route` or `config.greeting`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl App {
    /// An app called `name` with no components, its base directory the current directory.
    pub fn new(name: impl Into<String>) -> App {
        App {
            app: AppMeta {
                name: name.into(),
                namespace: None,
                version: None,
                keyvalue_size: None,
            },
            components: Vec::new(),
            base_dir: PathBuf::from("."),
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> App {
        self.app.namespace = Some(namespace.into());
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> App {
        self.app.version = Some(version.into());
        self
    }

    /// Sets the directory relative sources are read from.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> App {
        self.base_dir = dir.into();
        self
    }

    /// Adds a component.
    pub fn component(mut self, component: Component) -> App {
        self.components.push(component);
        self
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.app.name
    }

    /// The namespace the app lives in: `[app] namespace`, else the app's name.
    pub fn namespace_name(&self) -> &str {
        self.app.namespace.as_deref().unwrap_or(&self.app.name)
    }

    /// The version: `[app] version`, else [`DEFAULT_VERSION`].
    pub fn version_name(&self) -> &str {
        self.app.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }

    /// Where a file source is: joined to the base directory unless absolute.
    pub fn source_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Checks every rule; all problems found, in file order (empty when valid).
    pub fn check(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        let mut bad = |component: Option<usize>, field: &str, message: String| {
            out.push(Invalid {
                component,
                field: field.to_string(),
                message,
            })
        };
        if let Err(e) = dns_label(&self.app.name) {
            bad(None, "name", e);
        }
        if let Some(ns) = &self.app.namespace
            && let Err(e) = dns_label(ns)
        {
            bad(None, "namespace", e);
        }
        if let Some(v) = &self.app.version
            && let Err(e) = check_version(v)
        {
            bad(None, "version", e);
        }
        if let Some(size) = &self.app.keyvalue_size
            && let Err(e) = check_quantity(size)
        {
            bad(None, "keyvalue_size", e);
        }
        if self.components.is_empty() {
            bad(
                None,
                "component",
                "an app needs at least one [[component]]".into(),
            );
        }
        let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
        for (i, c) in self.components.iter().enumerate() {
            let at = Some(i);
            if let Err(e) = dns_label(&c.name) {
                bad(at, "name", e);
            } else if names[..i].contains(&c.name.as_str()) {
                bad(
                    at,
                    "name",
                    format!("a component named {:?} is already declared", c.name),
                );
            }
            if let Some(b) = &c.build
                && b.command.trim().is_empty()
            {
                bad(at, "build.command", "must not be empty".into());
            }
            if let Some(r) = &c.route {
                if !r.path().starts_with('/') {
                    bad(
                        at,
                        "route",
                        format!("the path {:?} must start with '/'", r.path()),
                    );
                }
                if let Some(h) = r.host()
                    && let Err(e) = check_host(h)
                {
                    bad(at, "route.host", e);
                }
            }
            if let Some(n) = c.replicas
                && n < 0
            {
                bad(at, "replicas", "must not be negative".into());
            }
            let stz = c.scale_to_zero.as_ref().is_some_and(ScaleToZero::enabled);
            if stz && c.replicas.is_some() {
                bad(
                    at,
                    "scale_to_zero",
                    "give either replicas or scale_to_zero, not both".into(),
                );
            }
            if let Some(idle) = c.scale_to_zero.as_ref().and_then(ScaleToZero::idle)
                && skiff_meta::duration::parse_go_duration(idle).is_err()
            {
                bad(
                    at,
                    "scale_to_zero.idle",
                    format!("{idle:?} is not a duration like 90s or 5m"),
                );
            }
            if let Some(a) = &c.autoscale {
                if c.replicas.is_some() || stz {
                    bad(
                        at,
                        "autoscale",
                        "give one of replicas, scale_to_zero and autoscale".into(),
                    );
                }
                let min = a.min.unwrap_or(1);
                if min < 1 {
                    bad(at, "autoscale.min", "must be at least 1".into());
                }
                if a.max < min {
                    bad(at, "autoscale.max", format!("must be at least min ({min})"));
                }
                if let Some(cpu) = a.cpu
                    && !(1..=1000).contains(&cpu)
                {
                    bad(at, "autoscale.cpu", "a percentage from 1 to 1000".into());
                }
                let cpu_request = c
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|q| q.cpu.as_ref());
                if cpu_request.is_none() {
                    bad(
                        at,
                        "autoscale",
                        "autoscaling on CPU needs resources.requests.cpu".into(),
                    );
                }
            }
            for k in c.env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    bad(at, &format!("env.{k}"), "not a valid variable name".into());
                }
            }
            for (k, v) in &c.config {
                let field = format!("config.{k}");
                if let Err(e) = config_key(k) {
                    bad(at, &field, e);
                }
                let refd = match v {
                    ConfigValue::Value(_) => None,
                    ConfigValue::Secret { secret, key } => Some((secret, key)),
                    ConfigValue::ConfigMap { config_map, key } => Some((config_map, key)),
                };
                if let Some((name, key)) = refd {
                    if let Err(e) = dns_subdomain(name) {
                        bad(at, &field, e);
                    }
                    if let Err(e) = config_key(key) {
                        bad(at, &format!("{field}.key"), e);
                    }
                }
            }
            for cap in &c.capabilities {
                if !cap.contains(':') || cap.contains(',') || cap.contains(' ') {
                    bad(
                        at,
                        "capabilities",
                        format!("{cap:?} is not a WASI package name like wasi:config"),
                    );
                }
            }
            if let Some(r) = &c.resources {
                for (what, q) in [("requests", &r.requests), ("limits", &r.limits)] {
                    let Some(q) = q else { continue };
                    for (res, v) in [("cpu", &q.cpu), ("memory", &q.memory)] {
                        if let Some(v) = v
                            && let Err(e) = check_quantity(v)
                        {
                            bad(at, &format!("resources.{what}.{res}"), e);
                        }
                    }
                }
            }
            for target in c.allowed_outbound.iter().flatten() {
                if !names.contains(&target.as_str()) && parse_cidr(target).is_none() {
                    bad(
                        at,
                        "allowed_outbound",
                        format!(
                            "{target:?} is neither a component of this app nor a CIDR like 10.0.0.0/8"
                        ),
                    );
                }
            }
        }
        out
    }

    /// Checks every rule, failing with the first problem (see [`App::check`] for all).
    pub fn validate(&self) -> crate::Result<()> {
        match self.check().into_iter().next() {
            None => Ok(()),
            Some(i) => Err(crate::Error::Invalid {
                at: describe(self, &i),
                message: i.message,
            }),
        }
    }
}

/// `component "NAME": FIELD` or `app: FIELD` for an [`Invalid`].
pub(crate) fn describe(app: &App, i: &Invalid) -> String {
    match i.component {
        Some(n) => format!(
            "component {:?}: {}",
            app.components
                .get(n)
                .map(|c| c.name.as_str())
                .unwrap_or("?"),
            i.field
        ),
        None => format!("app: {}", i.field),
    }
}

impl Component {
    /// A component called `name` running `source`, internal, with one pod.
    pub fn new(name: impl Into<String>, source: Source) -> Component {
        Component {
            name: name.into(),
            source,
            build: None,
            route: None,
            replicas: None,
            scale_to_zero: None,
            autoscale: None,
            env: BTreeMap::new(),
            config: BTreeMap::new(),
            keyvalue: false,
            capabilities: Vec::new(),
            resources: None,
            allowed_outbound: None,
        }
    }

    /// Routes the path prefix `path` of every host to the component.
    pub fn route(mut self, path: impl Into<String>) -> Component {
        self.route = Some(Route::Path(path.into()));
        self
    }

    /// Routes `host` and the path prefix `path` to the component.
    pub fn route_host(mut self, host: impl Into<String>, path: impl Into<String>) -> Component {
        self.route = Some(Route::Full {
            host: Some(host.into()),
            path: Some(path.into()),
        });
        self
    }

    /// Builds the source with a shell command.
    pub fn build_command(mut self, command: impl Into<String>) -> Component {
        self.build = Some(Build {
            command: command.into(),
            watch: Vec::new(),
        });
        self
    }

    /// A fixed number of pods.
    pub fn replicas(mut self, n: i32) -> Component {
        self.replicas = Some(n);
        self
    }

    /// Scale to zero when idle for `idle` (none: the cluster's default).
    pub fn scale_to_zero(mut self, idle: Option<&str>) -> Component {
        self.scale_to_zero = Some(match idle {
            Some(idle) => ScaleToZero::Idle { idle: idle.into() },
            None => ScaleToZero::Enabled(true),
        });
        self
    }

    /// Autoscale between `min` and `max` pods at `cpu` percent utilisation.
    pub fn autoscale(mut self, min: i32, max: i32, cpu: i32) -> Component {
        self.autoscale = Some(Autoscale {
            min: Some(min),
            max,
            cpu: Some(cpu),
        });
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Component {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets a `wasi:config` value.
    pub fn config(mut self, key: impl Into<String>, value: ConfigValue) -> Component {
        self.config.insert(key.into(), value);
        self
    }

    /// Gives the component `wasi:keyvalue`.
    pub fn keyvalue(mut self) -> Component {
        self.keyvalue = true;
        self
    }

    /// Sets requests and limits.
    pub fn resources(mut self, resources: Resources) -> Component {
        self.resources = Some(resources);
        self
    }

    /// Lets the component call only `targets` (component names or CIDRs).
    pub fn allowed_outbound<I, S>(mut self, targets: I) -> Component
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_outbound = Some(targets.into_iter().map(Into::into).collect());
        self
    }

    /// The WASI packages the component is given beyond the default, in order.
    pub fn declared_capabilities(&self) -> Vec<String> {
        let mut caps = Vec::new();
        if !self.config.is_empty() {
            caps.push("wasi:config".to_string());
        }
        if self.keyvalue {
            caps.push("wasi:keyvalue".to_string());
        }
        for c in &self.capabilities {
            if !caps.contains(c) {
                caps.push(c.clone());
            }
        }
        caps
    }
}

/// Checks a DNS-1035 label (a Service name).
pub(crate) fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: use at most 63 lowercase letters, digits and '-', \
             starting with a letter and ending with a letter or digit"
        ))
    }
}

fn dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid object name"))
    }
}

fn check_host(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    dns_subdomain(rest).map_err(|_| format!("{s:?} is not a valid host name"))
}

/// A config key is a file name under `/etc/skiff/config` (a ConfigMap key).
fn config_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid config key: use letters, digits, '-', '_' and '.'"
        ))
    }
}

/// A version is an OCI tag and a label value.
fn check_version(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid version: at most 63 letters, digits, '-', '_' and '.', \
             starting and ending with a letter or digit"
        ))
    }
}

fn check_quantity(s: &str) -> Result<(), String> {
    skiff_meta::quantity::Quantity::parse(s)
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a quantity like 100m or 64Mi: {e}"))
}

/// Parses `A.B.C.D/N` (IPv4 only, as the pod network).
pub(crate) fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip, len))
}
