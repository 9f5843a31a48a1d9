//! The fleet bench's network: one Linux network namespace per node, each with two links to
//! the host, made with `ip` (root only) and always taken down again.
//!
//! - the **control link** (`ctl0` in the namespace, `spk<pid>c<i>` on the host, on bridge
//!   `spk<pid>cb`): the node's own address, the only way to NATS (the servers listen on the
//!   bridge's address). Cutting it (`ip link set spk<pid>c<i> down`) is the link cut.
//! - the **service link** (`svc0` / `spk<pid>s<i>` on bridge `spk<pid>sb`): where the clients
//!   are. The bench's traffic and probes reach the node here, so a cut control link is seen
//!   the way a site's own clients would see it: the node keeps answering (or not).
//!
//! The namespaces have no default route: with the control link down, NATS is unreachable
//! rather than reached some other way. Names carry the bench's pid, so two runs never touch
//! each other's, and [`clean_stale`] removes those of a run whose process is gone (killed
//! before its guards could run). [`Network`]'s `Drop` removes everything it made, also when a
//! step of the setup fails halfway.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::BenchError;

/// Name prefix of everything the bench creates (namespaces, bridges, veths).
const PREFIX: &str = "spk";

/// The addresses and names of one node's namespace.
#[derive(Debug, Clone)]
pub(crate) struct NodeNet {
    /// The namespace (`ip netns exec <netns> ...`).
    pub netns: String,
    /// The node's address on the control link (towards NATS).
    pub control: Ipv4Addr,
    /// The node's address on the service link (its clients).
    pub service: Ipv4Addr,
    /// The host side of its control link: what a link cut sets down.
    pub control_link: String,
}

/// Namespaces, veths and two bridges; removed on drop.
pub(crate) struct Network {
    tag: String,
    control_net: [u8; 3],
    service_net: [u8; 3],
    nodes: usize,
    made_namespaces: Vec<String>,
    made_links: Vec<String>,
}

impl Network {
    /// Builds the network for `nodes` nodes. Fails (having removed what it made) when `ip`
    /// is missing or refuses, e.g. when not root.
    pub(crate) fn create(nodes: usize) -> Result<Network, BenchError> {
        let tag = format!("{PREFIX}{}", std::process::id());
        let (control_net, service_net) = free_subnets()?;
        let mut net = Network {
            tag,
            control_net,
            service_net,
            nodes,
            made_namespaces: Vec::new(),
            made_links: Vec::new(),
        };
        net.build()?;
        Ok(net)
    }

    /// The host's address on the control bridge: where the NATS servers listen.
    pub(crate) fn host_control(&self) -> Ipv4Addr {
        addr(self.control_net, 1)
    }

    /// Node `i` (0-based).
    pub(crate) fn node(&self, i: usize) -> NodeNet {
        let n = i + 1;
        NodeNet {
            netns: format!("{}n{n}", self.tag),
            control: addr(self.control_net, 10 + n as u8),
            service: addr(self.service_net, 10 + n as u8),
            control_link: format!("{}c{n}", self.tag),
        }
    }

    /// The two /24s, for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} namespaces; control {}.0/24 (NATS on .1), service {}.0/24",
            self.nodes,
            dotted(self.control_net),
            dotted(self.service_net)
        )
    }

    /// Cuts (`up` false) or restores node `i`'s control link.
    pub(crate) fn set_link(&self, i: usize, up: bool) -> Result<(), BenchError> {
        let link = self.node(i).control_link;
        ip(&["link", "set", &link, if up { "up" } else { "down" }])
    }

    fn build(&mut self) -> Result<(), BenchError> {
        let (control_bridge, service_bridge) =
            (format!("{}cb", self.tag), format!("{}sb", self.tag));
        for (bridge, net) in [
            (&control_bridge, self.control_net),
            (&service_bridge, self.service_net),
        ] {
            ip(&[
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
            ])?;
            self.made_links.push(bridge.clone());
            ip(&[
                "addr",
                "add",
                &format!("{}/24", addr(net, 1)),
                "dev",
                bridge,
            ])?;
            ip(&["link", "set", bridge, "up"])?;
        }
        for i in 0..self.nodes {
            let node = self.node(i);
            ip(&["netns", "add", &node.netns])?;
            self.made_namespaces.push(node.netns.clone());
            let service_link = format!("{}s{}", self.tag, i + 1);
            for (host, inside, bridge, address) in [
                (&node.control_link, "ctl0", &control_bridge, node.control),
                (&service_link, "svc0", &service_bridge, node.service),
            ] {
                ip(&[
                    "link",
                    "add",
                    host,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    inside,
                    "netns",
                    &node.netns,
                ])?;
                self.made_links.push(host.clone());
                ip(&["link", "set", host, "master", bridge, "up"])?;
                ip(&[
                    "-n",
                    &node.netns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    inside,
                ])?;
                ip(&["-n", &node.netns, "link", "set", inside, "up"])?;
            }
            ip(&["-n", &node.netns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veths (and so the host ends) once no
        // process is left in it; the host ends and the bridges are deleted here regardless.
        for netns in self.made_namespaces.drain(..) {
            let _ = ip(&["netns", "del", &netns]);
        }
        for link in self.made_links.drain(..).rev() {
            let _ = ip(&["link", "del", &link]);
        }
    }
}

/// Removes the namespaces and links of earlier runs whose process is gone (after killing
/// whatever still runs in those namespaces); what it removed, for the report.
pub(crate) fn clean_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let namespaces = output(&["netns", "list"]).unwrap_or_default();
    for name in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if !stale(name) {
            continue;
        }
        for pid in output(&["netns", "pids", name]).unwrap_or_default().lines() {
            if pid.trim().parse::<u32>().is_ok() {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
        if ip(&["netns", "del", name]).is_ok() {
            removed.push(name.to_owned());
        }
    }
    let links = output(&["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        // `7: spk123c1@if6: <BROADCAST,...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if stale(name) && ip(&["link", "del", name]).is_ok() {
            removed.push(name.to_owned());
        }
    }
    removed
}

/// A name the bench made (`spk<pid><kind>...`) for a process that no longer runs.
fn stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let kind = rest[digits.len()..].chars().next();
    let Ok(pid) = digits.parse::<u32>() else {
        return false;
    };
    matches!(kind, Some('n' | 'c' | 's'))
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Two /24s under 10.231.0.0/16 that no interface or route of this host uses (chosen from
/// the pid, so concurrent runs start apart).
fn free_subnets() -> Result<([u8; 3], [u8; 3]), BenchError> {
    let used = format!(
        "{}\n{}",
        output(&["-o", "-4", "addr", "show"])?,
        output(&["-4", "route", "show", "table", "all"])?
    );
    let start = (std::process::id() % 127) as u8;
    for k in 0..127u8 {
        let third = ((start + k) % 127) * 2;
        let (a, b) = ([10, 231, third], [10, 231, third + 1]);
        let taken = |net: [u8; 3]| used.contains(&format!("{}.", dotted(net)));
        if !taken(a) && !taken(b) {
            return Ok((a, b));
        }
    }
    Err(BenchError::runtime("no free /24 under 10.231.0.0/16"))
}

fn addr(net: [u8; 3], host: u8) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], host)
}

fn dotted(net: [u8; 3]) -> String {
    format!("{}.{}.{}", net[0], net[1], net[2])
}

/// Runs `ip args`; its stderr is the error.
fn ip(args: &[&str]) -> Result<(), BenchError> {
    output(args).map(|_| ())
}

fn output(args: &[&str]) -> Result<String, BenchError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| BenchError::Spawn {
            what: "ip (iproute2)".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::runtime(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::stale;

    #[test]
    fn only_names_of_dead_bench_runs_are_stale() {
        // Pid 0 never names a user process; /proc/0 does not exist.
        assert!(stale("spk0n3"));
        assert!(stale("spk0cb"));
        assert!(stale("spk0s12"));
        assert!(!stale(&format!("spk{}n1", std::process::id())));
        assert!(!stale("spk0x1"));
        assert!(!stale("spkn1"));
        assert!(!stale("eth0"));
        assert!(!stale("spark0n1"));
        // pid 1 is alive.
        assert!(!stale("spk1n1"));
    }
}
