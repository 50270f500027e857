//! Load `wasi:http/proxy` component: `/` greets, `/burn?ms=N` busy-loops for N ms of wall time,
//! `/grow?kib=N` grows a buffer kept between requests by N KiB, `/shrink` drops it, `/sleep?ms=N`
//! waits N ms without using CPU.
//!
//! The buffer lives in the instance: it persists between requests only when the pod reuses its
//! instances (annotation `skiff.dev/reuse-instances: "true"`); otherwise every request gets a
//! fresh instance and starts from an empty buffer.

use std::cell::RefCell;
use std::io::Write as _;

use wasip2::clocks::monotonic_clock;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Load);

/// Longest burn or sleep one request may ask for (10 minutes).
const MAX_MS: u64 = 600_000;
/// Largest growth one request may ask for (1 GiB).
const MAX_KIB: u64 = 1 << 20;

thread_local! {
    /// The memory `/grow` adds to and `/shrink` drops, touched so that it is really in use.
    static HELD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Load;

impl wasip2::exports::http::incoming_handler::Guest for Load {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query.clone(), String::new()),
        };
        let (status, body) = match path.as_str() {
            "/" => (200, "Hello from the load sample!\n".to_string()),
            "/burn" => match param(&query, "ms", MAX_MS) {
                Ok(ms) => {
                    let spins = burn(ms);
                    (200, format!("burned {ms} ms ({spins} rounds)\n"))
                }
                Err(e) => (400, e),
            },
            "/sleep" => match param(&query, "ms", MAX_MS) {
                Ok(ms) => {
                    monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                    (200, format!("slept {ms} ms\n"))
                }
                Err(e) => (400, e),
            },
            "/grow" => match param(&query, "kib", MAX_KIB) {
                Ok(kib) => {
                    let total = grow(kib as usize * 1024);
                    (200, format!("{total}\n"))
                }
                Err(e) => (400, e),
            },
            "/shrink" => {
                HELD.with(|h| *h.borrow_mut() = Vec::new());
                (200, "0\n".to_string())
            }
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// The value of `name` in a query string, a number up to `max`.
fn param(query: &str, name: &str, max: u64) -> Result<u64, String> {
    let value = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("missing query parameter {name}\n"))?;
    match value.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{name} must be a number from 0 to {max}\n")),
    }
}

/// Busy-loops until `ms` of wall time passed; returns the rounds done.
fn burn(ms: u64) -> u64 {
    let deadline = monotonic_clock::now().saturating_add(ms * 1_000_000);
    let mut x: u64 = 1;
    let mut rounds = 0u64;
    loop {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        rounds += 1;
        if monotonic_clock::now() >= deadline {
            return rounds;
        }
    }
}

/// Grows the held buffer by `bytes` (every page written); returns its total size.
fn grow(bytes: usize) -> usize {
    HELD.with(|h| {
        let mut held = h.borrow_mut();
        let new_len = held.len() + bytes;
        held.resize(new_len, 1);
        held.len()
    })
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
