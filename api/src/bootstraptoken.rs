//! Bootstrap tokens (Kubernetes' `bootstrap.kubernetes.io/token` Secrets in `kube-system`): the
//! `TokenAuthenticator` for bearer tokens `ID.SECRET`, as kube-apiserver's
//! `--enable-bootstrap-token-auth`. A token authenticates as `system:bootstrap:ID` in
//! `system:bootstrappers`, its Secret's `auth-extra-groups` and `system:authenticated`; a token
//! whose Secret is missing, being deleted, expired or not meant for authentication is not valid.

use base64::Engine as _;
use serde_json::Value;

use crate::state::{AUTHENTICATED, AppState, TokenAuthenticator, UserInfo};

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The namespace bootstrap token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// The prefix of a bootstrap token Secret's name (then the token id).
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group every bootstrap token is in.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The prefix of a bootstrap token's user name (then the token id).
pub const USER_PREFIX: &str = "system:bootstrap:";

/// Authenticates bootstrap tokens against their Secrets in the store.
#[derive(Debug, Default)]
pub struct BootstrapTokens;

impl TokenAuthenticator for BootstrapTokens {
    fn authenticate<'a>(
        &'a self,
        state: &'a AppState,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<UserInfo>> {
        Box::pin(async move {
            let (id, secret) = parse_token(token)?;
            let kind = skiff_kinds::find("", "v1", "secrets")?;
            let key = crate::objects::key(kind, Some(NAMESPACE), &format!("{SECRET_PREFIX}{id}"));
            let kv = state.store.get(&key).await.ok()??;
            let obj = crate::objects::from_kv(kind, &kv).ok()?;
            match user_of_secret(&obj, id, secret, jiff::Timestamp::now()) {
                Ok(user) => Some(user),
                Err(why) => {
                    tracing::debug!(token_id = id, why, "bootstrap token refused");
                    None
                }
            }
        })
    }
}

/// Splits a bearer token of the form `[a-z0-9]{6}.[a-z0-9]{16}` into its id and secret.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A field of a Secret's `data` (base64) or, not yet converted, `stringData`.
fn field(secret: &Value, name: &str) -> Option<String> {
    if let Some(s) = secret
        .pointer(&format!("/data/{name}"))
        .and_then(Value::as_str)
    {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret
        .pointer(&format!("/stringData/{name}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Kubernetes' rule for a bootstrap token's extra group: `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The user a bootstrap token Secret gives for token `id.secret` at `now`, or why it gives none.
pub fn user_of_secret(
    obj: &Value,
    id: &str,
    secret: &str,
    now: jiff::Timestamp,
) -> Result<UserInfo, &'static str> {
    if obj.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err("the secret is not of type bootstrap.kubernetes.io/token");
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Err("the secret is being deleted");
    }
    if field(obj, "token-id").as_deref() != Some(id) {
        return Err("the secret's token-id does not match");
    }
    let stored = field(obj, "token-secret").unwrap_or_default();
    if !constant_time_eq(stored.as_bytes(), secret.as_bytes()) {
        return Err("the token secret does not match");
    }
    if let Some(expiration) = field(obj, "expiration") {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(at) if at > now => {}
            Ok(_) => return Err("the token has expired"),
            Err(_) => return Err("the token's expiration is not RFC3339"),
        }
    }
    if field(obj, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("the token is not meant for authentication");
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    if let Some(extra) = field(obj, "auth-extra-groups") {
        for group in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_extra_group(group) {
                return Err("an auth-extra-groups entry is not a system:bootstrappers: group");
            }
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_string());
            }
        }
    }
    groups.push(AUTHENTICATED.to_string());
    Ok(UserInfo {
        name: format!("{USER_PREFIX}{id}"),
        groups,
        ..UserInfo::default()
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
            "auth-extra-groups": b64(extra),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "data": data,
        })
    }

    fn now() -> jiff::Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn tokens_have_kubernetes_shape() {
        assert_eq!(
            parse_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef.x",
            "",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper_with_its_extra_groups() {
        let s = secret(
            Some("2030-01-02T00:00:00Z"),
            "system:bootstrappers:skiff:default-node-token",
        );
        let user = user_of_secret(&s, "abcdef", "0123456789abcdef", now()).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            vec![
                "system:bootstrappers",
                "system:bootstrappers:skiff:default-node-token",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn expired_wrong_or_unusable_tokens_are_refused() {
        let extra = "system:bootstrappers:skiff:default-node-token";
        let expired = secret(Some("2029-12-31T23:59:59Z"), extra);
        assert_eq!(
            user_of_secret(&expired, "abcdef", "0123456789abcdef", now()),
            Err("the token has expired")
        );
        let good = secret(None, extra);
        assert!(user_of_secret(&good, "abcdef", "0123456789abcdeX", now()).is_err());
        assert!(user_of_secret(&good, "abcdeg", "0123456789abcdef", now()).is_err());
        let mut opaque = good.clone();
        opaque["type"] = json!("Opaque");
        assert!(user_of_secret(&opaque, "abcdef", "0123456789abcdef", now()).is_err());
        let mut no_auth = good.clone();
        no_auth["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(user_of_secret(&no_auth, "abcdef", "0123456789abcdef", now()).is_err());
        let mut deleting = good.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2029-01-01T00:00:00Z");
        assert!(user_of_secret(&deleting, "abcdef", "0123456789abcdef", now()).is_err());
        let masters = secret(None, "system:masters");
        assert!(user_of_secret(&masters, "abcdef", "0123456789abcdef", now()).is_err());
    }
}
