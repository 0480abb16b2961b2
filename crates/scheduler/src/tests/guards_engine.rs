//! Spending guards through the engine: a breach is a typed rejection before anything is
//! recorded, and the rolling window survives a restart (it is rebuilt from the log).

use std::sync::Arc;
use std::time::Duration;

use intent_log::sim_fs::{SimError, SimFault, SimFileSystem, SimOp};
use serde_json::json;

use super::sim_provider::SimProvider;
use crate::{ConnectorSettings, Engine, EngineConfig, Error, SpendingGuard, SubmitRequest};

fn pay(key: &str, amount: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "sim".into(),
        operation: "pay".into(),
        params: json!({"amount": amount}),
        idempotency_key: Some(key.into()),
    }
}

async fn open(dir: &std::path::Path, provider: &SimProvider) -> Engine {
    let mut settings = ConnectorSettings::new(Arc::new(provider.clone()));
    settings.guard = Some(SpendingGuard {
        per_intent_micros_max: Some(100_000_000),
        window_micros_max: Some(150_000_000),
        window_ms: 3_600_000,
    });
    let mut config = EngineConfig::new(dir);
    config.index = false;
    Engine::open(config, vec![settings]).await.unwrap().0
}

#[tokio::test]
async fn a_breach_is_refused_before_the_log_and_the_window_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SimProvider::new(1, 0);
    let engine = open(dir.path(), &provider).await;
    let check = |result: crate::Result<crate::Submitted>, refused: bool| match result {
        Err(Error::SpendingLimit(message)) => assert!(refused, "refused: {message}"),
        Ok(_) => assert!(!refused, "accepted a breach"),
        Err(error) => panic!("unexpected {error}"),
    };
    check(engine.submit(pay("g-1", "120.00")).await, true); // over the per-intent cap
    check(engine.submit(pay("g-2", "80.00")).await, false);
    check(engine.submit(pay("g-3", "80.00")).await, true); // 80 + 80 = 160 > 150 in the window
    engine.shutdown().await;
    let engine = open(dir.path(), &provider).await;
    check(engine.submit(pay("g-4", "70.50")).await, true); // 80 + 70.5 > 150, after a restart
    check(engine.submit(pay("g-5", "70.00")).await, false); // exactly 150
    let keys: Vec<String> = engine
        .list(&crate::ListFilter::default())
        .into_iter()
        .map(|intent| intent.spec.idempotency_key)
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "refused intents are never recorded: {keys:?}"
    );
    assert!(keys.contains(&"g-2".to_string()) && keys.contains(&"g-5".to_string()));
    engine.shutdown().await;
}

fn guard_of_ten() -> SpendingGuard {
    SpendingGuard {
        per_intent_micros_max: None,
        window_micros_max: Some(10_000_000),
        window_ms: 3_600_000,
    }
}

async fn open_with(config: EngineConfig, provider: &SimProvider) -> Engine {
    let mut settings = ConnectorSettings::new(Arc::new(provider.clone()));
    settings.guard = Some(guard_of_ten());
    Engine::open(config, vec![settings]).await.unwrap().0
}

fn expect_accepted(result: crate::Result<crate::Submitted>) -> crate::Intent {
    match result {
        Ok(submitted) => {
            assert!(submitted.created);
            submitted.intent
        }
        Err(error) => panic!("refused: {error}"),
    }
}

fn expect_refused(result: crate::Result<crate::Submitted>) {
    match result {
        Err(Error::SpendingLimit(_)) => {}
        Ok(submitted) => panic!("accepted a breach: {:?}", submitted.intent.spec),
        Err(error) => panic!("unexpected {error}"),
    }
}

// Defect 5: the window was checked at submit but recorded only once the synced append
// came back, so concurrent submits all passed the same check (35 of 40 accepted).
#[tokio::test]
async fn spending_guard_cannot_be_overrun_by_concurrent_submits() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SimProvider::new(1, 0);
    let mut config = EngineConfig::new(dir.path());
    config.index = false;
    let engine = open_with(config.clone(), &provider).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let engine = engine.clone();
        tasks.spawn(async move { engine.submit(pay(&format!("c-{i}"), "1.00")).await });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(submitted) => {
                assert!(submitted.created);
                accepted += 1;
            }
            Err(Error::SpendingLimit(_)) => refused += 1,
            Err(error) => panic!("unexpected {error}"),
        }
    }
    assert_eq!((accepted, refused), (10, 30));
    assert_eq!(engine.list(&crate::ListFilter::default()).len(), 10);
    assert_eq!(engine.window_micros("sim"), 10_000_000);
    engine.shutdown().await;
    // After a restart the window holds exactly the ten accepted amounts, counted once.
    let engine = open_with(config, &provider).await;
    assert_eq!(engine.window_micros("sim"), 10_000_000);
    expect_refused(engine.submit(pay("c-after", "0.01")).await);
    engine.shutdown().await;
}

// A record the log refuses (too large, the log stays usable) must give its reservation
// back at once, and replay must not count it.
#[tokio::test]
async fn a_refused_append_releases_its_spending_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SimProvider::new(1, 0);
    let mut config = EngineConfig::new(dir.path());
    config.index = false;
    config.log.record_bytes_max = 4 * 1024;
    let engine = open_with(config.clone(), &provider).await;
    expect_accepted(engine.submit(pay("r-1", "4.00")).await);
    let mut huge = pay("r-2", "6.00");
    huge.params = json!({"amount": "6.00", "memo": "x".repeat(8 * 1024)});
    match engine.submit(huge).await {
        Err(Error::Log(intent_log::Error::RecordTooLarge { .. })) => {}
        other => panic!("expected RecordTooLarge, got {:?}", other.map(|s| s.intent)),
    }
    assert!(!engine.is_log_poisoned());
    assert_eq!(
        engine.window_micros("sim"),
        4_000_000,
        "the reservation leaked"
    );
    expect_accepted(engine.submit(pay("r-3", "6.00")).await);
    expect_refused(engine.submit(pay("r-4", "0.01")).await);
    engine.shutdown().await;
    let engine = open_with(config, &provider).await;
    assert_eq!(engine.window_micros("sim"), 10_000_000);
    expect_refused(engine.submit(pay("r-5", "0.01")).await);
    engine.shutdown().await;
}

// A write error on the submit's append (EIO: nothing written, the log is poisoned): the
// reservation is released, and after a restart the window holds exactly what was accepted.
#[tokio::test]
async fn a_log_fault_on_submit_releases_the_reservation_and_a_restart_counts_only_accepted() {
    let fs = SimFileSystem::new(7);
    let provider = SimProvider::new(1, 0);
    let mut config = EngineConfig::new("/data");
    config.fs = Some(Arc::new(fs.clone()));
    config.index = false;
    let engine = open_with(config.clone(), &provider).await;
    let first = expect_accepted(engine.submit(pay("f-1", "4.00")).await);
    let second = expect_accepted(engine.submit(pay("f-2", "3.00")).await);
    // Let the driver finish both, so the next write is the submit's.
    for id in [first.spec.id, second.spec.id] {
        let intent = engine.wait(id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(intent.state.name(), crate::StateName::Succeeded);
    }
    fs.inject(SimFault {
        op: SimOp::Write,
        skip: 0,
        error: SimError::Eio,
        repeat: false,
    });
    match engine.submit(pay("f-3", "2.00")).await {
        Err(Error::Log(_)) => {}
        other => panic!("expected a log error, got {:?}", other.map(|s| s.intent)),
    }
    assert_eq!(fs.faults_fired(), 1, "the fault did not fire");
    assert!(engine.is_log_poisoned());
    assert_eq!(
        engine.window_micros("sim"),
        7_000_000,
        "the reservation leaked"
    );
    engine.shutdown().await;
    let engine = open_with(config, &provider).await;
    assert_eq!(engine.window_micros("sim"), 7_000_000);
    assert!(engine.get_by_key("sim", "f-3").is_none());
    expect_accepted(engine.submit(pay("f-4", "3.00")).await);
    expect_refused(engine.submit(pay("f-5", "0.01")).await);
    engine.shutdown().await;
}

// Issue 10: the scheduler never reads provider JSON; the connector names the amount. A
// connector whose provider calls it `stake` gets its guard enforced on `stake`, and a
// stray `amount` field the connector does not read counts for nothing.
#[tokio::test]
async fn the_guard_counts_the_amount_the_connector_names() {
    let dir = tempfile::tempdir().unwrap();
    let scripted = super::scripted::Scripted::with(|script| script.amount_field = Some("stake"));
    let mut settings = ConnectorSettings::new(Arc::new(scripted));
    settings.guard = Some(guard_of_ten());
    let mut config = EngineConfig::new(dir.path());
    config.index = false;
    let engine = Engine::open(config, vec![settings]).await.unwrap().0;
    let bet = |key: &str, params: serde_json::Value| SubmitRequest {
        connector: "scripted".into(),
        operation: "pay".into(),
        params,
        idempotency_key: Some(key.into()),
    };
    let first = expect_accepted(
        engine
            .submit(bet("s-1", json!({"stake": "6.00", "amount": "0.01"})))
            .await,
    );
    assert_eq!(first.spec.amount_micros, Some(6_000_000));
    // 6 + 6 > 10: refused on the connector's field, whatever `amount` says.
    expect_refused(
        engine
            .submit(bet("s-2", json!({"stake": "6.00", "amount": "0.01"})))
            .await,
    );
    let untracked = expect_accepted(engine.submit(bet("s-3", json!({"amount": "9.00"}))).await);
    assert_eq!(untracked.spec.amount_micros, None);
    assert_eq!(engine.window_micros("scripted"), 6_000_000);
    engine.shutdown().await;
}
