//! The node's `GET /exec/{ns}/{pod}/{container}?command=..&stdin=..&stdout=..&stderr=..&tty=..`:
//! Kubernetes' remotecommand over a websocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, and
//! `v4.base64.channel.k8s.io` in text frames). Each binary frame starts with its channel:
//! 0 stdin, 1 stdout, 2 stderr, 3 the final `Status` (Success, or Failure with reason
//! `NonZeroExitCode` and the code in `details.causes`), 4 a terminal resize
//! (`{"Width":..,"Height":..}`), and in v5 255 closing a stream (stdin). The process comes from
//! `PodSandbox::exec`; a runtime that cannot exec answers on channel 3.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use skiff_runtime::{ExecProcess, ExecRequest, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::listener::{ListenerState, text};

/// The subprotocols served, the preferred first. In the base64 one every frame is text: the
/// channel as a digit, then the data in base64.
pub(crate) const PROTOCOLS: [&str; 3] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the query asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn options(query: &[(String, String)]) -> Options {
    let flag = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .is_some_and(|(_, v)| matches!(v.as_str(), "true" | "1" | "True"))
    };
    Options {
        command: query
            .iter()
            .filter(|(n, _)| n == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        tty: flag("tty"),
    }
}

/// The `Status` sent on the error channel when the command ended (or could not start).
fn status(result: &Result<i32, String>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    Message::Binary(Bytes::from(out))
}

/// The exec endpoint.
pub(crate) async fn exec(
    State(state): State<ListenerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols(PROTOCOLS);
    let Some(protocol) = ws.selected_protocol().and_then(|p| p.to_str().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "no supported websocket subprotocol was requested: this node speaks {}",
                PROTOCOLS.join(", ")
            ),
        );
    };
    let v5 = protocol == PROTOCOLS[0];
    let base64 = protocol == PROTOCOLS[2];
    let opts = options(&query);
    if opts.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )
    };
    let Some(sb) = state.ctx.sandbox(&ns, &pod) else {
        return not_found();
    };
    let req = ExecRequest {
        command: opts.command.clone(),
        stdin: opts.stdin,
        tty: opts.tty,
    };
    let process = match sb.exec(&container, req).await {
        Ok(p) => Ok(p),
        Err(skiff_runtime::Error::NotSupported(msg)) => Err(msg),
        Err(
            skiff_runtime::Error::UnknownContainer { .. }
            | skiff_runtime::Error::ContainerState { .. },
        ) => return not_found(),
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("error executing command in container {container:?}: {e}"),
            );
        }
    };
    let command = opts.command.clone();
    ws.on_upgrade(move |socket| async move {
        serve(socket, Framing { v5, base64 }, opts, process).await;
        tracing::debug!(%ns, %pod, %container, ?command, "exec ended");
    })
}

/// How the negotiated subprotocol frames the channels.
#[derive(Debug, Clone, Copy, Default)]
struct Framing {
    /// 255 closes a stream.
    v5: bool,
    /// Text frames: the channel as a digit, the data in base64.
    base64: bool,
}

impl Framing {
    /// The frame to send (`msg` as `frame` builds it).
    fn outgoing(self, msg: Message) -> Message {
        use base64::Engine as _;
        match msg {
            Message::Binary(data) if self.base64 && !data.is_empty() => {
                let mut text = char::from(b'0' + data[0] % 10).to_string();
                text.push_str(&base64::engine::general_purpose::STANDARD.encode(&data[1..]));
                Message::Text(text.into())
            }
            other => other,
        }
    }

    /// A received frame's channel byte and data, in the binary form.
    fn incoming(self, msg: Message) -> Option<Bytes> {
        use base64::Engine as _;
        match msg {
            Message::Binary(data) if !self.base64 => Some(data),
            Message::Text(text) if self.base64 => {
                let text = text.as_str();
                let channel = text.bytes().next()?.checked_sub(b'0')?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&text[1..])
                    .ok()?;
                let mut out = vec![channel];
                out.extend_from_slice(&data);
                Some(Bytes::from(out))
            }
            _ => None,
        }
    }
}

/// Pumps the channels of one exec until the command ended (then sends its Status and closes) or
/// the client went away.
async fn serve(
    socket: WebSocket,
    framing: Framing,
    opts: Options,
    process: Result<ExecProcess, String>,
) {
    let v5 = framing.v5;
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(framing.outgoing(msg)).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    });
    let result = match process {
        Err(msg) => Err(msg),
        Ok(process) => {
            let ExecProcess {
                stdin,
                stdout,
                stderr,
                resize,
                exit,
            } = process;
            let stdin = if opts.stdin { stdin } else { None };
            let outputs = async {
                tokio::join!(
                    copy_out(stdout, STDOUT, opts.stdout || opts.tty, tx.clone()),
                    copy_out(stderr, STDERR, opts.stderr, tx.clone()),
                );
                exit.await.map_err(|e| e.to_string())
            };
            let input = async move {
                let mut stdin = stdin;
                while let Some(Ok(msg)) = source.next().await {
                    if let Message::Close(_) = msg {
                        break;
                    }
                    let Some(data) = framing.incoming(msg) else {
                        continue;
                    };
                    match data.first().copied() {
                        Some(STDIN) => {
                            if let Some(w) = stdin.as_mut()
                                && (w.write_all(&data[1..]).await.is_err()
                                    || w.flush().await.is_err())
                            {
                                stdin = None;
                            }
                        }
                        Some(RESIZE) => {
                            if let (Some(tx), Some(size)) = (resize.as_ref(), terminal(&data[1..]))
                            {
                                let _ = tx.try_send(size);
                            }
                        }
                        Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
                            if let Some(mut w) = stdin.take() {
                                let _ = w.shutdown().await;
                            }
                        }
                        _ => {}
                    }
                }
            };
            tokio::select! {
                result = outputs => result,
                () = input => {
                    // The client went away: the process keeps its own course.
                    writer.abort();
                    return;
                }
            }
        }
    };
    let status = serde_json::to_vec(&status(&result)).unwrap_or_default();
    let _ = tx.send(frame(ERROR, &status)).await;
    drop(tx);
    let _ = writer.await;
}

fn terminal(data: &[u8]) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    Some(TerminalSize {
        width: dim("Width")?,
        height: dim("Height")?,
    })
}

/// Sends what `from` reads on `channel` (or drops it when the client did not ask for it).
async fn copy_out(
    from: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    channel: u8,
    wanted: bool,
    tx: mpsc::Sender<Message>,
) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if wanted => {
                if tx.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_tungstenite::tungstenite::Message as Client;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    /// Serves one exec of `process` on a socket and runs a client that sends `input` frames;
    /// returns the frames it received until the close.
    async fn run(
        process: Result<ExecProcess, String>,
        opts: Options,
        protocol: &str,
        input: Vec<Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        let slot = Arc::new(Mutex::new(Some((process, opts))));
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move |ws: WebSocketUpgrade| {
                let slot = slot.clone();
                async move {
                    let ws = ws.protocols(PROTOCOLS);
                    let is = |i: usize| {
                        ws.selected_protocol()
                            .is_some_and(|p| p.as_bytes() == PROTOCOLS[i].as_bytes())
                    };
                    let framing = Framing {
                        v5: is(0),
                        base64: is(2),
                    };
                    let (process, opts) = slot.lock().unwrap().take().expect("one exec");
                    ws.on_upgrade(move |socket| serve(socket, framing, opts, process))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap();
        let base64 = protocol == PROTOCOLS[2];
        for frame in input {
            let msg = if base64 {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(&frame[1..]);
                Client::Text(format!("{}{b64}", frame[0]).into())
            } else {
                Client::Binary(frame.into())
            };
            ws.send(msg).await.unwrap();
        }
        let mut frames = Vec::new();
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Client::Binary(data) => frames.push(data.to_vec()),
                Client::Text(text) if base64 => {
                    use base64::Engine as _;
                    let text = text.as_str();
                    let mut frame = vec![text.as_bytes()[0] - b'0'];
                    frame.extend(
                        base64::engine::general_purpose::STANDARD
                            .decode(&text[1..])
                            .unwrap(),
                    );
                    frames.push(frame);
                }
                Client::Close(_) => break,
                _ => {}
            }
        }
        frames
    }

    fn on(frames: &[Vec<u8>], channel: u8) -> String {
        frames
            .iter()
            .filter(|f| f.first() == Some(&channel))
            .map(|f| String::from_utf8_lossy(&f[1..]).to_string())
            .collect()
    }

    #[tokio::test]
    async fn stdin_reaches_the_process_and_the_exit_code_comes_last() {
        // What is written to stdin comes back on stdout; closing stdin ends stdout.
        let (stdin, stdout) = tokio::io::duplex(1024);
        let process = ExecProcess {
            stdin: Some(Box::pin(stdin)),
            stdout: Some(Box::pin(stdout)),
            stderr: Some(Box::pin(std::io::Cursor::new(b"oops".to_vec()))),
            resize: None,
            exit: Box::pin(async { Ok(3) }),
        };
        let opts = Options {
            command: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let input = vec![b"\x00ping".to_vec(), vec![CLOSE, STDIN]];
        let frames = run(Ok(process), opts, PROTOCOLS[0], input).await;
        check_echo(&frames);
    }

    #[tokio::test]
    async fn the_base64_protocol_frames_each_channel_as_text() {
        // v4 has no stream close: the process's stdout ends on its own after the input.
        let (stdin, stdout) = tokio::io::duplex(1024);
        let stdout = tokio::io::AsyncReadExt::take(stdout, 4);
        let process = ExecProcess {
            stdin: Some(Box::pin(stdin)),
            stdout: Some(Box::pin(stdout)),
            stderr: Some(Box::pin(std::io::Cursor::new(b"oops".to_vec()))),
            resize: None,
            exit: Box::pin(async { Ok(3) }),
        };
        let opts = Options {
            command: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let frames = run(Ok(process), opts, PROTOCOLS[2], vec![b"\x00ping".to_vec()]).await;
        check_echo(&frames);
    }

    fn check_echo(frames: &[Vec<u8>]) {
        assert_eq!(on(frames, STDOUT), "ping");
        assert_eq!(on(frames, STDERR), "oops");
        let last = frames.last().expect("a status");
        assert_eq!(last[0], ERROR, "the status is the last frame");
        let status: Value = serde_json::from_slice(&last[1..]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn a_runtime_without_exec_answers_on_the_error_channel() {
        let opts = Options {
            command: vec!["date".into()],
            stdout: true,
            ..Options::default()
        };
        let frames = run(
            Err("this runtime cannot exec".into()),
            opts,
            PROTOCOLS[1],
            vec![],
        )
        .await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        let status: Value = serde_json::from_slice(&frames[0][1..]).unwrap();
        assert_eq!(frames[0][0], ERROR);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["message"], "this runtime cannot exec");
    }

    #[test]
    fn the_query_is_read_with_repeated_commands() {
        let q: Vec<(String, String)> = [
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "true"),
            ("stdin", "false"),
            ("tty", "1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let o = options(&q);
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdout && o.tty && !o.stdin && !o.stderr);
    }

    #[test]
    fn the_status_carries_the_exit_code_as_kubectl_reads_it() {
        assert_eq!(status(&Ok(0))["status"], "Success");
        let s = status(&Ok(7));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "7");
        let s = status(&Err("cannot".into()));
        assert_eq!(s["message"], "cannot");
        assert_eq!(s["status"], "Failure");
    }

    #[test]
    fn resizes_are_parsed() {
        assert_eq!(
            terminal(br#"{"Width":80,"Height":24}"#),
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(terminal(b"{}"), None);
    }
}
