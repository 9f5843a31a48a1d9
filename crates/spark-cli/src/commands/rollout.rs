//! `spark rollout status|promote|abort`: follow and steer the rollout in progress, and
//! `spark rollback [release]`: switch back to an earlier release.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use spark_node::RolloutStatus;

use super::client::{AdminArgs, AdminClient};

#[derive(Debug, clap::Args)]
pub(crate) struct RolloutArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Where the rollout stands: each module's share, step and last verdict.
    Status {
        /// Follow the rollout until it is promoted (exit 0) or rolled back (exit 1).
        #[arg(long)]
        wait: bool,
        /// With `--wait`: give up following after this many seconds.
        #[arg(long, default_value_t = 600, requires = "wait")]
        timeout: u64,
    },
    /// Promote the new release now.
    Promote,
    /// Abort the rollout: the stable release serves everything again.
    Abort,
}

pub(super) async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let client = args.admin.client()?;
    let by = serde_json::json!({ "by": "spark CLI" });
    match args.action {
        Action::Status { wait, timeout } => {
            let status = read_status(&client).await?;
            print_status(&status);
            if let (true, Some(rollout)) = (wait, &status.rollout) {
                follow(&client, &rollout.to, Duration::from_secs(timeout)).await?;
            }
        }
        Action::Promote => {
            let answer = client.post_json("/v1/rollout/promote", &by).await?;
            println!("promoted: serving {}", field(&answer, "promoted")?);
        }
        Action::Abort => {
            let answer = client.post_json("/v1/rollout/abort", &by).await?;
            println!("aborted: serving {}", field(&answer, "serving")?);
        }
    }
    Ok(())
}

async fn read_status(client: &AdminClient) -> anyhow::Result<RolloutStatus> {
    let body = client.get("/v1/rollout").await?;
    serde_json::from_slice(&body).context("reading the rollout status")
}

/// Follows the rollout of `release` until it ends: a line each time a module's step or the
/// kind of its verdict changes; `Ok` when promoted, an error saying why when rolled back.
pub(super) async fn follow(
    client: &AdminClient,
    release: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut shown: BTreeMap<String, (usize, String)> = BTreeMap::new();
    loop {
        let status = read_status(client).await?;
        match &status.rollout {
            Some(rollout) if rollout.to == release => {
                for (id, m) in &rollout.modules {
                    let verdict = m.last.clone().unwrap_or_default();
                    let kind = verdict.split(':').next().unwrap_or("").to_owned();
                    if shown.get(id) != Some(&(m.step, kind.clone())) {
                        println!(
                            "  {id:<20} {:>5.1}% (step {} of {})  {verdict}",
                            m.share,
                            m.step + 1,
                            m.steps.len()
                        );
                        shown.insert(id.clone(), (m.step, kind));
                    }
                }
            }
            _ => return ended(&status, release),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "still rolling out after {}s (it goes on: spark rollout status)",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How the rollout of `release` ended, once none is in progress.
fn ended(status: &RolloutStatus, release: &str) -> anyhow::Result<()> {
    let outcome = status
        .last_outcome
        .as_ref()
        .filter(|e| e.release.as_deref() == Some(release));
    match outcome {
        Some(e) if e.kind == "rolled-back" => {
            anyhow::bail!("rolled back: {} (serving {})", e.detail, status.current)
        }
        _ if status.current == release => {
            println!("promoted: serving {release}");
            Ok(())
        }
        _ => anyhow::bail!(
            "the rollout of {release} ended; the node serves {}",
            status.current
        ),
    }
}

/// One string field of the node's JSON answer (a release id).
fn field(answer: &[u8], name: &str) -> anyhow::Result<String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).context("reading the node's answer")?;
    value[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the node's answer has no {name:?}"))
}

fn print_status(status: &RolloutStatus) {
    println!("current release: {}", status.current);
    let Some(r) = &status.rollout else {
        println!("no rollout in progress");
        if let Some(last) = &status.last_outcome {
            println!(
                "last rollout: {} {} at {} UTC: {}",
                last.release.as_deref().unwrap_or("-"),
                last.kind,
                super::events::utc(last.at_ms),
                last.detail
            );
        }
        return;
    };
    println!(
        "rolling out {} over {} ({:?})",
        r.to,
        r.from.as_deref().unwrap_or("-"),
        r.state
    );
    for (id, m) in &r.modules {
        println!(
            "  {id:<20} {:>5.1}% (step {} of {})  canary {}/{} errors  {} {}/{}  {}",
            m.share,
            m.step + 1,
            m.steps.len(),
            m.canary_errors,
            m.canary_requests,
            m.compared_with,
            m.stable_errors,
            m.stable_requests,
            m.last.as_deref().unwrap_or("")
        );
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The release to switch to (default: the one before the current).
    release: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(super) async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({ "release": args.release });
    let answer = args
        .admin
        .client()?
        .post_json("/v1/rollback", &body)
        .await?;
    println!("rolled back: serving {}", field(&answer, "serving")?);
    Ok(())
}
