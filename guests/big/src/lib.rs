//! A catalogue service with a realistic amount of code (well over 1 MB of Wasm). Paths are
//! matched on their last segment, so it works under any route prefix:
//! - `GET /`: the catalogue rendered from Markdown to HTML;
//! - `POST /render`: renders the Markdown body to HTML;
//! - `GET /search?q=REGEX`: catalogue lines matching a regular expression, as JSON;
//! - `GET /thumb?size=N`: a generated N x N PNG swatch (image codecs).
//! Used by benchmark B2 as the "big" module whose compile time dominates a cold start.

use std::io::Cursor;

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use serde_json::json;

const CATALOGUE: &str = "# Catalogue\n\n\
| sku | item | price |\n|---|---|---|\n\
| A-100 | Espresso beans, 1 kg | 24.50 |\n\
| A-101 | Oat milk, 1 l | 2.10 |\n\
| B-200 | Grinder, burr | 189.00 |\n\
| B-201 | Kettle, gooseneck | 79.90 |\n\
| C-300 | Filter papers (100) | 4.20 |\n\n\
*Prices include VAT.* Ask for **bulk** discounts.\n";

struct Catalogue;

impl Guest for Catalogue {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        match (&request.method, request.last_segment()) {
            (Method::Post, "render") => {
                let text = String::from_utf8_lossy(&request.body()).into_owned();
                html(out, &render(&text));
            }
            (Method::Get, "search") => search(request.param("q").unwrap_or("."), out),
            (Method::Get, "thumb") => thumbnail(request.number("size", 32).clamp(1, 512) as u32, out),
            _ => html(out, &render(CATALOGUE)),
        }
    }
}

fn render(markdown: &str) -> String {
    let options = pulldown_cmark::Options::all();
    let parser = pulldown_cmark::Parser::new_ext(markdown, options);
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

fn search(pattern: &str, out: ResponseOutparam) {
    let pattern = pattern.replace("%20", " ");
    let regex = match regex::RegexBuilder::new(&pattern).case_insensitive(true).build() {
        Ok(r) => r,
        Err(e) => {
            let body = json!({ "error": e.to_string() }).to_string();
            return guest_util::respond(out, 400, "application/json", body.as_bytes());
        }
    };
    let hits: Vec<&str> = CATALOGUE.lines().filter(|l| l.starts_with("| ") && regex.is_match(l)).collect();
    let body = json!({ "pattern": pattern, "hits": hits }).to_string();
    guest_util::respond(out, 200, "application/json", body.as_bytes());
}

fn thumbnail(size: u32, out: ResponseOutparam) {
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x * 255 / size) as u8, (y * 255 / size) as u8, ((x ^ y) & 0xff) as u8])
    });
    let mut png = Cursor::new(Vec::new());
    match img.write_to(&mut png, image::ImageFormat::Png) {
        Ok(()) => guest_util::respond(out, 200, "image/png", png.get_ref()),
        Err(e) => guest_util::respond(out, 500, "text/plain", e.to_string().as_bytes()),
    }
}

fn html(out: ResponseOutparam, body: &str) {
    guest_util::respond(out, 200, "text/html; charset=utf-8", body.as_bytes());
}

guest_util::wasip2::http::proxy::export!(Catalogue with_types_in guest_util::wasip2);
