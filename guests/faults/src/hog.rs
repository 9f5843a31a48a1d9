//! Guests that try to make the host hold memory for them outside their linear memory, through
//! the host interfaces every `wasi:http` component has. Each keeps everything it made alive, so
//! only the host's per-invocation limits can stop it.

use guest_util::wasip2::cli::{stderr, stdout};
use guest_util::wasip2::http::types::{Fields, OutgoingRequest, ResponseOutparam};

/// Header values of 8 KiB, 15 to a `fields` (under the host's per-fields size limit).
pub fn fields(out: ResponseOutparam) {
    let value = vec![b'v'; 8 << 10];
    let mut kept = Vec::new();
    for i in 0..100_000u32 {
        let fields = Fields::new();
        for j in 0..15 {
            if fields.append(&format!("x-hog-{j}"), &value).is_err() {
                break;
            }
        }
        kept.push(fields);
        if i % 64 == 0 {
            std::hint::black_box(&kept);
        }
    }
    let made = kept.len();
    guest_util::respond(out, 200, "text/plain", format!("kept {made} fields\n").as_bytes());
}

/// Outgoing requests whose bodies are written until they accept no more, never sent.
pub fn bodies(out: ResponseOutparam) {
    let chunk = vec![b'b'; 64 << 10];
    let mut kept = Vec::new();
    for _ in 0..100_000u32 {
        let request = OutgoingRequest::new(Fields::new());
        let Ok(body) = request.body() else { break };
        let Ok(stream) = body.write() else { break };
        loop {
            match stream.check_write() {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let n = (n as usize).min(chunk.len());
                    if stream.write(&chunk[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        kept.push((request, body, stream));
    }
    let made = kept.len();
    guest_util::respond(out, 200, "text/plain", format!("kept {made} bodies\n").as_bytes());
}

/// Empty handles until the host refuses.
pub fn handles(out: ResponseOutparam) {
    let mut kept = Vec::new();
    for _ in 0..10_000_000u32 {
        kept.push(Fields::new());
    }
    let made = kept.len();
    guest_util::respond(out, 200, "text/plain", format!("kept {made} handles\n").as_bytes());
}

/// Lines to both streams, a new stream handle for each line.
pub fn log_flood(mb: u64, out: ResponseOutparam) {
    let line = [b'l'; 1023];
    let mut line = line.to_vec();
    line.push(b'\n');
    for i in 0..mb * 1024 {
        let written = if i % 2 == 0 {
            stdout::get_stdout().blocking_write_and_flush(&line)
        } else {
            stderr::get_stderr().blocking_write_and_flush(&line)
        };
        if written.is_err() {
            break;
        }
    }
    guest_util::respond(out, 200, "text/plain", format!("logged {mb} MiB\n").as_bytes());
}
