//! Fileserver sample, server: an HTTP component (exports `wasi:http/incoming-handler`) that serves
//! files below `$ROOT` (default `/data`) through `wasi:filesystem` preopens.
//!
//! Like components made by componentize-py it imports more than the proxy world (wasi:filesystem,
//! wasi:cli). `GET /` serves `index.html`; missing files answer 404; paths containing `..` are
//! refused with 400 (and the host's preopen sandbox stops any escape anyway).

use std::io::Write as _;

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Server);

struct Server;

impl wasip2::exports::http::incoming_handler::Guest for Server {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = request.method();
        if !matches!(method, Method::Get | Method::Head) {
            return respond(response_out, 405, "text/plain", b"method not allowed\n".to_vec(), false);
        }
        let head = matches!(method, Method::Head);
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = path_with_query.split('?').next().unwrap_or("/");
        let (status, ctype, body) = match serve(path) {
            Ok((ctype, body)) => (200, ctype, body),
            Err((status, msg)) => (status, "text/plain", msg.into_bytes()),
        };
        respond(response_out, status, ctype, body, head);
    }
}

fn root() -> String {
    wasip2::cli::environment::get_environment()
        .into_iter()
        .find(|(k, _)| k == "ROOT")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "/data".into())
}

/// Decodes `%XX` escapes; `None` on malformed escapes or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn serve(path: &str) -> Result<(&'static str, Vec<u8>), (u16, String)> {
    let decoded = percent_decode(path).ok_or((400, "bad path\n".to_string()))?;
    let mut parts = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err((400, "bad path\n".into())),
            s if s.contains('\\') || s.contains('\0') => return Err((400, "bad path\n".into())),
            s => parts.push(s),
        }
    }
    let root = root();
    let root = root.trim_end_matches('/');
    // Find the preopen that contains ROOT; the rest of ROOT becomes a path prefix inside it.
    let (dir, prefix) = get_directories()
        .into_iter()
        .filter_map(|(d, p)| {
            let p = p.trim_end_matches('/').to_string();
            if root == p {
                Some((d, String::new(), p.len()))
            } else if root.starts_with(&format!("{p}/")) || p.is_empty() {
                let rest = root[p.len()..].trim_start_matches('/').to_string();
                Some((d, rest, p.len()))
            } else {
                None
            }
        })
        .max_by_key(|(_, _, len)| *len)
        .map(|(d, rest, _)| (d, rest))
        .ok_or((500, format!("no preopened directory for {root}\n")))?;
    let mut rel = prefix;
    for p in &parts {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(p);
    }
    let file = open(&dir, &rel)?;
    let (file, name) = match file.get_type() {
        Ok(DescriptorType::Directory) => {
            let index = if rel.is_empty() { "index.html".to_string() } else { format!("{rel}/index.html") };
            (open(&dir, &index)?, "index.html".to_string())
        }
        Ok(_) => (file, parts.last().map(|s| s.to_string()).unwrap_or_default()),
        Err(e) => return Err((500, format!("{e:?}\n"))),
    };
    let mut body = Vec::new();
    loop {
        match file.read(64 * 1024, body.len() as u64) {
            Ok((chunk, eof)) => {
                body.extend_from_slice(&chunk);
                if eof || chunk.is_empty() {
                    break;
                }
            }
            Err(e) => return Err((500, format!("{e:?}\n"))),
        }
    }
    Ok((content_type(&name), body))
}

fn open(dir: &Descriptor, rel: &str) -> Result<Descriptor, (u16, String)> {
    let rel = if rel.is_empty() { "." } else { rel };
    dir.open_at(PathFlags::SYMLINK_FOLLOW, rel, OpenFlags::empty(), DescriptorFlags::READ)
        .map_err(|e| {
            use wasip2::filesystem::types::ErrorCode as E;
            match e {
                E::NoEntry | E::NotDirectory => (404, "not found\n".to_string()),
                E::Access | E::NotPermitted => (403, "forbidden\n".to_string()),
                e => (500, format!("{e:?}\n")),
            }
        })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn respond(response_out: ResponseOutparam, status: u16, ctype: &str, body: Vec<u8>, head: bool) {
    let mut list = vec![("content-type".to_string(), ctype.as_bytes().to_vec())];
    if !head {
        list.push(("content-length".to_string(), body.len().to_string().into_bytes()));
    }
    let headers = Fields::from_list(&list).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if !head {
        if let Ok(mut stream) = outgoing.write() {
            for chunk in body.chunks(4096) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = stream.flush();
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
