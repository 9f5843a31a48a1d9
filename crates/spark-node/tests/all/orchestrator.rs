//! The orchestrator on a real node: a background module really throttled during a real surge
//! and restored after it, shedding by class, normal guests yielding to live critical work, and
//! every other trigger driven through probe fixture trees, all applied live without restarting
//! a module.
//!
//! The triggers driven by fixtures run on a manual clock: the test moves time by whole ticks
//! and asserts what the loop decided, exactly when the policy says it decides (a mode after
//! its enter ticks, a restore after its exit ticks). The surge tests keep real time: what
//! they measure is real CPU, shared by real threads over real seconds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spark_testkit::{TestNode, eventually, get};

/// The interval of the fixture manifests, and the ticks a mode takes to switch on and off.
const TICK: Duration = Duration::from_millis(200);
const ENTER_TICKS: u32 = 2;
const EXIT_TICKS: u32 = 6;

fn modes(node: &TestNode) -> spark_orchestrator::policy::Modes {
    node.node
        .control()
        .expect("orchestrator on")
        .state()
        .plan
        .modes
}

fn decisions(node: &TestNode) -> Vec<String> {
    let state = node.node.control().unwrap().state();
    state
        .decisions
        .iter()
        .map(|d| format!("{}: {} ({})", d.scope, d.change, d.reason))
        .collect()
}

/// CPU the module used over `window`, in cores.
async fn cores_used(node: &TestNode, id: &str, window: Duration) -> f64 {
    let slot = node.node.snapshot().module(id).cloned().unwrap();
    let before = slot.stats.cpu_time();
    tokio::time::sleep(window).await;
    (slot.stats.cpu_time() - before).as_secs_f64() / window.as_secs_f64()
}

/// Closed-loop clients hitting `url` until `stop`; counts successes.
fn clients(
    n: usize,
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (url, stop, done) = (url.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if get(&url).await.is_ok_and(|r| r.status == 200) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Shed (503): back off as a client honouring Retry-After would.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// `background_nice = 10` outside the idle class: the surge below saturates every CPU with
/// critical work, and only then does the kernel weight (not just the pacer) decide what
/// background gets; at nice 10 it holds about the 10% minimum (in the default idle class it
/// would be about 0.3%). Tiering is off so
/// that no background optimization compile takes CPU while shares are measured.
const SURGE: &str = r#"
version = 1
[node]
tiering = false
[orchestrator]
interval = "200ms"
background_min_share = 0.1
background_nice = 10
background_idle_class = false

[[module]]
id = "shop"
component = "{guest:busy}"
routes = ["/shop/..."]
priority = "critical"
[module.limits]
concurrency = 1
queue = 64
queue_timeout = "10s"

[[module]]
id = "reports"
component = "{guest:busy}"
routes = ["/reports/..."]
priority = "background"
[module.limits]
concurrency = 8
timeout = "60s"
cpu_time = "60s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_hog_is_throttled_during_a_surge_and_restored_after() {
    let node = TestNode::start_exclusive(SURGE).await.unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let before = node.node.snapshot().module("reports").cloned().unwrap();

    let stop_bg = Arc::new(AtomicBool::new(false));
    let bg_done = Arc::new(AtomicU64::new(0));
    let hog = clients(
        4,
        node.url("/reports/?work=10"),
        stop_bg.clone(),
        bg_done.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calm = cores_used(&node, "reports", Duration::from_millis(1000)).await;
    assert!(!modes(&node).surge);

    // A surge at the critical module: more clients than its concurrency, so it queues.
    let stop_shop = Arc::new(AtomicBool::new(false));
    let shop_done = Arc::new(AtomicU64::new(0));
    let shoppers = clients(
        6,
        node.url("/shop/?work=1"),
        stop_shop.clone(),
        shop_done.clone(),
    );
    assert!(
        eventually(Duration::from_secs(5), || modes(&node).surge).await,
        "no surge: {:?}",
        decisions(&node)
    );
    let bg_before_surge = bg_done.load(Ordering::Relaxed);
    let surge = cores_used(&node, "reports", Duration::from_millis(1000)).await;
    let bg_in_surge = bg_done.load(Ordering::Relaxed) - bg_before_surge;
    let slot = node.node.snapshot().module("reports").cloned().unwrap();
    assert_eq!(slot.controls.pacer.share(), Some(0.1));
    assert_eq!(
        (
            slot.admission.concurrency(),
            slot.admission.queue_capacity()
        ),
        (2, 0)
    );

    stop_shop.store(true, Ordering::Relaxed);
    for s in shoppers {
        let _ = s.await;
    }
    assert!(
        eventually(Duration::from_secs(8), || !modes(&node).surge).await,
        "the surge never ended: {:?}",
        decisions(&node)
    );
    let after = cores_used(&node, "reports", Duration::from_millis(1000)).await;
    stop_bg.store(true, Ordering::Relaxed);
    for h in hog {
        h.abort();
    }

    let min = 0.1 * cpus;
    assert!(
        calm > 0.5,
        "the background should use spare CPU when calm, used {calm:.2} cores"
    );
    assert!(
        surge <= min * 1.6,
        "during the surge the background should be held near its {min:.2}-core share, used {surge:.2}"
    );
    assert!(
        surge >= min * 0.4,
        "the background keeps (about) its minimum share, used {surge:.2} of {min:.2}"
    );
    assert!(
        bg_in_surge > 0,
        "background work continues during the surge"
    );
    assert!(
        after > 0.5 && after > 2.0 * surge,
        "the background catches up after the surge: {after:.2} cores (surge {surge:.2})"
    );
    assert!(shop_done.load(Ordering::Relaxed) > 50);

    let log = decisions(&node);
    let has = |text: &str| log.iter().any(|d| d.contains(text));
    assert!(
        has("node: surge started (critical module 'shop'"),
        "{log:#?}"
    );
    assert!(has("reports: cpu share unlimited -> 10%"), "{log:#?}");
    assert!(has("node: surge ended"), "{log:#?}");
    assert!(
        has("reports: cpu share 10% -> unlimited (no constraint active: restored)"),
        "{log:#?}"
    );
    let restored = node.node.snapshot().module("reports").cloned().unwrap();
    assert!(
        Arc::ptr_eq(&before, &restored),
        "the module was never replaced or restarted"
    );
    assert_eq!(restored.admission.concurrency(), 8);
    node.stop().await;
}

/// A surge that costs no CPU (critical requests wait on a slow upstream and queue): the CPU
/// is idle, so only the pacer can hold the background to its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pacer_holds_background_to_its_share_even_on_an_idle_cpu() {
    let upstream = crate::upstream::start("slow", Duration::from_millis(300)).await;
    let manifest = SURGE
        .replace("component = \"{guest:busy}\"\nroutes = [\"/shop/...\"]", &format!("component = \"{{guest:echo}}\"\nroutes = [\"/shop/...\"]\nallowed_outbound_hosts = [\"http://{upstream}\"]"));
    let node = TestNode::start_exclusive(&manifest).await.unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let hog = clients(4, node.url("/reports/?work=10"), stop.clone(), done.clone());
    let calm = cores_used(&node, "reports", Duration::from_millis(1000)).await;

    let shoppers = clients(
        4,
        node.url(&format!("/shop/fetch?url=http://{upstream}/")),
        stop.clone(),
        Arc::new(AtomicU64::new(0)),
    );
    assert!(
        eventually(Duration::from_secs(5), || modes(&node).surge).await,
        "no surge: {:?}",
        decisions(&node)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let surge = cores_used(&node, "reports", Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in hog.into_iter().chain(shoppers) {
        task.abort();
    }
    let slot = node.node.snapshot().module("reports").cloned().unwrap();
    let share = 0.1 * cpus;
    assert!(calm > 2.0 * share, "calm: {calm:.2} cores");
    assert!(
        (share * 0.5..=share * 1.5).contains(&surge),
        "held to {share:.2} cores during the surge, used {surge:.2}"
    );
    assert!(
        slot.controls.pacer.waited() > Duration::from_millis(200),
        "the pacer made the background wait ({:?})",
        slot.controls.pacer.waited()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_node_capacity_background_is_shed_before_critical() {
    let manifest = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_instances = 10

[[module]]
id = "hog"
component = "{guest:faults}"
routes = ["/hog/..."]
priority = "background"
[module.limits]
concurrency = 10
cpu_time = "1500ms"

[[module]]
id = "api"
component = "{guest:hello}"
routes = ["/api"]

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;
    let node = TestNode::start(manifest).await.unwrap();
    let url = node.url("/hog/loop");
    let hogs: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        get(&node.url("/api")).await.unwrap().status,
        200,
        "normal work still fits"
    );
    assert_eq!(
        get(&node.url("/shop")).await.unwrap().status,
        200,
        "critical work is never shed while background holds slots"
    );
    let mut statuses = Vec::new();
    for h in hogs {
        let reply = h.await.unwrap().unwrap();
        if reply.status == 503 {
            assert!(
                reply.text().contains("lower-priority work is shed first"),
                "{}",
                reply.text()
            );
            assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
        }
        statuses.push(reply.status);
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "background may hold 8 of 10 slots: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 504).count(),
        8,
        "{statuses:?}"
    );
    node.stop().await;
}

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

fn fixture_manifest(root: &Path, extra: &str) -> String {
    format!(
        r#"
version = 1
[orchestrator]
interval = "200ms"
probe_root = "{}"
{extra}

[[module]]
id = "sync"
component = "{{guest:inventory-sync}}"
schedule = {{ every = "1h" }}
priority = "background"

[[module]]
id = "reports"
component = "{{guest:echo}}"
routes = ["/reports/..."]
priority = "background"
allowed_outbound_hosts = ["http://127.0.0.1:*"]
[module.limits]
concurrency = 8

[[module]]
id = "shop"
component = "{{guest:hello}}"
routes = ["/shop"]
priority = "critical"
"#,
        root.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_battery_paces_jobs_until_power_returns() {
    let root = tempfile::tempdir().unwrap();
    let battery = "sys/class/power_supply/BAT0";
    write(root.path(), &format!("{battery}/type"), "Battery\n");
    write(root.path(), &format!("{battery}/capacity"), "12\n");
    write(root.path(), &format!("{battery}/status"), "Discharging\n");
    let node = TestNode::start_manual(&fixture_manifest(root.path(), "battery_low = 20"))
        .await
        .unwrap();
    let sync = node.node.snapshot().module("sync").cloned().unwrap();
    // The first tick ran at start; the mode is on at the second.
    assert_eq!(sync.controls.job_pacing(), 1.0);
    node.advance(TICK * (ENTER_TICKS - 1)).await;
    assert!(sync.controls.job_pacing() == 4.0, "{:?}", decisions(&node));
    assert!(modes(&node).power_save);
    assert!(
        decisions(&node)
            .iter()
            .any(|d| d.contains("power save started (on battery at 12%")),
        "{:?}",
        decisions(&node)
    );
    assert_eq!(get(&node.url("/shop")).await.unwrap().status, 200);

    write(root.path(), &format!("{battery}/status"), "Charging\n");
    node.advance(TICK * (EXIT_TICKS - 1)).await;
    assert!(modes(&node).power_save, "one tick short of the exit");
    node.advance(TICK).await;
    assert!(sync.controls.job_pacing() == 1.0, "{:?}", decisions(&node));
    assert!(!modes(&node).power_save);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_shrinks_background_capacity_and_relief_restores_it() {
    let root = tempfile::tempdir().unwrap();
    let psi = |some: f64| {
        format!(
            "some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )
    };
    write(root.path(), "proc/pressure/memory", &psi(45.0));
    write(
        root.path(),
        "proc/meminfo",
        "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n",
    );
    let node = TestNode::start_manual(&fixture_manifest(root.path(), ""))
        .await
        .unwrap();
    let reports = node.node.snapshot().module("reports").cloned().unwrap();
    node.advance(TICK * (ENTER_TICKS - 1)).await;
    assert!(
        reports.admission.concurrency() == 4,
        "{:?}",
        decisions(&node)
    );
    assert!(modes(&node).memory_pressure);
    assert_eq!(reports.controls.warm_limit(), Some(0));
    assert!(
        decisions(&node)
            .iter()
            .any(|d| d == "node: warm budget 100% -> 50% (active: memory pressure)"),
        "the warm budget is the policy's, logged with the rest: {:?}",
        decisions(&node)
    );

    write(root.path(), "proc/pressure/memory", &psi(0.5));
    node.advance(TICK * EXIT_TICKS).await;
    assert!(
        reports.admission.concurrency() == 8,
        "{:?}",
        decisions(&node)
    );
    assert_eq!(reports.controls.warm_limit(), None);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_uplink_paces_background_outbound_requests() {
    let slow = crate::upstream::start("slow", Duration::from_millis(400)).await;
    let fast = crate::upstream::start("fast", Duration::ZERO).await;
    let root = tempfile::tempdir().unwrap();
    let extra =
        format!("upstreams = [\"http://{slow}/\"]\nuplink_slow = \"300ms\"\ninterval = \"500ms\"");
    let manifest = fixture_manifest(root.path(), &extra)
        .replace("interval = \"200ms\"\n", "")
        .replace("http://127.0.0.1:*", &format!("http://{fast}"));
    let node = TestNode::start_manual(&manifest).await.unwrap();
    let reports = node.node.snapshot().module("reports").cloned().unwrap();
    // The first tick probed the upstream (a real round trip); the second keeps its reading.
    node.advance(Duration::from_millis(500) * (ENTER_TICKS - 1))
        .await;
    assert!(
        modes(&node).uplink_slow,
        "{:?}",
        node.node.control().unwrap().state().telemetry
    );
    assert_eq!(reports.controls.outbound.gap(), Duration::from_secs(1));

    // The pacing itself is the data plane's, in real time.
    let url = node.url(&format!("/reports/fetch?url=http://{fast}/"));
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&url).await.unwrap().status, 200);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "three paced requests take at least two gaps, took {:?}",
        started.elapsed()
    );
    node.stop().await;
}

#[tokio::test]
async fn missing_probe_files_degrade_the_probes_not_the_node() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start_manual(&fixture_manifest(root.path(), ""))
        .await
        .unwrap();
    let control = node.node.control().unwrap().clone();
    assert!(
        control.state().telemetry.is_some(),
        "the first tick ran at start"
    );
    let telemetry = control.state().telemetry.unwrap();
    assert!(
        telemetry.cpu.health.is_degraded(),
        "{:?}",
        telemetry.cpu.health
    );
    assert!(
        telemetry.memory.health.is_degraded(),
        "{:?}",
        telemetry.memory.health
    );
    assert_eq!(
        telemetry.power.source,
        spark_orchestrator::probes::PowerSource::Mains,
        "no battery: mains"
    );
    assert_eq!(get(&node.url("/shop")).await.unwrap().status, 200);
    let status = node.admin("GET", "/v1/orchestrator", b"").await.unwrap();
    assert_eq!(status.status, 200);
    assert!(status.text().contains("\"degraded\""), "{}", status.text());
    node.stop().await;
}

#[tokio::test]
async fn with_the_orchestrator_off_nothing_is_paced() {
    let manifest = "version = 1\n[orchestrator]\nenabled = false\n[[module]]\nid = \"bg\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/\"]\npriority = \"background\"\n";
    let node = TestNode::start(manifest).await.unwrap();
    assert!(node.node.control().is_none());
    assert_eq!(get(&node.url("/")).await.unwrap().status, 200);
    assert_eq!(
        node.admin("GET", "/v1/orchestrator", b"")
            .await
            .unwrap()
            .status,
        404
    );
    node.stop().await;
}

const CRITICAL_FIRST: &str = r#"
version = 1
[node]
tiering = false

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop/..."]
priority = "critical"

[[module]]
id = "api"
component = "{guest:hello}"
routes = ["/api/..."]
"#;

/// Normal guests started on idle-class threads so far, read from the metrics page.
async fn yielded(node: &TestNode, module: &str) -> f64 {
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    let series = format!("spark_guests_yielded_total{{module=\"{module}\"}}");
    spark_testkit::metric(&page, &series).unwrap_or_else(|| panic!("no {series} in:\n{page}"))
}

/// The scheduling policy of this process's threads named `name` (`/proc/self/task/*/stat`).
fn policies_of_threads(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            spark_runtime::priority::policy_in_stat(&stat)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_guests_yield_to_critical_work_while_it_is_live() {
    let node = TestNode::start(CRITICAL_FIRST).await.unwrap();
    let live_for = spark_runtime::critical_first::LIVE_FOR;
    // Loading ran the critical module's first instance.
    tokio::time::sleep(live_for + Duration::from_millis(200)).await;
    let api = |n: usize| {
        let url = node.url("/api/");
        async move {
            for _ in 0..n {
                assert_eq!(get(&url).await.unwrap().status, 200);
            }
        }
    };
    api(3).await;
    assert_eq!(yielded(&node, "api").await, 0.0, "no critical work yet");

    // A steady critical client, so critical work stays live however slowly this machine runs.
    let (stop, served) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let shoppers = clients(1, node.url("/shop/"), stop.clone(), served.clone());
    assert!(
        eventually(Duration::from_secs(10), || served.load(Ordering::Relaxed)
            > 0)
        .await
    );
    api(3).await;
    stop.store(true, Ordering::Relaxed);
    for shopper in shoppers {
        shopper.await.unwrap();
    }
    assert_eq!(
        yielded(&node, "api").await,
        3.0,
        "started while critical work was live"
    );
    assert_eq!(
        yielded(&node, "shop").await,
        0.0,
        "critical guests never yield"
    );
    let idle = policies_of_threads("spark-yielding");
    assert!(
        !idle.is_empty() && idle.iter().all(|&p| p == libc::SCHED_IDLE as u32),
        "the yielding threads are in the idle class: {idle:?}"
    );

    tokio::time::sleep(live_for + Duration::from_millis(200)).await;
    api(2).await;
    assert_eq!(
        yielded(&node, "api").await,
        3.0,
        "critical work over: normal priority again"
    );
    node.stop().await;

    let off = CRITICAL_FIRST.replace(
        "[[module]]\nid = \"shop\"",
        "[orchestrator]\ncritical_first = false\n\n[[module]]\nid = \"shop\"",
    );
    let node = TestNode::start(&off).await.unwrap();
    assert_eq!(get(&node.url("/shop/")).await.unwrap().status, 200);
    assert_eq!(get(&node.url("/api/")).await.unwrap().status, 200);
    assert_eq!(yielded(&node, "api").await, 0.0, "critical_first = false");
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    let apart = r#"spark_connections_served_apart_total{listener="public"}"#;
    assert_eq!(
        spark_testkit::metric(&page, apart),
        Some(0.0),
        "nor is any connection moved"
    );
    node.stop().await;
}
