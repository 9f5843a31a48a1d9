//! `spark top`: the dashboard's live view in the terminal, from the same `/v1/dashboard`
//! answer the browser page renders. On a terminal each frame redraws the screen in place;
//! piped, frames are printed one after another; `--once` prints one frame and exits.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use spark_node::{DashboardView, ModuleRow};

use super::client::{AdminArgs, AdminClient};
use super::events::utc;

#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// Print one frame and exit (after one interval, so rates are measured).
    #[arg(long)]
    once: bool,
    /// Seconds between frames.
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval: f64,
    #[command(flatten)]
    admin: AdminArgs,
}

fn interval(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if (0.2..=3600.0).contains(&secs) {
        Ok(secs)
    } else {
        Err("give between 0.2 and 3600 seconds".into())
    }
}

/// Clears the screen and puts the cursor home.
const CLEAR: &str = "\x1b[H\x1b[2J";

pub(super) async fn run(args: TopArgs) -> anyhow::Result<()> {
    let client = args.admin.client()?;
    let period = Duration::from_secs_f64(args.interval);
    // The first answer primes the node's rate window: rates need two polls.
    fetch(&client).await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            result = tokio::signal::ctrl_c() => {
                result.context("waiting for Ctrl-C")?;
                return Ok(());
            }
        }
        let view = fetch(&client).await?;
        let text = frame(&view);
        let mut out = std::io::stdout().lock();
        if tty && !args.once {
            write!(out, "{CLEAR}{text}")?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        if args.once {
            return Ok(());
        }
    }
}

async fn fetch(client: &AdminClient) -> anyhow::Result<DashboardView> {
    let body = client.get("/v1/dashboard").await?;
    serde_json::from_slice(&body).context("reading the node's dashboard view")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn module_line(m: &ModuleRow) -> String {
    format!(
        "{:<10} {:<18} {:>8} {:>8} {:>5} {:>8} {:<16} {:<9} {:>7} {:>5} {:>8} {:>8}",
        m.class,
        m.id,
        opt(m.requests_per_sec, 1),
        opt(m.p99_ms, 1),
        pct(m.cpu_used),
        m.cpu_share.map_or("uncapped".into(), |s| pct(Some(s))),
        if m.warmth == m.warmth_target {
            m.warmth.clone()
        } else {
            format!("{}->{}", m.warmth, m.warmth_target)
        },
        m.state,
        format!("{}/{}", m.running, m.concurrency),
        m.queued,
        opt(m.expected_per_min, 2),
        opt(m.observed_per_min, 1),
    )
}

/// One frame of text.
pub(super) fn frame(v: &DashboardView) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "spark top · node v{} · release {} · up {}s · serving {} · {} UTC",
        v.version,
        v.release.as_deref().unwrap_or("-"),
        v.uptime_secs,
        v.listen,
        utc(v.at_ms)
    ));
    match &v.orchestrator {
        None => line("modes: orchestrator off".into()),
        Some(o) => {
            let modes: Vec<String> = o
                .modes
                .iter()
                .map(|m| format!("{} {}", m.name, if m.on { "ON" } else { "off" }))
                .collect();
            line(format!(
                "modes: {}   cpu {}  memory pressure {}",
                modes.join("  "),
                pct(o.cpu),
                pct(o.memory_pressure)
            ));
        }
    }
    line(String::new());
    line(format!(
        "{:<10} {:<18} {:>8} {:>8} {:>5} {:>8} {:<16} {:<9} {:>7} {:>5} {:>8} {:>8}",
        "CLASS",
        "MODULE",
        "REQ/S",
        "P99(ms)",
        "CPU",
        "SHARE",
        "WARMTH(->TARGET)",
        "STATE",
        "RUN/CAP",
        "QUEUE",
        "EXP/MIN",
        "OBS/MIN"
    ));
    for m in &v.modules {
        line(module_line(m));
    }
    for c in &v.canaries {
        line(format!(
            "  canary {} of {} at {:.0}% ({} requests, {} errors)",
            c.release, c.module, c.share, c.requests, c.errors
        ));
    }
    if let Some(o) = &v.orchestrator {
        line(String::new());
        line("DECISIONS (newest first)".into());
        if o.decisions.is_empty() {
            line("  (none yet)".into());
        }
        for d in o.decisions.iter().take(6) {
            line(format!(
                "  {} {}: {} ({})",
                &utc(d.at_ms)[11..],
                d.scope,
                d.change,
                d.reason
            ));
        }
    }
    line(String::new());
    match &v.rollout.rollout {
        None => line(format!(
            "ROLLOUT: none in progress; serving {}",
            v.rollout.current
        )),
        Some(r) => {
            line(format!(
                "ROLLOUT: {} -> {} ({:?})",
                r.from.as_deref().unwrap_or("-"),
                r.to,
                r.state
            ));
            for (id, m) in &r.modules {
                let steps: Vec<String> = m
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match i.cmp(&m.step) {
                        std::cmp::Ordering::Less => format!("{s}%✓"),
                        std::cmp::Ordering::Equal => format!("[{s}%]"),
                        std::cmp::Ordering::Greater => format!("{s}%"),
                    })
                    .collect();
                line(format!(
                    "  {id}: {}  canary {}/{} vs {} {}/{}  {}",
                    steps.join(" "),
                    m.canary_requests,
                    m.canary_errors,
                    m.compared_with,
                    m.stable_requests,
                    m.stable_errors,
                    m.last.as_deref().unwrap_or("no verdict yet")
                ));
            }
        }
    }
    if let Some(f) = &v.fleet {
        line(String::new());
        line(format!(
            "FLEET: app {} · {} node(s) · this node {}",
            f.app,
            f.nodes.len(),
            f.node
        ));
        for n in &f.nodes {
            line(format!(
                "  {:<20} {:<22} running {:>4}  requests {:>8}  cpu {:>4}  {}",
                n.node,
                n.release.as_deref().unwrap_or("-"),
                n.running,
                n.requests,
                pct(n.cpu),
                n.last_error
                    .as_deref()
                    .or(n.rollout.as_deref())
                    .unwrap_or("")
            ));
        }
    }
    line(String::new());
    line("EVENTS (newest first)".into());
    if v.events.is_empty() {
        line("  (none)".into());
    }
    for e in v.events.iter().take(5) {
        line(format!(
            "  {} {:<9} {:<20} {}",
            utc(e.at_ms),
            e.kind,
            e.release.as_deref().unwrap_or("-"),
            e.detail
        ));
    }
    out
}
