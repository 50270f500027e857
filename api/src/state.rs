//! `AppState`: what every request handler shares (the store, the accepted tokens, shutdown), and
//! `UserInfo`, who a request comes from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use skiff_store::Store;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Bearer tokens accepted, with the user each one authenticates (the admin token, the
    /// `--token-auth-file` users); asked before `token_authenticators`.
    pub tokens: Vec<(String, UserInfo)>,
    /// Authenticators of bearer tokens not in `tokens`, asked in order (ServiceAccount JWTs,
    /// bootstrap tokens); the first `Some` wins.
    pub token_authenticators: Vec<Arc<dyn TokenAuthenticator>>,
    pub started: Instant,
    /// The Prometheus metrics `/metrics` serves (`crate::metrics`).
    pub metrics: Arc<crate::metrics::ApiMetrics>,
    /// Tells long-running requests (watches) that the server is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Decides what each authenticated user may do; asked once per resource request.
    pub authorizer: Arc<dyn Authorizer>,
    /// The ranges ClusterIPs, NodePorts and Node pod CIDRs come from.
    pub network: crate::alloc::NetworkConfig,
    /// The custom kinds served, from the CustomResourceDefinitions in `store`.
    pub crds: Arc<crate::crd::CrdRegistry>,
    /// The Roles, ClusterRoles and bindings in `store`, which RBAC authorizes from.
    pub(crate) rbac: Arc<crate::rbac::RbacCache>,
    /// ServiceAccount tokens: the issuer, audiences, signing and verification keys and the
    /// cluster CA; `None` when the server issues none (TokenRequest answers "not supported").
    pub service_accounts: Option<Arc<crate::serviceaccount::ServiceAccounts>>,
    /// The audit log; `None` writes none.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// The bounds on requests in flight; `None` bounds nothing.
    pub fairness: Option<Arc<crate::fairness::Fairness>>,
    /// The nodes' summaries behind `metrics.k8s.io`, reused for a second.
    pub metrics_api: Arc<crate::metricsapi::SummaryCache>,
    /// Orders quota charges against status writes that release quota usage.
    pub(crate) quota_gate: crate::admission::quota::ChargeGate,
    /// Looks pod images' WIT imports up in the cluster's registry (admission).
    pub(crate) wit: Arc<crate::admission::wit::WitResolver>,
}

impl AppState {
    /// State over a store, accepting the given bearer tokens; it never shuts down (tests and
    /// in-process clients). `start` uses `with_shutdown` to end watches when it stops.
    pub fn new(store: Arc<dyn Store>, tokens: Vec<(String, UserInfo)>) -> Self {
        static NEVER: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> =
            std::sync::OnceLock::new();
        let shutdown = NEVER
            .get_or_init(|| tokio::sync::watch::channel(false).0)
            .subscribe();
        AppState {
            store,
            tokens,
            token_authenticators: Vec::new(),
            started: Instant::now(),
            metrics: Arc::new(crate::metrics::ApiMetrics::new()),
            shutdown,
            authorizer: Arc::new(AllowAuthenticated),
            network: crate::alloc::NetworkConfig::default(),
            crds: Arc::new(crate::crd::CrdRegistry::new()),
            rbac: Arc::new(crate::rbac::RbacCache::new()),
            service_accounts: None,
            audit: None,
            fairness: None,
            metrics_api: Arc::new(crate::metricsapi::SummaryCache::new()),
            quota_gate: crate::admission::quota::ChargeGate::default(),
            wit: Arc::default(),
        }
    }

    /// The same state, writing the audit log with `auditor`.
    pub fn with_audit(mut self, auditor: Arc<crate::audit::Auditor>) -> Self {
        self.audit = Some(auditor);
        self
    }

    /// The same state, bounding requests in flight with `fairness`.
    pub fn with_fairness(mut self, fairness: Arc<crate::fairness::Fairness>) -> Self {
        self.fairness = Some(fairness);
        self
    }

    /// The same state with other Service and pod address ranges.
    pub fn with_network(mut self, network: crate::alloc::NetworkConfig) -> Self {
        self.network = network;
        self
    }

    /// The same state, also asking `authenticator` about bearer tokens `tokens` does not know.
    pub fn with_token_authenticator(mut self, authenticator: Arc<dyn TokenAuthenticator>) -> Self {
        self.token_authenticators.push(authenticator);
        self
    }

    /// The same state, issuing and checking ServiceAccount tokens with `service_accounts`.
    pub fn with_service_accounts(
        mut self,
        service_accounts: Arc<crate::serviceaccount::ServiceAccounts>,
    ) -> Self {
        self.service_accounts = Some(service_accounts);
        self
    }

    /// The same state with another authorizer (RBAC, or a test's).
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// The same state, with watches ending when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group Kubernetes' authorizers let do anything.
pub const MASTERS: &str = "system:masters";

/// An authenticated caller, as Kubernetes' `user.Info`: a name, a uid (may be empty), the
/// groups it belongs to and extra attributes (a ServiceAccount token's
/// `authentication.kubernetes.io/pod-name`, `pod-uid`, `node-name`, `credential-id`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user in the given groups (and `system:authenticated`).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.into(),
            groups,
            ..UserInfo::default()
        }
    }

    /// The cluster administrator (`system:masters`), whom the server's admin token authenticates.
    pub fn admin(name: impl Into<String>) -> Self {
        UserInfo::new(name, &[MASTERS, AUTHENTICATED])
    }

    /// Whether the user is in a group.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A user known by name only is in `system:authenticated` and no other group.
impl From<&str> for UserInfo {
    fn from(name: &str) -> Self {
        UserInfo::new(name, &[])
    }
}

impl From<String> for UserInfo {
    fn from(name: String) -> Self {
        UserInfo::new(name, &[])
    }
}

/// Authenticates bearer tokens of one kind (ServiceAccount JWTs, bootstrap tokens), as one of
/// Kubernetes' token authenticators in its union: `None` means "not mine, or not valid" and the
/// next one is asked; a request no authenticator accepts is a 401.
pub trait TokenAuthenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        state: &'a AppState,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<UserInfo>>;
}

/// The attributes of one request, as Kubernetes' `authorizer.Attributes`: a resource request
/// (`path` is `None`) or a non-resource request (`path` is the URL path, `resource` is empty).
#[derive(Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    /// Kubernetes' verb: get, list, watch, create, update, patch, delete, deletecollection (or
    /// any verb an access review asks about).
    pub verb: &'a str,
    pub group: &'a str,
    /// The resource's plural name.
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The URL path of a non-resource request (`/api`, `/healthz`, `/openapi/v2`).
    pub path: Option<&'a str>,
    /// The raw `fieldSelector` of a list or watch, as Kubernetes' authorizers see it since
    /// 1.31 (the Node authorizer lets nodes list only TLS Secrets: `type=kubernetes.io/tls`).
    pub field_selector: Option<&'a str>,
}

impl Attributes<'_> {
    /// Whether this is a request for a resource (not a non-resource URL).
    pub fn is_resource_request(&self) -> bool {
        self.path.is_none()
    }
}

/// An authorizer's answer, as Kubernetes' `authorizer.Decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused outright, with the reason the client sees after Kubernetes' message (may be
    /// empty); no later authorizer in a union is asked.
    Deny(String),
    /// Neither allowed nor refused, with a reason (may be empty): a union asks the next
    /// authorizer; when none allows, the request is refused with the reasons joined.
    NoOpinion(String),
}

/// Decides whether a request may proceed.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision;

    /// What `user` may do in `namespace`, as Kubernetes' `RuleResolver` lists it for a
    /// SelfSubjectRulesReview; `None` when the policy cannot enumerate its rules (the review
    /// then answers `incomplete`).
    fn rules(&self, _user: &UserInfo, _namespace: &str) -> Option<Rules> {
        None
    }
}

/// The rules of one user, as a SelfSubjectRulesReview reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub resource: Vec<ResourceRule>,
    pub non_resource: Vec<NonResourceRule>,
}

/// Verbs allowed on resources (`*` for any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// Verbs allowed on non-resource URLs (`*` for any; a trailing `*` is a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// Every authenticated user may do everything (the server's policy until RBAC).
#[derive(Debug, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        if attributes
            .user
            .groups
            .iter()
            .any(|g| g == "system:authenticated")
        {
            Decision::Allow
        } else {
            Decision::Deny("the user is not authenticated".into())
        }
    }

    /// Everything for an authenticated user, nothing otherwise.
    fn rules(&self, user: &UserInfo, _namespace: &str) -> Option<Rules> {
        if !user.in_group(AUTHENTICATED) {
            return Some(Rules::default());
        }
        let all = || vec!["*".to_string()];
        Some(Rules {
            resource: vec![ResourceRule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                resource_names: Vec::new(),
            }],
            non_resource: vec![NonResourceRule {
                verbs: all(),
                non_resource_urls: all(),
            }],
        })
    }
}
