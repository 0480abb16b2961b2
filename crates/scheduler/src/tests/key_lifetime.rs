//! The provider's key lifetime: settable per connector, never outlived by the engine's key
//! retention, never approached closer than a safety margin by a re-send, and measured in
//! log time so a wall clock stepped backwards cannot make a key look younger.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectors::{DispatchRequest, ErrorDetail, Exchange, Outcome, StatusCheck};
use serde_json::{json, Value};

use crate::intent::{Attempt, Intent, IntentId, IntentSpec, State, StateName};
use crate::machine::{self, Context};
use crate::policy::{RetryPolicy, StatusCheckPolicy};
use crate::{Clock, ConnectorSettings, Engine, EngineConfig, Error, SubmitRequest};

const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// The wall time of the first run of each engine test.
const T_MS: u64 = 1_800_000_000_000;

/// A provider whose every dispatch times out (ambiguous) and whose status look-up answers
/// "unknown" until the test switches it to "not found".
struct Scripted {
    lifetime: Duration,
    dispatches: AtomicU32,
    not_found: AtomicBool,
}

impl Scripted {
    fn new(lifetime: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            lifetime,
            dispatches: AtomicU32::new(0),
            not_found: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl connectors::Connector for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn key_lifetime(&self) -> Duration {
        self.lifetime
    }

    fn validate(&self, _operation: &str, _params: &Value) -> connectors::Result<()> {
        Ok(())
    }

    fn amount_micros(&self, _operation: &str, params: &Value) -> Option<u64> {
        super::scripted::amount_micros(params)
    }

    fn resource_id(&self, outcome: &Outcome) -> Option<String> {
        super::scripted::resource_id(outcome)
    }

    async fn dispatch(&self, _request: &DispatchRequest) -> Outcome {
        self.dispatches.fetch_add(1, Ordering::SeqCst);
        Outcome::Ambiguous {
            reason: ErrorDetail::new("timeout", "scripted timeout"),
        }
    }

    async fn check_status(&self, _request: &DispatchRequest) -> StatusCheck {
        if self.not_found.load(Ordering::SeqCst) {
            StatusCheck::NotFound
        } else {
            StatusCheck::Unknown {
                reason: ErrorDetail::new("unreachable", "scripted unknown"),
            }
        }
    }

    fn classify(&self, _exchange: &Exchange) -> Outcome {
        Outcome::Ambiguous {
            reason: ErrorDetail::new("unused", "unused"),
        }
    }
}

/// Two status checks, 40 and 80 minutes apart, then a dead letter ("undecidable").
fn slow_checks() -> StatusCheckPolicy {
    StatusCheckPolicy {
        checks_max: 2,
        delay_base_ms: 40 * MINUTE_MS,
        multiplier: 2.0,
        delay_max_ms: 10 * HOUR_MS,
        jitter: 0.0,
    }
}

fn config(dir: &std::path::Path, clock_ms: u64) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.index = false;
    config.clock = Some(Clock::anchored_at(clock_ms));
    config.seed = Some(7);
    config.status_checks = slow_checks();
    config.hold_paused_clock_during_io = true;
    config
}

fn pay(key: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "scripted".into(),
        operation: "pay".into(),
        params: json!({"amount": "1.00"}),
        idempotency_key: Some(key.into()),
    }
}

fn code_of(intent: &Intent) -> Option<&str> {
    match &intent.state {
        State::DeadLettered { reason } => Some(reason.code.as_str()),
        _ => None,
    }
}

/// Submits at the clock's time; the only dispatch is ambiguous and both status checks say
/// "unknown", so the intent is dead-lettered two hours later in log time.
async fn ambiguous_then_dead_lettered(engine: &Engine, key: &str) -> IntentId {
    let id = engine.submit(pay(key)).await.unwrap().intent.spec.id;
    let intent = engine
        .wait(id, Duration::from_secs(4 * 3600))
        .await
        .unwrap();
    assert_eq!(code_of(&intent), Some("undecidable"), "{:?}", intent.state);
    id
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_across_a_restart_cannot_make_a_key_look_younger() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Scripted::new(Duration::from_millis(HOUR_MS));
    let settings = || vec![ConnectorSettings::new(provider.clone())];
    let (engine, _) = Engine::open(config(dir.path(), T_MS), settings())
        .await
        .unwrap();
    let id = ambiguous_then_dead_lettered(&engine, "stepped-back").await;
    let logged = engine.get(id).unwrap();
    assert!(
        logged.updated_at_ms >= T_MS + HOUR_MS,
        "the log must show the lifetime has passed: {}",
        logged.updated_at_ms - T_MS
    );
    engine.shutdown().await;
    assert_eq!(provider.dispatches.load(Ordering::SeqCst), 1);

    // The host's clock is now two days behind the log. The operator retries; the provider
    // says "not found", which by the stepped-back clock looks like a young key.
    let (engine, _) = Engine::open(config(dir.path(), T_MS - 2 * DAY_MS), settings())
        .await
        .unwrap();
    provider.not_found.store(true, Ordering::SeqCst);
    let reopened = engine.dlq_retry(id).await.unwrap();
    assert_eq!(reopened.state.name(), StateName::Ambiguous);
    let intent = engine.wait(id, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(
        code_of(&intent),
        Some("key_expired"),
        "after {} dispatches: {:?}",
        provider.dispatches.load(Ordering::SeqCst),
        intent.state
    );
    assert_eq!(
        provider.dispatches.load(Ordering::SeqCst),
        1,
        "a key past its lifetime in log time was re-sent"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_connector_settings_key_lifetime_overrides_the_connectors_own() {
    let dir = tempfile::tempdir().unwrap();
    // The connector claims a day; the operator's contract says one hour.
    let provider = Scripted::new(Duration::from_millis(DAY_MS));
    let mut settings = ConnectorSettings::new(provider.clone());
    settings.key_lifetime = Some(Duration::from_millis(HOUR_MS));
    let (engine, _) = Engine::open(config(dir.path(), T_MS), vec![settings])
        .await
        .unwrap();
    let id = ambiguous_then_dead_lettered(&engine, "override").await;
    provider.not_found.store(true, Ordering::SeqCst);
    engine.dlq_retry(id).await.unwrap();
    let intent = engine.wait(id, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(code_of(&intent), Some("key_expired"), "{:?}", intent.state);
    assert_eq!(provider.dispatches.load(Ordering::SeqCst), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn open_refuses_a_key_retention_shorter_than_a_key_lifetime() {
    // (retention ms, connector lifetime ms, setting ms, expected error substring or None)
    let cases: &[(u64, u64, Option<u64>, Option<&str>)] = &[
        (DAY_MS, DAY_MS, None, None),
        (DAY_MS, 2 * DAY_MS, Some(HOUR_MS), None),
        (HOUR_MS, DAY_MS, None, Some("key_retention")),
        (DAY_MS, HOUR_MS, Some(2 * DAY_MS), Some("key_retention")),
        (DAY_MS, DAY_MS, Some(0), Some("key lifetime of 0")),
    ];
    for &(retention_ms, lifetime_ms, setting_ms, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.index = false;
        config.key_retention_ms = retention_ms;
        let mut settings =
            ConnectorSettings::new(Scripted::new(Duration::from_millis(lifetime_ms)));
        settings.key_lifetime = setting_ms.map(Duration::from_millis);
        let result = Engine::open(config, vec![settings]).await;
        let case =
            format!("retention {retention_ms} lifetime {lifetime_ms} setting {setting_ms:?}");
        match (result, expected) {
            (Ok((engine, _)), None) => engine.shutdown().await,
            (Ok((engine, _)), Some(expected)) => {
                engine.shutdown().await;
                panic!("{case}: opened, expected an error with {expected:?}");
            }
            (Err(Error::Config(message)), Some(expected)) => {
                assert!(message.contains(expected), "{case}: {message}")
            }
            (Err(error), _) => panic!("{case}: unexpected error {error}"),
        }
    }
}

fn sent_once_at_zero() -> Intent {
    let spec = IntentSpec {
        id: IntentId([2; 16]),
        connector: "c".into(),
        operation: "pay".into(),
        params_json: "{}".into(),
        idempotency_key: "k".into(),
        payload_sha256: [0; 32],
        amount_micros: None,
        submitted_at_ms: 0,
    };
    let mut intent = Intent::new(spec, 1);
    intent.attempts.push(Attempt {
        number: 1,
        started_at_ms: 0,
        finished_at_ms: Some(0),
        outcome: Some(crate::record::AttemptOutcome::Ambiguous),
        detail: None,
    });
    intent
}

#[test]
fn a_resend_keeps_a_safety_margin_before_the_key_lifetime_ends() {
    let retry = RetryPolicy {
        attempts_max: 100,
        deadline_ms: 10 * DAY_MS,
        ..RetryPolicy::default()
    };
    let checks = StatusCheckPolicy::default();
    // (lifetime ms, now ms, updated_at ms, expected: re-send allowed)
    let cases: &[(u64, u64, u64, bool)] = &[
        // One hour: the default margin is 6 minutes (a tenth).
        (HOUR_MS, 0, 0, true),
        (HOUR_MS, HOUR_MS - 6 * MINUTE_MS - 1, 0, true),
        (HOUR_MS, HOUR_MS - 6 * MINUTE_MS, 0, false),
        (HOUR_MS, HOUR_MS - 1, 0, false),
        // 24 hours: the margin is 144 minutes.
        (DAY_MS, DAY_MS - 145 * MINUTE_MS, 0, true),
        (DAY_MS, DAY_MS - 144 * MINUTE_MS, 0, false),
        // 20 minutes: a tenth is 2 minutes, the 5-minute floor wins.
        (20 * MINUTE_MS, 14 * MINUTE_MS, 0, true),
        (20 * MINUTE_MS, 15 * MINUTE_MS, 0, false),
        // The clock reads young, but the log saw later times: log time wins.
        (HOUR_MS, 10 * MINUTE_MS, HOUR_MS, false),
        (HOUR_MS, 10 * MINUTE_MS, 30 * MINUTE_MS, true),
    ];
    for &(lifetime_ms, now_ms, updated_at_ms, allowed) in cases {
        let mut intent = sent_once_at_zero();
        intent.updated_at_ms = updated_at_ms;
        let context = Context {
            retry: &retry,
            checks: &checks,
            key_lifetime_ms: lifetime_ms,
            key_lifetime_margin_ms: machine::key_lifetime_margin_default(lifetime_ms),
            now_ms,
            unit: 0.5,
        };
        let decision = machine::before_dispatch(&intent, context);
        let case = format!("lifetime {lifetime_ms} now {now_ms} updated {updated_at_ms}");
        match decision {
            None => assert!(allowed, "{case}: re-sent"),
            Some(State::DeadLettered { reason }) => {
                assert!(!allowed, "{case}: refused: {}", reason.message);
                assert_eq!(reason.code, "key_expired", "{case}");
            }
            Some(other) => panic!("{case}: {other:?}"),
        }
    }
}
