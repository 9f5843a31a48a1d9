//! Which resolved addresses a guest's outbound request may connect to: the pure rule.
//!
//! Checking the host *name* against `allowed_outbound_hosts` is not enough: a name the
//! operator allowed (or a wildcard) can resolve to the node itself, its loopback services or
//! the cloud metadata endpoint. So after resolution every address is judged here, and the
//! node connects only to the addresses that passed. Protected addresses (loopback,
//! link-local, unspecified, IPv4 embedded in IPv6 forms of those, the node's own listeners)
//! are reachable only when a manifest entry names that exact address by IP literal, scheme and
//! port ([`OutboundPolicy::names_address`]). The decision worth knowing: "is this address one
//! of ours?" for a listener bound to `0.0.0.0`/`::` depends on the machine's interfaces, so
//! the caller passes that question in as `is_local`, keeping this function pure.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use spark_manifest::OutboundPolicy;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// 169.254.0.0/16 (the cloud metadata address 169.254.169.254 among them) or fe80::/10.
    LinkLocal,
    /// The AWS metadata endpoint's IPv6 address, `fd00:ec2::254`.
    Metadata,
    /// 0.0.0.0/8 or `::` (Linux connects "this host" addresses to the node itself).
    Unspecified,
    /// One of the node's own listeners.
    NodeListener,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "loopback address",
            Refusal::LinkLocal => "link-local address",
            Refusal::Metadata => "cloud metadata address",
            Refusal::Unspecified => "unspecified address",
            Refusal::NodeListener => "one of the node's own listeners",
        })
    }
}

/// Whether a guest may connect to `addr` for a `scheme` request under `policy`, given the
/// node's `listeners` (as bound) and `is_local`, which tells whether an IP is assigned to this
/// machine (asked only for listeners bound to an unspecified address on `addr`'s port).
pub(crate) fn judge(
    scheme: &str,
    addr: SocketAddr,
    policy: &OutboundPolicy,
    listeners: &[SocketAddr],
    is_local: impl Fn(IpAddr) -> bool,
) -> Result<(), Refusal> {
    match protected(addr, listeners, is_local) {
        Some(why) if !policy.names_address(scheme, addr) => Err(why),
        _ => Ok(()),
    }
}

/// Why `addr` is protected, if it is.
fn protected(
    addr: SocketAddr,
    listeners: &[SocketAddr],
    is_local: impl Fn(IpAddr) -> bool,
) -> Option<Refusal> {
    let ip = embedded(addr.ip());
    if let Some(why) = special(ip) {
        return Some(why);
    }
    let own = listeners.iter().any(|listener| {
        listener.port() == addr.port()
            && (embedded(listener.ip()) == ip || (listener.ip().is_unspecified() && is_local(ip)))
    });
    own.then_some(Refusal::NodeListener)
}

/// The address a connection really goes to: IPv4 for IPv4-mapped (`::ffff:a.b.c.d`) and
/// IPv4-compatible (`::a.b.c.d`) IPv6 addresses, other than `::` and `::1` themselves.
fn embedded(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if !v6.is_loopback() && !v6.is_unspecified() => {
            v6.to_ipv4().map_or(ip, IpAddr::V4)
        }
        _ => ip,
    }
}

fn special(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Refusal> {
    if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if ip.octets()[0] == 0 {
        Some(Refusal::Unspecified)
    } else {
        None
    }
}

/// `fd00:ec2::254`: where AWS serves instance metadata over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn special_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if ip == AWS_METADATA_V6 {
        Some(Refusal::Metadata)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spark_manifest::AllowedHost;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::new(
            entries
                .iter()
                .map(|e| AllowedHost::parse(e).unwrap())
                .collect(),
        )
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The rule with no listeners and nothing local.
    fn plain(scheme: &str, to: &str, entries: &[&str]) -> Result<(), Refusal> {
        judge(scheme, addr(to), &policy(entries), &[], |_| false)
    }

    #[test]
    fn public_addresses_pass_under_any_entry() {
        let any = ["http://*:*"];
        assert_eq!(plain("http", "93.184.215.14:80", &any), Ok(()));
        assert_eq!(plain("http", "192.0.2.2:8080", &any), Ok(()));
        assert_eq!(plain("http", "[2001:db8::1]:80", &any), Ok(()));
        assert_eq!(plain("http", "[fec0::1]:80", &any), Ok(()), "not fe80::/10");
        assert_eq!(
            plain("http", "[::ffff:93.184.215.14]:80", &any),
            Ok(()),
            "a mapped public address is public"
        );
    }

    #[test]
    fn protected_addresses_are_refused_under_names_and_wildcards() {
        let cases = [
            ("127.0.0.1:8081", Refusal::Loopback),
            ("127.5.6.7:8081", Refusal::Loopback),
            ("[::1]:8081", Refusal::Loopback),
            ("169.254.169.254:8081", Refusal::LinkLocal),
            ("169.254.0.1:8081", Refusal::LinkLocal),
            ("[fe80::1]:8081", Refusal::LinkLocal),
            ("[febf::1]:8081", Refusal::LinkLocal),
            ("[fd00:ec2::254]:8081", Refusal::Metadata),
            ("0.0.0.0:8081", Refusal::Unspecified),
            ("0.1.2.3:8081", Refusal::Unspecified),
            ("[::]:8081", Refusal::Unspecified),
            // IPv4 inside IPv6: mapped and (deprecated) compatible forms.
            ("[::ffff:127.0.0.1]:8081", Refusal::Loopback),
            ("[::ffff:169.254.169.254]:8081", Refusal::LinkLocal),
            ("[::ffff:0.0.0.0]:8081", Refusal::Unspecified),
            ("[::127.0.0.1]:8081", Refusal::Loopback),
        ];
        let entries: [&[&str]; 6] = [
            &["http://*:*"],
            &["*://*:*"],
            &["http://localhost:8081", "http://vm:8081"],
            &["http://*.example.com:8081"],
            &[
                "http://127.0.0.1:*",
                "http://[::1]:*",
                "http://169.254.169.254:*",
            ],
            &["*://127.0.0.1:8081", "*://169.254.169.254:8081"],
        ];
        for (to, why) in cases {
            for allowed in entries {
                assert_eq!(
                    plain("http", to, allowed),
                    Err(why),
                    "{to} under {allowed:?}"
                );
            }
        }
    }

    #[test]
    fn an_exact_ip_literal_entry_opens_exactly_that_address() {
        let entries = [
            "http://127.0.0.1:8081",
            "http://[::1]:8081",
            "http://169.254.169.254",
            "https://[::ffff:127.0.0.1]:8443",
        ];
        assert_eq!(plain("http", "127.0.0.1:8081", &entries), Ok(()));
        assert_eq!(plain("http", "[::1]:8081", &entries), Ok(()));
        assert_eq!(plain("http", "169.254.169.254:80", &entries), Ok(()));
        assert_eq!(plain("https", "[::ffff:127.0.0.1]:8443", &entries), Ok(()));
        // Anything else stays refused: another port, scheme, address or form of it.
        for (scheme, to) in [
            ("http", "127.0.0.1:8082"),
            ("https", "127.0.0.1:8081"),
            ("http", "127.0.0.2:8081"),
            ("http", "[::ffff:127.0.0.1]:8081"),
            ("http", "169.254.169.254:8080"),
            ("https", "127.0.0.1:8443"),
        ] {
            assert!(plain(scheme, to, &entries).is_err(), "{scheme}://{to}");
        }
    }

    #[test]
    fn the_nodes_own_listeners_are_refused() {
        let listeners = [
            addr("192.0.2.2:8080"),
            addr("0.0.0.0:9090"),
            addr("[::]:9191"),
        ];
        let local = |ip: IpAddr| {
            ["192.0.2.2", "10.1.2.3", "fd00::2"]
                .iter()
                .any(|l| l.parse::<IpAddr>().unwrap() == ip)
        };
        let any = policy(&["http://*:*"]);
        let judge_any = |to: &str| judge("http", addr(to), &any, &listeners, local);
        let own = Err(Refusal::NodeListener);
        // A listener on one address: that address and port.
        assert_eq!(judge_any("192.0.2.2:8080"), own);
        assert_eq!(judge_any("[::ffff:192.0.2.2]:8080"), own);
        assert_eq!(judge_any("192.0.2.2:8081"), Ok(()), "another port");
        assert_eq!(judge_any("198.51.100.7:8080"), Ok(()), "another host");
        // A listener on 0.0.0.0 or ::: any local address on its port, either family.
        for to in [
            "10.1.2.3:9090",
            "192.0.2.2:9090",
            "[fd00::2]:9090",
            "[::ffff:10.1.2.3]:9090",
        ] {
            assert_eq!(judge_any(to), own, "{to}");
        }
        for to in ["10.1.2.3:9191", "[fd00::2]:9191"] {
            assert_eq!(judge_any(to), own, "{to}");
        }
        assert_eq!(
            judge_any("198.51.100.7:9090"),
            Ok(()),
            "not a local address"
        );
        assert_eq!(
            judge_any("[2001:db8::7]:9191"),
            Ok(()),
            "not a local address"
        );
        // Named by IP literal, scheme and port, the operator meant it.
        let exact = policy(&["http://192.0.2.2:8080", "http://10.1.2.3:9090"]);
        assert_eq!(
            judge("http", addr("192.0.2.2:8080"), &exact, &listeners, local),
            Ok(())
        );
        assert_eq!(
            judge("http", addr("10.1.2.3:9090"), &exact, &listeners, local),
            Ok(())
        );
        assert_eq!(
            judge("http", addr("192.0.2.2:9090"), &exact, &listeners, local),
            own
        );
    }

    #[test]
    fn is_local_is_asked_only_for_wildcard_listeners_on_the_same_port() {
        let asked = std::cell::Cell::new(0);
        let local = |_: IpAddr| {
            asked.set(asked.get() + 1);
            true
        };
        let any = policy(&["http://*:*"]);
        let listeners = [addr("192.0.2.2:8080"), addr("0.0.0.0:9090")];
        assert_eq!(
            judge("http", addr("198.51.100.7:80"), &any, &listeners, local),
            Ok(())
        );
        assert_eq!(
            judge("http", addr("198.51.100.7:8080"), &any, &listeners, local),
            Ok(())
        );
        assert_eq!(asked.get(), 0);
        assert!(judge("http", addr("198.51.100.7:9090"), &any, &listeners, local).is_err());
        assert_eq!(asked.get(), 1);
    }
}
