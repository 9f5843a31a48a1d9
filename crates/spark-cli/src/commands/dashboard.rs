//! `spark dashboard`: asks the node for a one-time login code (with the admin token) and prints
//! the link that opens the live dashboard in a browser, the way notebook servers do.

use anyhow::Context;
use spark_node::LoginCode;

use super::client::AdminArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(super) async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let body = args
        .admin
        .client()?
        .post_json("/v1/dashboard/login", &serde_json::json!({}))
        .await?;
    let login: LoginCode = serde_json::from_slice(&body).context("reading the login code")?;
    println!(
        "Open the Spark dashboard (the link works once, within {}s; run `spark dashboard{}` again for a new one):",
        login.expires_in_secs,
        args.admin.repeated()
    );
    println!("  http://{}{}", args.admin.admin, login.path);
    println!("In a terminal instead: spark top{}", args.admin.repeated());
    Ok(())
}
