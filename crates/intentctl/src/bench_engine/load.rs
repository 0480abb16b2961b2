//! The closed loop every row shares: N submitter tasks, each doing one op after another
//! (submit, then wait until settled) until the phase's op count is reached. Latencies
//! are submit→settled; ops that end in any state but `succeeded`, or in an error, are
//! counted by what they ended in and reported, never dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// How an op ended when it did not fail outright: the intent's final state name.
pub type OpResult = anyhow::Result<String>;
/// One op: given a unique sequence number, submit an intent and wait until it settles.
pub type Op = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = OpResult> + Send>> + Send + Sync>;

/// The state every successful op ends in.
pub const SUCCEEDED: &str = "succeeded";
/// Longest error text kept as a tally key.
const ERROR_TEXT_CHARS_MAX: usize = 160;

/// What one closed-loop run measured.
#[derive(Debug, Default)]
pub struct LoopResult {
    /// Ops that ended, in any way.
    pub ops: u64,
    /// Ops that ended `succeeded`.
    pub succeeded: u64,
    /// Everything else, by final state (`state:<name>`) or error text (`error:<text>`).
    pub failures: BTreeMap<String, u64>,
    /// Submit→settled of the succeeded ops, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
}

impl LoopResult {
    pub fn percentile_ms(&self, fraction: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let index = ((self.latencies_us.len() - 1) as f64 * fraction).round() as usize;
        self.latencies_us
            .get(index)
            .map(|&micros| f64::from(micros) / 1000.0)
    }

    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Runs `ops` ops (numbered from `first_sequence`) on `submitters` tasks; the progress bar
/// advances once per op that ends.
pub async fn closed_loop(
    op: Op,
    submitters: usize,
    ops: u64,
    first_sequence: u64,
    progress: &ProgressBar,
) -> anyhow::Result<LoopResult> {
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(submitters);
    for _ in 0..submitters {
        let (op, next, failures, progress) =
            (op.clone(), next.clone(), failures.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= ops {
                    break;
                }
                let begun = Instant::now();
                let outcome = op(first_sequence + index).await;
                let micros = begun.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                match outcome {
                    Ok(state) if state == SUCCEEDED => latencies.push(micros),
                    Ok(state) => tally(&failures, format!("state:{state}")),
                    Err(error) => tally(&failures, format!("error:{error:#}")),
                }
                progress.inc(1);
            }
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
    let failed: u64 = failures.values().sum();
    Ok(LoopResult {
        ops: latencies_us.len() as u64 + failed,
        succeeded: latencies_us.len() as u64,
        failures,
        latencies_us,
        elapsed,
    })
}

fn tally(failures: &Mutex<BTreeMap<String, u64>>, what: String) {
    let what: String = what.chars().take(ERROR_TEXT_CHARS_MAX).collect();
    *failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(what)
        .or_insert(0) += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_op_is_counted_once_and_failures_are_kept() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let op: Op = Arc::new(move |sequence| {
            recorder.lock().expect("lock").push(sequence);
            Box::pin(async move {
                match sequence % 10 {
                    0 => Ok("dead_lettered".to_string()),
                    1 => Err(anyhow::anyhow!("refused")),
                    _ => Ok(SUCCEEDED.to_string()),
                }
            })
        });
        let result = closed_loop(op, 4, 100, 1_000, &ProgressBar::hidden())
            .await
            .expect("loop");
        assert_eq!(result.ops, 100);
        assert_eq!(result.succeeded, 80);
        assert_eq!(result.latencies_us.len(), 80);
        assert_eq!(result.failures.get("state:dead_lettered"), Some(&10));
        assert_eq!(result.failures.get("error:refused"), Some(&10));
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort_unstable();
        assert_eq!(seen, (1_000..1_100).collect::<Vec<u64>>());
        assert!(result.percentile_ms(0.5).is_some());
    }
}
