//! Fileserver sample, puller: a `wasi:cli/command` component that writes `$OUTPUT_DIR/index.html`
//! (default `/data`) and exits.
//!
//! If `SOURCE_URL` is set (`http://host[:port]/path` or `https://...`) the body is fetched with an
//! outgoing `wasi:http` request (non-2xx answers are an error); otherwise a generated page is
//! written. Exit code 0 on success, 1 on any error (printed to stderr).
//!
//! It is a `wasm32-wasip2` cdylib exporting `wasi:cli/run` itself and using `wasi:filesystem`
//! directly: a wasip1 command linked with Debian's wasi-libc re-runs its constructors inside
//! `cabi_realloc`, which traps as soon as the host lowers an HTTP result into it.

use std::io::Read as _;

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

wasip2::cli::command::export!(Puller);

const GENERATED: &str = "<!doctype html>\n<html><head><title>Skiff fileserver</title></head>\n<body><h1>Hello from the Skiff fileserver sample!</h1><p>Written by the puller init container.</p></body></html>\n";

struct Puller;

impl wasip2::exports::cli::run::Guest for Puller {
    fn run() -> Result<(), ()> {
        match pull() {
            Ok(msg) => {
                println!("{msg}");
                Ok(())
            }
            Err(e) => {
                eprintln!("puller: {e}");
                Err(())
            }
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

fn pull() -> Result<String, String> {
    let dir = env("OUTPUT_DIR").unwrap_or_else(|| "/data".to_string());
    let (body, source) = match env("SOURCE_URL") {
        Some(url) => (fetch(&url).map_err(|e| format!("fetching {url}: {e}"))?, url),
        None => (GENERATED.as_bytes().to_vec(), "generated page".to_string()),
    };
    let dir = dir.trim_end_matches('/');
    let path = format!("{dir}/index.html");
    write_file(dir, "index.html", &body).map_err(|e| format!("writing {path}: {e}"))?;
    Ok(format!(
        "puller: wrote {} bytes from {source} to {path}",
        body.len()
    ))
}

/// Finds the preopen containing `dir`; returns it and the path of `dir` relative to it.
fn preopen_for(dir: &str) -> Option<(Descriptor, String)> {
    get_directories()
        .into_iter()
        .filter_map(|(d, p)| {
            let p = p.trim_end_matches('/').to_string();
            if dir == p {
                Some((d, String::new(), p.len()))
            } else if dir.starts_with(&format!("{p}/")) || p.is_empty() {
                Some((d, dir[p.len()..].trim_start_matches('/').to_string(), p.len()))
            } else {
                None
            }
        })
        .max_by_key(|(_, _, len)| *len)
        .map(|(d, rest, _)| (d, rest))
}

fn write_file(dir: &str, name: &str, body: &[u8]) -> Result<(), String> {
    let (root, rel) = preopen_for(dir).ok_or_else(|| format!("no preopened directory for {dir}"))?;
    let rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
    let file = root
        .open_at(
            PathFlags::empty(),
            &rel,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| format!("{e:?}"))?;
    let mut offset = 0usize;
    while offset < body.len() {
        let end = body.len().min(offset + 64 * 1024);
        let n = file
            .write(&body[offset..end], offset as u64)
            .map_err(|e| format!("{e:?}"))?;
        if n == 0 {
            return Err("short write".into());
        }
        offset += n as usize;
    }
    Ok(())
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
    if !(200..300).contains(&status) {
        return Err(format!("HTTP status {status}"));
    }
    let body = response.consume().map_err(|()| "response body already taken")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "response stream already taken")?;
        stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    drop(body);
    Ok(bytes)
}
