//! A Spin application built from crates.io `spin-sdk` 7 (`#[http_service]`, WASI 0.3): what
//! someone moving from Spin brings. It uses key-value and variables, so it imports
//! `spin:key-value/key-value@3.0.0` and `spin:variables/variables@3.0.0` beside
//! `wasi:http/types@0.3.0`.
//!
//! Routes (the path, whatever route prefix the manifest gives it):
//! - `GET /kv/<key>`: the value (404 when absent); `PUT /kv/<key>`: stores the request body;
//!   `DELETE /kv/<key>`: deletes it. `?store=<label>` picks a store (default `default`).
//! - `/count`: adds one to the counter under the key `counter` and answers the new value.
//! - `/keys`: the store's keys, one a line.
//! - `/var/<name>`: the variable's value.
//! - `/fill?n=N&size=S`: writes N values of S bytes (`fill-0`, `fill-1`, ...) and stops at the
//!   first error, answering how many it wrote and the error (the hostile test of the limits).
//! - `/wkv/incr?by=N`: adds N to `hits` through `wasi:keyvalue/atomics` (`increment`) and
//!   answers the number; `/wkv/keys`: the keys of `default` page by page through
//!   `wasi:keyvalue/store` (`list-keys`), joined by newlines.
//! - `/config/<name>`: the value of `name` through `wasi:config/store`.
//! - `/sqlite` (the `spin-rs-sqlite` build only, feature `sqlite`): opens the default SQLite
//!   database, an interface Spark does not provide.
//!
//! Every store or variable error is answered as `500` with the error's text, so tests read
//! what the guest was told.

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let label = param("store").unwrap_or_else(|| "default".to_owned());
    let tail = path.rsplit_once('/').map(|(_, t)| t.to_owned()).unwrap_or_default();

    #[cfg(feature = "sqlite")]
    if path.ends_with("/sqlite") {
        return match spin_sdk::sqlite::Connection::open_default().await {
            Ok(_) => (StatusCode::OK, "opened".to_owned()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("sqlite error: {e:?}")),
        };
    }
    if path.contains("/config/") {
        return match spin_sdk::experimental::wasi::config::store::get(&tail) {
            Ok(Some(v)) => (StatusCode::OK, v),
            Ok(None) => (StatusCode::NOT_FOUND, format!("no config {tail}")),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("config error: {e:?}")),
        };
    }
    if path.contains("/wkv/") {
        use spin_sdk::experimental::wasi::keyvalue::{atomics, store};
        let bucket = match store::open(&label) {
            Ok(b) => b,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("open error: {e:?}")),
        };
        if path.ends_with("/incr") {
            let by: i64 = param("by").and_then(|v| v.parse().ok()).unwrap_or(1);
            return match atomics::increment(&bucket, "hits", by) {
                Ok(n) => (StatusCode::OK, n.to_string()),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("increment error: {e:?}")),
            };
        }
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            match bucket.list_keys(cursor.as_deref()) {
                Ok(page) => {
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("list error: {e:?}")),
            }
        }
        return (StatusCode::OK, keys.join("\n"));
    }
    if path.contains("/var/") {
        return match spin_sdk::variables::get(&tail).await {
            Ok(value) => (StatusCode::OK, value),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("variable error: {e:?}")),
        };
    }

    let store = match Store::open(&label).await {
        Ok(store) => store,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("open error: {e:?}")),
    };
    let fail = |what: &str, e: spin_sdk::key_value::Error| {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{what} error: {e:?}"))
    };

    if path.ends_with("/count") {
        let current = match store.get("counter").await {
            Ok(v) => v
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0),
            Err(e) => return fail("get", e),
        };
        let next = current + 1;
        return match store.set("counter", next.to_string()).await {
            Ok(()) => (StatusCode::OK, next.to_string()),
            Err(e) => fail("set", e),
        };
    }
    if path.ends_with("/keys") {
        return match store.get_keys().await.collect().await {
            Ok(keys) => (StatusCode::OK, keys.join("\n")),
            Err(e) => fail("keys", e),
        };
    }
    if path.ends_with("/fill") {
        let n: usize = param("n").and_then(|v| v.parse().ok()).unwrap_or(1);
        let size: usize = param("size").and_then(|v| v.parse().ok()).unwrap_or(1024);
        let value = vec![b'x'; size];
        for i in 0..n {
            if let Err(e) = store.set(format!("fill-{i}"), &value).await {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("wrote {i}; set error: {e:?}"));
            }
        }
        return (StatusCode::OK, format!("wrote {n}"));
    }
    if path.contains("/kv/") {
        let key = tail;
        return match method {
            Method::GET => match store.get(&key).await {
                Ok(Some(v)) => (StatusCode::OK, String::from_utf8_lossy(&v).into_owned()),
                Ok(None) => (StatusCode::NOT_FOUND, format!("no key {key}")),
                Err(e) => fail("get", e),
            },
            Method::PUT | Method::POST => {
                let body = match req.into_body().bytes().await {
                    Ok(b) => b,
                    Err(e) => return (StatusCode::BAD_REQUEST, format!("body error: {e:?}")),
                };
                match store.set(&key, &body).await {
                    Ok(()) => (StatusCode::OK, format!("stored {} bytes", body.len())),
                    Err(e) => fail("set", e),
                }
            }
            Method::DELETE => match store.delete(&key).await {
                Ok(()) => (StatusCode::OK, "deleted".to_owned()),
                Err(e) => fail("delete", e),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        };
    }
    (StatusCode::OK, "spin-rs: /kv/<key>, /count, /keys, /var/<name>, /fill".to_owned())
}
