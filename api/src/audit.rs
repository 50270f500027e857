//! The audit log, as kube-apiserver's `--audit-log-path` and `--audit-policy-file`: one
//! `audit.k8s.io/v1` `Event` JSON line per request (long-running requests log `ResponseStarted`
//! when their response begins, then `ResponseComplete` when it ends), at the level the first
//! matching rule of the `Policy` gives (everything at `Metadata` without a policy).
//!
//! Lines go through a bounded channel to a writer thread, so a request never waits on the
//! disk: when the writer falls behind and the channel is full, the event is dropped, counted
//! (`Auditor::dropped`) and a warning logged (kube-apiserver's `batch` mode behaves so; its
//! `blocking` mode would stall requests behind the disk instead). `Auditor::flush` waits for
//! everything sent so far to be written; the server flushes on shutdown.
//!
//! Risk, as in Kubernetes: the `Request` and `RequestResponse` levels write request and
//! response bodies as they are, Secrets' data included, wherever the policy asks for them. A
//! policy should give `secrets` (and `configmaps` holding credentials) `Metadata` in a rule
//! before any broader `Request` rule.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::state::{AppState, UserInfo};

/// The header carrying a request's audit ID, as Kubernetes sends (and accepts from a client).
pub const AUDIT_ID_HEADER: &str = "Audit-Id";

/// The largest request or response body an event includes (larger ones are left out).
const MAX_LOGGED_BODY: usize = 3 * 1024 * 1024;

/// How many lines may wait for the writer before events are dropped.
const CHANNEL_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit policy file {path}: {message}")]
    Policy { path: PathBuf, message: String },
    #[error("audit log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How much of a request an event records, as `audit.k8s.io/v1` `Level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// The stage an event is written at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

/// `audit.k8s.io/v1` `Policy`: the rules in order (the first match wins), and the stages no
/// event is written at.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
}

/// One rule of a `Policy`; empty lists match everything.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
}

/// Resources of one API group a rule names (`pods`, `pods/log`, `*`, `*/status`, `pods/*`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What a policy looks at in a request.
#[derive(Clone, Debug, Default)]
pub struct RequestAttributes {
    pub user: UserInfo,
    pub verb: String,
    /// Set for a resource request; `None` for a non-resource URL.
    pub object: Option<ObjectRef>,
    pub path: String,
}

/// `objectRef` of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub api_group: String,
    pub api_version: String,
    pub subresource: Option<String>,
}

impl Policy {
    /// Parses a policy file's text (YAML or JSON); its `apiVersion` must be `audit.k8s.io/v1`
    /// and its `kind` `Policy`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if policy.api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "apiVersion {:?} is not supported: only audit.k8s.io/v1",
                policy.api_version
            ));
        }
        if policy.kind != "Policy" {
            return Err(format!("kind {:?}: expected Policy", policy.kind));
        }
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::Policy {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Policy::parse(&text).map_err(|message| AuditError::Policy {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Everything at `Metadata`, without the `RequestReceived` stage: the policy without a
    /// policy file.
    pub fn metadata_for_all() -> Policy {
        Policy {
            api_version: "audit.k8s.io/v1".into(),
            kind: "Policy".into(),
            rules: vec![PolicyRule {
                level: Level::Metadata,
                users: Vec::new(),
                user_groups: Vec::new(),
                verbs: Vec::new(),
                resources: Vec::new(),
                namespaces: Vec::new(),
                non_resource_urls: Vec::new(),
                omit_stages: Vec::new(),
            }],
            // One line per request: the `RequestReceived` stage repeats what
            // `ResponseComplete` says. A policy file that omits no stage gets both.
            omit_stages: vec![Stage::RequestReceived],
        }
    }

    /// The level of a request and the stages omitted for it: the first rule matching, or
    /// `None` when none does.
    pub fn evaluate(&self, attrs: &RequestAttributes) -> (Level, Vec<Stage>) {
        for rule in &self.rules {
            if rule.matches(attrs) {
                let mut omit = self.omit_stages.clone();
                omit.extend(rule.omit_stages.iter().copied());
                return (rule.level, omit);
            }
        }
        (Level::None, self.omit_stages.clone())
    }
}

impl PolicyRule {
    /// Kubernetes' `ruleMatchesRequest`.
    fn matches(&self, attrs: &RequestAttributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&attrs.user.name) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !attrs
                .user
                .groups
                .iter()
                .any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&attrs.verb) {
            return false;
        }
        match &attrs.object {
            Some(object) => {
                if !self.non_resource_urls.is_empty() {
                    return false;
                }
                self.matches_resource(object)
            }
            None => {
                if !self.resources.is_empty() || !self.namespaces.is_empty() {
                    return false;
                }
                self.non_resource_urls.is_empty()
                    || self.non_resource_urls.iter().any(|pattern| {
                        match pattern.strip_suffix('*') {
                            Some(prefix) => attrs.path.starts_with(prefix),
                            None => attrs.path == *pattern,
                        }
                    })
            }
        }
    }

    fn matches_resource(&self, object: &ObjectRef) -> bool {
        if !self.namespaces.is_empty() {
            let namespace = object.namespace.as_deref().unwrap_or("");
            if !self.namespaces.iter().any(|n| n == namespace) {
                return false;
            }
        }
        if self.resources.is_empty() {
            return true;
        }
        let name = object.name.as_deref().unwrap_or("");
        let combined = object
            .subresource
            .as_ref()
            .map(|sub| format!("{}/{sub}", object.resource));
        self.resources.iter().any(|gr| {
            if gr.group != object.api_group {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            gr.resources.iter().any(|res| {
                let resource_matches = match &combined {
                    Some(combined) => {
                        res == combined
                            || res == "*"
                            || res == &format!("{}/*", object.resource)
                            || res == &format!("*/{}", object.subresource.as_deref().unwrap_or(""))
                    }
                    None => res == &object.resource || res == "*",
                };
                resource_matches
                    && (gr.resource_names.is_empty() || gr.resource_names.iter().any(|n| n == name))
            })
        })
    }
}

enum Message {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where events are written: a file (rotated at `max_size_mb`, keeping `max_backups` old
/// files), standard output, or any writer (tests).
pub struct AuditSink {
    kind: SinkKind,
    /// Rotate the file once it grows past this many bytes (0: never).
    pub max_size: u64,
    /// Old files kept after a rotation (0: all).
    pub max_backups: usize,
}

enum SinkKind {
    File(PathBuf),
    Stdout,
    Writer(Box<dyn Write + Send>),
}

impl AuditSink {
    /// kube-apiserver's `--audit-log-path`: `-` is standard output.
    pub fn path(path: &Path) -> AuditSink {
        let kind = if path == Path::new("-") {
            SinkKind::Stdout
        } else {
            SinkKind::File(path.to_path_buf())
        };
        AuditSink {
            kind,
            max_size: 0,
            max_backups: 0,
        }
    }

    /// Whether events go to standard output (`--audit-log-path -`).
    pub fn is_stdout(&self) -> bool {
        matches!(self.kind, SinkKind::Stdout)
    }

    /// Any writer (tests).
    pub fn writer(writer: Box<dyn Write + Send>) -> AuditSink {
        AuditSink {
            kind: SinkKind::Writer(writer),
            max_size: 0,
            max_backups: 0,
        }
    }

    /// `--audit-log-maxsize` (megabytes) and `--audit-log-maxbackup`.
    pub fn with_rotation(mut self, max_size_mb: u64, max_backups: usize) -> AuditSink {
        self.max_size = max_size_mb.saturating_mul(1024 * 1024);
        self.max_backups = max_backups;
        self
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, AuditError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| AuditError::Log {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map_err(|source| AuditError::Log {
        path: path.to_path_buf(),
        source,
    })
}

/// The writer thread's output: the open file and how much it holds.
struct Output {
    writer: std::io::BufWriter<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
    written: u64,
    max_size: u64,
    max_backups: usize,
}

impl Output {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        if self.max_size > 0
            && self.written > 0
            && self.written + line.len() as u64 + 1 > self.max_size
        {
            self.rotate()?;
        }
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    /// Renames the file to `NAME-TIMESTAMP` and starts a new one; prunes old backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.writer.flush()?;
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3f");
        let backup = PathBuf::from(format!("{}-{stamp}", path.display()));
        std::fs::rename(&path, &backup)?;
        let file = open_append(&path).map_err(|e| match e {
            AuditError::Log { source, .. } => source,
            AuditError::Policy { message, .. } => std::io::Error::other(message),
        })?;
        self.writer = std::io::BufWriter::new(Box::new(file));
        self.written = 0;
        if self.max_backups > 0 {
            let prefix = format!(
                "{}-",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect();
            backups.sort();
            let excess = backups.len().saturating_sub(self.max_backups);
            for old in &backups[..excess] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }
}

/// The audit log: the policy and the channel to the writer thread.
pub struct Auditor {
    policy: Policy,
    tx: tokio::sync::mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl Auditor {
    /// Starts the writer thread over `sink`, evaluating requests with `policy`.
    pub fn start(policy: Policy, sink: AuditSink) -> Result<Arc<Auditor>, AuditError> {
        let (writer, path, written): (Box<dyn Write + Send>, Option<PathBuf>, u64) = match sink.kind
        {
            SinkKind::File(path) => {
                let file = open_append(&path)?;
                let written = file.metadata().map(|m| m.len()).unwrap_or(0);
                (Box::new(file), Some(path), written)
            }
            SinkKind::Stdout => (Box::new(std::io::stdout()), None, 0),
            SinkKind::Writer(w) => (w, None, 0),
        };
        let mut output = Output {
            writer: std::io::BufWriter::new(writer),
            path,
            written,
            max_size: sink.max_size,
            max_backups: sink.max_backups,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(CHANNEL_CAPACITY);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Some(message) = rx.blocking_recv() {
                    let mut next = Some(message);
                    // Write what is waiting, then flush once the channel is empty.
                    while let Some(message) = next.take() {
                        match message {
                            Message::Line(line) => {
                                if let Err(err) = output.write_line(&line) {
                                    tracing::warn!(error = %err, "cannot write the audit log");
                                }
                            }
                            Message::Flush(done) => {
                                let _ = output.writer.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(err) = output.writer.flush() {
                        tracing::warn!(error = %err, "cannot flush the audit log");
                    }
                }
                let _ = output.writer.flush();
            })
            .map_err(|source| AuditError::Log {
                path: PathBuf::from("audit-log thread"),
                source,
            })?;
        Ok(Arc::new(Auditor {
            policy,
            tx,
            dropped: AtomicU64::new(0),
        }))
    }

    /// The policy requests are evaluated with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event sent so far is written and flushed.
    pub async fn flush(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Message::Flush(done_tx)).await.is_err() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || done_rx.recv()).await;
    }

    fn emit(&self, event: &Value) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the audit log writer cannot keep up; events dropped"
                    );
                }
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The user a request was made by before impersonation, which the authentication layer puts
/// into the request's extensions when impersonation switched to another user.
#[derive(Clone, Debug)]
pub struct Impersonator(pub UserInfo);

/// A timestamp as Kubernetes' `MicroTime`: RFC 3339 with microseconds.
fn micro_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The Kubernetes verb of a request, and its `objectRef` for a resource request.
pub fn attributes_of(
    state: &AppState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    user: UserInfo,
) -> RequestAttributes {
    let route = crate::request::route(path, &state.crds).ok();
    let target = match route {
        Some(crate::request::Route::Resource(target)) => Some(target),
        _ => None,
    };
    let Some(target) = target else {
        return RequestAttributes {
            user,
            verb: method.as_str().to_ascii_lowercase(),
            object: None,
            path: path.to_string(),
        };
    };
    let q = crate::request::Query::parse(query);
    let named = target.name.is_some();
    let verb = match *method {
        Method::GET | Method::HEAD if target.legacy_watch || q.flag("watch") => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    RequestAttributes {
        user,
        verb: verb.to_string(),
        object: Some(ObjectRef {
            resource: target.kind.plural.to_string(),
            namespace: target.namespace,
            name: target.name,
            api_group: target.kind.group.to_string(),
            api_version: target.kind.version.to_string(),
            subresource: target.subresource,
        }),
        path: path.to_string(),
    }
}

/// Whether a request is long-running: a watch, exec/attach/portforward/proxy, a followed log.
pub fn long_running(method: &Method, path: &str, query: Option<&str>) -> bool {
    if method != Method::GET && method != Method::POST {
        return false;
    }
    let q = crate::request::Query::parse(query);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let watch_prefix = matches!(
        segments.as_slice(),
        ["api", _, "watch", ..] | ["apis", _, _, "watch", ..]
    );
    if watch_prefix || (*method == Method::GET && q.flag("watch")) {
        return true;
    }
    segments
        .iter()
        .any(|s| matches!(*s, "exec" | "attach" | "portforward" | "proxy"))
        || (segments.last() == Some(&"log") && q.flag("follow"))
}

fn source_ips(request: &Request) -> Vec<String> {
    let mut ips = Vec::new();
    if let Some(forwarded) = header_str(request.headers(), "x-forwarded-for") {
        ips.extend(
            forwarded
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    if let Some(real) = header_str(request.headers(), "x-real-ip") {
        let real = real.trim().to_string();
        if !ips.contains(&real) {
            ips.push(real);
        }
    }
    if let Some(axum::extract::ConnectInfo(peer)) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        let ip = peer.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn user_json(user: &UserInfo) -> Value {
    let mut out = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        out["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        out["extra"] = json!(user.extra);
    }
    out
}

fn object_ref_json(object: &ObjectRef) -> Value {
    let mut out = Map::new();
    out.insert("resource".into(), json!(object.resource));
    if let Some(ns) = &object.namespace {
        out.insert("namespace".into(), json!(ns));
    }
    if let Some(name) = &object.name {
        out.insert("name".into(), json!(name));
    }
    out.insert("apiGroup".into(), json!(object.api_group));
    out.insert("apiVersion".into(), json!(object.api_version));
    if let Some(sub) = &object.subresource {
        out.insert("subresource".into(), json!(sub));
    }
    Value::Object(out)
}

/// The event of one request, filled in as it goes.
struct EventBuilder {
    auditor: Arc<Auditor>,
    base: Map<String, Value>,
    omit: Vec<Stage>,
}

impl EventBuilder {
    fn emit(&self, stage: Stage, status: &Value, response_object: Option<Value>) {
        if self.omit.contains(&stage) {
            return;
        }
        let mut event = self.base.clone();
        event.insert("stage".into(), json!(stage.as_str()));
        event.insert("responseStatus".into(), status.clone());
        event.insert(
            "stageTimestamp".into(),
            json!(micro_time(jiff::Timestamp::now())),
        );
        if let Some(object) = response_object {
            event.insert("responseObject".into(), object);
        }
        self.auditor.emit(&Value::Object(event));
    }
}

/// The `responseStatus` of a response: the code, and for a failure the `Status` body's
/// `status`, `message` and `reason`.
fn response_status(code: u16, status_body: Option<&Value>) -> Value {
    let mut out = json!({ "metadata": {}, "code": code });
    if let Some(body) = status_body.filter(|b| b.get("kind") == Some(&json!("Status"))) {
        for field in ["status", "message", "reason"] {
            if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
                out[field] = v.clone();
            }
        }
    }
    out
}

/// Ends a long-running request's audit: writes `ResponseComplete` when the body is dropped.
struct CompleteOnDrop {
    event: Option<(EventBuilder, Value)>,
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        if let Some((event, status)) = self.event.take() {
            event.emit(Stage::ResponseComplete, &status, None);
        }
    }
}

/// Kubernetes' `WithFailedAuthenticationAudit`: a request no authenticator accepted is logged
/// at the `ResponseStarted` stage with its 401 and an empty user, at the level the policy gives
/// an anonymous request. Returns the request's audit ID for the response's `Audit-Id`.
pub(crate) fn failed_authentication(state: &AppState, request: &Request) -> String {
    let audit_id = header_str(request.headers(), AUDIT_ID_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let Some(auditor) = state.audit.as_ref() else {
        return audit_id;
    };
    let path = request.uri().path();
    let attrs = attributes_of(
        state,
        request.method(),
        path,
        request.uri().query(),
        UserInfo::default(),
    );
    let (level, omit) = auditor.policy.evaluate(&attrs);
    if level == Level::None || omit.contains(&Stage::ResponseStarted) {
        return audit_id;
    }
    let now = micro_time(jiff::Timestamp::now());
    let mut event = Map::new();
    event.insert("kind".into(), json!("Event"));
    event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    event.insert("level".into(), json!(level.as_str()));
    event.insert("auditID".into(), json!(audit_id));
    event.insert("stage".into(), json!(Stage::ResponseStarted.as_str()));
    event.insert(
        "requestURI".into(),
        json!(request.uri().path_and_query().map_or(path, |p| p.as_str())),
    );
    event.insert("verb".into(), json!(attrs.verb));
    event.insert("user".into(), json!({}));
    event.insert("sourceIPs".into(), json!(source_ips(request)));
    if let Some(agent) = header_str(request.headers(), "user-agent") {
        event.insert("userAgent".into(), json!(agent));
    }
    if let Some(object) = &attrs.object {
        event.insert("objectRef".into(), object_ref_json(object));
    }
    event.insert(
        "responseStatus".into(),
        json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
    );
    event.insert("requestReceivedTimestamp".into(), json!(now));
    event.insert("stageTimestamp".into(), json!(now));
    auditor.emit(&Value::Object(event));
    audit_id
}

/// The audit middleware; it runs after authentication, so the request carries its user.
pub(crate) async fn audit(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let received = jiff::Timestamp::now();
    let audit_id = header_str(request.headers(), AUDIT_ID_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let Some(auditor) = state.audit.clone() else {
        let mut response = next.run(request).await;
        if let Ok(v) = HeaderValue::from_str(&audit_id) {
            response.headers_mut().insert(AUDIT_ID_HEADER, v);
        }
        return response;
    };
    let user = request.extensions().get::<UserInfo>().cloned();
    let impersonator = request.extensions().get::<Impersonator>().cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let attrs = attributes_of(
        &state,
        &method,
        &path,
        query.as_deref(),
        user.clone().unwrap_or_default(),
    );
    let (level, omit) = auditor.policy.evaluate(&attrs);
    if level == Level::None {
        let mut response = next.run(request).await;
        if let Ok(v) = HeaderValue::from_str(&audit_id) {
            response.headers_mut().insert(AUDIT_ID_HEADER, v);
        }
        return response;
    }
    let mut base = Map::new();
    base.insert("kind".into(), json!("Event"));
    base.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    base.insert("level".into(), json!(level.as_str()));
    base.insert("auditID".into(), json!(audit_id));
    base.insert(
        "requestURI".into(),
        json!(
            request
                .uri()
                .path_and_query()
                .map_or(path.as_str(), |p| p.as_str())
        ),
    );
    base.insert("verb".into(), json!(attrs.verb));
    // `user` is who authenticated; `impersonatedUser` whom they acted as.
    match (&impersonator, &user) {
        (Some(Impersonator(original)), Some(acting)) => {
            base.insert("user".into(), user_json(original));
            base.insert("impersonatedUser".into(), user_json(acting));
        }
        (_, Some(user)) => {
            base.insert("user".into(), user_json(user));
        }
        (_, None) => {
            base.insert("user".into(), json!({}));
        }
    }
    base.insert("sourceIPs".into(), json!(source_ips(&request)));
    if let Some(agent) = header_str(request.headers(), "user-agent") {
        base.insert("userAgent".into(), json!(agent));
    }
    if let Some(object) = &attrs.object {
        base.insert("objectRef".into(), object_ref_json(object));
    }
    base.insert(
        "requestReceivedTimestamp".into(),
        json!(micro_time(received)),
    );
    let long = long_running(&method, &path, query.as_deref());
    // The request body, for Request and RequestResponse.
    // A create names its object in the body: the objectRef takes the name from there, as
    // Kubernetes' LogRequestObject completes it at every level.
    let unnamed_create =
        attrs.verb == "create" && attrs.object.as_ref().is_some_and(|o| o.name.is_none());
    if (level >= Level::Request || unnamed_create)
        && matches!(method, Method::POST | Method::PUT | Method::PATCH)
        && !long
    {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, MAX_LOGGED_BODY).await {
            Ok(bytes) => {
                let media_type = crate::body::content_type(&parts.headers);
                if let Ok(object) = crate::body::decode_body(&bytes, &media_type) {
                    let name = object.pointer("/metadata/name").and_then(Value::as_str);
                    if let (true, Some(name), Some(Value::Object(reference))) =
                        (unnamed_create, name, base.get_mut("objectRef"))
                    {
                        reference.insert("name".into(), json!(name));
                    }
                    if level >= Level::Request {
                        base.insert("requestObject".into(), object);
                    }
                }
                request = Request::from_parts(parts, Body::from(bytes));
            }
            Err(_) => {
                let error = crate::error::ApiError::too_large(
                    "the request body is too large to be audited",
                );
                let mut response = axum::response::IntoResponse::into_response(error);
                let status = response_status(413, None);
                let event = EventBuilder {
                    auditor,
                    base,
                    omit,
                };
                event.emit(Stage::ResponseComplete, &status, None);
                if let Ok(v) = HeaderValue::from_str(&audit_id) {
                    response.headers_mut().insert(AUDIT_ID_HEADER, v);
                }
                return response;
            }
        }
    }
    if !omit.contains(&Stage::RequestReceived) {
        let mut event = base.clone();
        event.insert("stage".into(), json!(Stage::RequestReceived.as_str()));
        event.insert(
            "stageTimestamp".into(),
            json!(micro_time(jiff::Timestamp::now())),
        );
        auditor.emit(&Value::Object(event));
    }
    let response = next.run(request).await;
    let code = response.status().as_u16();
    let denied = code == 403;
    let mut annotations = Map::new();
    annotations.insert(
        "authorization.k8s.io/decision".into(),
        json!(if denied { "forbid" } else { "allow" }),
    );
    let (mut parts, body) = response.into_parts();
    if let Ok(v) = HeaderValue::from_str(&audit_id) {
        parts.headers.insert(AUDIT_ID_HEADER, v);
    }
    let failed = code >= 400;
    let want_response = level == Level::RequestResponse && !long;
    if failed || want_response {
        // A failure's Status (small) or the whole response, for RequestResponse.
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read a response body for the audit log");
                bytes::Bytes::new()
            }
        };
        let parsed = if bytes.len() <= MAX_LOGGED_BODY && !bytes.is_empty() {
            let media_type = crate::body::content_type(&parts.headers);
            crate::body::decode_body(&bytes, &media_type).ok()
        } else {
            None
        };
        let status = response_status(code, parsed.as_ref());
        if denied {
            annotations.insert(
                "authorization.k8s.io/reason".into(),
                json!(status.get("message").cloned().unwrap_or(json!(""))),
            );
        } else {
            annotations.insert("authorization.k8s.io/reason".into(), json!(""));
        }
        base.insert("annotations".into(), Value::Object(annotations));
        let event = EventBuilder {
            auditor,
            base,
            omit,
        };
        let object = if want_response { parsed } else { None };
        event.emit(Stage::ResponseComplete, &status, object);
        return Response::from_parts(parts, Body::from(bytes));
    }
    annotations.insert("authorization.k8s.io/reason".into(), json!(""));
    base.insert("annotations".into(), Value::Object(annotations));
    let status = response_status(code, None);
    let event = EventBuilder {
        auditor,
        base,
        omit,
    };
    if !long {
        event.emit(Stage::ResponseComplete, &status, None);
        return Response::from_parts(parts, body);
    }
    event.emit(Stage::ResponseStarted, &status, None);
    let guard = CompleteOnDrop {
        event: Some((event, status)),
    };
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        let _ = &guard;
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        user: &str,
        groups: &[&str],
        verb: &str,
        object: Option<ObjectRef>,
    ) -> RequestAttributes {
        RequestAttributes {
            user: UserInfo::new(user, groups),
            verb: verb.into(),
            object,
            path: "/api".into(),
        }
    }

    fn pods(ns: &str, name: Option<&str>, sub: Option<&str>) -> ObjectRef {
        ObjectRef {
            resource: "pods".into(),
            namespace: Some(ns.into()),
            name: name.map(str::to_string),
            api_group: String::new(),
            api_version: "v1".into(),
            subresource: sub.map(str::to_string),
        }
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log", "*/status"]
- level: Request
  verbs: ["create", "update"]
  namespaces: ["team-a"]
- level: Metadata
  nonResourceURLs: ["/healthz*", "/version"]
  omitStages: [ResponseStarted]
"#;

    #[test]
    fn the_first_matching_rule_gives_the_level() {
        let policy = Policy::parse(POLICY).unwrap();
        let secret = ObjectRef {
            resource: "secrets".into(),
            ..pods("team-a", Some("s"), None)
        };
        assert_eq!(
            policy
                .evaluate(&attrs("alice", &[], "create", Some(secret)))
                .0,
            Level::Metadata
        );
        assert_eq!(
            policy
                .evaluate(&attrs(
                    "system:kube-proxy",
                    &[],
                    "create",
                    Some(pods("team-a", None, None))
                ))
                .0,
            Level::None
        );
        assert_eq!(
            policy
                .evaluate(&attrs(
                    "alice",
                    &[],
                    "create",
                    Some(pods("team-a", None, None))
                ))
                .0,
            Level::Request
        );
        assert_eq!(
            policy
                .evaluate(&attrs(
                    "alice",
                    &[],
                    "get",
                    Some(pods("team-a", Some("p"), None))
                ))
                .0,
            Level::None
        );
        assert_eq!(
            policy
                .evaluate(&attrs(
                    "alice",
                    &[],
                    "get",
                    Some(pods("b", Some("p"), Some("log")))
                ))
                .0,
            Level::RequestResponse
        );
        assert_eq!(
            policy
                .evaluate(&attrs(
                    "alice",
                    &[],
                    "update",
                    Some(pods("b", Some("p"), Some("status")))
                ))
                .0,
            Level::RequestResponse
        );
        let mut health = attrs("alice", &[], "get", None);
        health.path = "/healthz/ping".into();
        let (level, omit) = policy.evaluate(&health);
        assert_eq!(level, Level::Metadata);
        assert_eq!(omit, vec![Stage::RequestReceived, Stage::ResponseStarted]);
        let mut openapi = attrs("alice", &[], "get", None);
        openapi.path = "/openapi/v2".into();
        assert_eq!(policy.evaluate(&openapi).0, Level::None);
    }

    #[test]
    fn groups_and_resource_names_narrow_a_rule() {
        let policy = Policy::parse(
            r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[
              {"level":"RequestResponse","userGroups":["ops"],
               "resources":[{"group":"","resources":["configmaps"],"resourceNames":["cfg"]}]}]}"#,
        )
        .unwrap();
        let cm = |name: &str| ObjectRef {
            resource: "configmaps".into(),
            ..pods("x", Some(name), None)
        };
        assert_eq!(
            policy
                .evaluate(&attrs("bob", &["ops"], "get", Some(cm("cfg"))))
                .0,
            Level::RequestResponse
        );
        assert_eq!(
            policy
                .evaluate(&attrs("bob", &["ops"], "get", Some(cm("other"))))
                .0,
            Level::None
        );
        assert_eq!(
            policy
                .evaluate(&attrs("bob", &["dev"], "get", Some(cm("cfg"))))
                .0,
            Level::None
        );
    }

    #[test]
    fn a_policy_of_another_version_is_refused() {
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n").is_err());
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Pod\n").is_err());
        assert!(
            Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n")
                .is_err()
        );
    }

    #[test]
    fn long_running_requests() {
        let get = Method::GET;
        assert!(long_running(&get, "/api/v1/pods", Some("watch=true")));
        assert!(long_running(&get, "/api/v1/watch/pods", None));
        assert!(long_running(
            &get,
            "/api/v1/namespaces/a/pods/p/log",
            Some("follow=true")
        ));
        assert!(!long_running(&get, "/api/v1/namespaces/a/pods/p/log", None));
        assert!(long_running(
            &Method::POST,
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=ls")
        ));
        assert!(!long_running(&get, "/api/v1/pods", Some("watch=false")));
        assert!(!long_running(
            &Method::POST,
            "/api/v1/namespaces/a/pods",
            None
        ));
    }

    #[test]
    fn micro_time_has_six_digits() {
        let ts: jiff::Timestamp = "2026-01-02T03:04:05.123Z".parse().unwrap();
        assert_eq!(micro_time(ts), "2026-01-02T03:04:05.123000Z");
    }
}
