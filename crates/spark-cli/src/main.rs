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
    quiet_library_backtraces();
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

/// Turns off the backtraces libraries capture into their error values, unless the operator
/// asked for them with `RUST_LIB_BACKTRACE`. With `RUST_BACKTRACE=1` in the environment (common
/// on a node being debugged), every such error walks the stack: Wasmtime makes one each time it
/// drops a store (the "future dropped" it resumes a parked fiber with), and the walk searches the
/// unwind tables of every loaded module's code, so a request's cost grew with the modules
/// loaded (18% of the serving threads' CPU at 1,000 modules). Spark never prints those
/// backtraces; a panic's backtrace still follows `RUST_BACKTRACE`.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        #[allow(
            unsafe_code,
            reason = "setting the environment; no other thread exists yet (SAFETY note)"
        )]
        // SAFETY: called first thing in `main`, before any thread is started (the Tokio
        // runtime, logging and every library's threads come after), so nothing reads the
        // environment concurrently.
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
}
