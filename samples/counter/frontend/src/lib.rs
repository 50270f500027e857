//! Counter sample, frontend: an HTTP component that greets with a value from `wasi:config` and
//! counts visits by calling the internal `backend` Service over outgoing `wasi:http`.
//!
//! - `GET /`: calls `BACKEND/` (config key `backend_url`, default `http://backend`) and answers
//!   `GREETING, visitor N` (config key `greeting`, default `hello`).
//! - `GET /greeting`: answers the greeting alone (no call).
//! - `GET /stats`: answers the backend's `/stats` unchanged.
//!
//! Config values are read on every request, so a changed ConfigMap shows without a restart.

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "skiff:counter/frontend-imports",
        generate_all,
    });
}

use bindings::wasi::config::store as config;

wasip2::http::proxy::export!(Frontend);

struct Frontend;

impl wasip2::exports::http::incoming_handler::Guest for Frontend {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get | Method::Head) {
            return respond(response_out, 405, "method not allowed\n".to_string());
        }
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/").to_string();
        let greeting = match setting("greeting") {
            Ok(v) => v.unwrap_or_else(|| "hello".to_string()),
            Err(e) => return respond(response_out, 500, format!("config: {e}\n")),
        };
        let backend = match setting("backend_url") {
            Ok(v) => v.unwrap_or_else(|| "http://backend".to_string()),
            Err(e) => return respond(response_out, 500, format!("config: {e}\n")),
        };
        let backend = backend.trim_end_matches('/');
        match path.as_str() {
            "/greeting" => respond(response_out, 200, format!("{greeting}\n")),
            "/stats" => match get(backend, "/stats") {
                Ok((200, body)) => respond(response_out, 200, body),
                Ok((status, body)) => {
                    respond(response_out, 502, format!("backend answered {status}: {body}"))
                }
                Err(e) => respond(response_out, 502, format!("{e}\n")),
            },
            _ => match get(backend, "/") {
                Ok((200, body)) => {
                    respond(response_out, 200, format!("{greeting}, visitor {}\n", body.trim()))
                }
                Ok((status, body)) => {
                    respond(response_out, 502, format!("backend answered {status}: {body}"))
                }
                Err(e) => respond(response_out, 502, format!("{e}\n")),
            },
        }
    }
}

/// A config value, trimmed of the newline a file usually ends with.
fn setting(key: &str) -> Result<Option<String>, String> {
    match config::get(key) {
        Ok(v) => Ok(v.map(|v| v.trim_end_matches(['\n', '\r']).to_string())),
        Err(config::Error::Upstream(e) | config::Error::Io(e)) => Err(e),
    }
}

/// GETs `base` + `path` (`base` is `http://HOST[:PORT]`); answers the status and body.
fn get(base: &str, path: &str) -> Result<(u16, String), String> {
    let url = format!("{base}{path}");
    let Some(authority) = base.strip_prefix("http://") else {
        return Err(format!("{url}: only http:// URLs are supported"));
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority {authority}"))?;
    request
        .set_path_with_query(Some(path))
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
    let body = response
        .consume()
        .map_err(|()| "response body already taken")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body
            .stream()
            .map_err(|()| "response stream already taken")?;
        stream
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url}: reading the body: {e}"))?;
    }
    drop(body);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn respond(out: ResponseOutparam, status: u16, body: String) {
    let headers = Fields::from_list(&[
        (
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        for chunk in body.as_bytes().chunks(4096) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
