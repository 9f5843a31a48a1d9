//! A CPU-bound handler whose work is set per request: `?work=N` runs N rounds of a hash loop
//! (one round is about a millisecond of CPU on a laptop core; the exact cost does not matter,
//! only that it is the same every time). Answers with the rounds done and a checksum, so the
//! loop cannot be optimised away and callers can count work done.

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, ResponseOutparam};

const STEPS_PER_ROUND: u64 = 200_000;

struct Busy;

impl Guest for Busy {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        let rounds = request.number("work", 1);
        let mut state = request.number("seed", 0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..rounds {
            state = round(state);
        }
        let body = format!("{{\"rounds\":{rounds},\"checksum\":{state}}}\n");
        guest_util::respond(out, 200, "application/json", body.as_bytes());
    }
}

/// One round of xorshift-multiply: pure CPU, no memory traffic.
fn round(mut x: u64) -> u64 {
    for _ in 0..STEPS_PER_ROUND {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
}

guest_util::wasip2::http::proxy::export!(Busy with_types_in guest_util::wasip2);
