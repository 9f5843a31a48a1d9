//! `spark releases`: every release the node knows, newest first.

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
        "{:<20} {:<8} {:<10} {:<8} NOTE",
        "RELEASE", "CURRENT", "ROLLBACK", "MODULES"
    );
    for r in releases {
        println!(
            "{:<20} {:<8} {:<10} {:<8} {}",
            r.id,
            if r.current { "*" } else { "" },
            if r.rollbackable { "yes" } else { "no" },
            r.modules.len(),
            r.note
        );
    }
    Ok(())
}
