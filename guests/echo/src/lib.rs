//! A JSON transform and a window on what the host gives a guest (plus `WORK` and
//! `FAIL_PERCENT` knobs for rollout tests and benchmarks, see `behave`).
//!
//! - `POST /...` with a JSON body: answers `{"method","path","query","fields","transformed"}`
//!   where `transformed` is the body with every string upper-cased, and `fields` counts the
//!   values in it; plus `route` and `path_info` from the host's routing headers, if any. A body that is not JSON gets a 400 from the guest itself.
//! Paths are matched on their last segment, so the guest works under any route prefix.
//! - `GET .../env`: the environment variables the guest sees, as a JSON object.
//! - `GET .../config`: the `wasi:config/store` values the guest sees, as a JSON object.
//! - `GET .../headers`: the request headers the guest sees, as a JSON object.
//! - `GET .../file?path=/p`: the file at `/p` in the guest's file system (404 and the error if
//!   it cannot be read); `PUT .../file?path=/p` writes the body there (403 and the error if it
//!   cannot be written): what a read-only mount allows.
//! - `GET .../fetch?url=...`: makes an outbound request through `wasi:http/outgoing-handler` and
//!   answers with its status and body, or 502 and the error code the host returned (for
//!   instance `HttpRequestDenied` when the host is not allowed).

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use serde_json::{Value, json};

mod fetch;

wit_bindgen::generate!({ world: "echo", path: "wit", generate_all });
use wasi::config;

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        if let Some(failure) = behave() {
            return reply_json(out, 500, &json!({ "error": failure }));
        }
        match (&request.method, request.last_segment()) {
            (Method::Get, "env") => {
                let env: serde_json::Map<String, Value> =
                    std::env::vars().map(|(k, v)| (k, Value::String(v))).collect();
                reply_json(out, 200, &Value::Object(env));
            }
            (Method::Get, "fetch") => fetch::fetch(&request, out),
            (Method::Get, "headers") => {
                let headers: serde_json::Map<String, Value> = request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into())))
                    .collect();
                reply_json(out, 200, &Value::Object(headers));
            }
            (Method::Get | Method::Put, "file") => file(&request, out),
            (Method::Get, "config") => match config::store::get_all() {
                Ok(pairs) => {
                    let map: serde_json::Map<String, Value> =
                        pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                    reply_json(out, 200, &Value::Object(map));
                }
                Err(e) => reply_json(out, 500, &json!({ "error": format!("{e:?}") })),
            },
            _ => transform(&request, out),
        }
    }
}

/// Test and benchmark knobs, all off unless set in the module's environment: `WORK` rounds of
/// CPU work per request (as the `busy` guest does), and `FAIL_PERCENT` of requests answered
/// with a 500 (chosen with `wasi:random`). Returns the failure to report, if this request fails.
fn behave() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(rounds) = env("WORK") {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..rounds * 200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        }
        std::hint::black_box(x);
    }
    let percent = env("FAIL_PERCENT")?;
    let draw = guest_util::wasip2::random::random::get_random_u64() % 100;
    (draw < percent).then(|| format!("failing on purpose ({percent}% of requests)"))
}

fn transform(request: &guest_util::Request, out: ResponseOutparam) {
    let body = request.body();
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let msg = json!({ "error": format!("body is not JSON: {e}") });
                return reply_json(out, 400, &msg);
            }
        }
    };
    let mut fields = 0;
    let transformed = upper(parsed, &mut fields);
    let method = guest_util::method_name(&request.method);
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let answer = json!({
        "route": header("spark-matched-route"),
        "path_info": header("spark-path-info"),
        "method": method,
        "path": request.path,
        "query": request.query,
        "fields": fields,
        "transformed": transformed,
    });
    reply_json(out, 200, &answer);
}

/// Reads (GET) or writes (PUT) the file named by `?path=`.
fn file(request: &guest_util::Request, out: ResponseOutparam) {
    let Some(path) = request.param("path") else {
        return guest_util::respond(out, 400, "text/plain", b"missing ?path=\n");
    };
    if matches!(request.method, Method::Put) {
        return match std::fs::write(path, request.body()) {
            Ok(()) => guest_util::respond(out, 200, "text/plain", b"written\n"),
            Err(e) => guest_util::respond(out, 403, "text/plain", format!("{e}\n").as_bytes()),
        };
    }
    match std::fs::read(path) {
        Ok(bytes) => guest_util::respond(out, 200, "application/octet-stream", &bytes),
        Err(e) => guest_util::respond(out, 404, "text/plain", format!("{e}\n").as_bytes()),
    }
}

fn upper(value: Value, count: &mut u64) -> Value {
    *count += 1;
    match value {
        Value::String(s) => Value::String(s.to_uppercase()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| upper(v, count)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, upper(v, count))).collect()),
        other => other,
    }
}

fn reply_json(out: ResponseOutparam, status: u16, value: &Value) {
    let mut body = serde_json::to_vec(value).expect("serializable");
    body.push(b'\n');
    guest_util::respond(out, status, "application/json", &body);
}

guest_util::wasip2::http::proxy::export!(Echo with_types_in guest_util::wasip2);
