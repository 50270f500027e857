//! Hello-world `wasi:http/proxy` component: `/` greets, `/echo` echoes the request, `/status/NNN` answers NNN.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

#[cfg(not(feature = "v2"))]
const GREETING: &str = "Hello from Skiff!\n";
#[cfg(feature = "v2")]
const GREETING: &str = "Hello from Skiff v2!\n";

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path_with_query
            .split('?')
            .next()
            .unwrap_or("/")
            .to_string();
        let (status, body) = match path.as_str() {
            "/" => (200, GREETING.as_bytes().to_vec()),
            "/echo" => (200, echo(&request, &path_with_query)),
            p if p.starts_with("/status/") => match p["/status/".len()..].parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => (code, format!("{code}\n").into_bytes()),
                _ => (400, b"bad status code\n".to_vec()),
            },
            _ => (404, b"not found\n".to_vec()),
        };
        respond(response_out, status, &body);
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Dumps the request like HTTP/1.1 does: request line, headers, blank line, body.
fn echo(request: &IncomingRequest, path_with_query: &str) -> Vec<u8> {
    let mut out = format!("{} {}\n", method_name(&request.method()), path_with_query).into_bytes();
    for (name, value) in request.headers().entries() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.push(b'\n');
    }
    out.push(b'\n');
    if let Ok(body) = request.consume() {
        if let Ok(mut stream) = body.stream() {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            out.extend_from_slice(&buf);
        }
    }
    out
}

fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain; charset=utf-8".to_vec()),
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
        for chunk in body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
