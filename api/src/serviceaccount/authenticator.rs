//! The ServiceAccount token authenticator: a JWT signed by one of the keys, from this issuer,
//! for one of the audiences asked, not expired, whose ServiceAccount and bound object still
//! exist with the uids the token names (so a deleted pod's or ServiceAccount's token stops
//! working at once). Tokens that fail the signature never cost a store read.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::Value;

use super::jwt::{self, Claims, ObjectRef};
use super::{SERVICE_ACCOUNTS_GROUP, user_name};
use crate::objects;
use crate::state::{AUTHENTICATED, AppState, TokenAuthenticator, UserInfo};

/// The extra keys Kubernetes sets on a ServiceAccount token's user.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// Authenticates bearer tokens that are ServiceAccount JWTs for the API server's audiences.
#[derive(Debug, Default)]
pub struct ServiceAccountAuthenticator;

impl TokenAuthenticator for ServiceAccountAuthenticator {
    fn authenticate<'a>(
        &'a self,
        state: &'a AppState,
        token: &'a str,
    ) -> BoxFuture<'a, Option<UserInfo>> {
        Box::pin(async move {
            let sa = state.service_accounts.as_ref()?;
            match authenticate(state, token, &sa.audiences).await {
                Ok((user, _)) => Some(user),
                Err(reason) => {
                    tracing::debug!(%reason, "service-account token refused");
                    None
                }
            }
        })
    }
}

/// The user of a ServiceAccount token and the audiences (of those asked) it is for; the error
/// says why the token is not valid. `audiences` empty means the API server's.
pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
    audiences: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    let Some(sa) = state.service_accounts.as_ref() else {
        return Err("service-account tokens are not enabled".into());
    };
    if !jwt::looks_like_jwt(token) {
        return Err("not a JWT".into());
    }
    let claims = sa.verify(token)?;
    let wanted = if audiences.is_empty() {
        &sa.audiences[..]
    } else {
        audiences
    };
    let matched: Vec<String> = wanted
        .iter()
        .filter(|a| claims.aud.contains(a))
        .cloned()
        .collect();
    if matched.is_empty() {
        return Err(format!(
            "token audiences {:?} is invalid for the target audiences {:?}",
            claims.aud, wanted
        ));
    }
    check_objects(state, &claims).await?;
    Ok((user_of(&claims), matched))
}

/// The user a token's claims name.
pub(crate) fn user_of(claims: &Claims) -> UserInfo {
    let k = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
        extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &k.node {
        extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.name.clone()]);
        if !node.uid.is_empty() {
            extra.insert(EXTRA_NODE_UID.to_string(), vec![node.uid.clone()]);
        }
    }
    if !claims.jti.is_empty() {
        extra.insert(
            EXTRA_CREDENTIAL_ID.to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    UserInfo {
        name: user_name(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{}", k.namespace),
            AUTHENTICATED.to_string(),
        ],
        extra,
    }
}

/// The ServiceAccount and the bound object exist, with the token's uids, and were not deleted
/// more than the leeway ago.
async fn check_objects(state: &AppState, claims: &Claims) -> Result<(), String> {
    let k = &claims.kubernetes;
    if claims.sub != user_name(&k.namespace, &k.serviceaccount.name) {
        return Err("the token's subject does not match its service account".into());
    }
    live(
        state,
        "serviceaccounts",
        Some(&k.namespace),
        &k.serviceaccount,
    )
    .await?;
    if let Some(pod) = &k.pod {
        live(state, "pods", Some(&k.namespace), pod).await?;
    } else if let Some(secret) = &k.secret {
        live(state, "secrets", Some(&k.namespace), secret).await?;
    } else if let Some(node) = &k.node {
        live(state, "nodes", None, node).await?;
    }
    Ok(())
}

async fn live(
    state: &AppState,
    plural: &str,
    namespace: Option<&str>,
    reference: &ObjectRef,
) -> Result<(), String> {
    let kind = skiff_kinds::find("", "v1", plural).ok_or("unknown kind")?;
    let kv = state
        .store
        .get(&objects::key(kind, namespace, &reference.name))
        .await
        .map_err(|e| format!("reading {plural}: {e}"))?
        .ok_or_else(|| format!("{plural} \"{}\" not found", reference.name))?;
    let obj = objects::from_kv(kind, &kv).map_err(|e| e.message.clone())?;
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if uid != reference.uid {
        return Err(format!(
            "{plural} \"{}\": the token was issued for another object (uid {})",
            reference.name, reference.uid
        ));
    }
    if deleted_too_long_ago(&obj, jiff::Timestamp::now()) {
        return Err(format!(
            "{plural} \"{}\" was deleted; the token has been invalidated",
            reference.name
        ));
    }
    Ok(())
}

/// Kubernetes' rule (`pkg/serviceaccount/claims.go`): an object whose `deletionTimestamp` lies
/// more than the leeway (60 s) in the past invalidates its tokens. A pod's `deletionTimestamp`
/// is when its grace period ends, so a terminating pod keeps its identity for its shutdown.
fn deleted_too_long_ago(obj: &Value, now: jiff::Timestamp) -> bool {
    let Some(deleted) = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    else {
        return false;
    };
    match deleted.parse::<jiff::Timestamp>() {
        Ok(at) => at.as_second() < now.as_second() - jwt::LEEWAY_SECONDS as i64,
        // A timestamp the server did not write: treat the object as gone.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_terminating_object_keeps_its_tokens_until_the_leeway_after_its_deletion_time() {
        let now: jiff::Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let at = |t: &str| json!({"metadata": {"deletionTimestamp": t}});
        assert!(!deleted_too_long_ago(&json!({"metadata": {}}), now));
        // A pod in its grace period: deletionTimestamp is in the future.
        assert!(!deleted_too_long_ago(&at("2026-12-06T10:00:30Z"), now));
        assert!(!deleted_too_long_ago(&at("2026-12-06T09:59:30Z"), now));
        assert!(deleted_too_long_ago(&at("2026-12-06T09:58:59Z"), now));
        assert!(deleted_too_long_ago(&at("yesterday"), now));
    }
}
