//! {{name}}: a `wasi:http` component. Every request gets "Hello from {{name}}!" and the path it
//! asked for.

use std::io::Write as _;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(App);

struct App;

impl wasip2::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let body = format!("Hello from {{name}}! You asked for {path}\n");
        respond(response_out, 200, body.as_bytes());
    }
}

/// Sends `status` with a plain-text `body`.
fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain; charset=utf-8".to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
    ])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    // Cannot fail: 100..=599 are all valid codes.
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        // One blocking write takes at most 4096 bytes.
        for chunk in body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
