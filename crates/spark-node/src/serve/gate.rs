//! Which connections a listener admits at accept: at most `max_connections` open in all and
//! `max_connections_per_client` per client, and each client's unused connections within
//! `max_connection_rate_per_client` a second (`serve::connection_rate`). A client is an IPv4
//! address or an IPv6 /64. Every admitted connection holds a [`Permit`], its place under the
//! caps, given back on drop (with its rate token if the connection was well used), so a
//! connection that ends at any await leaks no place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_manifest::ListenerLimits;

use super::connection_rate::ConnectionRates;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cap {
    Total,
    PerClient,
    ClientRate,
}

/// Open connections, in all and per client address, and how fast each client opens them.
pub(crate) struct Gate {
    limits: ListenerLimits,
    /// Where the connection rates' time starts.
    origin: std::time::Instant,
    open: Mutex<Open>,
}

struct Open {
    total: u32,
    per_client: HashMap<IpAddr, u32>,
    rates: ConnectionRates,
}

/// One open connection's place under the caps; given back on drop, with its client's
/// connection token if it carried a request.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    peer: IpAddr,
    /// The connection carried a request and was not cut for misbehaviour: the client used it
    /// for what connections are for, so its token goes back (only connections that carry
    /// nothing, or are cut, spend the rate).
    pub(crate) give_back: bool,
}

impl Gate {
    pub(crate) fn new(limits: ListenerLimits) -> Gate {
        Gate {
            limits,
            origin: std::time::Instant::now(),
            open: Mutex::new(Open {
                total: 0,
                per_client: HashMap::new(),
                rates: ConnectionRates::new(
                    limits.max_connection_rate_per_client,
                    limits.max_connections_per_client,
                ),
            }),
        }
    }

    /// A place for a connection from `peer` now.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Cap> {
        self.admit_at(peer, self.origin.elapsed())
    }

    /// A place for a connection from `peer` at `now` (since `origin`). Only an admitted
    /// connection takes a token of its client's rate.
    fn admit_at(self: &Arc<Self>, peer: IpAddr, now: Duration) -> Result<Permit, Cap> {
        let peer = canonical(peer);
        let mut open = self.open.lock().expect("gate lock");
        let Open {
            total,
            per_client,
            rates,
        } = &mut *open;
        if *total >= self.limits.max_connections {
            return Err(Cap::Total);
        }
        let mine = per_client.get(&peer).copied().unwrap_or(0);
        if mine >= self.limits.max_connections_per_client {
            return Err(Cap::PerClient);
        }
        if !rates.admit(peer, now) {
            return Err(Cap::ClientRate);
        }
        *per_client.entry(peer).or_insert(0) += 1;
        *total += 1;
        Ok(Permit {
            gate: self.clone(),
            peer,
            give_back: false,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().expect("gate lock");
        let Open {
            total,
            per_client,
            rates,
        } = &mut *open;
        if self.give_back {
            rates.give_back(self.peer, self.gate.origin.elapsed());
        }
        *total -= 1;
        if let Some(mine) = per_client.get_mut(&self.peer) {
            *mine -= 1;
            if *mine == 0 {
                per_client.remove(&self.peer);
            }
        }
    }
}

/// The client an address belongs to, for the per-client caps: an IPv4 address (the same over
/// IPv4-mapped IPv6), or an IPv6 /64. A host is given a whole /64 and picks addresses in it
/// freely (privacy extensions, or an attacker counting up), so per-address caps on IPv6
/// would cap nothing; the /64 is what one host or one site's network holds.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_connections_in_all_and_per_client() {
        let limits = ListenerLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            ..ListenerLimits::default()
        };
        let gate = Arc::new(Gate::new(limits));
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert!(matches!(gate.admit(a), Err(Cap::PerClient)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(
            matches!(gate.admit(mapped), Err(Cap::PerClient)),
            "the same client over IPv4-mapped IPv6"
        );
        let _third = gate.admit(b).unwrap();
        assert!(matches!(gate.admit(b), Err(Cap::Total)));
        drop(first);
        assert!(gate.admit(b).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let limits = ListenerLimits {
            max_connections_per_client: 2,
            ..ListenerLimits::default()
        };
        let gate = Arc::new(Gate::new(limits));
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = gate.admit(one).unwrap();
        let _b = gate.admit(same_64).unwrap();
        assert!(
            matches!(
                gate.admit("2001:db8:1:2::99".parse().unwrap()),
                Err(Cap::PerClient)
            ),
            "another address of the same /64 is the same client"
        );
        assert!(
            gate.admit(next_64).is_ok(),
            "the next /64 is another client"
        );
    }

    #[test]
    fn the_gate_limits_how_fast_one_client_opens_connections() {
        let limits = ListenerLimits {
            max_connections_per_client: 4,
            max_connection_rate_per_client: 10,
            ..ListenerLimits::default()
        };
        let gate = Arc::new(Gate::new(limits));
        let a = IpAddr::from([10, 0, 0, 1]);
        let at = Duration::from_millis;
        // A burst of ten (a second's worth, more than the cap of four open at once), each
        // closed at once.
        for _ in 0..10 {
            drop(gate.admit_at(a, at(0)).unwrap());
        }
        assert!(matches!(gate.admit_at(a, at(0)), Err(Cap::ClientRate)));
        assert!(
            gate.admit_at(IpAddr::from([10, 0, 0, 2]), at(0)).is_ok(),
            "another client has its own rate"
        );
        let held: Vec<_> = (0..4)
            .map(|i| gate.admit_at(a, at(1_000 + i)).unwrap())
            .collect();
        assert!(
            matches!(gate.admit_at(a, at(2_000)), Err(Cap::PerClient)),
            "the open cap first; a refused connection takes no token"
        );
        drop(held);
        assert!(gate.admit_at(a, at(2_000)).is_ok());
    }
}
