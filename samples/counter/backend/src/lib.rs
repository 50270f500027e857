//! Counter sample, backend: an HTTP component keeping a visit counter in `wasi:keyvalue` (bucket
//! `counter`), which the node stores durably in the component's keyvalue volume.
//!
//! - `GET /` (any other path): increments `hits` (`wasi:keyvalue/atomics`), records the pod that
//!   answered under `last-pod` (`wasi:keyvalue/store`) and answers `N` (the new count).
//! - `GET /stats`: answers `hits=N last-pod=POD` read in one `wasi:keyvalue/batch` call, without
//!   counting.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "skiff:counter/backend-imports",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

wasip2::http::proxy::export!(Backend);

/// The bucket the counter lives in.
const BUCKET: &str = "counter";

struct Backend;

impl wasip2::exports::http::incoming_handler::Guest for Backend {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get | Method::Head) {
            return respond(response_out, 405, "method not allowed\n".to_string());
        }
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/");
        let result = match path {
            "/stats" => stats(),
            _ => count(),
        };
        match result {
            Ok(body) => respond(response_out, 200, body),
            Err(e) => respond(response_out, 500, format!("keyvalue: {e}\n")),
        }
    }
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(s) => s,
    }
}

fn count() -> Result<String, String> {
    let bucket = store::open(BUCKET).map_err(describe)?;
    let hits = atomics::increment(&bucket, "hits", 1).map_err(describe)?;
    bucket
        .set("last-pod", pod_name().as_bytes())
        .map_err(describe)?;
    Ok(format!("{hits}\n"))
}

fn stats() -> Result<String, String> {
    let bucket = store::open(BUCKET).map_err(describe)?;
    let values = batch::get_many(&bucket, &["hits".to_string(), "last-pod".to_string()])
        .map_err(describe)?;
    let text = |i: usize| {
        values
            .get(i)
            .and_then(|v| v.as_ref())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "-".to_string())
    };
    Ok(format!("hits={} last-pod={}\n", text(0), text(1)))
}

fn pod_name() -> String {
    wasip2::cli::environment::get_environment()
        .into_iter()
        .find(|(k, v)| (k == "POD_NAME" || k == "HOSTNAME") && !v.is_empty())
        .map(|(_, v)| v)
        .unwrap_or_else(|| "unknown".to_string())
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

