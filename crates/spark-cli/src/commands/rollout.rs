//! `spark rollout status|promote|abort`: follow and steer the rollout in progress, and
//! `spark rollback [release]`: switch back to an earlier release.

use anyhow::Context;
use spark_node::RolloutStatus;

use super::client::AdminArgs;

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
    Status,
    /// Promote the new release now.
    Promote,
    /// Abort the rollout: the stable release serves everything again.
    Abort,
}

pub(super) async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let client = args.admin.client()?;
    let by = serde_json::json!({ "by": "spark CLI" });
    match args.action {
        Action::Status => {
            let body = client.get("/v1/rollout").await?;
            let status: RolloutStatus =
                serde_json::from_slice(&body).context("reading the rollout status")?;
            print_status(&status);
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
