//! Lists larger than one store page: a whole list is streamed a page at a time at one revision,
//! pages with a limit stay consistent across writes, and a watch's initial state is complete.

use super::*;

const CMS: &str = "/api/v1/namespaces/default/configmaps";
/// More than two store pages (`resource::STORE_PAGE` is 500).
const COUNT: usize = 1_100;

async fn filled() -> Api {
    let api = Api::new().await;
    for i in 0..COUNT {
        let labels = if i % 7 == 0 {
            json!({"seventh": "yes"})
        } else {
            json!({})
        };
        let (code, body) = api
            .call(Method::POST, CMS, Some(cm(&format!("cm-{i:05}"), labels)))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    api
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("a name").to_string())
        .collect()
}

fn expected(filter: impl Fn(usize) -> bool) -> Vec<String> {
    (0..COUNT)
        .filter(|i| filter(*i))
        .map(|i| format!("cm-{i:05}"))
        .collect()
}

/// A GET answered as a body of several chunks: the chunks' count and the JSON.
async fn get_chunked(api: &Api, path: &str) -> (usize, Value) {
    let resp = api.request(get(path)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut chunks = 0;
    let mut bytes = Vec::new();
    let mut body = resp.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.expect("a chunk"));
        chunks += 1;
    }
    (chunks, serde_json::from_slice(&bytes).expect("a JSON list"))
}

#[tokio::test]
async fn a_whole_list_is_streamed_page_by_page_at_one_revision() {
    let api = filled().await;
    let (chunks, list) = get_chunked(&api, CMS).await;
    assert!(chunks > 2, "{chunks} chunks: the list was not streamed");
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(names(&list), expected(|_| true));
    let rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("the list's resourceVersion");
    for item in list["items"].as_array().unwrap() {
        let item_rv: u64 = item["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("each item's resourceVersion");
        assert!(item_rv <= rv);
        assert!(item.get("kind").is_none(), "items carry no kind: {item}");
    }
    // A label selector across pages.
    let (_, some) = get_chunked(&api, &format!("{CMS}?labelSelector=seventh%3Dyes")).await;
    assert_eq!(names(&some), expected(|i| i % 7 == 0));
    // A selector no item passes: an empty list, still valid JSON.
    let (_, none) = get_chunked(&api, &format!("{CMS}?labelSelector=absent%3Dyes")).await;
    assert_eq!(names(&none), Vec::<String>::new());
}

#[tokio::test]
async fn pages_with_a_limit_see_one_revision_across_writes() {
    let api = filled().await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut writes = 0;
    loop {
        let path = match &token {
            Some(t) => format!("{CMS}?limit=300&continue={t}"),
            None => format!("{CMS}?limit=300"),
        };
        let (code, page) = api.call(Method::GET, &path, None).await;
        assert_eq!(code, 200, "{page}");
        seen.extend(names(&page));
        // Between pages: one create, one delete and one update, which later pages must not
        // show (nor count twice).
        let n = writes;
        writes += 1;
        api.call(Method::POST, CMS, Some(cm(&format!("new-{n}"), json!({}))))
            .await;
        api.call(
            Method::DELETE,
            &format!("{CMS}/cm-{:05}", COUNT - 1 - n),
            None,
        )
        .await;
        api.call(
            Method::PUT,
            &format!("{CMS}/cm-{:05}", 600 + n),
            Some(cm(&format!("cm-{:05}", 600 + n), json!({"updated": "yes"}))),
        )
        .await;
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(writes, COUNT.div_ceil(300));
    assert_eq!(seen, expected(|_| true));
}

#[tokio::test]
async fn a_watch_from_zero_starts_with_every_object() {
    let api = filled().await;
    let mut events = Box::pin(
        api.watch(&format!("{CMS}?watch=true&resourceVersion=0"))
            .await,
    );
    let mut added = Vec::new();
    while added.len() < COUNT {
        let event = events.next().await.expect("an event");
        assert_eq!(event["type"], "ADDED", "{event}");
        added.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(added, expected(|_| true));
    api.call(Method::POST, CMS, Some(cm("after", json!({}))))
        .await;
    let event = events.next().await.expect("an event");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "after");
}
