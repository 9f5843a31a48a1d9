//! `spark`: run a Spark edge node, or talk to one.
//!
//! A thin main: parse flags, set up logging, dispatch to one file per subcommand in
//! [`commands`]. Commands return `anyhow::Result`; errors are printed once, with context:
//! what failed, then each cause (`spark_error::chain`, anyhow's `{:#}` that also leaves out
//! a cause a library already printed in its own message).

mod commands;
mod logging;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "spark",
    version,
    about = "Spark: a self-optimizing WebAssembly edge runtime"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text, env = "SPARK_LOG_FORMAT")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spark-worker")
        .build()
        .expect("building the Tokio runtime");
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", spark_error::chain(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}
