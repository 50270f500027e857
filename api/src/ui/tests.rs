//! The console's static routes: content types, ETag revalidation, the CSP and the redirect.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::*;

async fn get(path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_index_is_html_with_a_strict_policy_and_revalidates() {
    let r = get("/ui/", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"));
    assert!(!csp.contains("unsafe"), "{csp}");
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
    let again = get("/ui/", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        get("/ui/", Some("\"other\"")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn modules_are_javascript_and_unknown_files_are_not_found() {
    for path in ["/ui/app.js", "/ui/vendor/preact.module.js"] {
        let r = get(path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS, "{path}");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    assert_eq!(
        get("/ui/../Cargo.toml", None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/ui/nope.js", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn ui_without_a_slash_redirects() {
    let r = get("/ui", None).await;
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()[header::LOCATION], "/ui/");
}

#[test]
fn the_import_map_is_found_and_every_asset_is_listed_once() {
    let index = std::str::from_utf8(ASSETS[0].body).unwrap();
    let map = inline_import_map(index).expect("index.html has an import map");
    assert!(map.contains("\"preact\""), "{map}");
    let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ASSETS.len());
}

#[test]
fn the_index_preloads_every_module() {
    let index = std::str::from_utf8(ASSETS[0].body).unwrap();
    for a in ASSETS.iter().filter(|a| a.content_type == JS) {
        let link = format!("<link rel=\"modulepreload\" href=\"{}\">", a.name);
        assert!(
            index.contains(&link),
            "index.html does not preload {}",
            a.name
        );
    }
}
