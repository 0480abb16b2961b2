//! Memory per finished intent (issue 11): an ignored test that runs N intents through a
//! real engine (real files, the sled index on, the default 24 h key retention) with 64
//! tasks doing submit + wait against an in-process connector that succeeds at once, and
//! prints the resident set size (VmRSS, and the peak VmHWM, from /proc/self/status) and
//! the throughput of each window at 10k, 100k and 1M intents. Run it in release mode:
//!
//! `MEMORY_BENCH_INTENTS=1000000 cargo test -p scheduler --release -- --exact tests::memory_bench::memory_bench --ignored --nocapture`
//!
//! `MEMORY_BENCH_COMPACT_MIB=32` compacts at a 32 MiB log instead of the default.
//!
//! `memory_bench_index_alone` puts N intents straight into the sled index (with
//! `MEMORY_BENCH_FLUSH` set, a flush every 10,000) and prints its resident set: sled's own
//! share, which decided `index::INDEX_CACHE_BYTES` and the flush after each retirement.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectors::{DispatchRequest, Exchange, Outcome, StatusCheck};
use serde_json::{json, Value};

use crate::{ConnectorSettings, Engine, EngineConfig, SubmitRequest};

const SUBMITTERS: usize = 64;
const WAIT: Duration = Duration::from_secs(60);

/// A provider that executes every request at once and remembers nothing.
struct Instant0;

#[async_trait]
impl connectors::Connector for Instant0 {
    fn name(&self) -> &str {
        "instant"
    }

    fn key_lifetime(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn validate(&self, _operation: &str, _params: &Value) -> connectors::Result<()> {
        Ok(())
    }

    async fn dispatch(&self, request: &DispatchRequest) -> Outcome {
        Outcome::Success {
            result: json!({"id": format!("res-{}", request.idempotency_key.as_str()), "status": "complete"}),
        }
    }

    async fn check_status(&self, _request: &DispatchRequest) -> StatusCheck {
        StatusCheck::NotFound
    }

    fn amount_micros(&self, _operation: &str, _params: &Value) -> Option<u64> {
        None
    }

    fn resource_id(&self, _outcome: &Outcome) -> Option<String> {
        None
    }

    fn classify(&self, _exchange: &Exchange) -> Outcome {
        super::scripted::unavailable()
    }
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on its own, in release mode (see the module doc)"]
async fn memory_bench() {
    let total: usize = std::env::var("MEMORY_BENCH_INTENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    // A smaller compaction threshold reaches compaction (and its memory) with fewer intents.
    if let Some(mib) = std::env::var("MEMORY_BENCH_COMPACT_MIB")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        config.compact_log_bytes = mib << 20;
    }
    let settings = ConnectorSettings::new(Arc::new(Instant0));
    let (engine, _) = Engine::open(config, vec![settings]).await.unwrap();
    let (rss, _) = rss_kib();
    println!("memory_bench: {total} intents, {SUBMITTERS} submitters, default retention; RSS at open {} MB", rss / 1024);
    println!(
        "{:>10} {:>9} {:>9} {:>10} {:>12}",
        "intents", "RSS MB", "peak MB", "window s", "intents/s"
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SUBMITTERS {
        let (engine, next, done) = (engine.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= total {
                    return;
                }
                submit_and_wait(&engine, number).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let marks: Vec<usize> = [10_000, 100_000, 300_000, 1_000_000, 3_000_000]
        .into_iter()
        .filter(|mark| *mark <= total)
        .chain(std::iter::once(total))
        .collect();
    let mut marks = marks;
    marks.dedup();
    let (mut window_start, mut window_from) = (Instant::now(), 0);
    for mark in marks {
        while done.load(Ordering::Relaxed) < mark {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = window_start.elapsed().as_secs_f64();
        let (rss, peak) = rss_kib();
        let rate = (mark - window_from) as f64 / seconds.max(1e-9);
        println!(
            "{mark:>10} {:>9} {:>9} {seconds:>10.1} {rate:>12.0} {:>10}",
            rss / 1024,
            peak / 1024,
            engine.intents_in_memory()
        );
        (window_start, window_from) = (Instant::now(), mark);
    }
    for task in tasks {
        task.await.unwrap();
    }
    let status = engine.compaction_status();
    println!(
        "compactions: {} (failures {})",
        status.compactions_total, status.failures_total
    );
    assert_eq!(status.failures_total, 0, "{status:?}");
    engine.shutdown().await;
}

async fn submit_and_wait(engine: &Engine, number: usize) {
    let submitted = engine
        .submit(SubmitRequest {
            connector: "instant".into(),
            operation: "pay".into(),
            params: json!({"amount": "1.00", "n": number}),
            idempotency_key: Some(format!("bench-{number}")),
        })
        .await
        .unwrap();
    let intent = engine.wait(submitted.intent.spec.id, WAIT).await.unwrap();
    assert!(intent.state.name().is_terminal(), "{intent:?}");
}

/// The index alone: RSS while N intents of about the bench's size are put into sled, to
/// tell sled's share of the resident set from the engine's.
#[test]
#[ignore = "a measurement: run it on its own (see the module doc)"]
fn memory_bench_index_alone() {
    use crate::index::{SledStore, StateStore};
    use crate::intent::{Intent, IntentId, IntentSpec};
    let total: u64 = std::env::var("MEMORY_BENCH_INTENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap_or_else(|_| panic!("open"));
    for number in 0..total {
        let spec = IntentSpec {
            id: IntentId((u128::from(number) * 0x9e37_79b9_7f4a_7c15).to_be_bytes()),
            connector: "instant".into(),
            operation: "pay".into(),
            params_json: format!(r#"{{"amount":"1.00","n":{number}}}"#),
            idempotency_key: format!("bench-{number}"),
            payload_sha256: [7; 32],
            amount_micros: None,
            submitted_at_ms: 1_700_000_000_000 + number,
        };
        let intent = Intent::new(spec, number + 1);
        store.put(&intent, number + 1).unwrap();
        if std::env::var("MEMORY_BENCH_FLUSH").is_ok() && (number + 1) % 10_000 == 0 {
            store.flush().unwrap();
        }
        if (number + 1) % (total / 5).max(1) == 0 {
            let (rss, peak) = rss_kib();
            println!(
                "index alone: {:>8} intents  RSS {:>5} MB  peak {:>5} MB",
                number + 1,
                rss / 1024,
                peak / 1024
            );
        }
    }
}
