//! `intentctl sim`: runs the reference Purple Flea and Aeeron simulators until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use simulator::{Aeeron, FaultPlan, PurpleFlea, PurpleFleaOptions, RunningServer};

/// Arguments of `intentctl sim`.
#[derive(clap::Args)]
pub struct SimArgs {
    /// Address of the Purple Flea simulator (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    purple_flea: SocketAddr,
    /// Address of the Aeeron simulator (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    aeeron: SocketAddr,
    /// Seed of the fault plan and the dice; overrides the seed in --faults.
    #[arg(long)]
    seed: Option<u64>,
    /// Fault plan file: TOML, or JSON when the name ends in .json (see docs/simulator.md).
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Starting Purple Flea wallet balance, a decimal string.
    #[arg(long, default_value = "10000.00")]
    balance: String,
    /// Require `Authorization: Bearer <key>` on Purple Flea (read from the environment, so
    /// it stays out of shell history and process listings).
    #[arg(long = "require-api-key-from-env", value_name = "VARIABLE")]
    api_key_variable: Option<String>,
    /// Print the bound addresses as one JSON line instead of two text lines.
    #[arg(long)]
    json: bool,
}

/// Runs the simulators until a signal arrives.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    // Before the addresses are printed: a stop right after them is graceful.
    let signals = crate::signals::Signals::install()?;
    let (purple_flea, aeeron) = start(&args).await?;
    if args.json {
        let line = serde_json::json!({
            "purple_flea": purple_flea.base_url(),
            "aeeron": aeeron.base_url(),
        });
        println!("{line}");
    } else {
        println!("purple_flea {}", purple_flea.base_url());
        println!("aeeron {}", aeeron.base_url());
    }
    // println! flushes at each newline only when stdout is a terminal; a pipe needs this.
    std::io::Write::flush(&mut std::io::stdout()).context("writing the addresses")?;
    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down the simulators");
    tokio::join!(purple_flea.shutdown(), aeeron.shutdown());
    Ok(())
}

/// Loads the plan, applies the flags and starts both servers.
async fn start(args: &SimArgs) -> anyhow::Result<(RunningServer, RunningServer)> {
    let mut plan = match &args.faults {
        Some(path) => {
            FaultPlan::load(path).with_context(|| format!("loading {}", path.display()))?
        }
        None => FaultPlan::none(0),
    };
    if let Some(seed) = args.seed {
        plan.seed = seed;
    }
    let mut options = PurpleFleaOptions::default().with_balance(&args.balance)?;
    if let Some(variable) = &args.api_key_variable {
        let key = std::env::var(variable)
            .with_context(|| format!("environment variable {variable} is not set"))?;
        options.api_key = Some(key);
    }
    let purple_flea = PurpleFlea::start_with(args.purple_flea, plan.clone(), options).await?;
    let aeeron = Aeeron::start(args.aeeron, plan).await?;
    Ok((purple_flea, aeeron))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(arguments: &[&str]) -> SimArgs {
        Harness::try_parse_from(std::iter::once("sim").chain(arguments.iter().copied()))
            .expect("arguments parse")
            .sim
    }

    #[tokio::test]
    async fn flags_reach_the_servers() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let plan_path = directory.path().join("plan.toml");
        std::fs::write(
            &plan_path,
            "seed = 1\n[[rules]]\nkind = \"unavailable\"\nprobability = 0.5\n",
        )
        .expect("write plan");
        let plan_text = plan_path.to_str().expect("utf-8 path");
        // (arguments, expected seed, expected rule count, starts)
        let cases: &[(&[&str], u64, usize, bool)] = &[
            (&[], 0, 0, true),
            (&["--seed", "9"], 9, 0, true),
            (&["--faults", plan_text], 1, 1, true),
            (&["--faults", plan_text, "--seed", "42"], 42, 1, true),
            (
                &[
                    "--purple-flea",
                    "127.0.0.1:0",
                    "--aeeron",
                    "127.0.0.1:0",
                    "--json",
                ],
                0,
                0,
                true,
            ),
            (&["--balance", "ten"], 0, 0, false),
            (&["--faults", "/nonexistent/plan.toml"], 0, 0, false),
        ];
        for (arguments, seed, rules, starts) in cases {
            match start(&parse(arguments)).await {
                Ok((purple_flea, aeeron)) => {
                    assert!(*starts, "{arguments:?} should not start");
                    assert_eq!(purple_flea.fault_plan().seed, *seed, "{arguments:?}");
                    assert_eq!(aeeron.fault_plan().rules.len(), *rules, "{arguments:?}");
                    assert_ne!(purple_flea.local_addr().port(), 0, "{arguments:?}");
                    purple_flea.shutdown().await;
                    aeeron.shutdown().await;
                }
                Err(error) => assert!(!*starts, "{arguments:?}: {error:#}"),
            }
        }
    }
}
