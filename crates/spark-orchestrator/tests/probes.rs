//! Probes against fixture trees copied from real machines' formats, temp-dir roots whose files
//! change between samples, and real TCP and HTTP servers on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spark_orchestrator::policy::PowerSignal;
use spark_orchestrator::probes::{
    BatteryProbe, CpuProbe, MemoryProbe, PowerSource, ProbeConfig, ProbeConfigError, ProbeHealth,
    Probes, Telemetry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fixture tree. The crate's directory is read when the test runs (cargo sets it), not when
/// it was compiled: a build cache shared between checkouts may hand this binary to another.
fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(name)
}

/// A writable copy of a fixture (or an empty root when `name` is `None`).
fn scratch(name: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(name) = name {
        copy_tree(&fixture(name), dir.path());
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn probes_at(root: &Path) -> Probes {
    Probes::new(ProbeConfig {
        root: root.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

fn degraded_reason(health: &ProbeHealth) -> &str {
    match health {
        ProbeHealth::Degraded(reason) => reason,
        other => panic!("expected degraded, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---- fixtures -------------------------------------------------------------------------------

#[tokio::test]
async fn laptop_on_battery() {
    let telemetry = probes_at(&fixture("laptop-battery")).sample(1_000).await;
    assert_eq!(telemetry.at_ms, 1_000);
    // The Bluetooth mouse at 5 % (scope Device) is not the system's battery.
    assert_eq!(
        telemetry.power.source,
        PowerSource::Battery {
            percent: 57.0,
            charging: false
        }
    );
    assert_eq!(telemetry.power.health, ProbeHealth::Ok);
    assert_eq!(telemetry.cpu.cpus, Some(4));
    assert_eq!(telemetry.cpu.utilisation, None, "first sample has no delta");
    assert_eq!(telemetry.cpu.cgroup_limit_cores, None);
    assert_eq!(telemetry.cpu.psi_some_avg10, Some(3.12));
    assert_eq!(telemetry.cpu.health, ProbeHealth::Ok);
    let memory = &telemetry.memory;
    assert_eq!(
        (memory.total_kib, memory.available_kib),
        (Some(16302044), Some(10514220))
    );
    assert_eq!(memory.psi.unwrap().full.unwrap().avg300, 0.11);
    assert_eq!(memory.pressure(), Some(0.0));
    assert_eq!(memory.health, ProbeHealth::Ok);
    assert_eq!(telemetry.network.health, ProbeHealth::Ok);
}

#[tokio::test]
async fn server_with_cgroup_limits() {
    let telemetry = probes_at(&fixture("server-cgroup")).sample(0).await;
    let cpu = &telemetry.cpu;
    assert_eq!((cpu.cpus, cpu.cgroup_limit_cores), (Some(8), Some(1.5)));
    assert_eq!(cpu.effective_cores(), Some(1.5));
    assert_eq!(cpu.psi_some_avg10, Some(12.40));
    assert_eq!(cpu.health, ProbeHealth::Ok);
    let memory = &telemetry.memory;
    assert_eq!(memory.cgroup_max_bytes, Some(2147483648));
    assert_eq!(memory.cgroup_current_bytes, Some(2040109465));
    assert_eq!(memory.cgroup_inactive_file_bytes, Some(104857600));
    assert_eq!(memory.cgroup_psi.unwrap().some.avg10, 4.20);
    // The working set (0.90 of memory.max) outweighs PSI (full 1.10 / 5 = 0.22).
    let working_set = (2040109465.0 - 104857600.0) / 2147483648.0;
    assert!(close(memory.pressure().unwrap(), (working_set - 0.8) / 0.2));
    assert_eq!(memory.health, ProbeHealth::Ok);
    assert_eq!(telemetry.power.source, PowerSource::Mains);
    assert_eq!(telemetry.power.health, ProbeHealth::Ok);

    let signals = telemetry.node_signals();
    assert_eq!(signals.cpus, 1.5);
    assert_eq!(signals.power, PowerSignal::Mains);
    assert_eq!(signals.memory_pressure, memory.pressure());
}

#[tokio::test]
async fn old_kernel_degrades_to_what_it_has() {
    let telemetry = probes_at(&fixture("old-kernel")).sample(0).await;
    let cpu = &telemetry.cpu;
    assert_eq!(cpu.cpus, Some(2));
    assert_eq!(cpu.psi_some_avg10, None);
    let reason = degraded_reason(&cpu.health);
    assert!(
        reason.contains("proc/pressure/cpu: missing (kernel without PSI"),
        "{reason}"
    );
    let memory = &telemetry.memory;
    assert_eq!(memory.psi, None);
    assert!(degraded_reason(&memory.health).contains("proc/pressure/memory: missing"));
    // No MemAvailable before 3.14: MemFree + Buffers + Cached.
    assert_eq!(memory.available_kib, Some(412300 + 201200 + 1812400));
    assert_eq!(
        (memory.cgroup_current_bytes, memory.cgroup_max_bytes),
        (None, None)
    );
    assert!(memory.pressure().is_some());
    assert_eq!(telemetry.power.source, PowerSource::Mains);
    assert_eq!(
        telemetry.power.health,
        ProbeHealth::Ok,
        "no power_supply class is an answer"
    );
}

#[tokio::test]
async fn garbled_files_degrade_only_their_fields() {
    let telemetry = probes_at(&fixture("garbled")).sample(0).await;
    let cpu = &telemetry.cpu;
    assert_eq!((cpu.cpus, cpu.utilisation), (None, None));
    assert_eq!(
        cpu.psi_some_avg10,
        Some(0.0),
        "the intact PSI file is still read"
    );
    let reason = degraded_reason(&cpu.health);
    assert!(
        reason.contains("proc/stat: garbled: 2 fields, need at least 4"),
        "{reason}"
    );
    let memory = &telemetry.memory;
    assert_eq!(memory.psi, None);
    assert!(degraded_reason(&memory.health).contains("proc/pressure/memory: garbled"));
    // meminfo still counts: 90 % used is half-way up the usage ramp.
    assert!(close(memory.pressure().unwrap(), 0.5));
    assert_eq!(telemetry.power.source, PowerSource::Mains);
    let reason = degraded_reason(&telemetry.power.health);
    assert!(
        reason.contains("BAT0/capacity: garbled: expected a number, found \"5O\""),
        "{reason}"
    );
}

// ---- CPU deltas -----------------------------------------------------------------------------

const PER_CPU: &str = "cpu0 1 1 1 1 1 0 0 0 0 0\ncpu1 1 1 1 1 1 0 0 0 0 0\nintr 0\nctxt 0\n";

fn write_stat(root: &Path, aggregate: &str) {
    write(root, "proc/stat", &format!("cpu  {aggregate}\n{PER_CPU}"));
}

#[test]
fn cpu_utilisation_is_the_busy_share_of_the_tick_delta() {
    let root = scratch(None);
    let mut probe = CpuProbe::new(root.path());
    write_stat(root.path(), "100 0 100 700 100 0 0 0 0 0");
    assert_eq!(probe.sample(0).utilisation, None);
    // +150 user +50 system +200 idle; guest time (+50) is inside user and must not count twice.
    write_stat(root.path(), "250 0 150 900 100 0 0 0 50 0");
    let reading = probe.sample(1_000);
    assert_eq!(reading.utilisation, Some(0.5));
    assert_eq!(reading.cpus, Some(2));
    // Only iowait moved: waiting on I/O is not busy.
    write_stat(root.path(), "250 0 150 900 300 0 0 0 50 0");
    assert_eq!(probe.sample(2_000).utilisation, Some(0.0));
    // All busy (irq and softirq count as busy).
    write_stat(root.path(), "350 0 150 900 300 50 50 0 50 0");
    assert_eq!(probe.sample(3_000).utilisation, Some(1.0));
    // Nothing moved: no interval, no number.
    assert_eq!(probe.sample(4_000).utilisation, None);
}

#[test]
fn cpu_keeps_the_last_good_counters_across_a_garbled_sample() {
    let root = scratch(None);
    let mut probe = CpuProbe::new(root.path());
    write_stat(root.path(), "100 0 100 700 100 0 0 0 0 0");
    probe.sample(0);
    write(root.path(), "proc/stat", "cpu  614518 99378");
    let garbled = probe.sample(1_000);
    assert_eq!(garbled.utilisation, None);
    assert!(garbled.health.is_degraded());
    write_stat(root.path(), "400 0 100 800 100 0 0 0 0 0");
    assert_eq!(probe.sample(2_000).utilisation, Some(0.75));
}

#[test]
fn cgroup_utilisation_is_usage_over_the_quota() {
    let root = scratch(Some("server-cgroup"));
    let mut probe = CpuProbe::new(root.path());
    assert_eq!(probe.sample(10_000).cgroup_utilisation, None);
    // 1.5 cores for 1 s is 1.5 s of CPU; 0.75 s used is half.
    write(
        root.path(),
        "sys/fs/cgroup/cpu.stat",
        "usage_usec 813095678\nuser_usec 1\nsystem_usec 1\n",
    );
    let reading = probe.sample(11_000);
    assert!(close(reading.cgroup_utilisation.unwrap(), 0.5));
    assert_eq!(reading.cgroup_limit_cores, Some(1.5));
    // The quota lifted: no limit, no cgroup utilisation.
    write(root.path(), "sys/fs/cgroup/cpu.max", "max 100000\n");
    let reading = probe.sample(12_000);
    assert_eq!(
        (reading.cgroup_limit_cores, reading.cgroup_utilisation),
        (None, None)
    );
    assert_eq!(reading.health, ProbeHealth::Ok);
}

#[test]
fn limits_are_read_from_the_process_own_cgroup() {
    let root = scratch(Some("server-cgroup"));
    let service = "sys/fs/cgroup/system.slice/spark.service";
    write(
        root.path(),
        "proc/self/cgroup",
        "0::/system.slice/spark.service\n",
    );
    write(root.path(), &format!("{service}/cpu.max"), "50000 100000\n");
    write(
        root.path(),
        &format!("{service}/cpu.stat"),
        "usage_usec 5\n",
    );
    write(root.path(), &format!("{service}/memory.max"), "max\n");
    write(
        root.path(),
        &format!("{service}/memory.current"),
        "1048576\n",
    );
    assert_eq!(
        CpuProbe::new(root.path()).sample(0).cgroup_limit_cores,
        Some(0.5)
    );
    let memory = MemoryProbe::new(root.path()).sample();
    assert_eq!(
        (memory.cgroup_current_bytes, memory.cgroup_max_bytes),
        (Some(1048576), None)
    );
    assert_eq!(
        memory.cgroup_psi, None,
        "the service has no memory.pressure of its own here"
    );
}

// ---- battery --------------------------------------------------------------------------------

#[test]
fn adapter_online_means_charging() {
    let root = scratch(Some("laptop-battery"));
    write(root.path(), "sys/class/power_supply/AC/online", "1\n");
    let power = BatteryProbe::new(root.path()).sample();
    assert_eq!(
        power.source,
        PowerSource::Battery {
            percent: 57.0,
            charging: true
        }
    );
}

#[test]
fn several_batteries_average_with_equal_weight() {
    let root = scratch(Some("laptop-battery"));
    let bat1 = "sys/class/power_supply/BAT1";
    write(root.path(), &format!("{bat1}/type"), "Battery\n");
    write(root.path(), &format!("{bat1}/status"), "Charging\n");
    // No `capacity`: the energy pair gives 83 %.
    write(root.path(), &format!("{bat1}/energy_now"), "19920000\n");
    write(root.path(), &format!("{bat1}/energy_full"), "24000000\n");
    // An empty bay is not a battery at 0 %.
    let bat2 = "sys/class/power_supply/BAT2";
    write(root.path(), &format!("{bat2}/type"), "Battery\n");
    write(root.path(), &format!("{bat2}/present"), "0\n");
    let power = BatteryProbe::new(root.path()).sample();
    assert_eq!(
        power.source,
        PowerSource::Battery {
            percent: 70.0,
            charging: true
        }
    );
    assert_eq!(power.health, ProbeHealth::Ok);
}

#[test]
fn no_battery_entry_is_mains() {
    let root = scratch(None);
    write(root.path(), "sys/class/power_supply/ADP1/type", "Mains\n");
    write(root.path(), "sys/class/power_supply/ADP1/online", "1\n");
    let power = BatteryProbe::new(root.path()).sample();
    assert_eq!(
        (power.source, power.health),
        (PowerSource::Mains, ProbeHealth::Ok)
    );
}

// ---- degradation is logged once -------------------------------------------------------------

#[test]
fn degradation_logs_once_and_recovery_once() {
    let root = scratch(Some("garbled"));
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.clone(), || {
        let mut cpu = CpuProbe::new(root.path());
        let mut memory = MemoryProbe::new(root.path());
        let mut battery = BatteryProbe::new(root.path());
        let mut sample_all = |at| {
            (
                cpu.sample(at).health,
                memory.sample().health,
                battery.sample().health,
            )
        };
        for at in 0..3 {
            sample_all(at);
        }
        assert_eq!(logs.count("WARN"), 3, "{:?}", logs.lines());
        assert_eq!(logs.count("INFO"), 0);

        write_stat(root.path(), "100 0 100 700 100 0 0 0 0 0");
        write(
            root.path(),
            "proc/pressure/memory",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        write(root.path(), "sys/class/power_supply/BAT0/capacity", "50\n");
        for at in 3..6 {
            assert_eq!(
                sample_all(at),
                (ProbeHealth::Ok, ProbeHealth::Ok, ProbeHealth::Ok)
            );
        }
        assert_eq!(logs.count("WARN"), 3);
        assert_eq!(logs.count("INFO"), 3, "{:?}", logs.lines());
    });
    let lines = logs.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN cpu probe degraded:") && l.contains("proc/stat"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO battery probe recovered:") && l.contains("BAT0/capacity"))
    );
}

/// A subscriber that keeps `LEVEL message` of every event.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, level: &str) -> usize {
        self.lines().iter().filter(|l| l.starts_with(level)).count()
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = format!("{} {}", event.metadata().level(), message.0);
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// ---- configuration --------------------------------------------------------------------------

fn config_with(upstreams: &[&str], probe_timeout: Duration) -> ProbeConfig {
    ProbeConfig {
        root: fixture("server-cgroup"),
        upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
        probe_timeout,
        network_every: Duration::ZERO,
    }
}

#[test]
fn bad_config_is_rejected_with_the_entry_named() {
    let second = Duration::from_secs(1);
    let error = Probes::new(config_with(&["tcp://ok:1", "http://bad host/"], second)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "upstream \"http://bad host/\": contains whitespace or control characters"
    );
    let error = Probes::new(config_with(&["tcp://a:1", "tcp://a:1"], second)).unwrap_err();
    assert_eq!(
        error,
        ProbeConfigError::DuplicateUpstream("tcp://a:1".into())
    );
    let error = Probes::new(config_with(&[], Duration::ZERO)).unwrap_err();
    assert_eq!(error, ProbeConfigError::ZeroTimeout);
}

#[test]
fn default_telemetry_knows_nothing() {
    let telemetry = Telemetry::default();
    assert_eq!(telemetry.cpu.health, ProbeHealth::NotSampled);
    assert_eq!(telemetry.power.source, PowerSource::Mains);
    assert_eq!(telemetry.memory.pressure(), None);
    assert!(telemetry.network.upstreams.is_empty());
}

// ---- network --------------------------------------------------------------------------------

/// A tiny HTTP server answering one request with 204, handing back what it received.
async fn http_responder() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut chunk = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nServer: test\r\n\r\n")
                .await;
        }
    });
    (port, rx)
}

#[tokio::test]
async fn tcp_and_http_round_trips_are_measured() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let (http_port, mut requests) = http_responder().await;
    let upstreams = [
        format!("tcp://127.0.0.1:{tcp_port}"),
        format!("http://127.0.0.1:{http_port}/health"),
    ];
    let config = config_with(
        &upstreams.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(2),
    );
    let mut probes = Probes::new(config).unwrap();
    for at in 0..2 {
        let network = probes.sample(at).await.network;
        assert_eq!(network.health, ProbeHealth::Ok);
        for (reading, name) in network.upstreams.iter().zip(&upstreams) {
            assert_eq!(&reading.name, name);
            let rtt = reading.last_rtt_ms.expect("a round trip");
            assert!(rtt > 0.0 && rtt < 500.0, "{name}: {rtt} ms");
            assert!(reading.ewma_ms.is_some());
            assert_eq!(
                (reading.consecutive_failures, &reading.last_error),
                (0, &None)
            );
        }
        assert_eq!(network.upstreams[0].last_status, None);
        assert_eq!(network.upstreams[1].last_status, Some(204));
    }
    let request = requests.recv().await.unwrap();
    assert!(
        request.starts_with("HEAD /health HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: 127.0.0.1:{http_port}\r\n")),
        "{request}"
    );
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[tokio::test]
async fn a_closed_port_counts_failures_not_latency() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let name = format!("tcp://127.0.0.1:{port}");
    let mut probes = Probes::new(config_with(&[&name], Duration::from_secs(2))).unwrap();
    for failures in 1..=3 {
        let network = probes.sample(failures).await.network;
        let reading = &network.upstreams[0];
        assert_eq!(reading.consecutive_failures, failures as u32);
        assert_eq!((reading.last_rtt_ms, reading.ewma_ms), (None, None));
        assert!(
            reading
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("connect failed")
        );
        assert!(degraded_reason(&network.health).starts_with(&name));
    }
    assert_eq!(
        probes.sample(9).await.node_signals().uplink_latency_ms,
        None
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never answers the HEAD.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let timeout = Duration::from_millis(300);
    let mut probes = Probes::new(config_with(
        &[&format!("http://127.0.0.1:{port}/")],
        timeout,
    ))
    .unwrap();
    let start = Instant::now();
    let network = probes.sample(0).await.network;
    let elapsed = start.elapsed();
    assert!(elapsed >= timeout && elapsed < timeout * 5, "{elapsed:?}");
    let reading = &network.upstreams[0];
    assert_eq!(reading.last_error.as_deref(), Some("timed out after 300ms"));
    assert_eq!(
        (reading.last_rtt_ms, reading.consecutive_failures),
        (None, 1)
    );
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the connection was made; the answer never came"
    );
}

#[tokio::test]
async fn observed_outbound_latency_is_summarised_per_sample() {
    let mut probes = Probes::new(config_with(&[], Duration::from_secs(1))).unwrap();
    let outbound = probes.outbound();
    for ms in 1..=100 {
        outbound.record(Duration::from_millis(ms));
    }
    let reading = probes.sample(0).await.network.outbound;
    assert_eq!(
        (reading.count, reading.p90_ms, reading.ewma_p90_ms),
        (100, Some(90.0), Some(90.0))
    );
    outbound.record(Duration::from_millis(190));
    let reading = probes.sample(1).await.network.outbound;
    assert_eq!((reading.count, reading.p90_ms), (1, Some(190.0)));
    assert!(close(reading.ewma_p90_ms.unwrap(), 120.0));
}
