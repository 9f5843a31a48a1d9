//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` headers, parsed strictly, and the ids of spans.
//!
//! The decision worth knowing: a header that does not parse is ignored, never an error. The
//! request is served as if it had none (a fresh trace), as the specification asks of a
//! receiver; a client cannot make a request fail, or a trace wrong, by sending garbage.

use std::fmt;

/// A trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `sampled` bit of `trace-flags`.
const SAMPLED: u8 = 0x01;
/// `version-format` of version 00: `00-<32 hex>-<16 hex>-<2 hex>`.
const VERSION_00_LEN: usize = 55;
/// Longest `tracestate` the node passes on (the specification's limit for propagation).
const MAX_TRACESTATE: usize = 512;
/// Most list members a `tracestate` may have.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A parsed `traceparent`: the caller's trace, its span (our parent) and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the span the node makes.
    pub parent_id: SpanId,
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value. Version 00 must be exactly `00-` 32 lowercase hex `-` 16
    /// lowercase hex `-` 2 lowercase hex; ids of all zeros are invalid. A higher version
    /// (not `ff`) is read as version 00's fields, and whatever follows them must begin with
    /// `-` (the specification's rule for versions this parser does not know). `None`: ignore
    /// the header.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() < VERSION_00_LEN {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        match version {
            0x00 if value.len() != VERSION_00_LEN => return None,
            0xff => return None,
            _ if value.len() > VERSION_00_LEN && value[VERSION_00_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0; 8];
        for (i, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }

    /// Whether the caller recorded its span (and so wants ours).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// The `traceparent` (version 00) of span `span_id` in `trace_id`.
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    let flags = if sampled { SAMPLED } else { 0 };
    format!("00-{trace_id}-{span_id}-{flags:02x}")
}

/// Two lowercase hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some((digit(pair[0])? << 4) | digit(pair[1])?)
}

/// A `tracestate` worth passing on: printable ASCII, at most 512 characters and 32 list
/// members, each member `key=value`. Anything else is dropped (`None`), as the
/// specification allows.
pub fn tracestate(values: &[&[u8]]) -> Option<String> {
    let joined = values
        .iter()
        .map(|v| std::str::from_utf8(v).ok())
        .collect::<Option<Vec<_>>>()?
        .join(",");
    let members: Vec<&str> = joined
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    let valid = !members.is_empty()
        && members.len() <= MAX_TRACESTATE_MEMBERS
        && members.iter().all(|m| {
            m.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty() && !v.is_empty() && k.bytes().chain(v.bytes()).all(printable)
            })
        });
    let text = members.join(",");
    (valid && text.len() <= MAX_TRACESTATE).then_some(text)
}

fn printable(c: u8) -> bool {
    (0x20..=0x7e).contains(&c) && c != b','
}

/// Where new ids come from.
pub trait IdSource {
    /// Fills `bytes` with random bytes.
    fn fill(&mut self, bytes: &mut [u8]);

    /// A new trace id (never all zero).
    fn trace_id(&mut self) -> TraceId {
        let mut id = [0; 16];
        while id == [0; 16] {
            self.fill(&mut id);
        }
        TraceId(id)
    }

    /// A new span id (never all zero).
    fn span_id(&mut self) -> SpanId {
        let mut id = [0; 8];
        while id == [0; 8] {
            self.fill(&mut id);
        }
        SpanId(id)
    }
}

/// The operating system's random number generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl IdSource for OsRandom {
    fn fill(&mut self, bytes: &mut [u8]) {
        // The kernel's generator does not fail once the system has booted; if it ever did,
        // the all-zero id is refused and drawn again.
        if getrandom::fill(bytes).is_err() {
            bytes.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn version_00_is_parsed_strictly() {
        let parent = TraceParent::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert_eq!(
            traceparent(parent.trace_id, parent.parent_id, true),
            GOOD,
            "formatting gives back what was parsed"
        );
        let unsampled = GOOD.replace("-01", "-00");
        assert!(!TraceParent::parse(unsampled.as_bytes()).unwrap().sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            &format!("{GOOD}-extra"),
            &GOOD.to_uppercase(),
            &GOOD.replace("4bf9", "4BF9"),
            &GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &GOOD.replace("-00f0", "_00f0"),
            &GOOD.replace("4bf9", "4bfg"),
            &GOOD.replacen("00-", "ff-", 1),
            &GOOD.replacen("00-", "0x-", 1),
            &format!(" {}", &GOOD[..54]),
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn future_versions_keep_the_fields_they_share_with_00() {
        let v1 = GOOD.replacen("00-", "01-", 1);
        assert!(TraceParent::parse(v1.as_bytes()).is_some());
        let longer = format!("{v1}-what-comes-next");
        assert_eq!(
            TraceParent::parse(longer.as_bytes()).unwrap().trace_id,
            TraceParent::parse(GOOD.as_bytes()).unwrap().trace_id
        );
        let glued = format!("{v1}x");
        assert_eq!(TraceParent::parse(glued.as_bytes()), None);
    }

    #[test]
    fn tracestate_is_passed_on_only_when_well_formed() {
        assert_eq!(
            tracestate(&[b"congo=t61rcWkgMzE", b"rojo=00f067aa0ba902b7 "]).as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(tracestate(&[b"novalue"]), None);
        assert_eq!(tracestate(&[b"k=\x01"]), None);
        assert_eq!(tracestate(&[]), None);
        let long = format!("k={}", "v".repeat(600));
        assert_eq!(tracestate(&[long.as_bytes()]), None);
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(tracestate(&[many.as_bytes()]), None);
    }

    /// An id source that first gives zeros, then a counter: ids are never all zero.
    struct Zeros(u8);

    impl IdSource for Zeros {
        fn fill(&mut self, bytes: &mut [u8]) {
            bytes.fill(0);
            if self.0 > 0 {
                bytes[0] = self.0;
            }
            self.0 += 1;
        }
    }

    #[test]
    fn ids_are_never_zero() {
        assert_eq!(Zeros(0).span_id().0[0], 1);
        assert_eq!(Zeros(0).trace_id().0[0], 1);
        let (a, b) = (OsRandom.trace_id(), OsRandom.trace_id());
        assert_ne!(a, b);
    }
}
