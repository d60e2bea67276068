//! The `namecall` binary: parse the command line, start logging, run the gateway.
//!
//! Everything else lives in the library (`lib.rs`) so tests can drive it
//! without a process.

use clap::Parser;
use gateway::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(config) => gateway::serve(config, gateway::shutdown_signal()).await,
        Command::Apikey { action } => {
            println!("{}", gateway::apikey(action).await?);
            Ok(())
        }
        Command::CheckDialplans { dir } => {
            println!("{}", gateway::check_dialplans(&dir)?);
            Ok(())
        }
    }
}
