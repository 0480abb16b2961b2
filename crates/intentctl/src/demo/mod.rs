//! `intentctl demo`: both simulators in-process with a seeded fault plan, `intentctl serve`
//! as a child process that is SIGKILLed and restarted while agents drive it over HTTP, and
//! an audit at the end: every key executed at most once, every acknowledged intent known.

mod agents;
mod audit;
mod sidecar;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use simulator::{Aeeron, FaultKind, FaultPlan, FaultRule, PurpleFlea, RunningServer};

use agents::{spawn_agents, Shared};
use audit::{audit_run, print_report};
use sidecar::{kill_and_restart, start_sidecar, Sidecar};

/// Agents submitting at once.
const AGENTS: usize = 8;
/// Long-poll per `wait` call, in milliseconds.
const WAIT_POLL_MS: u64 = 5_000;
/// How long one agent keeps trying to settle one intent before giving up on it.
const INTENT_DEADLINE_MS: u64 = 45_000;
/// Pause before an agent retries a request the sidecar did not answer (it is restarting).
const RECONNECT_PAUSE_MS: u64 = 100;
/// Time allowed for the child to print its address.
const CHILD_START_MS: u64 = 15_000;
/// Per-request HTTP timeout of the agents (longer than one long-poll).
const AGENT_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Faults fire only on the first attempts of a key, so retries get through.
const FAULT_ATTEMPTS_PER_KEY: u64 = 3;

/// Arguments of `intentctl demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Intents the agents submit (escrow chains add a fund intent each).
    #[arg(long, default_value_t = 500)]
    intents: usize,
    /// Times the sidecar is killed with SIGKILL and restarted during the run.
    #[arg(long, default_value_t = 4)]
    crashes: usize,
    /// Chance that a mutation meets a fault (split among the fault kinds).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Seed of the fault plan, the agents' choices and the crash moments.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the audit as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn fault_plan(seed: u64, fault_rate: f64) -> FaultPlan {
    let rate = fault_rate.clamp(0.0, 1.0);
    let rule = |route: &str, kind: FaultKind, share: f64| {
        let mut rule = FaultRule::new(route, kind, (rate * share).min(1.0));
        rule.attempts_max_per_key = Some(FAULT_ATTEMPTS_PER_KEY);
        if kind == FaultKind::HoldAfterCommit {
            rule.hold_ms = Some(3_000);
        }
        rule
    };
    let mut rules = Vec::new();
    for route in [
        "POST /casino/bet",
        "POST /escrow/create",
        "POST /escrow/{id}/fund",
        "POST /wallet/transfer",
    ] {
        rules.push(rule(route, FaultKind::Unavailable, 0.3));
        rules.push(rule(route, FaultKind::DropAfterCommit, 0.3));
        rules.push(rule(route, FaultKind::TimeoutAfterCommit, 0.2));
        rules.push(rule(route, FaultKind::HoldAfterCommit, 0.2));
    }
    rules.push(rule(
        "POST /v1/executions",
        FaultKind::ProviderUnavailableBeforeProvider,
        0.4,
    ));
    rules.push(rule(
        "POST /v1/executions",
        FaultKind::ProviderUnavailableAfterProvider,
        0.3,
    ));
    rules.push(rule("POST /v1/executions", FaultKind::DropAfterCommit, 0.3));
    FaultPlan { seed, rules }
}

const SIDECAR_CONFIG: &str = r#"# Written by intentctl demo: short timeouts and delays so faults resolve in seconds.
sync = "data"
key_retention_hours = 24
status_check_delay_base_ms = 100

[[connectors]]
kind = "purple_flea"
base_url = "PURPLE_FLEA_URL"
request_timeout_ms = 1500
connect_timeout_ms = 1000
retry = "aggressive"
retry_delay_base_ms = 100
concurrency = 16

[[connectors]]
kind = "aeeron"
base_url = "AEERON_URL"
request_timeout_ms = 1500
connect_timeout_ms = 1000
retry = "aggressive"
retry_delay_base_ms = 100
concurrency = 16
"#;

/// Writes the sidecar's configuration, pointed at the simulators, into `dir`.
fn write_config(
    dir: &Path,
    purple_flea: &RunningServer,
    aeeron: &RunningServer,
) -> anyhow::Result<PathBuf> {
    let config_path: PathBuf = dir.join("intents.toml");
    std::fs::write(
        &config_path,
        SIDECAR_CONFIG
            .replace("PURPLE_FLEA_URL", &purple_flea.base_url())
            .replace("AEERON_URL", &aeeron.base_url()),
    )?;
    Ok(config_path)
}

fn progress_bar(args: &DemoArgs) -> indicatif::ProgressBar {
    let progress = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.intents as u64)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} jobs {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress
}

/// Runs the agents while the sidecar is killed `args.crashes` times, then once more after
/// the work (so the audit reads what a restarted engine knows); returns the crashes survived.
async fn work_through_crashes(
    args: &DemoArgs,
    shared: &Arc<Shared>,
    sidecar: &mut Sidecar,
    data: &Path,
    config: &Path,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<usize> {
    let next_job = Arc::new(AtomicUsize::new(0));
    let mut agents = spawn_agents(shared, args.seed, args.intents, &next_job, progress);
    // Chaos: crash k comes once a share of the jobs has started, plus a random delay.
    let mut chaos = SmallRng::seed_from_u64(args.seed ^ 0x5eed_c4a5);
    let mut crashes = 0usize;
    while crashes < args.crashes {
        let threshold = (crashes + 1) * args.intents / (args.crashes + 1);
        while next_job.load(Ordering::Relaxed) < threshold && !agents.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while agents.try_join_next().is_some() {}
        }
        tokio::time::sleep(Duration::from_millis(chaos.gen_range(0..300))).await;
        kill_and_restart(sidecar, data, config, shared).await?;
        crashes += 1;
        progress.set_message(format!("{crashes} crashes survived"));
    }
    while agents.join_next().await.is_some() {}
    // One more kill -9 after the work: the audit reads what a restarted engine knows.
    kill_and_restart(sidecar, data, config, shared).await?;
    Ok(crashes + 1)
}

/// Runs the demo; the exit code is 1 when any key executed twice or any acknowledged
/// intent was lost.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let directory = tempfile::tempdir().context("temporary directory")?;
    let data = directory.path().join("data");
    let plan = fault_plan(args.seed, args.fault_rate);
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let purple_flea = PurpleFlea::start(localhost, plan.clone()).await?;
    let aeeron = Aeeron::start(localhost, plan).await?;
    let config_path = write_config(directory.path(), &purple_flea, &aeeron)?;
    let mut sidecar = start_sidecar(&data, &config_path).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(AGENT_REQUEST_TIMEOUT_MS))
        .build()?;
    let shared = Arc::new(Shared {
        base_url: RwLock::new(sidecar.base_url.clone()),
        client,
        aeeron_url: aeeron.base_url(),
        acknowledged: Mutex::new(Vec::new()),
        submitted: AtomicUsize::new(0),
        payments_attached: AtomicUsize::new(0),
        gave_up: AtomicUsize::new(0),
    });
    let progress = progress_bar(&args);
    let crashes_survived =
        work_through_crashes(&args, &shared, &mut sidecar, &data, &config_path, &progress).await?;
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let (report, healthy) = audit_run(
        &args,
        &shared,
        (&purple_flea, &aeeron),
        crashes_survived,
        elapsed,
    )
    .await?;
    // The last sidecar is killed as the others were; a kill that fails means it has
    // exited already, and the temporary directory goes either way.
    let _ = sidecar.child.kill().await;
    tokio::join!(purple_flea.shutdown(), aeeron.shutdown());
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
