//! `spark fleet rollout status|promote|rollback`: follow or steer an application's fleet
//! rollout. Steering is a compare-and-set write of the desired state, like a deploy.

use anyhow::bail;
use spark_fleet::plan;

use super::Target;
use super::status::{print_app, stage_label};

#[derive(Debug, clap::Args)]
pub(super) struct RolloutArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Where the rollout stands: targets, converged, pending, rejected.
    Status(Target),
    /// Every node takes the release now.
    Promote(Steering),
    /// Every node returns to the previous release.
    Rollback(Steering),
}

/// A person's change to a rollout: where, and the key that signs it.
#[derive(Debug, clap::Args)]
struct Steering {
    #[command(flatten)]
    target: Target,
    /// Sign the intent with this secret key: nodes with trusted keys skip their own
    /// canaries on a promotion only when it is signed.
    #[arg(long, env = "SPARK_SIGN_KEY", value_name = "FILE")]
    sign_key: Option<std::path::PathBuf>,
}

/// A person's change to the rollout (`plan::promote` or `plan::rollback`).
type Steer = fn(&plan::FleetRollout, &str) -> Option<plan::FleetRollout>;

pub(super) async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let (steering, action, name): (&Steering, Steer, &str) = match &args.action {
        Action::Status(target) => return status(target).await,
        Action::Promote(steering) => (steering, plan::promote, "promote"),
        Action::Rollback(steering) => (steering, plan::rollback, "rollback"),
    };
    let target = &steering.target;
    let signer = steering
        .sign_key
        .as_deref()
        .map(spark_fleet::ReleaseSigner::load)
        .transpose()?;
    let fleet = target.connect().await?;
    let Some(current) = fleet.effective(&target.app).await? else {
        bail!("nothing deployed for '{}'", target.app);
    };
    if matches!(args.action, Action::Rollback(_)) && current.value.previous.is_none() {
        bail!(
            "'{}' has no earlier fleet release to return to (generation {} was the first): deploy the release you want with `spark fleet deploy`",
            target.app,
            current.value.generation
        );
    }
    let Some(next) = action(&current.value.rollout, "spark fleet rollout") else {
        bail!(
            "nothing to do: the rollout is {}",
            stage_label(&current.value.rollout.stage)
        );
    };
    let mut desired = current.value;
    desired.rollout = next;
    desired.updated_by = "spark fleet rollout".into();
    let by = "spark fleet rollout";
    desired.intent = Some(match &signer {
        Some(signer) => signer.intent(&desired.app, name, desired.generation, by),
        None => spark_fleet::Intent {
            action: name.to_owned(),
            generation: desired.generation,
            by: by.to_owned(),
            signature: None,
        },
    });
    fleet.put_desired(&desired, Some(current.revision)).await?;
    println!("{}: {}", desired.app, stage_label(&desired.rollout.stage));
    Ok(())
}

async fn status(target: &Target) -> anyhow::Result<()> {
    let fleet = target.connect().await?;
    let Some(current) = fleet.effective(&target.app).await? else {
        bail!("nothing deployed for '{}'", target.app);
    };
    let nodes = fleet.app_nodes(&target.app).await?;
    print_app(&current.value, &nodes);
    Ok(())
}
