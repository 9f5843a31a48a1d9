//! `spark key generate`: an Ed25519 key for signing fleet releases. The secret goes to a new
//! owner-only file; the public key is printed, with how nodes trust it and how a deploy uses
//! the secret.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use spark_fleet::ReleaseSigner;

#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Make a new signing key: the secret to a new file (never overwritten), the public key
    /// to stdout.
    Generate {
        /// Where to write the secret key (created owner-only; must not exist).
        #[arg(long, default_value = "spark-deployer.key")]
        out: PathBuf,
    },
    /// Print the public key of a secret key file.
    Public {
        /// The secret key file.
        key: PathBuf,
    },
}

pub(super) fn run(args: KeyArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Generate { out } => {
            let signer = ReleaseSigner::generate()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
            file.write_all(signer.secret_text().as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", out.display()))?;
            let public = signer.public_key();
            println!("{public}");
            eprintln!("secret key written to {} (keep it private)", out.display());
            eprintln!(
                "nodes trust it with:   spark up <manifest> --fleet <URL> --trust-key {public}"
            );
            eprintln!(
                "deploys sign with it:  spark fleet deploy <manifest> --sign-key {}",
                out.display()
            );
        }
        Action::Public { key } => {
            println!("{}", ReleaseSigner::load(&key)?.public_key());
        }
    }
    Ok(())
}
