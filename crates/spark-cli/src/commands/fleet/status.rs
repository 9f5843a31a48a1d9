//! `spark fleet status`: every application's desired state and every live node's heartbeat.

use spark_fleet::plan::{self, Stage};
use spark_fleet::{DesiredApp, NodeReport};

use super::Target;

#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Print JSON (`{"apps": [...], "nodes": [...]}`) instead of tables.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let fleet = args.target.connect().await?;
    let apps: Vec<DesiredApp> = fleet
        .effective_apps()
        .await?
        .into_iter()
        .map(|a| a.value)
        .collect();
    let nodes = fleet.nodes().await?;
    if args.json {
        let value = serde_json::json!({ "apps": apps, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for app in &apps {
        print_app(app, &nodes);
    }
    if apps.is_empty() {
        println!("no application deployed yet (spark fleet deploy)");
    }
    println!();
    print_nodes(&nodes);
    Ok(())
}

pub(super) fn stage_label(stage: &Stage) -> String {
    match stage {
        Stage::Rolling => "rolling".into(),
        Stage::Complete { reason } => format!("complete ({reason})"),
        Stage::RolledBack { reason } => format!("rolled back ({reason})"),
    }
}

pub(super) fn print_app(app: &DesiredApp, nodes: &[NodeReport]) {
    let views: Vec<plan::NodeView> = nodes
        .iter()
        .filter(|n| n.app == app.app)
        .map(|n| n.view())
        .collect();
    let previous = app.previous.as_ref().map(|p| p.key());
    let standing = plan::standing(&app.rollout, previous.as_deref(), &views);
    println!(
        "app {}  generation {}  release {} (r<n>-{} on the nodes)  {}",
        app.app,
        app.generation,
        app.release.key(),
        app.release.key(),
        stage_label(&app.rollout.stage)
    );
    if let Some(previous) = &previous {
        println!("  previous release {previous}");
    }
    let canary = app
        .rollout
        .canary
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match &app.rollout.stage {
        Stage::RolledBack { .. } => println!(
            "  nodes: {} back on {}, {} returning, {} rejected it  (canary: {canary})",
            standing.converged.len(),
            previous.as_deref().unwrap_or("no release"),
            standing.pending.len(),
            standing.rejected.len(),
        ),
        _ => println!(
            "  targets: {} converged, {} pending, {} rejected  (canary: {canary})",
            standing.converged.len(),
            standing.pending.len(),
            standing.rejected.len(),
        ),
    }
    for line in app.rollout.log.iter().rev().take(6).rev() {
        println!("  - {line}");
    }
}

fn print_nodes(nodes: &[NodeReport]) {
    println!(
        "{:<14} {:<10} {:<18} {:<22} {:>8} {:>7} {:>6} {:>7}  labels / notes",
        "node", "app", "release", "rollout", "requests", "running", "mem", "battery"
    );
    for n in nodes {
        let release = n.release_key.as_deref().unwrap_or("-");
        let rollout = n.rollout.as_ref().map_or("-".to_owned(), |r| {
            let shares: Vec<String> = r.shares.iter().map(|(m, s)| format!("{m}:{s}%")).collect();
            format!(
                "-> {} {}",
                r.to_key.as_deref().unwrap_or("?"),
                shares.join(",")
            )
        });
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut notes = labels.join(",");
        if !n.modes.is_empty() {
            notes.push_str(&format!(" modes:{}", n.modes.join(",")));
        }
        if let Some(error) = &n.last_error {
            notes.push_str(&format!(" error: {error}"));
        }
        println!(
            "{:<14} {:<10} {:<18} {:<22} {:>8} {:>7} {:>6} {:>7}  {}",
            n.node,
            n.app,
            release,
            rollout,
            n.requests,
            n.running,
            n.memory_pressure.map_or("-".into(), |p| format!("{p:.2}")),
            n.battery.map_or("-".into(), |b| format!("{b:.0}%")),
            notes.trim()
        );
    }
    if nodes.is_empty() {
        println!("(no live node: start some with spark up <manifest> --fleet URL)");
    }
}
