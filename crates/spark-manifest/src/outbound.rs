//! Which hosts a guest may call. Nothing is allowed unless the manifest names it.
//!
//! An entry is `scheme://host[:port]`: the scheme is `http`, `https` or `*`; the host is a name,
//! an IP address, `*` (any host) or `*.example.com` (subdomains of example.com); the port is a
//! number or `*`, and when omitted it is the scheme's default (80 or 443), so
//! `https://api.example.com` does not silently allow port 8443.
//!
//! Names are only half of it: the runtime resolves the host and refuses addresses the node
//! protects (loopback, link-local, unspecified, its own listeners) unless an entry names that
//! exact address by IP literal, with its scheme and port ([`OutboundPolicy::names_address`]).
//! A name or a wildcard never reaches them, so `http://*:*` cannot be turned on the node itself.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Pattern,
    host: HostPattern,
    port: Pattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.suffix`: matches hosts ending in `.suffix`.
    Subdomains(String),
}

/// Why an outbound host entry was refused: the entry as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid outbound host {text:?}: {problem}")]
pub struct OutboundHostError {
    /// The entry as written.
    pub text: String,
    /// What is wrong with it.
    pub problem: HostProblem,
}

/// What is wrong with an outbound host entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// No `://` separates a scheme from the host.
    #[error("expected scheme://host[:port], e.g. \"https://api.example.com\"")]
    NoScheme,
    /// The scheme is not `http`, `https` or `*`.
    #[error("the scheme must be http, https or *")]
    Scheme,
    /// The entry has a path, query, fragment or `user@` part.
    #[error("give only scheme, host and port, no path or credentials")]
    PathOrCredentials,
    /// An IPv6 address opened with `[` has no `]`.
    #[error("unclosed '[' in IPv6 address")]
    UnclosedBracket,
    /// Something other than `:port` follows the `]` of an IPv6 address.
    #[error("expected ':' after ']'")]
    AfterBracket,
    /// The host is empty or has characters other than letters, digits, `.`, `-` and `:`.
    #[error("the host must be a name, an IP address, * or *.domain")]
    Host,
    /// The port is neither `*` nor a number from 0 to 65535.
    #[error("the port must be a number from 0 to 65535 or *")]
    Port,
    /// Scheme `*` without a port: there is no default port to assume.
    #[error("with scheme * give a port (a number or *)")]
    AnySchemeNeedsPort,
}

impl AllowedHost {
    /// Parses one `allowed_outbound_hosts` entry; an omitted port becomes the scheme's default.
    pub fn parse(text: &str) -> Result<AllowedHost, OutboundHostError> {
        let err = |problem| OutboundHostError {
            text: text.to_owned(),
            problem,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| err(HostProblem::NoScheme))?;
        let scheme = match scheme {
            "*" => Pattern::Any,
            "http" | "https" => Pattern::Exact(scheme.to_owned()),
            _ => return Err(err(HostProblem::Scheme)),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err(HostProblem::PathOrCredentials));
        }
        let (host, port) = split_host_port(rest).map_err(err)?;
        let host = parse_host(&host).map_err(err)?;
        let port = match port.as_deref() {
            Some("*") => Pattern::Any,
            Some(number) => {
                number.parse::<u16>().map_err(|_| err(HostProblem::Port))?;
                Pattern::Exact(number.to_owned())
            }
            None => match &scheme {
                Pattern::Exact(s) if s == "http" => Pattern::Exact("80".into()),
                Pattern::Exact(_) => Pattern::Exact("443".into()),
                Pattern::Any => return Err(err(HostProblem::AnySchemeNeedsPort)),
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let scheme_ok = match &self.scheme {
            Pattern::Any => true,
            Pattern::Exact(s) => s.eq_ignore_ascii_case(scheme),
        };
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        };
        let port_ok = match &self.port {
            Pattern::Any => true,
            Pattern::Exact(p) => *p == port.to_string(),
        };
        scheme_ok && host_ok && port_ok
    }

    /// Whether this entry names exactly `addr` for `scheme`: an exact scheme, an IP literal
    /// host equal to the address, and an exact port (a default port counts, being explicit
    /// by design). Names and wildcards never do.
    pub fn names_address(&self, scheme: &str, addr: SocketAddr) -> bool {
        let (Pattern::Exact(s), HostPattern::Exact(host), Pattern::Exact(port)) =
            (&self.scheme, &self.host, &self.port)
        else {
            return false;
        };
        s.eq_ignore_ascii_case(scheme)
            && host.parse::<IpAddr>().is_ok_and(|ip| ip == addr.ip())
            && *port == addr.port().to_string()
    }
}

fn split_host_port(rest: &str) -> Result<(String, Option<String>), HostProblem> {
    if let Some(after_bracket) = rest.strip_prefix('[') {
        let (host, tail) = after_bracket
            .split_once(']')
            .ok_or(HostProblem::UnclosedBracket)?;
        let port = match tail {
            "" => None,
            _ => Some(
                tail.strip_prefix(':')
                    .ok_or(HostProblem::AfterBracket)?
                    .to_owned(),
            ),
        };
        return Ok((host.to_owned(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), Some(port.to_owned()))),
        None => Ok((rest.to_owned(), None)),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, HostProblem> {
    let host = host.to_ascii_lowercase();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        check_host_chars(suffix)?;
        return Ok(HostPattern::Subdomains(suffix.to_owned()));
    }
    check_host_chars(&host)?;
    Ok(HostPattern::Exact(host))
}

fn check_host_chars(host: &str) -> Result<(), HostProblem> {
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if ok { Ok(()) } else { Err(HostProblem::Host) }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match &self.scheme {
            Pattern::Any => "*",
            Pattern::Exact(s) => s,
        };
        let host = match &self.host {
            HostPattern::Any => "*".to_owned(),
            HostPattern::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(s) => format!("*.{s}"),
        };
        let port = match &self.port {
            Pattern::Any => "*",
            Pattern::Exact(p) => p,
        };
        write!(f, "{scheme}://{host}:{port}")
    }
}

/// The set of destinations a module may reach; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    /// Allows nothing: a module without `allowed_outbound_hosts`.
    pub fn deny_all() -> OutboundPolicy {
        OutboundPolicy::default()
    }

    /// Allows what any of `allowed` allows.
    pub fn new(allowed: Vec<AllowedHost>) -> OutboundPolicy {
        OutboundPolicy { allowed }
    }

    /// Whether some entry allows a request to `scheme://host:port`. Protected addresses are
    /// checked apart, with [`names_address`](Self::names_address).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|a| a.allows(scheme, host, port))
    }

    /// Whether some entry names exactly `addr` by IP literal (see [`AllowedHost::names_address`]):
    /// the only way a protected address may be reached.
    pub fn names_address(&self, scheme: &str, addr: SocketAddr) -> bool {
        self.allowed.iter().any(|a| a.names_address(scheme, addr))
    }

    /// The entries, in manifest order.
    pub fn entries(&self) -> &[AllowedHost] {
        &self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> AllowedHost {
        AllowedHost::parse(text).unwrap()
    }

    #[test]
    fn default_ports_are_explicit() {
        let h = host("https://api.example.com");
        assert!(h.allows("https", "api.example.com", 443));
        assert!(!h.allows("https", "api.example.com", 8443));
        assert!(!h.allows("http", "api.example.com", 443));
        assert!(host("http://127.0.0.1").allows("http", "127.0.0.1", 80));
    }

    #[test]
    fn wildcards() {
        assert!(host("http://127.0.0.1:*").allows("http", "127.0.0.1", 39001));
        let sub = host("https://*.example.com:443");
        assert!(sub.allows("https", "a.example.com", 443));
        assert!(!sub.allows("https", "example.com", 443));
        assert!(!sub.allows("https", "badexample.com", 443));
        assert!(host("*://*:*").allows("http", "anything", 1));
        assert!(host("http://[::1]:8080").allows("http", "[::1]", 8080));
    }

    #[test]
    fn only_an_exact_ip_literal_names_an_address() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let exact = host("http://127.0.0.1:8081");
        assert!(exact.names_address("http", addr("127.0.0.1:8081")));
        assert!(exact.names_address("HTTP", addr("127.0.0.1:8081")));
        assert!(!exact.names_address("https", addr("127.0.0.1:8081")));
        assert!(!exact.names_address("http", addr("127.0.0.1:8082")));
        assert!(!exact.names_address("http", addr("127.0.0.2:8081")));
        assert!(!exact.names_address("http", addr("[::ffff:127.0.0.1]:8081")));
        assert!(host("http://127.0.0.1").names_address("http", addr("127.0.0.1:80")));
        assert!(host("http://[::1]:8081").names_address("http", addr("[::1]:8081")));
        assert!(
            host("http://[0:0:0:0:0:0:0:1]:8081").names_address("http", addr("[::1]:8081")),
            "IPv6 literals compare as addresses, not text"
        );
        for wide in [
            "http://localhost:8081",
            "http://*:*",
            "http://*:8081",
            "http://127.0.0.1:*",
            "*://127.0.0.1:8081",
            "http://*.0.0.1:8081",
        ] {
            assert!(
                !host(wide).names_address("http", addr("127.0.0.1:8081")),
                "{wide}"
            );
        }
        let policy = OutboundPolicy::new(vec![host("http://*:*"), exact]);
        assert!(policy.names_address("http", addr("127.0.0.1:8081")));
        assert!(!OutboundPolicy::deny_all().names_address("http", addr("127.0.0.1:8081")));
    }

    #[test]
    fn refusals() {
        assert!(AllowedHost::parse("example.com").is_err());
        assert!(AllowedHost::parse("ftp://example.com").is_err());
        assert!(AllowedHost::parse("https://example.com/path").is_err());
        assert!(AllowedHost::parse("https://example.com:99999").is_err());
        assert_eq!(
            AllowedHost::parse("*://example.com")
                .unwrap_err()
                .to_string(),
            "invalid outbound host \"*://example.com\": with scheme * give a port (a number or *)"
        );
        assert!(!OutboundPolicy::deny_all().allows("http", "127.0.0.1", 80));
    }
}
