//! What the fleet costs NATS: messages and bytes per node per minute, read from the servers'
//! own monitoring endpoints (`/connz` per connection, `/varz` per server) at the start and the
//! end of a window.
//!
//! A node's connection is named `spark node <id>` (`FleetConfig::client_name`), so the
//! bench's own connections (its observer, the `spark fleet` CLI) are left out. The arithmetic
//! is pure ([`rates`]) and tested here; [`sample`] only reads the servers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use spark_testkit::NatsCluster;

/// The name prefix of a node's NATS connection.
const NODE_CONNECTION: &str = "spark node ";

/// One connection's counters on one server (`in` = what the client published).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConnSample {
    /// The server's index in the cluster.
    pub server: usize,
    /// The server's connection id (unique per server run).
    pub cid: u64,
    /// The node's id.
    pub node: String,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// One server's totals (every kind of connection, routes included).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServerSample {
    pub server: usize,
    pub msgs: u64,
    pub bytes: u64,
}

/// Everything read at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub connections: Vec<ConnSample>,
    pub servers: Vec<ServerSample>,
}

/// NATS traffic over a window, per node and per server, per minute.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Traffic {
    /// Length of the window.
    pub window_s: f64,
    /// Nodes whose connections were counted.
    pub nodes_seen: usize,
    /// Messages a node published (heartbeats, reads, planner writes), per minute.
    pub sent_msgs_per_node_min: f64,
    /// Messages delivered to a node (replies, watch updates), per minute.
    pub received_msgs_per_node_min: f64,
    /// Both directions.
    pub msgs_per_node_min: f64,
    /// Bytes a node published, per minute.
    pub sent_bytes_per_node_min: f64,
    /// Bytes delivered to a node, per minute.
    pub received_bytes_per_node_min: f64,
    /// Both directions.
    pub bytes_per_node_min: f64,
    /// Messages in and out of one server (clients, routes, JetStream replication), per
    /// minute, averaged over the servers.
    pub msgs_per_server_min: f64,
    /// Bytes in and out of one server, per minute, averaged over the servers.
    pub bytes_per_server_min: f64,
}

/// Rates between `start` and `end`, `window` apart, for a fleet of `nodes`. A connection
/// present only at the end (a reconnect) counts from zero; one gone by the end is lost (so
/// windows are chosen without planned disconnections).
pub(crate) fn rates(start: &Sample, end: &Sample, window: Duration, nodes: usize) -> Traffic {
    let minutes = window.as_secs_f64() / 60.0;
    if minutes <= 0.0 || nodes == 0 {
        return Traffic::default();
    }
    let before: BTreeMap<(usize, u64), &ConnSample> = start
        .connections
        .iter()
        .map(|c| ((c.server, c.cid), c))
        .collect();
    let (mut sent, mut received, mut sent_bytes, mut received_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = std::collections::BTreeSet::new();
    for c in &end.connections {
        let b = before.get(&(c.server, c.cid)).copied();
        let base = b.cloned().unwrap_or_default();
        sent += c.in_msgs.saturating_sub(base.in_msgs);
        received += c.out_msgs.saturating_sub(base.out_msgs);
        sent_bytes += c.in_bytes.saturating_sub(base.in_bytes);
        received_bytes += c.out_bytes.saturating_sub(base.out_bytes);
        seen.insert(c.node.clone());
    }
    let per_node = |v: u64| v as f64 / nodes as f64 / minutes;
    let servers: BTreeMap<usize, &ServerSample> =
        start.servers.iter().map(|s| (s.server, s)).collect();
    let (mut msgs, mut bytes, mut counted) = (0u64, 0u64, 0usize);
    for s in &end.servers {
        if let Some(b) = servers.get(&s.server) {
            msgs += s.msgs.saturating_sub(b.msgs);
            bytes += s.bytes.saturating_sub(b.bytes);
            counted += 1;
        }
    }
    let per_server = |v: u64| {
        if counted == 0 {
            0.0
        } else {
            v as f64 / counted as f64 / minutes
        }
    };
    Traffic {
        window_s: window.as_secs_f64(),
        nodes_seen: seen.len(),
        sent_msgs_per_node_min: per_node(sent),
        received_msgs_per_node_min: per_node(received),
        msgs_per_node_min: per_node(sent + received),
        sent_bytes_per_node_min: per_node(sent_bytes),
        received_bytes_per_node_min: per_node(received_bytes),
        bytes_per_node_min: per_node(sent_bytes + received_bytes),
        msgs_per_server_min: per_server(msgs),
        bytes_per_server_min: per_server(bytes),
    }
}

/// Reads every running server's `/connz` and `/varz` (a server not answering is left out).
pub(crate) fn sample(cluster: &NatsCluster) -> Sample {
    let mut sample = Sample::default();
    for server in 0..cluster.len() {
        if !cluster.is_running(server) {
            continue;
        }
        if let Some((200, body)) = cluster.monitor_get(server, "/connz?limit=100000") {
            sample.connections.extend(parse_connz(server, &body));
        }
        if let Some((200, body)) = cluster.monitor_get(server, "/varz")
            && let Some(s) = parse_varz(server, &body)
        {
            sample.servers.push(s);
        }
    }
    sample
}

fn parse_connz(server: usize, body: &str) -> Vec<ConnSample> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let number = |c: &serde_json::Value, key: &str| c[key].as_u64().unwrap_or(0);
    value["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let node = c["name"].as_str()?.strip_prefix(NODE_CONNECTION)?;
            Some(ConnSample {
                server,
                cid: number(c, "cid"),
                node: node.to_owned(),
                in_msgs: number(c, "in_msgs"),
                out_msgs: number(c, "out_msgs"),
                in_bytes: number(c, "in_bytes"),
                out_bytes: number(c, "out_bytes"),
            })
        })
        .collect()
}

fn parse_varz(server: usize, body: &str) -> Option<ServerSample> {
    let value = serde_json::from_str::<serde_json::Value>(body).ok()?;
    let number = |key: &str| value[key].as_u64().unwrap_or(0);
    Some(ServerSample {
        server,
        msgs: number("in_msgs") + number("out_msgs"),
        bytes: number("in_bytes") + number("out_bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(server: usize, cid: u64, node: &str, msgs: u64, bytes: u64) -> ConnSample {
        ConnSample {
            server,
            cid,
            node: node.into(),
            in_msgs: msgs,
            out_msgs: 2 * msgs,
            in_bytes: bytes,
            out_bytes: 2 * bytes,
        }
    }

    #[test]
    fn rates_are_deltas_per_node_per_minute() {
        let start = Sample {
            connections: vec![conn(0, 1, "n1", 100, 1000), conn(1, 7, "n2", 50, 500)],
            servers: vec![
                ServerSample {
                    server: 0,
                    msgs: 10,
                    bytes: 100,
                },
                ServerSample {
                    server: 1,
                    msgs: 10,
                    bytes: 100,
                },
            ],
        };
        let end = Sample {
            connections: vec![
                conn(0, 1, "n1", 160, 1600),
                // n2 reconnected to server 2 during the window: counted from zero.
                conn(2, 3, "n2", 20, 200),
            ],
            servers: vec![
                ServerSample {
                    server: 0,
                    msgs: 130,
                    bytes: 1300,
                },
                ServerSample {
                    server: 1,
                    msgs: 70,
                    bytes: 700,
                },
            ],
        };
        let t = rates(&start, &end, Duration::from_secs(30), 2);
        // Sent: 60 + 20 = 80 messages in half a minute, over 2 nodes: 80 per node-minute.
        assert_eq!(t.sent_msgs_per_node_min, 80.0);
        assert_eq!(t.received_msgs_per_node_min, 160.0);
        assert_eq!(t.msgs_per_node_min, 240.0);
        assert_eq!(t.sent_bytes_per_node_min, 800.0);
        assert_eq!(t.bytes_per_node_min, 2400.0);
        assert_eq!(t.nodes_seen, 2);
        // Servers: (120 + 60) / 2 servers / 0.5 min.
        assert_eq!(t.msgs_per_server_min, 180.0);
        assert_eq!(t.bytes_per_server_min, 1800.0);
    }

    #[test]
    fn an_empty_window_or_fleet_is_all_zero() {
        let s = Sample::default();
        assert_eq!(rates(&s, &s, Duration::ZERO, 3), Traffic::default());
        assert_eq!(rates(&s, &s, Duration::from_secs(1), 0), Traffic::default());
    }

    #[test]
    fn only_node_connections_are_read_from_connz() {
        let body = r#"{"connections":[
            {"cid":4,"name":"spark node n1","in_msgs":5,"out_msgs":6,"in_bytes":50,"out_bytes":60},
            {"cid":5,"name":"spark","in_msgs":9,"out_msgs":9,"in_bytes":90,"out_bytes":90},
            {"cid":6,"in_msgs":1}
        ]}"#;
        let conns = parse_connz(2, body);
        assert_eq!(
            conns,
            vec![ConnSample {
                server: 2,
                cid: 4,
                node: "n1".into(),
                in_msgs: 5,
                out_msgs: 6,
                in_bytes: 50,
                out_bytes: 60
            }]
        );
        assert!(parse_connz(0, "not json").is_empty());
        let varz = parse_varz(
            1,
            r#"{"in_msgs":3,"out_msgs":4,"in_bytes":30,"out_bytes":40}"#,
        );
        assert_eq!(
            varz,
            Some(ServerSample {
                server: 1,
                msgs: 7,
                bytes: 70
            })
        );
    }
}
