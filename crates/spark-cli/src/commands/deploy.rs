//! `spark deploy <spark.toml | spin.toml>`: upload the manifest's components to a running node and deploy
//! them as a new release (a canary rollout for changed modules, at once for the rest).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use spark_manifest::{ComponentRef, Manifest};
use spark_node::{DeployOutcome, DeployRequest};

use super::client::AdminArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The manifest to deploy (its component files are uploaded).
    manifest: PathBuf,
    /// A note recorded with the release.
    #[arg(long, default_value = "")]
    note: String,
    /// Follow the rollout until it is promoted (exit 0) or rolled back (exit 1), printing
    /// each step and verdict as it changes.
    #[arg(long)]
    wait: bool,
    /// With `--wait`: give up following after this many seconds (the rollout goes on).
    #[arg(long, default_value_t = 600, requires = "wait")]
    timeout: u64,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(super) async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let client = args.admin.client()?;
    let mut components = BTreeMap::new();
    for module in &manifest.modules {
        let ComponentRef::File(path) = &module.component else {
            continue;
        };
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let size = super::progress::mib(bytes.len() as u64);
        let started = Instant::now();
        client
            .post_bytes(&format!("/v1/artifacts/{digest}"), bytes)
            .await
            .with_context(|| format!("uploading module '{}'", module.id))?;
        println!(
            "uploaded  {:<20} sha256:{}  {size} in {:.1} s",
            module.id.as_str(),
            &digest[..16],
            started.elapsed().as_secs_f64()
        );
        components.insert(module.id.to_string(), digest);
    }
    let request = DeployRequest {
        manifest: manifest.text.clone(),
        components,
        note: args.note,
    };
    let answer = client.post_json("/v1/deploy", &request).await?;
    let outcome: DeployOutcome =
        serde_json::from_slice(&answer).context("reading the node's answer")?;
    println!("release {}: {}", outcome.release, outcome.action);
    if outcome.action == "unchanged" {
        println!("the node already serves exactly this manifest and these components");
    }
    for (what, list) in [
        ("canary", &outcome.canary),
        ("added", &outcome.added),
        ("removed", &outcome.removed),
    ] {
        if !list.is_empty() {
            println!("  {what}: {}", list.join(", "));
        }
    }
    if outcome.action == "rollout" {
        if args.wait {
            return super::rollout::follow(
                &client,
                &outcome.release,
                Duration::from_secs(args.timeout),
            )
            .await;
        }
        println!(
            "follow it with: spark rollout status --wait{}",
            args.admin.repeated()
        );
    }
    Ok(())
}
