//! Spending guards through the engine: a breach is a typed rejection before anything is
//! recorded, and the rolling window survives a restart (it is rebuilt from the log).

use std::sync::Arc;

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
