//! The node endpoint's callers, as kubelet's `--authentication-token-webhook`: a presented bearer
//! token is checked with a TokenReview on the API server, answers cached (allowed 2 minutes,
//! refused 30 seconds, kubelet's defaults) so the Service router's hot path pays no round trip per
//! request. Only two callers get through: the API server (`kube-apiserver-kubelet-client`) on
//! every path, and other nodes on `/endpoints/...`, with a token of the `kube-system/skiff-node`
//! ServiceAccount bound to their Node for the audience `skiff.dev/node-endpoint`. Any other
//! user, the cluster admin included, is refused. The token this node presents to the others
//! ([`OutgoingToken`]) is asked for with a TokenRequest and renewed at 80% of its life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use skiff_meta::names::{
    KUBELET_CLIENT_USER, NODE_ENDPOINT_AUDIENCE, NODE_ENDPOINT_SERVICE_ACCOUNT,
};

/// How long an allowed token stays allowed without asking again (kubelet's
/// `authentication.webhook.cacheTTL`).
pub(crate) const ALLOWED_TTL: Duration = Duration::from_secs(120);
/// How long a refused token stays refused without asking again.
pub(crate) const REFUSED_TTL: Duration = Duration::from_secs(30);
/// The most tokens remembered; past it, expired entries go, then everything.
const CACHE_CAPACITY: usize = 4096;
/// The lifetime asked for the node's own endpoint token.
const OUTGOING_TOKEN_SECONDS: i64 = 3600;

/// The extra attribute a node-bound ServiceAccount token carries.
const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// What a TokenReview said about a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reviewed {
    pub(crate) authenticated: bool,
    pub(crate) user: String,
    pub(crate) extra: HashMap<String, Vec<String>>,
    pub(crate) audiences: Vec<String>,
}

/// Who called the node endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The API server (logs, proxy, exec).
    ApiServer,
    /// Another node's Service router, on `/endpoints`.
    Node(String),
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed(Caller),
    /// No valid token: 401.
    Unauthorized,
    /// A valid token of a caller not allowed here: 403 with the reason.
    Forbidden(String),
}

/// Asks the API server about a token (a seam, so the cache is tested without a server).
pub(crate) trait Reviewer: Send + Sync {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audiences: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<Reviewed, String>>;
}

/// The TokenReview API.
pub(crate) struct ApiReviewer(pub(crate) kube::Client);

impl Reviewer for ApiReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audiences: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<Reviewed, String>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.0.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: audiences.map(|a| a.iter().map(|s| s.to_string()).collect()),
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status.unwrap_or_default();
            let user = status.user.unwrap_or_default();
            Ok(Reviewed {
                authenticated: status.authenticated.unwrap_or(false),
                user: user.username.unwrap_or_default(),
                extra: user.extra.unwrap_or_default().into_iter().collect(),
                audiences: status.audiences.unwrap_or_default(),
            })
        })
    }
}

/// How the node endpoint authenticates its callers.
#[derive(Clone)]
pub enum EndpointAuth {
    /// Every path accepts one shared bearer token (nodes built by parts in one process, whose
    /// API server has no TokenRequest to give them their own).
    Static(Arc<str>),
    /// TokenReview on the API server, cached; the node's own calls to other nodes carry a
    /// TokenRequest token of `kube-system/skiff-node` bound to its Node.
    Review,
}

impl std::fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAuth::Static(_) => f.write_str("Static"),
            EndpointAuth::Review => f.write_str("Review"),
        }
    }
}

type Cache = HashMap<(String, bool), (Instant, Verdict)>;

/// Decides, per request, whether the caller's token may use a path.
pub(crate) struct Authenticator {
    mode: Mode,
    cache: Mutex<Cache>,
}

enum Mode {
    Static(Arc<str>),
    Review(Arc<dyn Reviewer>),
}

impl Authenticator {
    pub(crate) fn new(auth: &EndpointAuth, client: kube::Client) -> Authenticator {
        let mode = match auth {
            EndpointAuth::Static(token) => Mode::Static(token.clone()),
            EndpointAuth::Review => Mode::Review(Arc::new(ApiReviewer(client))),
        };
        Authenticator {
            mode,
            cache: Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    fn with_reviewer(reviewer: Arc<dyn Reviewer>) -> Authenticator {
        Authenticator {
            mode: Mode::Review(reviewer),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `token` may call a path (`endpoints`: an `/endpoints/...` path).
    pub(crate) async fn check(&self, token: &str, endpoints: bool) -> Verdict {
        let reviewer = match &self.mode {
            Mode::Static(known) => {
                return if constant_time_eq(token.as_bytes(), known.as_bytes()) {
                    Verdict::Allowed(Caller::ApiServer)
                } else {
                    Verdict::Unauthorized
                };
            }
            Mode::Review(r) => r,
        };
        let key = (token.to_string(), endpoints);
        let now = Instant::now();
        if let Some((until, verdict)) = self.lock().get(&key)
            && *until > now
        {
            return verdict.clone();
        }
        let audiences = [NODE_ENDPOINT_AUDIENCE];
        let asked = if endpoints {
            Some(&audiences[..])
        } else {
            None
        };
        let verdict = match reviewer.review(token, asked).await {
            Ok(reviewed) => decide(&reviewed, endpoints),
            Err(e) => {
                // Not remembered: the next request asks again.
                tracing::warn!(error = %e, "cannot review a node endpoint caller's token");
                return Verdict::Unauthorized;
            }
        };
        let ttl = match verdict {
            Verdict::Allowed(_) => ALLOWED_TTL,
            _ => REFUSED_TTL,
        };
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (until, _)| *until > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (now + ttl, verdict.clone()));
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node endpoint's rule over a reviewed token.
pub(crate) fn decide(reviewed: &Reviewed, endpoints: bool) -> Verdict {
    if !reviewed.authenticated {
        return Verdict::Unauthorized;
    }
    if reviewed.user == KUBELET_CLIENT_USER {
        return Verdict::Allowed(Caller::ApiServer);
    }
    let node_sa = format!("system:serviceaccount:kube-system:{NODE_ENDPOINT_SERVICE_ACCOUNT}");
    if endpoints
        && reviewed.user == node_sa
        && reviewed
            .audiences
            .iter()
            .any(|a| a == NODE_ENDPOINT_AUDIENCE)
        && let Some(node) = reviewed
            .extra
            .get(NODE_NAME_EXTRA)
            .and_then(|v| v.first())
            .filter(|n| !n.is_empty())
    {
        return Verdict::Allowed(Caller::Node(node.clone()));
    }
    let what = if endpoints { "endpoints" } else { "proxy" };
    Verdict::Forbidden(format!(
        "Forbidden (user={}, verb=get, resource=nodes, subresource={what})",
        reviewed.user
    ))
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// The bearer token this node presents to other nodes' `/endpoints` (empty until it has one).
#[derive(Clone, Default)]
pub(crate) struct OutgoingToken(Arc<ArcSwap<String>>);

impl From<Arc<str>> for OutgoingToken {
    fn from(token: Arc<str>) -> Self {
        OutgoingToken::fixed(&token)
    }
}

impl OutgoingToken {
    pub(crate) fn fixed(token: &str) -> OutgoingToken {
        OutgoingToken(Arc::new(ArcSwap::from_pointee(token.to_string())))
    }

    pub(crate) fn get(&self) -> Arc<String> {
        self.0.load_full()
    }

    fn set(&self, token: String) {
        self.0.store(Arc::new(token));
    }
}

/// Keeps `token` a current TokenRequest token of `kube-system/skiff-node` bound to Node `node`
/// (uid `uid`), for the node-endpoint audience: renewed at 80% of its life, retried every few
/// seconds while refused. Runs until `shutdown`.
pub(crate) async fn keep_outgoing_token(
    client: kube::Client,
    node: String,
    uid: String,
    token: OutgoingToken,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let api: Api<ServiceAccount> = Api::namespaced(client, "kube-system");
    loop {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![NODE_ENDPOINT_AUDIENCE.to_string()],
                expiration_seconds: Some(OUTGOING_TOKEN_SECONDS),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    uid: Some(uid.clone()),
                }),
            },
            ..TokenRequest::default()
        };
        let wait = match api
            .create_token_request(
                NODE_ENDPOINT_SERVICE_ACCOUNT,
                &PostParams::default(),
                &request,
            )
            .await
        {
            Ok(answer) => match answer.status {
                Some(status) if !status.token.is_empty() => {
                    token.set(status.token);
                    let now = jiff::Timestamp::now();
                    let until = status.expiration_timestamp.0;
                    let life = until.duration_since(now).as_secs().max(0) as u64;
                    Duration::from_secs(life * 4 / 5).max(Duration::from_secs(5))
                }
                _ => {
                    tracing::warn!("the node endpoint token request was answered without a token");
                    Duration::from_secs(5)
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot get the node endpoint token");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        calls: AtomicUsize,
        answers: HashMap<&'static str, Reviewed>,
    }

    impl Reviewer for Fake {
        fn review<'a>(
            &'a self,
            token: &'a str,
            _audiences: Option<&'a [&'a str]>,
        ) -> BoxFuture<'a, Result<Reviewed, String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answers.get(token).cloned().unwrap_or_default();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn reviewed(user: &str, node: Option<&str>, audiences: &[&str]) -> Reviewed {
        Reviewed {
            authenticated: true,
            user: user.into(),
            extra: node
                .map(|n| (NODE_NAME_EXTRA.to_string(), vec![n.to_string()]))
                .into_iter()
                .collect(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn only_the_api_server_and_bound_node_tokens_get_through() {
        let server = reviewed(KUBELET_CLIENT_USER, None, &[]);
        assert_eq!(decide(&server, false), Verdict::Allowed(Caller::ApiServer));
        assert_eq!(decide(&server, true), Verdict::Allowed(Caller::ApiServer));
        let node = reviewed(
            "system:serviceaccount:kube-system:skiff-node",
            Some("n2"),
            &[NODE_ENDPOINT_AUDIENCE],
        );
        assert_eq!(
            decide(&node, true),
            Verdict::Allowed(Caller::Node("n2".into()))
        );
        assert!(matches!(decide(&node, false), Verdict::Forbidden(_)));
        let unbound = reviewed(
            "system:serviceaccount:kube-system:skiff-node",
            None,
            &[NODE_ENDPOINT_AUDIENCE],
        );
        assert!(matches!(decide(&unbound, true), Verdict::Forbidden(_)));
        let other_audience = reviewed(
            "system:serviceaccount:kube-system:skiff-node",
            Some("n2"),
            &["https://kubernetes.default.svc"],
        );
        assert!(matches!(
            decide(&other_audience, true),
            Verdict::Forbidden(_)
        ));
        let admin = reviewed("admin", None, &[]);
        assert_eq!(
            decide(&admin, false),
            Verdict::Forbidden(
                "Forbidden (user=admin, verb=get, resource=nodes, subresource=proxy)".into()
            )
        );
        assert!(matches!(decide(&admin, true), Verdict::Forbidden(_)));
        assert_eq!(decide(&Reviewed::default(), true), Verdict::Unauthorized);
    }

    /// A second request with the same token is answered from the cache, allowed or refused.
    #[tokio::test]
    async fn answers_are_cached() {
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            answers: [
                ("server", reviewed(KUBELET_CLIENT_USER, None, &[])),
                ("admin", reviewed("admin", None, &[])),
            ]
            .into_iter()
            .collect(),
        });
        let auth = Authenticator::with_reviewer(fake.clone());
        for _ in 0..3 {
            assert_eq!(
                auth.check("server", false).await,
                Verdict::Allowed(Caller::ApiServer)
            );
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            assert!(matches!(
                auth.check("admin", false).await,
                Verdict::Forbidden(_)
            ));
            assert_eq!(auth.check("unknown", true).await, Verdict::Unauthorized);
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
        // The same token on the other kind of path is its own question.
        auth.check("server", true).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_static_token_is_compared_in_place() {
        let auth = Authenticator {
            mode: Mode::Static(Arc::from("t0ken")),
            cache: Mutex::new(HashMap::new()),
        };
        assert_eq!(
            auth.check("t0ken", true).await,
            Verdict::Allowed(Caller::ApiServer)
        );
        assert_eq!(auth.check("t0ke", false).await, Verdict::Unauthorized);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
