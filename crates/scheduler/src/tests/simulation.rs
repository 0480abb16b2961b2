//! A simulation of the whole engine, one seed driving the workload, the provider's faults,
//! the crash points and the power cuts: tokio's paused clock, the in-process provider, and
//! the intent-log's simulated file system crashed at arbitrary operations (mid-batch,
//! between a write and its sync, during compaction, during recovery).
//!
//! Invariants after every run: the provider executed each key at most once and never
//! received a request for a key it had already executed (no blind re-send, G3); every
//! acknowledged intent is still there (G1) and terminal or visibly waiting (G5); a
//! resubmitted key returns the same id (G4); an intent that failed was never executed; an
//! intent that succeeded was executed exactly once; attempt counts are true.
//!
//! `SIM_SEEDS=100000 cargo test --release -p scheduler simulation` runs a long sweep; a
//! failing seed is printed and can be pinned in `pinned_seeds`.
//! The writer thread of the log runs outside tokio, so the interleaving is not exactly
//! reproducible from the seed; the workload, faults and crash points are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use intent_log::sim_fs::SimFileSystem;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::sim_provider::{SimProvider, KEY_LIFETIME};
use crate::{
    ConnectorSettings, Engine, EngineConfig, Error, IntentId, RetryPolicy, State, StateName,
    StatusCheckPolicy, SubmitRequest,
};

struct Acked {
    id: IntentId,
    key: String,
    params: serde_json::Value,
    operation: &'static str,
}

/// Wall time of the simulation: it keeps running across restarts, like a real clock.
fn clock(start: tokio::time::Instant) -> crate::Clock {
    crate::Clock::anchored_at(1_800_000_000_000 + start.elapsed().as_millis() as u64)
}

/// How one seed's daemon lives: the log's limits and whether finished intents leave memory.
#[derive(Clone)]
struct Life {
    /// Tiny segments and compaction threshold (compaction every few records), or the
    /// default limits (compaction only when the harness asks for it).
    tiny: bool,
    /// A seven-hour key retention, so compaction evicts finished intents into the index
    /// (a real sled directory; the log stays on the simulated disk). Otherwise nothing is
    /// evicted and the index is off.
    index_dir: Option<std::path::PathBuf>,
}

fn config(fs: &SimFileSystem, seed: u64, start: tokio::time::Instant, life: &Life) -> EngineConfig {
    let mut config = EngineConfig::new(life.index_dir.clone().unwrap_or_else(|| "/data".into()));
    config.fs = Some(Arc::new(fs.clone()));
    // sled uses the real disk; the log's directory under it lives on the simulated disk.
    config.index = life.index_dir.is_some();
    // The log's writer is a real thread: hold tokio's paused clock while the engine waits
    // for it, or simulated time races ahead (seed 14579 once ran 231 days in one life).
    config.hold_paused_clock_during_io = true;
    config.seed = Some(seed);
    config.clock = Some(clock(start));
    if life.tiny {
        config.log = intent_log::Options {
            segment_bytes: 16 * 1024,
            batch_bytes_max: 8 * 1024,
            record_bytes_max: 4 * 1024,
            ..intent_log::Options::default()
        };
        config.compact_log_bytes = 24 * 1024;
    }
    // Without the index: longer than any run (the final phase lasts at most ~35 simulated
    // hours), so compaction never evicts and every intent stays in memory. With it: seven
    // hours (no less than the provider's six-hour key lifetime), so a day and more of
    // simulated life evicts most finished intents into the index.
    config.key_retention_ms = if life.index_dir.is_some() {
        7 * 3_600_000
    } else {
        30 * 86_400_000
    };
    config.status_checks = StatusCheckPolicy {
        checks_max: 5,
        delay_base_ms: 1_000,
        multiplier: 2.0,
        delay_max_ms: 30_000,
        jitter: 0.25,
    };
    config
}

fn settings(provider: &SimProvider) -> Vec<ConnectorSettings> {
    let mut settings = ConnectorSettings::new(Arc::new(provider.clone()));
    settings.concurrency = 4;
    settings.retry = RetryPolicy {
        attempts_max: 6,
        delay_base_ms: 500,
        multiplier: 2.0,
        delay_max_ms: 20_000,
        jitter: 0.25,
        deadline_ms: 30 * 86_400_000,
    };
    vec![settings]
}

async fn open(
    fs: &SimFileSystem,
    provider: &SimProvider,
    seed: u64,
    start: tokio::time::Instant,
    life: &Life,
) -> Engine {
    // A crash point may fire during recovery itself; then reboot and try again.
    for _ in 0..5 {
        match Engine::open(config(fs, seed, start, life), settings(provider)).await {
            Ok((engine, _)) => return engine,
            Err(error) => {
                assert!(fs.is_dead(), "open failed without a crash: {error}");
                fs.crash();
            }
        }
    }
    panic!("could not reopen after repeated crashes");
}

/// Lets simulated time pass. The log's writer is a real thread: while a task waits for it,
/// tokio's paused clock may jump ahead, so each step also gives it a little real time
/// (a blocking task holds the paused clock still).
async fn advance(duration: Duration) {
    let step = Duration::from_secs(5).max(duration / 20);
    let mut left = duration;
    loop {
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_micros(200)))
            .await
            .unwrap();
        if left.is_zero() {
            return;
        }
        let now = left.min(step);
        tokio::time::sleep(now).await;
        left -= now;
    }
}

fn params(rng: &mut SmallRng, reject: bool) -> serde_json::Value {
    let mut params =
        json!({"amount": format!("{}.{:02}", rng.gen_range(1..500), rng.gen_range(0..100))});
    if reject {
        params["reject"] = json!(true);
    }
    params
}

/// What one seed did, for the sweep's report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub acked: usize,
    pub crashes: u32,
    pub executions: u32,
    /// Compactions that completed (checkpoint written, segments deleted).
    pub compactions: u64,
    /// Crashes injected inside a compaction the harness started.
    pub crashes_in_compaction: u32,
    /// Intents evicted from memory into the index (lives that run on one).
    pub evicting_lives: u32,
}

/// Runs one seed; returns what it did for the sweep's report.
pub(crate) async fn simulate(seed: u64) -> Totals {
    let start = tokio::time::Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed);
    let fs = SimFileSystem::new(seed);
    let provider = SimProvider::new(seed, rng.gen_range(10..70));
    let mut acked: Vec<Acked> = Vec::new();
    let mut crashes = 0;
    let mut totals = Totals::default();
    let index = rng
        .gen_bool(0.25)
        .then(|| tempfile::tempdir().expect("index directory"));
    let life = Life {
        tiny: index.is_some() || rng.gen_bool(0.7),
        index_dir: index.as_ref().map(|dir| dir.path().to_path_buf()),
    };
    let rounds = rng.gen_range(1..4);
    for round in 0..rounds {
        let engine = open(&fs, &provider, seed.wrapping_add(round), start, &life).await;
        if rng.gen_bool(0.7) {
            fs.crash_after_ops(rng.gen_range(0..60));
        }
        for i in 0..rng.gen_range(2..10) {
            let replay = !acked.is_empty() && rng.gen_bool(0.15);
            let request = if replay {
                let previous = &acked[rng.gen_range(0..acked.len())];
                SubmitRequest {
                    connector: "sim".into(),
                    operation: previous.operation.into(),
                    params: previous.params.clone(),
                    idempotency_key: Some(previous.key.clone()),
                }
            } else {
                let operation = if rng.gen_bool(0.2) { "paid" } else { "pay" };
                let reject = rng.gen_bool(0.05);
                SubmitRequest {
                    connector: "sim".into(),
                    operation: operation.into(),
                    params: params(&mut rng, reject),
                    idempotency_key: Some(format!("s{seed}-r{round}-i{i}")),
                }
            };
            match engine.submit(request.clone()).await {
                Ok(submitted) if replay => {
                    let previous = acked
                        .iter()
                        .find(|a| Some(&a.key) == request.idempotency_key.as_ref())
                        .unwrap();
                    assert_eq!(
                        submitted.intent.spec.id, previous.id,
                        "seed {seed}: a replayed key returned another intent"
                    );
                    assert!(!submitted.created);
                }
                Ok(submitted) => acked.push(Acked {
                    id: submitted.intent.spec.id,
                    key: request.idempotency_key.clone().unwrap(),
                    params: request.params.clone(),
                    operation: if request.operation == "paid" {
                        "paid"
                    } else {
                        "pay"
                    },
                }),
                Err(Error::Log(_)) => {
                    assert!(fs.is_dead(), "seed {seed}: a log error without a crash")
                }
                Err(error) => panic!("seed {seed}: unexpected submit error {error}"),
            }
            advance(Duration::from_millis(rng.gen_range(0..3_000))).await;
        }
        // A conflicting payload under a used key is refused and changes nothing.
        if let Some(first) = acked.first() {
            let conflict = SubmitRequest {
                connector: "sim".into(),
                operation: "pay".into(),
                params: json!({"amount": "999999.99"}),
                idempotency_key: Some(first.key.clone()),
            };
            match engine.submit(conflict).await {
                Err(Error::IdempotencyConflict { existing, .. }) => assert_eq!(existing, first.id),
                Err(Error::Log(_)) => {}
                Ok(_) => panic!("seed {seed}: a different payload under a used key was accepted"),
                Err(error) => panic!("seed {seed}: unexpected error {error}"),
            }
        }
        advance(Duration::from_millis(rng.gen_range(0..60_000))).await;
        if rng.gen_bool(0.4) {
            // Sometimes the process dies inside compaction, at any of its steps (rotation,
            // checkpoint file, rename, directory sync, segment and checkpoint deletion).
            if rng.gen_bool(0.5) {
                fs.crash_after_ops(rng.gen_range(0..16));
            }
            match engine.compact().await {
                Ok(report) => assert!(report.checkpoint_lsn > 0, "seed {seed}: {report:?}"),
                Err(error) => {
                    assert!(
                        fs.is_dead(),
                        "seed {seed}: compaction failed without a crash: {error}"
                    );
                    totals.crashes_in_compaction += 1;
                }
            }
        }
        totals.compactions += engine.compaction_status().compactions_total;
        engine.kill();
        if rng.gen_bool(0.6) {
            fs.crash();
        } else {
            fs.kill_process();
        }
        crashes += 1;
    }
    // The last life: no faults on the disk; pay what awaits payment; run until settled.
    let engine = open(&fs, &provider, seed.wrapping_add(1000), start, &life).await;
    for _ in 0..200 {
        let mut open_work = 0;
        for item in &acked {
            let intent = engine
                .get(item.id)
                .unwrap_or_else(|| panic!("seed {seed}: acknowledged intent {} lost", item.id));
            match intent.state {
                State::AwaitingPayment { .. } => {
                    engine
                        .attach_payment(item.id, json!("pay_sim"))
                        .await
                        .unwrap();
                    open_work += 1;
                }
                ref state if !state.name().is_terminal() => open_work += 1,
                _ => {}
            }
        }
        if open_work == 0 {
            break;
        }
        advance(Duration::from_secs(600)).await;
    }
    let keys = provider.keys();
    let mut executions = 0;
    for item in &acked {
        let intent = engine
            .get(item.id)
            .unwrap_or_else(|| panic!("seed {seed}: acknowledged intent {} lost", item.id));
        let record = keys.get(&item.key).cloned().unwrap_or_default();
        executions += record.executions;
        let state = intent.state.name();
        assert!(
            state.is_terminal(),
            "seed {seed}: {} still {state:?} after the final run: {intent:?} now {} driver {:?}",
            item.id,
            clock(start).now_ms(),
            engine.debug_driver()
        );
        assert!(
            record.executions <= 1,
            "seed {seed}: key {} executed {} times",
            item.key,
            record.executions
        );
        assert_eq!(
            record.calls_after_executed, 0,
            "seed {seed}: key {} was re-sent after it executed (blind re-send)",
            item.key
        );
        match state {
            StateName::Succeeded | StateName::Reconciled => assert_eq!(
                record.executions, 1,
                "seed {seed}: {} done without an execution",
                item.key
            ),
            StateName::Failed => assert_eq!(
                record.executions, 0,
                "seed {seed}: {} failed but executed",
                item.key
            ),
            _ => {}
        }
        let attempts = intent.attempts.len() as u32;
        assert!(
            attempts >= record.calls && attempts <= record.calls + crashes,
            "seed {seed}: {} has {attempts} attempts, the provider saw {} calls",
            item.key,
            record.calls
        );
        if life.index_dir.is_some() {
            // G4 holds within the key-retention window; most of these left it long ago.
            continue;
        }
        let again = engine
            .submit(SubmitRequest {
                connector: "sim".into(),
                operation: item.operation.into(),
                params: item.params.clone(),
                idempotency_key: Some(item.key.clone()),
            })
            .await
            .unwrap();
        assert_eq!(
            (again.intent.spec.id, again.created),
            (item.id, false),
            "seed {seed}: resubmit of {}",
            item.key
        );
    }
    engine.shutdown().await;
    let _ = KEY_LIFETIME;
    let mut by_state: HashMap<StateName, usize> = HashMap::new();
    for item in &acked {
        if let Some(intent) = engine.get(item.id) {
            *by_state.entry(intent.state.name()).or_default() += 1;
            if let State::DeadLettered { reason } = &intent.state {
                if std::env::var("SIM_VERBOSE").is_ok() {
                    eprintln!("  dead letter: {}", reason.code);
                }
            }
        }
    }
    if std::env::var("SIM_VERBOSE").is_ok() {
        eprintln!("seed {seed}: {by_state:?}");
    }
    totals.compactions += engine.compaction_status().compactions_total;
    totals.acked = acked.len();
    totals.crashes = crashes;
    totals.executions = executions;
    totals.evicting_lives = u32::from(life.index_dir.is_some());
    totals
}

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(500)
}

fn run_seed(seed: u64) -> Totals {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(simulate(seed))
}

#[test]
fn simulation_sweep() {
    let count = seeds();
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut totals = Totals::default();
    for seed in first..first + count {
        let result = std::panic::catch_unwind(|| run_seed(seed));
        match result {
            Ok(one) => {
                totals.acked += one.acked;
                totals.crashes += one.crashes;
                totals.executions += one.executions;
                totals.compactions += one.compactions;
                totals.crashes_in_compaction += one.crashes_in_compaction;
                totals.evicting_lives += one.evicting_lives;
            }
            Err(panic) => {
                eprintln!(
                    "simulation seed {seed} FAILED; rerun with SIM_FIRST_SEED={seed} SIM_SEEDS=1"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "simulation: {count} seeds, {} intents acknowledged, {} crashes ({} inside compaction), \
         {} executions, {} compactions, {} seeds evicting into the index",
        totals.acked,
        totals.crashes,
        totals.crashes_in_compaction,
        totals.executions,
        totals.compactions,
        totals.evicting_lives
    );
    assert!(
        totals.acked > count as usize
            && totals.crashes > 0
            && totals.executions > 0
            && totals.compactions > 0,
        "the sweep exercised nothing"
    );
}

/// Seeds that once failed, with a one-line postmortem each.
#[test]
fn pinned_seeds() {
    // 0: `Log::close` joined the writer while an append still held a sender: kill hung.
    // 128: a timer deferred by a connector pause was taken for a stale one and dropped.
    // 544, 597: the final phase let paused time race past a real log write (harness).
    // 108: aborted workers of a killed engine still reached the provider (harness: kill
    //      now aborts them, as `kill -9` would).
    // 14579: simulated time raced 231 days ahead of real log writes, compaction evicted
    //      finished intents past the retention window, the check saw them "lost" (harness:
    //      the clock is now held during log I/O; retention outlasts the run).
    for seed in [0u64, 108, 128, 544, 597, 14579] {
        run_seed(seed);
    }
}
