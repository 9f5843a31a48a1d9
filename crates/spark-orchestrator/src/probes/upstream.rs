//! Upstream addresses from the node config, parsed and validated once.
//!
//! Accepted forms: `tcp://host:port`, `http://host[:port][/path]` and
//! `https://host[:port][/path]`. The decision worth knowing: there is no TLS client here, so an
//! `https` upstream is measured as a TCP connect to its port (443 by default); and anything that
//! could smuggle bytes into the hand-written request (whitespace, control characters,
//! credentials) is refused at config time, not escaped at probe time.

use std::net::Ipv6Addr;

/// What to measure for one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Round trip of a TCP connect.
    Tcp {
        /// Name or IP address to connect to (IPv6 without brackets).
        host: String,
        /// TCP port (443 for `https` without one).
        port: u16,
    },
    /// Round trip of connect + `HEAD path` until the status line arrives.
    Http {
        /// Name or IP address to connect to (IPv6 without brackets).
        host: String,
        /// TCP port (80 by default).
        port: u16,
        /// The `Host` header: the authority as written (`[::1]:8080`).
        host_header: String,
        /// Request path with any query (`/` by default).
        path: String,
    },
}

/// A named upstream; the name is the config string as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The config string as written; it names the upstream's readings.
    pub name: String,
    /// What to measure.
    pub target: Target,
}

/// A config entry that is not a usable upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream {entry:?}: {reason}")]
pub struct UpstreamError {
    /// The config entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: UpstreamProblem,
}

/// What is wrong with an upstream entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamProblem {
    /// Whitespace or control characters, which could smuggle bytes into the request.
    #[error("contains whitespace or control characters")]
    Unsafe,
    /// No `scheme://`.
    #[error("{FORMS}")]
    Form,
    /// A scheme other than `tcp`, `http` or `https`.
    #[error("unknown scheme {scheme:?}; {FORMS}")]
    Scheme {
        /// The scheme, lowercased.
        scheme: String,
    },
    /// A `user@` part in the authority.
    #[error("credentials in upstream addresses are not supported")]
    Credentials,
    /// A `tcp://` entry with a path.
    #[error("a tcp upstream takes no path")]
    TcpPath,
    /// A `tcp://` entry without a port.
    #[error("a tcp upstream needs a port")]
    TcpPort,
    /// A `[` in the host without its `]`.
    #[error("unclosed '[' in host")]
    UnclosedBracket,
    /// Brackets around something that is not an IPv6 address.
    #[error("bad IPv6 address {text:?}")]
    Ipv6 {
        /// What was between the brackets.
        text: String,
    },
    /// Something other than `:port` after `]`.
    #[error("junk after ']'")]
    AfterBracket,
    /// An empty host.
    #[error("no host")]
    NoHost,
    /// A host with characters other than letters, digits, `.`, `-`, `_` and `:`.
    #[error("bad host {host:?}")]
    Host {
        /// The host as written.
        host: String,
    },
    /// A port that is not a number in 1..=65535.
    #[error("bad port {port:?} (1..=65535)")]
    Port {
        /// The port as written.
        port: String,
    },
}

const FORMS: &str = "expected tcp://host:port, http://host[:port][/path] or https://host[:port]";

impl Upstream {
    /// Parses and validates one config entry.
    pub fn parse(entry: &str) -> Result<Upstream, UpstreamError> {
        let error = |reason| UpstreamError {
            entry: entry.to_string(),
            reason,
        };
        let target = parse_target(entry).map_err(error)?;
        Ok(Upstream {
            name: entry.to_string(),
            target,
        })
    }
}

fn parse_target(entry: &str) -> Result<Target, UpstreamProblem> {
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UpstreamProblem::Unsafe);
    }
    let (scheme, rest) = entry.split_once("://").ok_or(UpstreamProblem::Form)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(UpstreamProblem::Credentials);
    }
    let (host, port) = split_authority(authority)?;
    match scheme.to_ascii_lowercase().as_str() {
        "tcp" if path != "/" => Err(UpstreamProblem::TcpPath),
        "tcp" => Ok(Target::Tcp {
            host,
            port: port.ok_or(UpstreamProblem::TcpPort)?,
        }),
        "https" => Ok(Target::Tcp {
            host,
            port: port.unwrap_or(443),
        }),
        "http" => {
            let (host_header, path) = (authority.to_string(), path.to_string());
            Ok(Target::Http {
                host,
                port: port.unwrap_or(80),
                host_header,
                path,
            })
        }
        other => Err(UpstreamProblem::Scheme {
            scheme: other.to_owned(),
        }),
    }
}

/// Splits `host[:port]` or `[v6][:port]` into a connectable host and the port, if any.
fn split_authority(authority: &str) -> Result<(String, Option<u16>), UpstreamProblem> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, after) = bracketed
                .split_once(']')
                .ok_or(UpstreamProblem::UnclosedBracket)?;
            v6.parse::<Ipv6Addr>().map_err(|_| UpstreamProblem::Ipv6 {
                text: v6.to_owned(),
            })?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or(UpstreamProblem::AfterBracket)?,
                ),
            };
            (v6, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(UpstreamProblem::NoHost);
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if !host.chars().all(plain) {
        return Err(UpstreamProblem::Host {
            host: host.to_owned(),
        });
    }
    Ok((host.to_string(), port.map(parse_port).transpose()?))
}

fn parse_port(port: &str) -> Result<u16, UpstreamProblem> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(UpstreamProblem::Port {
            port: port.to_owned(),
        }),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(entry: &str) -> Target {
        Upstream::parse(entry).unwrap().target
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            target("tcp://db.local:5432"),
            Target::Tcp {
                host: "db.local".into(),
                port: 5432
            }
        );
        assert_eq!(
            target("https://api.example.com/x"),
            Target::Tcp {
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            target("http://[::1]:8080/health?x=1"),
            Target::Http {
                host: "::1".into(),
                port: 8080,
                host_header: "[::1]:8080".into(),
                path: "/health?x=1".into()
            }
        );
        assert_eq!(
            target("HTTP://example.com"),
            Target::Http {
                host: "example.com".into(),
                port: 80,
                host_header: "example.com".into(),
                path: "/".into()
            }
        );
    }

    #[test]
    fn rejected_forms_name_the_reason() {
        let reason = |entry: &str| Upstream::parse(entry).unwrap_err().reason.to_string();
        assert!(reason("db.local:5432").starts_with("expected"));
        assert_eq!(reason("tcp://db.local"), "a tcp upstream needs a port");
        assert_eq!(reason("tcp://db.local:0"), "bad port \"0\" (1..=65535)");
        assert_eq!(
            reason("tcp://db.local:99999"),
            "bad port \"99999\" (1..=65535)"
        );
        assert!(reason("ftp://x:21").starts_with("unknown scheme \"ftp\""));
        assert!(reason("http://x/a b").contains("whitespace"));
        assert!(reason("http://x/a\r\nEvil: 1").contains("control"));
        assert!(reason("http://user:pw@x/").contains("credentials"));
        assert_eq!(reason("http://:80/"), "no host");
        assert_eq!(reason("tcp://a:b:c"), "bad port \"b:c\" (1..=65535)");
        assert_eq!(reason("http://[::1/"), "unclosed '[' in host");
    }

    #[test]
    fn error_message_names_the_entry() {
        let error = Upstream::parse("tcp://db.local").unwrap_err();
        assert_eq!(
            error.to_string(),
            "upstream \"tcp://db.local\": a tcp upstream needs a port"
        );
    }
}
