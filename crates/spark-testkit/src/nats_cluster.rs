//! A JetStream cluster of real nats-servers (routes between them, one store each), for the
//! fleet's tests and for `spark bench fleet`: what a fleet runs in production, where one
//! server can die and the R3 buckets carry on with the other two.
//!
//! Clients listen on `client_host` (127.0.0.1 for tests; the bench's bridge address so nodes
//! in network namespaces reach it); routes and the monitoring endpoints (`/healthz`,
//! `/connz`, `/varz`, `/jsz`) stay on 127.0.0.1. Unlike [`NatsServer`](crate::NatsServer),
//! starting returns errors instead of panicking, because the bench is not a test. Every
//! server is killed when the cluster is dropped.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a cluster could not start or did not become healthy.
#[derive(Debug, thiserror::Error)]
pub enum NatsClusterError {
    /// A port, the store or a config file could not be set up.
    #[error("preparing nats-server {server}")]
    Io {
        /// The server's name (`s1`...).
        server: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be started.
    #[error("cannot start {bin} (server {server})")]
    Spawn {
        /// The nats-server binary.
        bin: String,
        /// The server's name.
        server: String,
        /// Why spawning failed.
        #[source]
        source: std::io::Error,
    },
    /// A server did not report itself healthy (JetStream with a meta leader) in time.
    #[error("nats-server {server} not healthy within {within:?}: {last}")]
    NotHealthy {
        /// The server's name.
        server: String,
        /// How long it was given.
        within: Duration,
        /// What `/healthz` said last (or why it could not be asked).
        last: String,
    },
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct NatsClusterOptions {
    /// The nats-server binary.
    pub bin: PathBuf,
    /// Servers in the cluster (3 for R3 buckets).
    pub size: usize,
    /// The address clients connect to.
    pub client_host: IpAddr,
    /// How long to wait for every server to be healthy.
    pub ready_within: Duration,
}

impl NatsClusterOptions {
    /// `size` servers of `bin` for clients on 127.0.0.1, healthy within 30 s.
    pub fn local(bin: PathBuf, size: usize) -> NatsClusterOptions {
        NatsClusterOptions {
            bin,
            size,
            client_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ready_within: Duration::from_secs(30),
        }
    }
}

/// One server of the cluster.
struct Member {
    name: String,
    client: SocketAddr,
    monitor: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
}

/// A running cluster; every server is killed on drop.
pub struct NatsCluster {
    bin: PathBuf,
    members: Vec<Member>,
    ready_within: Duration,
    // Dropped after the members' processes (`Drop` kills them first).
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Three servers on 127.0.0.1 for a test (panics if they do not start). A cluster that
    /// does not become healthy is started once more on fresh ports: its ports are picked free
    /// and then bound by the servers, and another test's process can take one in between (CI
    /// saw a server whose JetStream never found a meta leader).
    pub fn start() -> NatsCluster {
        let options = NatsClusterOptions::local(crate::nats_server_bin(), 3);
        NatsCluster::try_start(&options)
            .or_else(|first| {
                eprintln!("nats-server cluster not healthy ({first}); starting it again");
                NatsCluster::try_start(&options)
            })
            .expect("starting a nats-server cluster")
    }

    /// Starts `options.size` servers and waits until each is healthy.
    pub fn try_start(options: &NatsClusterOptions) -> Result<NatsCluster, NatsClusterError> {
        let dir = tempfile::tempdir().map_err(|source| NatsClusterError::Io {
            server: "cluster".into(),
            source,
        })?;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut routes = Vec::new();
        let mut plans = Vec::new();
        for i in 1..=options.size {
            let name = format!("s{i}");
            let io = |source| NatsClusterError::Io {
                server: name.clone(),
                source,
            };
            let client = SocketAddr::new(
                options.client_host,
                free_port(options.client_host).map_err(io)?,
            );
            let monitor = SocketAddr::new(loopback, free_port(loopback).map_err(io)?);
            let route = SocketAddr::new(loopback, free_port(loopback).map_err(io)?);
            routes.push(format!("\"nats-route://{route}\""));
            plans.push((name, client, monitor, route));
        }
        let routes = routes.join(", ");
        let mut members = Vec::new();
        for (name, client, monitor, route) in plans {
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: \"{client}\"\nhttp: \"{monitor}\"\n\
                 jetstream {{\n  store_dir: {store:?}\n}}\n\
                 cluster {{\n  name: spark\n  listen: \"{route}\"\n  routes: [{routes}]\n}}\n",
                store = store.display().to_string(),
            );
            std::fs::write(&config, text).map_err(|source| NatsClusterError::Io {
                server: name.clone(),
                source,
            })?;
            members.push(Member {
                name,
                client,
                monitor,
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            bin: options.bin.clone(),
            members,
            ready_within: options.ready_within,
            dir,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// Servers in the cluster.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no server (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every server's client URL, comma-separated: what a client must be given to survive
    /// losing the one it is connected to.
    pub fn urls(&self) -> String {
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.members[i].client)
    }

    /// Server `i`'s name (`s1`, `s2`...), as `/jsz` names stream leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Server `i`'s monitoring address (`/healthz`, `/connz`, `/varz`, `/jsz`).
    pub fn monitor(&self, i: usize) -> SocketAddr {
        self.members[i].monitor
    }

    /// Whether server `i` is running (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Server `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// The directory of the servers' configs and stores (each server's command line names
    /// its config there, so it identifies this cluster's processes).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills server `i` with SIGKILL (its store stays for [`NatsCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again (same ports, same store) and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), NatsClusterError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    /// `GET path` on server `i`'s monitoring port: the status and body, or `None` when it
    /// does not answer.
    pub fn monitor_get(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_get(self.members[i].monitor, path)
    }

    fn spawn(&mut self, i: usize) -> Result<(), NatsClusterError> {
        let member = &mut self.members[i];
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&member.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| NatsClusterError::Spawn {
                bin: self.bin.display().to_string(),
                server: member.name.clone(),
                source,
            })?;
        member.child = Some(child);
        Ok(())
    }

    /// Waits until server `i`'s `/healthz` answers 200 (JetStream up, a meta leader known).
    fn wait_healthy(&self, i: usize) -> Result<(), NatsClusterError> {
        let deadline = Instant::now() + self.ready_within;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match self.monitor_get(i, "/healthz") {
                Some((200, _)) => return Ok(()),
                Some((status, body)) => last = format!("{status} {}", body.trim()),
                None => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(NatsClusterError::NotHealthy {
            server: self.members[i].name.clone(),
            within: self.ready_within,
            last,
        })
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn free_port(host: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// A blocking HTTP/1.0 GET (the monitoring endpoints answer it and close).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}
