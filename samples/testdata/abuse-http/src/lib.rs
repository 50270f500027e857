//! Test guest (`wasi:http/proxy`) for hostile-tenant tests, serving on port 8080:
//! - `/bomb` sends two concurrent requests to `http://localhost:8080/bomb` (itself: every request
//!   is a fresh instance, so the instances double at each level, a fork bomb), waits for both and
//!   answers 200 with the children's statuses;
//! - `/stall` never reads its request body and never answers (it waits an hour on the monotonic
//!   clock, using no CPU);
//! - every other path answers 200 `ok\n`.

use std::io::Write as _;

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, FutureIncomingResponse, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(AbuseHttp);

struct AbuseHttp;

impl wasip2::exports::http::incoming_handler::Guest for AbuseHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = path.split('?').next().unwrap_or("/").to_string();
        match path.as_str() {
            "/bomb" => {
                // Both children in flight before waiting for either.
                let children: Vec<Result<FutureIncomingResponse, String>> =
                    (0..2).map(|_| send("localhost:8080", "/bomb")).collect();
                let statuses: Vec<String> = children
                    .into_iter()
                    .map(|c| match c.and_then(wait) {
                        Ok(status) => status.to_string(),
                        Err(e) => e,
                    })
                    .collect();
                respond(response_out, 200, format!("bomb: {}\n", statuses.join(" ")).as_bytes());
            }
            "/stall" => {
                // Hold the request (and its unread body) without answering.
                let _body = request.consume();
                monotonic_clock::subscribe_duration(3600 * 1_000_000_000).block();
                respond(response_out, 200, b"stalled\n");
            }
            _ => respond(response_out, 200, b"ok\n"),
        }
    }
}

fn send(authority: &str, path: &str) -> Result<FutureIncomingResponse, String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "invalid authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "invalid path")?;
    outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))
}

fn wait(future: FutureIncomingResponse) -> Result<u16, String> {
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response already taken".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status())
}

fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
    ])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
