//! `GET /fetch?url=http://host:port/path`: one outbound request, reported back verbatim.

use std::io::Read;

use guest_util::wasip2::http::outgoing_handler;
use guest_util::wasip2::http::types::{Fields, OutgoingRequest, ResponseOutparam, Scheme};

pub fn fetch(request: &guest_util::Request, out: ResponseOutparam) {
    let Some(url) = request.param("url") else {
        return guest_util::respond(out, 400, "text/plain", b"missing ?url=\n");
    };
    match send(url) {
        Ok((status, body)) => {
            let text = format!("upstream {status}: {}", String::from_utf8_lossy(&body));
            guest_util::respond(out, 200, "text/plain", text.as_bytes());
        }
        Err(e) => guest_util::respond(out, 502, "text/plain", format!("{e}\n").as_bytes()),
    }
}

fn send(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).map_err(|_| "bad scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "bad authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "bad path")?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|_| "body taken")?;
    let mut bytes = Vec::new();
    body.stream()
        .map_err(|_| "stream taken")?
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok((status, bytes))
}
