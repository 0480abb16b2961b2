//! Load measurement: bets per second against the Purple Flea simulator on loopback, without faults.
//!
//! ```text
//! cargo run --release -p simulator --example load -- [CONNECTIONS] [SECONDS] [URL]
//! ```
//!
//! Without URL it starts a simulator in this process (sharing the same two worker threads
//! with the client, which is the harder case). Every bet uses a fresh idempotency key; at
//! the end the audit must show one execution per successful bet and no duplicates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simulator::{FaultPlan, PurpleFlea, PurpleFleaOptions};

/// Upper bounds so a typo cannot start an endless or enormous run.
const CONNECTIONS_MAX: usize = 1_024;
const SECONDS_MAX: u64 = 120;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let connections: usize = arguments
        .first()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(64)
        .clamp(1, CONNECTIONS_MAX);
    let seconds: u64 = arguments
        .get(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(10)
        .clamp(1, SECONDS_MAX);
    let url = arguments.get(2).cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(measure(connections, seconds, url))
}

async fn measure(
    connections: usize,
    seconds: u64,
    url: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let server = match url {
        Some(_) => None,
        None => {
            let options = PurpleFleaOptions::default().with_balance("1000000000.00")?;
            Some(PurpleFlea::start_with("127.0.0.1:0".parse()?, FaultPlan::none(1), options).await?)
        }
    };
    let base = url.unwrap_or_else(|| {
        server
            .as_ref()
            .map(|server| server.base_url())
            .unwrap_or_default()
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let body = r#"{"game":"dice","amount":"0.01","target":50,"prediction":"over"}"#;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (client, url, stop, succeeded, failed) = (
            client.clone(),
            format!("{base}/casino/bet"),
            stop.clone(),
            succeeded.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sequence: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let key = format!("load-{worker}-{sequence}");
                let result = client
                    .post(&url)
                    .header("Idempotency-Key", key)
                    .body(body)
                    .send()
                    .await;
                let created = match result {
                    Ok(response) => {
                        response.status().as_u16() == 201 && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                let counter = if created { &succeeded } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (succeeded, failed) = (
        succeeded.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "connections {connections}  seconds {elapsed:.1}  bets {succeeded}  failed {failed}  bets/s {:.0}",
        succeeded as f64 / elapsed
    );
    if let Some(server) = server {
        let audit = server.audit();
        println!(
            "audit: keys {}  executions {}  duplicates {}",
            audit.total_keys, audit.total_executions, audit.duplicates
        );
        if audit.duplicates != 0 || audit.total_executions != succeeded {
            return Err("the audit does not match the successful bets".into());
        }
        server.shutdown().await;
    }
    Ok(())
}
