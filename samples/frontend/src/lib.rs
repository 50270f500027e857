//! Frontend sample: an HTTP component that says which pod answered (`POD_NAME` from the downward
//! API, else `HOSTNAME`) and calls other services with outgoing `wasi:http` requests.
//!
//! - `GET /call?url=URL` (URL percent-encoded): GETs URL and answers 200 with `upstream: STATUS`
//!   on the first line followed by the upstream body, or 502 with the error text.
//! - `GET /loop?host=HOST`: GETs `http://HOST/loop?host=HOST` and answers with the upstream status
//!   and body unchanged (a service calling itself: the service router's hop limit ends it).
//! - any other path: 200 with `POD PATH` (the pod's name, the request path) and `x-pod-name`.
//!
//! The service router's hop header is copied from the incoming request to every outgoing one.
//! It imports `wasi:cli/environment` besides the proxy world (built with the default adapter).

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Frontend);

/// The request header the service router counts hops in (`skiff_meta::names::HOP_HEADER`).
const HOP_HEADER: &str = "skiff-service-hops";

struct Frontend;

impl wasip2::exports::http::incoming_handler::Guest for Frontend {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query.clone(), String::new()),
        };
        let hops: Vec<Vec<u8>> = request.headers().get(&HOP_HEADER.to_string());
        let pod = pod_name();
        if !matches!(request.method(), Method::Get | Method::Head) {
            return respond(response_out, 405, &pod, b"method not allowed\n".to_vec());
        }
        match path.as_str() {
            "/call" => match query_param(&query, "url") {
                Some(url) => match fetch(&url, &hops) {
                    Ok((status, body)) => {
                        let mut out = format!("upstream: {status}\n").into_bytes();
                        out.extend_from_slice(&body);
                        respond(response_out, 200, &pod, out)
                    }
                    Err(e) => respond(response_out, 502, &pod, format!("{e}\n").into_bytes()),
                },
                None => respond(response_out, 400, &pod, b"missing ?url=\n".to_vec()),
            },
            "/loop" => match query_param(&query, "host") {
                Some(host) => {
                    let url = format!("http://{host}/loop?host={}", percent_encode(&host));
                    match fetch(&url, &hops) {
                        Ok((status, body)) => respond(response_out, status, &pod, body),
                        Err(e) => respond(response_out, 502, &pod, format!("{e}\n").into_bytes()),
                    }
                }
                None => respond(response_out, 400, &pod, b"missing ?host=\n".to_vec()),
            },
            _ => respond(response_out, 200, &pod, format!("{pod} {path}\n").into_bytes()),
        }
    }
}

fn env(name: &str) -> Option<String> {
    wasip2::cli::environment::get_environment()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn pod_name() -> String {
    env("POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The first value of `key` in a query string, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes and `+`; `None` on malformed escapes or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GETs `url`, carrying the hop header; answers the upstream status and body.
fn fetch(url: &str, hops: &[Vec<u8>]) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("{url}: only http:// and https:// URLs are supported"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let headers = Fields::new();
    if let Some(hop) = hops.first() {
        let _ = headers.append(&HOP_HEADER.to_string(), hop);
    }
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority {authority}"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| format!("invalid path {path}"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{url}: {e:?}"))?;
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response already taken".to_string())?
        .map_err(|e| format!("{url}: {e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "response body already taken")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "response stream already taken")?;
        stream
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url}: reading the body: {e}"))?;
    }
    drop(body);
    Ok((status, bytes))
}

fn respond(response_out: ResponseOutparam, status: u16, pod: &str, body: Vec<u8>) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain; charset=utf-8".to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
        ("x-pod-name".to_string(), pod.as_bytes().to_vec()),
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
