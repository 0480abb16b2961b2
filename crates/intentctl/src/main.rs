//! `intentctl`: the command line of `intents` (demo, serve, sim, inspect, dlq, wal, bench).

mod api;
mod bench;
mod bench_engine;
mod config;
mod demo;
mod openapi;
mod ops;
mod serve;
mod signals;
mod sim;
mod wal;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "intentctl",
    version,
    about = "Durable, exactly-once money-moving intents for agent daemons"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine as a sidecar behind a JSON HTTP API until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Simulators, the sidecar as a child process killed and restarted, agents, and an audit.
    Demo(demo::DemoArgs),
    /// Run the reference Purple Flea and Aeeron simulators until SIGINT or SIGTERM.
    Sim(sim::SimArgs),
    /// Counts by state, oldest waiting intent, DLQ depth, log size (--data DIR or --server URL).
    Inspect(ops::InspectArgs),
    /// List or show intents (--data DIR or --server URL).
    #[command(subcommand)]
    Intents(ops::IntentsCommand),
    /// List, show, retry or resolve dead letters (--data DIR or --server URL).
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// Verify, dump or fill a write-ahead log directory.
    #[command(subcommand)]
    Wal(wal::WalCommand),
    /// Measure the log, and the engine end to end, against baselines in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve::run(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(demo::run(args))
        }
        Command::Sim(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(sim::run(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Inspect(args) => tokio::runtime::Runtime::new()?.block_on(ops::inspect(args)),
        Command::Intents(command) => {
            tokio::runtime::Runtime::new()?.block_on(ops::intents(command))
        }
        Command::Dlq(command) => tokio::runtime::Runtime::new()?.block_on(ops::dlq(command)),
        Command::Wal(command) => wal::run(command),
        Command::Bench(command) => bench::run(command),
    }
}
