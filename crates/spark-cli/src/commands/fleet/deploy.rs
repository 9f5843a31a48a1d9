//! `spark fleet deploy <spark.toml>`: upload the components to the object store, plan the
//! canary from the live nodes, and write the new desired state with compare-and-set. A deploy
//! that loses the race (or finds a rollout in progress) writes nothing and says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spark_fleet::plan::{self, CanarySpec, Stage};
use spark_fleet::{DesiredApp, Fleet, FleetRelease};
use spark_manifest::{ComponentRef, Manifest};

use super::Target;

#[derive(Debug, clap::Args)]
pub(super) struct DeployArgs {
    /// The manifest to deploy (its component files are uploaded).
    manifest: PathBuf,
    #[command(flatten)]
    target: Target,
    /// Canary on at most N nodes first.
    #[arg(long)]
    canary_nodes: Option<usize>,
    /// Canary on at most this percentage of the (selected) nodes.
    #[arg(long)]
    canary_percent: Option<u32>,
    /// Canary only on nodes with this label (repeatable: all must match).
    #[arg(long, value_name = "K=V")]
    canary_selector: Vec<String>,
    /// Nodes per wave after the canary (0: all the rest at once).
    #[arg(long, default_value_t = 0)]
    wave_size: usize,
    /// A note recorded with the release.
    #[arg(long, default_value = "")]
    note: String,
    /// Wait until the rollout completes or rolls back (exit status 1 on rollback).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Sign the release with this secret key (`spark key generate`); nodes that trust its
    /// public key refuse releases without a valid signature.
    #[arg(long, env = "SPARK_SIGN_KEY", value_name = "FILE")]
    sign_key: Option<PathBuf>,
}

pub(super) async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let spec = canary_spec(&args)?;
    let signer = args
        .sign_key
        .as_deref()
        .map(spark_fleet::ReleaseSigner::load)
        .transpose()?;
    let fleet = args.target.connect().await?;
    let mut release = upload(&fleet, &manifest, &args.note).await?;
    let app = args.target.app.clone();
    if let Some(signer) = &signer {
        release.signature = Some(signer.sign_release(&app, &release));
        println!("signed     with {}", signer.public_key());
    }
    let current = fleet.effective(&app).await?;
    if let Some(current) = &current
        && current.value.rollout.stage == Stage::Rolling
    {
        bail!(
            "conflict: a fleet rollout of '{app}' (generation {}) is in progress: \
             `spark fleet rollout promote` or `rollback` it first",
            current.value.generation
        );
    }
    let nodes: Vec<plan::NodeView> = fleet
        .app_nodes(&app)
        .await?
        .iter()
        .map(|n| n.view())
        .collect();
    let rollout = plan::start(&release.key(), &spec, &nodes)?;
    let previous = current.as_ref().and_then(|c| match c.value.rollout.stage {
        Stage::RolledBack { .. } => c.value.previous.clone(),
        _ => Some(c.value.release.clone()),
    });
    let desired = DesiredApp {
        app: app.clone(),
        generation: current.as_ref().map_or(1, |c| c.value.generation + 1),
        release,
        previous,
        rollout,
        updated_by: "spark fleet deploy".into(),
        intent: None,
    };
    let revision = fleet
        .put_desired(&desired, current.as_ref().map(|c| c.revision))
        .await?;
    println!(
        "fleet '{app}' generation {}: release {} (r<n>-{} on the nodes; {} live node(s)), revision {revision}",
        desired.generation,
        desired.release.key(),
        desired.release.key(),
        nodes.len()
    );
    println!("  {}", desired.rollout.log.join("\n  "));
    if args.wait {
        return wait(
            &fleet,
            &app,
            desired.generation,
            desired.rollout.log.len(),
            Duration::from_secs(args.timeout),
        )
        .await;
    }
    println!("follow it with: spark fleet rollout status --app {app}");
    Ok(())
}

fn canary_spec(args: &DeployArgs) -> anyhow::Result<CanarySpec> {
    let selector = args
        .canary_selector
        .iter()
        .map(|s| spark_fleet::parse_label(s))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(CanarySpec {
        selector,
        count: args.canary_nodes,
        percent: args.canary_percent,
        wave_size: args.wave_size,
    })
}

/// Uploads each file component; the release names them by digest.
async fn upload(fleet: &Fleet, manifest: &Manifest, note: &str) -> anyhow::Result<FleetRelease> {
    let mut components = BTreeMap::new();
    for module in &manifest.modules {
        let digest = match &module.component {
            ComponentRef::File(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let digest = fleet
                    .upload_artifact(&bytes)
                    .await
                    .with_context(|| format!("uploading module '{}'", module.id))?;
                println!(
                    "uploaded  {:<20} sha256:{}",
                    module.id.as_str(),
                    &digest[..16]
                );
                digest
            }
            ComponentRef::Artifact(digest) => digest.clone(),
        };
        components.insert(module.id.to_string(), digest);
    }
    Ok(FleetRelease {
        manifest: manifest.text.clone(),
        components,
        note: note.to_owned(),
        signature: None,
    })
}

/// Follows the rollout of `generation` until it leaves the rolling stage, printing the log
/// lines after the first `printed` (those the deploy already showed).
async fn wait(
    fleet: &Fleet,
    app: &str,
    generation: u64,
    mut printed: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(state) = fleet.effective(app).await.ok().flatten() {
            let state = state.value;
            if state.generation != generation {
                bail!(
                    "a newer deploy (generation {}) replaced this one",
                    state.generation
                );
            }
            for line in state.rollout.log.iter().skip(printed) {
                println!("  {line}");
            }
            printed = state.rollout.log.len();
            match state.rollout.stage {
                Stage::Complete { reason } => {
                    println!("complete: {reason}");
                    return Ok(());
                }
                Stage::RolledBack { reason } => bail!("the fleet rolled back: {reason}"),
                Stage::Rolling => {}
            }
        }
        if Instant::now() > deadline {
            bail!(
                "still rolling after {}s (spark fleet rollout status)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
