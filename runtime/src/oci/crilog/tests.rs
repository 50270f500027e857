//! CRI log parsing and the file reader: fragments joined, streams kept apart, tail, since,
//! and follow until the run ends.

use std::io::Write;

use futures::StreamExt;

use super::*;

#[test]
fn lines_parse_with_their_timestamp_stream_and_tag() {
    let l = parse_line("2026-12-06T01:42:07.688746247+00:00 stdout F hello world").unwrap();
    assert_eq!(
        l.timestamp,
        "2026-12-06T01:42:07.688746247Z"
            .parse::<Timestamp>()
            .unwrap()
    );
    assert_eq!(l.stream, LogStreamKind::Stdout);
    assert!(!l.partial);
    assert_eq!(l.text, "hello world");
    let l = parse_line("2026-12-06T01:42:07.1+01:00 stderr P  two  spaces").unwrap();
    assert_eq!(
        l.timestamp,
        "2026-12-06T00:42:07.1Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(l.stream, LogStreamKind::Stderr);
    assert!(l.partial);
    assert_eq!(l.text, " two  spaces");
    // An empty line has no text after the tag.
    assert_eq!(
        parse_line("2026-12-06T01:42:07Z stdout F").unwrap().text,
        ""
    );
    for bad in [
        "",
        "hello",
        "yesterday stdout F x",
        "2026-12-06T01:42:07Z stdin F x",
        "2026-12-06T01:42:07Z stdout X x",
    ] {
        assert_eq!(parse_line(bad), None, "{bad:?}");
    }
}

const LOG: &str = "\
2026-12-06T01:00:00.000000001Z stdout P hel
2026-12-06T01:00:00.000000002Z stderr F oops
2026-12-06T01:00:00.000000003Z stdout P lo
2026-12-06T01:00:01Z stdout F  world
not a cri line
2026-12-06T01:00:02Z stdout F second
2026-12-06T01:00:03Z stderr P unterminated
";

fn texts(lines: &[LogLine]) -> Vec<(LogStreamKind, String, bool)> {
    lines
        .iter()
        .map(|l| {
            (
                l.stream,
                String::from_utf8_lossy(&l.line).into_owned(),
                l.complete,
            )
        })
        .collect()
}

#[tokio::test]
async fn fragments_join_per_stream_and_tail_and_since_select() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.log");
    std::fs::write(&path, LOG).unwrap();
    let all: Vec<LogLine> = stream(&path, LogOptions::default(), std::future::pending())
        .collect()
        .await;
    use LogStreamKind::{Stderr, Stdout};
    assert_eq!(
        texts(&all),
        vec![
            (Stderr, "oops".to_string(), true),
            (Stdout, "hello world".to_string(), true),
            (Stdout, "second".to_string(), true),
            (Stderr, "unterminated".to_string(), false),
        ]
    );
    // A joined line carries its first fragment's time.
    assert_eq!(
        all[1].timestamp,
        "2026-12-06T01:00:00.000000001Z"
            .parse::<Timestamp>()
            .unwrap()
    );
    let tail = LogOptions {
        tail: Some(2),
        ..Default::default()
    };
    let last: Vec<LogLine> = stream(&path, tail, std::future::pending()).collect().await;
    assert_eq!(texts(&last)[0].1, "second");
    assert_eq!(last.len(), 2);
    let since = LogOptions {
        since: Some("2026-12-06T01:00:00.5Z".parse().unwrap()),
        ..Default::default()
    };
    let recent: Vec<LogLine> = stream(&path, since, std::future::pending()).collect().await;
    assert_eq!(
        texts(&recent).into_iter().map(|t| t.1).collect::<Vec<_>>(),
        vec!["second", "unterminated"]
    );
    // A file that is not there is an empty log.
    let none: Vec<LogLine> = stream(
        &dir.path().join("missing.log"),
        LogOptions::default(),
        std::future::pending(),
    )
    .collect()
    .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn follow_yields_appended_lines_and_ends_when_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.log");
    std::fs::write(&path, "2026-12-06T01:00:00Z stdout F first\n").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    let mut s = stream(&path, opts, async move {
        let _ = rx.await;
    });
    assert_eq!(&s.next().await.unwrap().line[..], b"first");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    // Half a line first: nothing comes out until its newline is written.
    f.write_all(b"2026-12-06T01:00:01Z stdout P sec").unwrap();
    f.flush().unwrap();
    let next = tokio::spawn(async move {
        let l = s.next().await;
        (l, s)
    });
    f.write_all(b"\n2026-12-06T01:00:01Z stdout F ond\n")
        .unwrap();
    f.flush().unwrap();
    let (l, mut s) = next.await.unwrap();
    assert_eq!(&l.unwrap().line[..], b"second");
    f.write_all(b"2026-12-06T01:00:02Z stderr F last\n")
        .unwrap();
    drop(f);
    tx.send(()).unwrap();
    let rest: Vec<LogLine> = (&mut s).collect().await;
    assert_eq!(
        texts(&rest),
        vec![(LogStreamKind::Stderr, "last".into(), true)]
    );
}
