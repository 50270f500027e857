//! The review kinds: access and rules reviews answered by the authorizer, who-am-I and token
//! reviews from the token table, never stored, and 406 for a Table-only Accept.

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};
use skiff_api::{Attributes, Authorizer, Decision};

use super::{Api, TOKEN};

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const TOKENS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

fn review(kind: &str, spec: Value) -> Value {
    let group = if kind.ends_with("AccessReview") || kind.ends_with("RulesReview") {
        "authorization.k8s.io/v1"
    } else {
        "authentication.k8s.io/v1"
    };
    json!({"apiVersion": group, "kind": kind, "metadata": {}, "spec": spec})
}

/// Allows only reading pods in namespace `default`, and cannot list its rules.
struct ReadPodsInDefault;

impl Authorizer for ReadPodsInDefault {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        let reviews = a.group == "authorization.k8s.io";
        if reviews
            || (a.resource == "pods"
                && a.namespace == Some("default")
                && matches!(a.verb, "get" | "list"))
            || a.resource == "namespaces"
        {
            Decision::Allow
        } else {
            Decision::Deny("only pods in default may be read".into())
        }
    }
}

#[tokio::test]
async fn access_reviews_ask_the_authorizer_about_the_caller_or_the_named_subject() {
    let api = Api::with_authorizer(Arc::new(ReadPodsInDefault)).await;
    let ask = |verb: &str, ns: &str| {
        review(
            "SelfSubjectAccessReview",
            json!({"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": ns}}),
        )
    };
    let (code, body) = api
        .call(Method::POST, SSAR, Some(ask("list", "default")))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["allowed"], true, "{body}");
    assert_eq!(body["kind"], "SelfSubjectAccessReview");
    let (_, body) = api
        .call(Method::POST, SSAR, Some(ask("delete", "default")))
        .await;
    assert_eq!(body["status"]["allowed"], false, "{body}");
    assert_eq!(body["status"]["reason"], "only pods in default may be read");

    // Never stored: there is nothing to get or list.
    let (code, body) = api.call(Method::GET, SSAR, None).await;
    assert_eq!(code, 405, "{body}");

    let (code, body) = api
        .call(
            Method::POST,
            SAR,
            Some(review(
                "SubjectAccessReview",
                json!({"user": "jane", "groups": ["dev"],
                    "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}),
            )),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["allowed"], true, "{body}");

    let (code, body) = api
        .call(
            Method::POST,
            SAR,
            Some(review(
                "SubjectAccessReview",
                json!({"resourceAttributes": {"verb": "get", "resource": "pods"}}),
            )),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at least one of user or group must be specified"),
        "{body}"
    );
    let (code, body) = api
        .call(
            Method::POST,
            SSAR,
            Some(review("SelfSubjectAccessReview", json!({}))),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    let local = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    let (code, body) = api
        .call(
            Method::POST,
            local,
            Some(review(
                "LocalSubjectAccessReview",
                json!({"user": "jane", "resourceAttributes": {"verb": "get", "resource": "pods",
                    "namespace": "other"}}),
            )),
        )
        .await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn rules_reviews_list_what_the_authorizer_allows_or_say_they_are_incomplete() {
    let api = Api::new().await;
    let ask = review("SelfSubjectRulesReview", json!({"namespace": "default"}));
    let (code, body) = api.call(Method::POST, SSRR, Some(ask.clone())).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["incomplete"], false);
    assert_eq!(
        body["status"]["resourceRules"],
        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
    );
    assert_eq!(
        body["status"]["nonResourceRules"],
        json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}])
    );

    let api = Api::with_authorizer(Arc::new(ReadPodsInDefault)).await;
    let (code, body) = api.call(Method::POST, SSRR, Some(ask)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["incomplete"], true, "{body}");
    assert!(body["status"]["evaluationError"].is_string());
}

#[tokio::test]
async fn who_am_i_and_token_reviews_answer_from_the_token_table() {
    let api = Api::new().await;
    let (code, body) = api
        .call(
            Method::POST,
            WHOAMI,
            Some(review("SelfSubjectReview", json!(null))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["userInfo"]["username"], "admin");
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    let (code, body) = api
        .call(
            Method::POST,
            TOKENS,
            Some(review("TokenReview", json!({"token": TOKEN}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["authenticated"], true);
    assert_eq!(body["status"]["user"]["username"], "admin");
    let (_, body) = api
        .call(
            Method::POST,
            TOKENS,
            Some(review("TokenReview", json!({"token": "nope"}))),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false, "{body}");
    let (_, body) = api
        .call(
            Method::POST,
            TOKENS,
            Some(review(
                "TokenReview",
                json!({"token": TOKEN, "audiences": ["vault"]}),
            )),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false, "{body}");
}

#[tokio::test]
async fn a_table_request_for_a_review_is_not_acceptable_unless_json_is_a_fallback() {
    let api = Api::new().await;
    let body = review(
        "SelfSubjectAccessReview",
        json!({"resourceAttributes": {"verb": "get", "resource": "pods"}}),
    );
    let (code, status) = api
        .call_with(
            Method::POST,
            SSAR,
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            Some(body.clone()),
        )
        .await;
    assert_eq!(code, 406, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotAcceptable");
    assert_eq!(
        status["message"],
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    let (code, answer) = api
        .call_with(
            Method::POST,
            SSAR,
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            Some(body),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "SelfSubjectAccessReview");
    assert_eq!(answer["status"]["allowed"], true);
}
