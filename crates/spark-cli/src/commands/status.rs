//! `spark status`: what a running node serves, its limits and counters, from `/v1/status`.

use anyhow::Context;
use spark_node::NodeStatus;

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    admin: super::client::AdminArgs,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let body = args.admin.client()?.get("/v1/status").await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let status: NodeStatus = serde_json::from_slice(&body).context("reading the node's status")?;
    print(&status);
    Ok(())
}

fn print(status: &NodeStatus) {
    println!(
        "node v{}  up {}s  serving {}  admin {}  allocation {}  tiering {}  release {}",
        status.version,
        status.uptime_secs,
        status.listen,
        status.admin,
        status.allocation,
        if status.tiering.is_empty() {
            "-"
        } else {
            &status.tiering
        },
        status.release.as_deref().unwrap_or("-")
    );
    if let Some(optimizer) = &status.optimizer
        && (optimizer.postponed.is_some() || optimizer.queued > 0)
    {
        println!(
            "background optimization: {}, {} compile(s) queued",
            optimizer
                .postponed
                .as_ref()
                .map_or("running".to_owned(), |why| format!("postponed ({why})")),
            optimizer.queued
        );
    }
    let code = &status.loaded_code;
    if let Some(limit) = code.limit {
        println!(
            "loaded code: {:.1} of {:.1} MiB ({} module(s) evicted to make room for requests)",
            code.bytes as f64 / 1_048_576.0,
            limit as f64 / 1_048_576.0,
            code.evictions
        );
    }
    for c in &status.canaries {
        println!(
            "canary: module '{}' at {:.0}% on {} ({} requests, {} errors)",
            c.module, c.share, c.release, c.requests, c.errors
        );
    }
    println!(
        "{:<18} {:<10} {:<22} {:>7} {:>6} {:>9} {:>7} {:>7} {:>9} {:>7} {:>10} {:>9} {:>5}  {:<14} {:>8} {:>8}",
        "MODULE",
        "PRIORITY",
        "TRIGGER",
        "RUN/CAP",
        "QUEUE",
        "REQS/5XX",
        "TRAPS",
        "TMOUT",
        "CPU(s)",
        "SHARE",
        "THROTTLED",
        "WARMTH",
        "COLD",
        "TIER",
        "BASE(ms)",
        "OPT(ms)"
    );
    for m in &status.modules {
        let share = m
            .controls
            .cpu_share
            .map_or("-".to_owned(), |s| format!("{:.0}%", s * 100.0));
        let warmth = m.warmth.as_ref().map_or("-", |w| w.level.as_str());
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        let (tier, to_baseline, to_optimized) = match &m.tier {
            Some(t) => (t.state.name(), ms(t.to_baseline_ms), ms(t.to_optimized_ms)),
            None => ("-", "-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<18} {:<10} {:<22} {:>7} {:>6} {:>9} {:>7} {:>7} {:>9.3} {:>7} {:>9}ms {:>9} {:>5}  {:<14} {:>8} {:>8}",
            m.id,
            m.priority,
            truncate(&m.trigger, 22),
            format!("{}/{}", m.running, m.controls.concurrency),
            m.queued,
            format!("{}/{}", m.requests.requests, m.requests.errors),
            m.stats.traps,
            m.stats.timeouts,
            m.stats.cpu_nanos as f64 / 1e9,
            share,
            m.controls.throttled_ms,
            warmth,
            m.cold_starts.loads + m.cold_starts.compiles,
            tier,
            to_baseline,
            to_optimized,
        );
    }
    for m in &status.modules {
        if let Some(t) = &m.tier
            && let spark_runtime::TierState::CraneliftOnly(reason) = &t.state
        {
            println!("tier: module '{}' is cranelift-only: {reason}", m.id);
        }
    }
    for m in status
        .modules
        .iter()
        .filter(|m| m.world == "wasi:http/service")
    {
        println!(
            "wasi 0.3: module '{}' (wasi:http/service): up to {} requests per instance at once; {} instances serving now, {} requests shared an instance so far",
            m.id,
            m.limits.max_concurrent_per_instance,
            m.stats.shared_instances,
            m.stats.shared_requests
        );
    }
    for m in &status.modules {
        for kv in &m.key_value {
            let fleet = match &kv.fleet {
                None => String::new(),
                Some(f) if f.replicated => format!(
                    "; fleet-wide, replicated ({} writes not published: queue full; {} remote writes over this node's limits)",
                    f.dropped, f.refused
                ),
                Some(_) => "; fleet-wide, but node-local here (no --fleet)".to_owned(),
            };
            println!(
                "key-value: module '{}' store '{}' ({}): {} of {} keys, {} of {} bytes (values up to {} bytes){fleet}",
                m.id,
                kv.label,
                kv.scope,
                kv.keys,
                kv.max_keys,
                kv.bytes,
                kv.max_bytes,
                kv.max_value_size
            );
        }
    }
    match &status.orchestrator {
        None => println!("orchestrator: off"),
        Some(o) => print_orchestrator(o),
    }
    match &status.nn {
        None => println!("inference: off (no [nn] table)"),
        Some(nn) => print_nn(nn),
    }
}

/// Devices found, each backend (used or why not) with its counters, the chains.
fn print_nn(nn: &spark_nn::NnStatus) {
    let d = &nn.devices;
    let adapters: Vec<String> = d
        .vulkan
        .adapters()
        .iter()
        .map(|a| {
            let kind = if a.is_software() {
                "software"
            } else {
                "hardware"
            };
            format!("{} ({kind})", a.name)
        })
        .collect();
    println!(
        "inference: preference {:?}  npus {}  render nodes {}  vulkan [{}]  fallbacks {}  exhausted {}  rejected {}",
        nn.preference,
        d.npus.len(),
        d.render_nodes.len(),
        adapters.join(", "),
        nn.fallbacks,
        nn.exhausted,
        nn.rejected
    );
    match &nn.onnxruntime {
        Ok(info) => println!(
            "  onnxruntime: {} (providers: {})",
            info.path.display(),
            info.providers.join(", ")
        ),
        Err(reason) => println!("  onnxruntime: not used: {reason}"),
    }
    println!(
        "  {:<11} {:<4} {:<10} {:>8} {:>8} {:>7}  DETAIL",
        "BACKEND", "DEV", "STATE", "SERVED", "FAILED", "AVG(ms)"
    );
    for b in &nn.backends {
        let state = match (&b.available, &b.benched, &b.health) {
            (false, _, _) => "not used".to_owned(),
            (true, Some(_), _) => "benched".to_owned(),
            (true, None, spark_nn::Health::Healthy) => "ready".to_owned(),
            (true, None, health) => format!("{health:?}").to_lowercase(),
        };
        let avg = match b.counters.served {
            0 => "-".to_owned(),
            n => format!("{:.2}", b.counters.micros_total as f64 / n as f64 / 1e3),
        };
        let detail = b.benched.as_deref().unwrap_or(&b.detail);
        println!(
            "  {:<11} {:<4} {:<10} {:>8} {:>8} {:>7}  {}",
            b.name,
            format!("{:?}", b.device).to_lowercase(),
            state,
            b.counters.served,
            b.counters.failures,
            avg,
            truncate(detail, 100)
        );
    }
    for (target, chain) in &nn.chains {
        println!("  target {target}: {}", chain.join(" -> "));
    }
    println!("  selection: {}", nn.selection);
    for model in &nn.measured {
        let speeds: Vec<String> = model
            .backends
            .iter()
            .map(|b| {
                let typical = b.typical_ms.map_or("-".to_owned(), |m| format!("{m:.2}"));
                let first = b.first_ms.map_or("-".to_owned(), |m| format!("{m:.0}"));
                format!(
                    "{} {typical} ms (first {first} ms, n={})",
                    b.backend, b.samples
                )
            })
            .collect();
        println!("  model {}: {}", model.model, speeds.join("; "));
        for c in &model.chosen {
            println!(
                "    {:<4} -> {:<11} {}",
                c.target,
                c.backend,
                choice_text(&c.why)
            );
        }
    }
}

/// Why a backend serves a target, for people.
fn choice_text(why: &spark_nn::selection::Choice) -> String {
    use spark_nn::selection::Choice;
    match why {
        Choice::Chain => "the chain's order".to_owned(),
        Choice::Measuring => "measuring it on this model".to_owned(),
        Choice::Fastest {
            typical_ms,
            next: Some((next, next_ms)),
        } => format!("fastest measured: {typical_ms:.2} ms vs {next} {next_ms:.2} ms"),
        Choice::Fastest {
            typical_ms,
            next: None,
        } => format!("fastest measured: {typical_ms:.2} ms"),
        Choice::Reprobe => "re-probing a slower backend".to_owned(),
    }
}

fn print_orchestrator(o: &spark_node::OrchestratorStatus) {
    let modes = [
        (o.modes.surge, "surge"),
        (o.modes.memory_pressure, "memory-pressure"),
        (o.modes.power_save, "power-save"),
        (o.modes.uplink_slow, "slow-uplink"),
    ];
    let active: Vec<&str> = modes
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    println!(
        "orchestrator: modes [{}]  ticks {}  own cpu {:.3}s",
        active.join(", "),
        o.ticks,
        o.cpu_seconds
    );
    if let Some(s) = &o.signals {
        let pct = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{:.0}%", v * 100.0));
        let power = match s.power {
            spark_orchestrator::policy::PowerSignal::Mains => "mains".to_owned(),
            spark_orchestrator::policy::PowerSignal::Battery { percent, charging } => {
                format!(
                    "battery {percent:.0}%{}",
                    if charging { " charging" } else { "" }
                )
            }
        };
        let uplink = s
            .uplink_latency_ms
            .map_or("?".to_owned(), |ms| format!("{ms:.0}ms"));
        println!(
            "  cpu {} of {} cpus  memory pressure {}  {power}  uplink {uplink}",
            pct(s.cpu_utilisation),
            s.cpus,
            pct(s.memory_pressure)
        );
    }
    for d in o.decisions.iter().rev().take(10) {
        println!("  {} {}: {} ({})", d.at_ms, d.scope, d.change, d.reason);
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}
