//! The submit fast path (`engine/submit.rs`): a submit whose connector has a free permit
//! logs `Submitted` and `AttemptStarted` in one synced batch and starts the worker itself;
//! a busy connector leaves the intent to the driver; a crash right after a fast-path
//! submit is recovered like any attempt in flight (ambiguous, checked, never re-sent
//! blindly).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectors::{DispatchRequest, ErrorDetail, Exchange, Outcome, RetryScope, StatusCheck};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{ConnectorSettings, Engine, EngineConfig, Intent, StateName, SubmitRequest};

/// A connector whose sends wait at a gate the test opens, and whose status checks say
/// the attempt executed.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    dispatches: Arc<AtomicU32>,
    checks: Arc<AtomicU32>,
}

impl Gated {
    fn closed() -> Gated {
        Gated {
            gate: Arc::new(Semaphore::new(0)),
            dispatches: Arc::new(AtomicU32::new(0)),
            checks: Arc::new(AtomicU32::new(0)),
        }
    }

    fn open(&self, sends: usize) {
        self.gate.add_permits(sends);
    }

    fn dispatches(&self) -> u32 {
        self.dispatches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl connectors::Connector for Gated {
    fn name(&self) -> &str {
        "gated"
    }

    fn key_lifetime(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    fn validate(&self, _operation: &str, _params: &Value) -> connectors::Result<()> {
        Ok(())
    }

    async fn dispatch(&self, request: &DispatchRequest) -> Outcome {
        // Counted when the request "leaves": before the gate, as a real send would be.
        self.dispatches.fetch_add(1, Ordering::SeqCst);
        match self.gate.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => {
                return Outcome::Ambiguous {
                    reason: ErrorDetail::new("closed", "gate closed"),
                }
            }
        }
        Outcome::Success {
            result: json!({"id": format!("res-{}", request.idempotency_key.as_str())}),
        }
    }

    async fn check_status(&self, request: &DispatchRequest) -> StatusCheck {
        self.checks.fetch_add(1, Ordering::SeqCst);
        StatusCheck::Found {
            result: json!({"id": format!("res-{}", request.idempotency_key.as_str())}),
            remote_status: connectors::RemoteStatus::Complete,
        }
    }

    fn amount_micros(&self, _operation: &str, _params: &Value) -> Option<u64> {
        None
    }

    fn resource_id(&self, _outcome: &Outcome) -> Option<String> {
        None
    }

    fn classify(&self, _exchange: &Exchange) -> Outcome {
        Outcome::Retryable {
            reason: ErrorDetail::new("unavailable", "gated"),
            retry_after: None,
            scope: RetryScope::Intent,
        }
    }
}

async fn open(dir: &std::path::Path, gated: &Gated, concurrency: usize) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.index = false;
    config.seed = Some(11);
    let mut settings = ConnectorSettings::new(Arc::new(gated.clone()));
    settings.concurrency = concurrency;
    Engine::open(config, vec![settings]).await.expect("open").0
}

async fn submit(engine: &Engine, key: &str) -> Intent {
    let request = SubmitRequest {
        connector: "gated".into(),
        operation: "pay".into(),
        params: json!({"n": key}),
        idempotency_key: Some(key.into()),
    };
    engine.submit(request).await.expect("submit").intent
}

async fn settled(engine: &Engine, intent: &Intent) -> Intent {
    engine
        .wait(intent.spec.id, Duration::from_secs(10))
        .await
        .expect("wait")
}

/// (records, batches) the log made durable so far.
fn durable(engine: &Engine) -> (u64, u64) {
    let stats = engine.log_stats();
    (stats.records, stats.batches)
}

#[tokio::test]
async fn a_submit_with_a_free_permit_logs_its_first_attempt_in_the_same_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gated = Gated::closed();
    let engine = open(dir.path(), &gated, 4).await;
    let before = durable(&engine);

    let intent = submit(&engine, "fast-1").await;

    // Acknowledged with its first attempt already durable: two records, one batch.
    assert_eq!(intent.state.name(), StateName::Sent);
    assert_eq!(intent.attempts.len(), 1);
    let after = durable(&engine);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 1),
        "Submitted and AttemptStarted must share one synced batch"
    );
    gated.open(1);
    let done = settled(&engine, &intent).await;
    assert_eq!(done.state.name(), StateName::Succeeded);
    assert_eq!(gated.dispatches(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_busy_connector_leaves_the_submit_to_the_driver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gated = Gated::closed();
    let engine = open(dir.path(), &gated, 1).await;

    let first = submit(&engine, "busy-1").await;
    assert_eq!(first.state.name(), StateName::Sent);
    let before = durable(&engine);
    // The only permit is held by the first send, parked at the gate.
    let second = submit(&engine, "busy-2").await;
    assert_eq!(second.state.name(), StateName::Pending);
    let after = durable(&engine);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
    assert_eq!(gated.dispatches(), 1, "the second must wait for the permit");

    gated.open(2);
    assert_eq!(
        settled(&engine, &first).await.state.name(),
        StateName::Succeeded
    );
    assert_eq!(
        settled(&engine, &second).await.state.name(),
        StateName::Succeeded
    );
    assert_eq!(gated.dispatches(), 2, "each intent sent exactly once");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_crash_after_a_fast_path_submit_checks_before_it_resends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gated = Gated::closed();
    let engine = open(dir.path(), &gated, 4).await;
    let intent = submit(&engine, "crash-1").await;
    // The send is on the wire (parked at the gate) when the process dies.
    for _ in 0..200 {
        if gated.dispatches() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gated.dispatches(), 1, "the fast path must have sent it");
    engine.kill();

    let reopened_with = Gated::closed();
    let engine = open(dir.path(), &reopened_with, 4).await;
    let done = settled(&engine, &intent).await;
    assert_eq!(done.state.name(), StateName::Reconciled, "{:?}", done.state);
    assert_eq!(
        reopened_with.dispatches(),
        0,
        "an attempt that may have executed is checked, never re-sent"
    );
    assert_eq!(reopened_with.checks.load(Ordering::SeqCst), 1);
    engine.shutdown().await;
}
