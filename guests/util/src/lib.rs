//! Small helpers shared by the test guests: read a request, write a response.
//!
//! Guests use the plain `wasi:http` bindings (`wasip2`), so what Spark runs is exactly what
//! `wasmtime serve` or Spin would run; this crate only saves each guest the same twenty lines.

use std::io::{Read, Write};

pub use wasip2;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The parts of a request the guests look at.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    incoming: IncomingRequest,
}

impl Request {
    pub fn new(incoming: IncomingRequest) -> Request {
        let path_with_query = incoming.path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (path_with_query, String::new()),
        };
        Request {
            method: incoming.method(),
            headers: incoming.headers().entries(),
            path,
            query,
            incoming,
        }
    }

    /// The last segment of the path (`"search"` for `/catalogue/search`), so guests route the
    /// same way whatever prefix the host mounts them under.
    pub fn last_segment(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// The value of query parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// A numeric query parameter, or `default`.
    pub fn number(&self, name: &str, default: u64) -> u64 {
        self.param(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// Reads the whole request body.
    pub fn body(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        if let Ok(body) = self.incoming.consume() {
            if let Ok(mut stream) = body.stream() {
                let _ = stream.read_to_end(&mut bytes);
            }
        }
        bytes
    }
}

/// The method as it appears on the wire (`GET`, `POST`, ...).
pub fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Sends a complete response.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let mut writer = start(out, status, content_type, Some(body.len() as u64));
    writer.write(body);
    writer.finish();
}

/// Starts a streamed response; write chunks to it, then call `finish`.
pub fn start(
    out: ResponseOutparam,
    status: u16,
    content_type: &str,
    length: Option<u64>,
) -> BodyWriter {
    let mut entries: Vec<(String, Vec<u8>)> =
        vec![("content-type".into(), content_type.as_bytes().to_vec())];
    if let Some(len) = length {
        entries.push(("content-length".into(), len.to_string().into_bytes()));
    }
    let headers = Fields::from_list(&entries).expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream taken once");
    BodyWriter {
        body: Some(body),
        stream: Some(stream),
    }
}

/// The body of a response in flight.
pub struct BodyWriter {
    body: Option<OutgoingBody>,
    stream: Option<wasip2::io::streams::OutputStream>,
}

impl BodyWriter {
    /// Writes a chunk; returns false when the host refused it (client gone or limit reached).
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let stream = self.stream.as_mut().expect("not finished");
        stream.write_all(bytes).is_ok() && stream.flush().is_ok()
    }

    pub fn finish(mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
