//! Fileserver sample, puller: writes `$OUTPUT_DIR/index.html` (default `/data`) and exits.
//!
//! If `SOURCE_URL` is set (`http://host[:port]/path` or `https://...`) the body is fetched with an
//! outgoing `wasi:http` request (non-2xx answers are an error); otherwise a generated page is
//! written. Exit code 0 on success, 1 on any error (printed to stderr).

use std::io::Read as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

const GENERATED: &str = "<!doctype html>\n<html><head><title>Skiff fileserver</title></head>\n<body><h1>Hello from the Skiff fileserver sample!</h1><p>Written by the puller init container.</p></body></html>\n";

fn main() {
    let dir = std::env::var("OUTPUT_DIR").unwrap_or_else(|_| "/data".to_string());
    let (body, source) = match std::env::var("SOURCE_URL") {
        Ok(url) if !url.is_empty() => match fetch(&url) {
            Ok(body) => (body, url),
            Err(e) => {
                eprintln!("puller: fetching {url}: {e}");
                std::process::exit(1);
            }
        },
        _ => (GENERATED.as_bytes().to_vec(), "generated page".to_string()),
    };
    let path = format!("{}/index.html", dir.trim_end_matches('/'));
    if let Err(e) = std::fs::write(&path, &body) {
        eprintln!("puller: writing {path}: {e}");
        std::process::exit(1);
    }
    println!("puller: wrote {} bytes from {source} to {path}", body.len());
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err("only http:// and https:// URLs are supported".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("URL has no host".into());
    }
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "invalid scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "invalid authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "invalid path")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response already taken".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "response body already taken")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "response stream already taken")?;
        stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    drop(body);
    if !(200..300).contains(&status) {
        return Err(format!("HTTP status {status}"));
    }
    Ok(bytes)
}
