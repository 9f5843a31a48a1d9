//! A guest that misbehaves on request, to prove one bad module hurts nobody else (paths are
//! matched on their last segment):
//! - `/trap`: panics (a Wasm trap);
//! - `/loop`: spins forever without yielding;
//! - `/alloc?mb=N`: allocates and touches N MiB;
//! - `/stack`: recurses until the Wasm stack overflows;
//! - `/stack-shadow`: recurses until the shadow stack in linear memory overflows;
//! - `/huge?mb=N`: streams an N MiB body without a content-length;
//! - `/huge-declared?mb=N`: declares an N MiB content-length, then streams it;
//! - `/hog-fields`: fills header `fields` resources with ~120 KiB each, keeping them all
//!   (host memory outside linear memory);
//! - `/hog-bodies`: creates outgoing requests and fills their bodies without sending them;
//! - `/hog-handles`: creates empty `fields` handles until the host refuses one;
//! - `/log-flood?mb=N`: writes N MiB of lines to stdout and stderr, asking for a new stream
//!   for every line;
//! - anything else: 200 "ok".
//!
//! The hogs report how far they got (`200`, then the host should have stopped them first).

mod hog;

use std::hint::black_box;

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Faults;

impl Guest for Faults {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        match request.last_segment() {
            "trap" => panic!("the guest was asked to trap"),
            "loop" => spin_forever(),
            "alloc" => allocate(request.number("mb", 1024), out),
            "stack" => {
                let depth = deep(request.number("depth", 1 << 40));
                guest_util::respond(out, 200, "text/plain", format!("{depth}\n").as_bytes());
            }
            "stack-shadow" => {
                let depth = recurse(black_box(1));
                guest_util::respond(out, 200, "text/plain", format!("{depth}\n").as_bytes());
            }
            "huge" => stream(request.number("mb", 1024), None, out),
            "huge-declared" => {
                let mb = request.number("mb", 1024);
                stream(mb, Some(mb << 20), out)
            }
            "hog-fields" => hog::fields(out),
            "hog-bodies" => hog::bodies(out),
            "hog-handles" => hog::handles(out),
            "log-flood" => hog::log_flood(request.number("mb", 64), out),
            _ => guest_util::respond(out, 200, "text/plain", b"ok\n"),
        }
    }
}

fn spin_forever() -> ! {
    let mut x = 1u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn allocate(mb: u64, out: ResponseOutparam) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        blocks.push(vec![i as u8 | 1; 1 << 20]);
    }
    let total: u64 = blocks.iter().map(|b| b[0] as u64).sum();
    guest_util::respond(out, 200, "text/plain", format!("allocated {mb} MiB ({total})\n").as_bytes());
}

/// Recursion whose frames live on the Wasm stack itself (no address-taken locals), so it
/// ends in Wasmtime's stack-overflow trap.
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    let below = deep(n - 1);
    below.wrapping_mul(n | 1) ^ n
}

/// Recursion with arrays in every frame: they live on the shadow stack in linear memory,
/// which runs out first (an out-of-bounds trap below address 0).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buf = black_box([depth; 64]);
    recurse(black_box(depth + buf[3])) + buf[7]
}

fn stream(mb: u64, length: Option<u64>, out: ResponseOutparam) {
    let mut writer = guest_util::start(out, 200, "application/octet-stream", length);
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..mb * 16 {
        if !writer.write(&chunk) {
            return;
        }
    }
    writer.finish();
}

guest_util::wasip2::http::proxy::export!(Faults with_types_in guest_util::wasip2);
