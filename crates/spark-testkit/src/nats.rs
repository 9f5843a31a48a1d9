//! A real `nats-server` with JetStream on a free 127.0.0.1 port and a temporary store, for the
//! fleet tests. The binary comes from `SPARK_NATS_SERVER` (`make test` sets it from
//! `scripts/fetch-nats.sh`), else the script's cache. Missing, the test fails and says how to
//! install it: a fleet test that silently passes without a server would prove nothing.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version `scripts/fetch-nats.sh` installs.
const PINNED: &str = "2.15.1";

/// The nats-server binary to run.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SPARK_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SPARK_NATS_SERVER={} does not exist: run scripts/fetch-nats.sh",
            path.display()
        );
        return path;
    }
    let cached = std::env::var_os("HOME").map(|home| {
        Path::new(&home)
            .join(".cache/spark-nats")
            .join(PINNED)
            .join("nats-server")
    });
    match cached {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "nats-server not found: the fleet tests need a real one. Run scripts/fetch-nats.sh \
             (make test and .ci/run do) or set SPARK_NATS_SERVER to a nats-server 2.10+ binary"
        ),
    }
}

/// A nats-server process; killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    /// Extra configuration (accounts, authorization, TLS), written to a config file.
    config: Option<String>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and waits until it accepts clients.
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut server = NatsServer {
            child: None,
            port,
            store,
            config: None,
        };
        server.spawn();
        server
    }

    /// Starts a server with JetStream on a free port and `config` (nats-server configuration
    /// text: `accounts`, `authorization`, `tls` blocks...) added to its config file.
    pub fn start_with_config(config: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("temporary directory");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store,
            config: Some(config.to_owned()),
        };
        server.spawn();
        server
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (its JetStream store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut command = Command::new(nats_server_bin());
        match &self.config {
            None => {
                command
                    .args([
                        "-a",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-js",
                        "-sd",
                    ])
                    .arg(self.store.path());
            }
            Some(extra) => {
                let path = self.store.path().join("nats-server.conf");
                let text = format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: {:?}\n}}\n{extra}\n",
                    self.port,
                    self.store.path().join("js").display().to_string()
                );
                std::fs::write(&path, text).expect("writing the nats-server config");
                command.arg("-c").arg(path);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        wait_ready(self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until the server greets a client with its INFO line.
fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut greeting = [0u8; 4];
            if stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO" {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nats-server did not start on 127.0.0.1:{port} within 10 s");
}
