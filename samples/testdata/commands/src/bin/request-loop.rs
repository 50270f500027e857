//! Test guest (outgoing request flood): sends `GET` to the URL in argument 1 (`http://HOST:PORT/PATH`)
//! in a tight loop forever, reading and dropping each answer; prints a count every 100 requests
//! and each distinct failure once.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

fn get(authority: &str, path: &str) -> Result<u16, String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority {authority}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("invalid path {path}"))?;
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
    let body = response.consume().map_err(|()| "body already taken")?;
    {
        let stream = body.stream().map_err(|()| "stream already taken")?;
        while stream.blocking_read(64 << 10).is_ok() {}
    }
    drop(body);
    Ok(status)
}

fn main() {
    let url = std::env::args().nth(1).unwrap_or_default();
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("request-loop: argument 1 must be an http:// URL, not {url:?}");
        std::process::exit(2);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    println!("request-loop: sending to {url}");
    let mut seen_errors: Vec<String> = Vec::new();
    let mut n: u64 = 0;
    loop {
        if let Err(e) = get(authority, path) {
            if !seen_errors.contains(&e) {
                eprintln!("request-loop: request {n} failed: {e}");
                seen_errors.push(e);
            }
        }
        n += 1;
        if n % 100 == 0 {
            println!("request-loop: {n} requests");
            let _ = std::io::stdout().flush();
        }
    }
}
