//! The smallest useful `wasi:http` component: answers every request with a greeting.
//! Used by benchmark B1 (warm serving) and B2 (cold start of a small module).

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        guest_util::respond(out, 200, "text/plain", b"Hello from Spark!\n");
    }
}

guest_util::wasip2::http::proxy::export!(Hello with_types_in guest_util::wasip2);
