//! `spark releases`: every release the node knows, newest first, with when it was made and
//! what became of it (serving, rolling out, replaced, rolled back, aborted).

use anyhow::Context;
use spark_node::ReleaseSummary;

use super::client::AdminArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct ReleasesArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(super) async fn run(args: ReleasesArgs) -> anyhow::Result<()> {
    let body = args.admin.client()?.get("/v1/releases").await?;
    let releases: Vec<ReleaseSummary> =
        serde_json::from_slice(&body).context("reading the release list")?;
    println!(
        "{:<20} {:<20} {:<12} {:<8} {:<8} NOTE",
        "RELEASE", "CREATED (UTC)", "OUTCOME", "ROLLBACK", "MODULES"
    );
    for r in releases {
        println!(
            "{:<20} {:<20} {:<12} {:<8} {:<8} {}",
            r.id,
            super::events::utc(r.created_ms),
            r.outcome,
            if r.rollbackable { "yes" } else { "no" },
            r.modules.len(),
            r.note
        );
    }
    Ok(())
}
