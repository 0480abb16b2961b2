//! The engine against the real simulators over HTTP: one scenario per case of the seed
//! documents (timeout then found, 409, a 429 storm, 503 then success, execution_failed →
//! dead letter, payment_required → payment → success, budget_exceeded → failed), a crash
//! and restart, and key reuse (G4). Each asserts the engine's final state, that the
//! injected fault really happened, and the simulator's audit (`GET /_sim/audit`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use connectors::{
    AeeronConnector, Connector, HttpConnectorConfig, IdempotencyKey, Outcome, PurpleFleaConnector,
};
use scheduler::{
    ConnectorSettings, Engine, EngineConfig, Intent, RetryPolicy, State, StateName,
    StatusCheckPolicy, SubmitRequest,
};
use serde_json::{json, Value};
use simulator::{Aeeron, FaultKind, FaultPlan, FaultRule, PurpleFlea, RunningServer};

const BET_ROUTE: &str = "POST /casino/bet";
const EXECUTIONS_ROUTE: &str = "POST /v1/executions";
/// Connector request timeout: the simulators answer in microseconds, so this only bites
/// on a held or delayed response.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
/// Tries of `attach_payment` while the engine still holds the intent in flight.
const ATTACH_TRIES_MAX: usize = 200;
/// Longest wait for an intent to settle in any scenario.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 5,
        delay_base_ms: 20,
        multiplier: 2.0,
        delay_max_ms: 200,
        jitter: 0.1,
        deadline_ms: 60_000,
    }
}

fn status_check_policy() -> StatusCheckPolicy {
    StatusCheckPolicy {
        checks_max: 5,
        delay_base_ms: 20,
        multiplier: 2.0,
        delay_max_ms: 200,
        jitter: 0.1,
    }
}

async fn purple_flea_server(rules: Vec<FaultRule>) -> RunningServer {
    PurpleFlea::start("127.0.0.1:0".parse().unwrap(), FaultPlan { seed: 3, rules })
        .await
        .unwrap()
}

async fn aeeron_server(rules: Vec<FaultRule>) -> RunningServer {
    Aeeron::start("127.0.0.1:0".parse().unwrap(), FaultPlan { seed: 5, rules })
        .await
        .unwrap()
}

fn purple_flea(server: &RunningServer) -> Arc<PurpleFleaConnector> {
    let mut config = HttpConnectorConfig::new(server.base_url());
    config.request_timeout = REQUEST_TIMEOUT;
    config.connect_timeout = Duration::from_secs(1);
    Arc::new(PurpleFleaConnector::new(config).unwrap())
}

fn aeeron(server: &RunningServer) -> Arc<AeeronConnector> {
    let mut config = HttpConnectorConfig::new(server.base_url());
    config.request_timeout = REQUEST_TIMEOUT;
    config.connect_timeout = Duration::from_secs(1);
    Arc::new(AeeronConnector::new(config).unwrap())
}

/// A rule that fires on the first `attempts` requests of each key.
fn first_attempts(route: &str, kind: FaultKind, attempts: u64) -> FaultRule {
    let mut rule = FaultRule::new(route, kind, 1.0);
    rule.attempts_max_per_key = Some(attempts);
    rule
}

async fn open(dir: &Path, connector: Arc<dyn Connector>) -> (Engine, scheduler::OpenReport) {
    let mut config = EngineConfig::new(dir);
    config.status_checks = status_check_policy();
    config.seed = Some(17);
    let mut settings = ConnectorSettings::new(connector);
    settings.retry = retry_policy();
    Engine::open(config, vec![settings]).await.unwrap()
}

fn bet(key: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "purple_flea".to_string(),
        operation: "bet".to_string(),
        params: json!({"game":"dice","amount":"1.00","target":50,"prediction":"over"}),
        idempotency_key: Some(key.to_string()),
    }
}

/// `web.search` costs 0.05 a query: three queries are quoted at 0.15.
fn search(key: &str, budget: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "aeeron".to_string(),
        operation: "execute".to_string(),
        params: json!({"action":"web.search","params":{"queries":3},"budget":{"amount":budget,"currency":"USDC"}}),
        idempotency_key: Some(key.to_string()),
    }
}

/// The audit as a client sees it: `GET /_sim/audit` over HTTP.
async fn audit(server: &RunningServer) -> Value {
    reqwest::get(format!("{}/_sim/audit", server.base_url()))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn executions(audit: &Value, key: &str) -> u64 {
    audit["keys"][key]["executions"].as_u64().unwrap_or(0)
}

/// Exactly one execution of each key, no duplicates anywhere.
async fn assert_exactly_once(server: &RunningServer, keys: &[&str]) {
    let audit = audit(server).await;
    assert_eq!(audit["duplicates"], 0, "{audit}");
    for key in keys {
        assert_eq!(executions(&audit, key), 1, "key {key}: {audit}");
    }
}

/// (outcome, code) of every attempt, in order.
fn history(intent: &Intent) -> Vec<(String, String)> {
    intent
        .attempts
        .iter()
        .map(|attempt| {
            (
                attempt
                    .outcome
                    .map(|outcome| outcome.as_str().to_string())
                    .unwrap_or_default(),
                attempt
                    .detail
                    .as_ref()
                    .map(|detail| detail.code.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn pair(outcome: &str, code: &str) -> (String, String) {
    (outcome.to_string(), code.to_string())
}

async fn settle(engine: &Engine, id: scheduler::IntentId) -> Intent {
    engine.wait(id, SETTLE_TIMEOUT).await.unwrap()
}

// Purple Flea: the bet executes but its response is held past the client's timeout. The
// engine must not re-send blindly: a status check finds the bet and reconciles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_then_found_is_reconciled() {
    let hold = FaultRule {
        hold_ms: Some(3_000),
        ..first_attempts(BET_ROUTE, FaultKind::HoldAfterCommit, 1)
    };
    let server = purple_flea_server(vec![hold]).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let id = engine
        .submit(bet("timeout-1"))
        .await
        .unwrap()
        .intent
        .spec
        .id;
    let intent = settle(&engine, id).await;
    let State::Reconciled { result_json } = &intent.state else {
        panic!("{:?}", intent.state)
    };
    let result: Value = serde_json::from_str(result_json).unwrap();
    assert_eq!(result["idempotency_key"], "timeout-1", "{result}");
    assert_eq!(history(&intent), vec![pair("ambiguous", "timeout")]);
    assert!(intent.status_checks >= 1, "{intent:?}");
    assert_exactly_once(&server, &["timeout-1"]).await;
    engine.shutdown().await;
    server.shutdown().await;
}

/// Purple Flea 409 `request_in_progress`: the first attempt is slowed (1 s) past the
/// client's timeout while the server holds its key in progress, so the engine's next
/// request with the same key meets 409. Returns the settled intent, the offsets (ms from
/// the first attempt) at which attempts started, and the server, once the delayed first
/// request has finished.
async fn request_in_progress_scenario(key: &str) -> (Intent, Vec<u64>, RunningServer) {
    let latency = FaultRule {
        latency_ms: Some(1_000),
        ..first_attempts(BET_ROUTE, FaultKind::Latency, 1)
    };
    let server = purple_flea_server(vec![latency]).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let id = engine.submit(bet(key)).await.unwrap().intent.spec.id;
    let intent = settle(&engine, id).await;
    let first = intent.attempts[0].started_at_ms;
    let offsets = intent
        .attempts
        .iter()
        .map(|attempt| attempt.started_at_ms - first)
        .collect();
    let outcomes = history(&intent);
    assert_eq!(
        outcomes.first(),
        Some(&pair("ambiguous", "timeout")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&pair("already_done", "request_in_progress")),
        "no 409 was met: {outcomes:?}"
    );
    // Let the delayed first request finish (it executes even though the client left).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    engine.shutdown().await;
    (intent, offsets, server)
}

// Whatever the engine decides after a 409, the bet executes exactly once and the intent
// ends in a terminal state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_progress_409_never_executes_twice() {
    let (intent, _, server) = request_in_progress_scenario("conflict-1").await;
    assert!(intent.state.name().is_terminal(), "{:?}", intent.state);
    assert_exactly_once(&server, &["conflict-1"]).await;
    server.shutdown().await;
}

// The seed: "409 Conflict = already done → get the existing result". While the first
// request is still in progress the look-up says 404, and the engine re-sends at once
// (no backoff on the already-done → not-found path), meets 409 again, and burns its
// whole retry budget within milliseconds: dead-lettered `retries_exhausted` although the
// bet executes a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_progress_409_ends_with_the_existing_result() {
    let (intent, offsets, server) = request_in_progress_scenario("conflict-2").await;
    assert!(
        matches!(
            intent.state.name(),
            StateName::Reconciled | StateName::Succeeded
        ),
        "{:?} after {:?}, attempts started at {offsets:?} ms",
        intent.state,
        history(&intent)
    );
    assert_exactly_once(&server, &["conflict-2"]).await;
    server.shutdown().await;
}

// Purple Flea 429 storm: every bet is rate limited twice with `Retry-After: 1`. All end
// succeeded, each executed once, and no re-send starts before the Retry-After elapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storm_honours_retry_after() {
    const BETS: usize = 6;
    let storm = FaultRule {
        retry_after_s: Some(1),
        ..first_attempts(BET_ROUTE, FaultKind::RateLimit, 2)
    };
    let server = purple_flea_server(vec![storm]).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let keys: Vec<String> = (0..BETS).map(|index| format!("storm-{index}")).collect();
    let mut ids = Vec::new();
    for key in &keys {
        ids.push(engine.submit(bet(key)).await.unwrap().intent.spec.id);
    }
    for id in ids {
        let intent = settle(&engine, id).await;
        assert!(
            matches!(intent.state, State::Succeeded { .. }),
            "{:?}",
            intent.state
        );
        assert_eq!(
            history(&intent),
            vec![
                pair("retryable", "rate_limited"),
                pair("retryable", "rate_limited"),
                pair("success", "")
            ]
        );
        for window in intent.attempts.windows(2) {
            let finished = window[0].finished_at_ms.unwrap();
            assert!(
                window[1].started_at_ms >= finished + 1_000,
                "re-sent {} ms after a 429 with Retry-After: 1",
                window[1].started_at_ms - finished
            );
        }
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_exactly_once(&server, &keys).await;
    engine.shutdown().await;
    server.shutdown().await;
}

// 503 twice, then success, on both services: retried with the same key, executed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_then_success() {
    // (service, fault, expected code of the refusals)
    let rows = [
        ("purple_flea", FaultKind::Unavailable, "unavailable"),
        ("aeeron", FaultKind::Unavailable, "provider_unavailable"),
        (
            "aeeron",
            FaultKind::ProviderUnavailableBeforeProvider,
            "provider_unavailable",
        ),
    ];
    for (service, kind, code) in rows {
        let name = format!("{service} {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let key = "unavailable-1";
        let (server, engine, request) = if service == "purple_flea" {
            let server = purple_flea_server(vec![first_attempts(BET_ROUTE, kind, 2)]).await;
            let (engine, _) = open(dir.path(), purple_flea(&server)).await;
            (server, engine, bet(key))
        } else {
            let server = aeeron_server(vec![first_attempts(EXECUTIONS_ROUTE, kind, 2)]).await;
            let connector = aeeron(&server);
            let (engine, _) = open(dir.path(), connector.clone()).await;
            (server, engine, search(key, "1.00"))
        };
        let id = engine.submit(request).await.unwrap().intent.spec.id;
        let mut intent = settle(&engine, id).await;
        if service == "aeeron" {
            // Aeeron refuses before any fault when no payment is attached.
            assert_eq!(
                intent.state.name(),
                StateName::AwaitingPayment,
                "{name}: {:?}",
                intent.state
            );
            let payment = authorise(&server, "0.15").await;
            attach(&engine, id, payment).await;
            intent = settle(&engine, id).await;
        }
        assert!(
            matches!(intent.state, State::Succeeded { .. }),
            "{name}: {:?}",
            intent.state
        );
        // Aeeron's fault layer answers before its payment check, so the two 503s come
        // first there, then payment_required, then (paid) success.
        let mut expected = vec![pair("retryable", code), pair("retryable", code)];
        if service == "aeeron" {
            expected.push(pair("payment_required", "payment_required"));
        }
        expected.push(pair("success", ""));
        assert_eq!(history(&intent), expected, "{name}");
        assert_exactly_once(&server, &[key]).await;
        engine.shutdown().await;
        server.shutdown().await;
    }
}

/// Attaches a payment. `wait` reports AwaitingPayment as soon as the record is applied,
/// but the engine refuses actions while its worker still holds the intent in flight, for
/// a moment afterwards (see `attach_payment_right_after_wait_is_refused`): retry briefly.
async fn attach(engine: &Engine, id: scheduler::IntentId, payment: Value) {
    for _ in 0..ATTACH_TRIES_MAX {
        match engine.attach_payment(id, payment.clone()).await {
            Ok(_) => return,
            Err(scheduler::Error::WrongState {
                state: "awaiting_payment",
                ..
            }) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(error) => panic!("attach_payment: {error}"),
        }
    }
    panic!("attach_payment refused {ATTACH_TRIES_MAX} times");
}

/// Authorises a payment on the Aeeron simulator and returns it as the engine attaches it.
async fn authorise(server: &RunningServer, amount: &str) -> Value {
    let outcome = aeeron(server)
        .create_payment(amount, "USDC", &IdempotencyKey::random())
        .await;
    let Outcome::Success { result } = outcome else {
        panic!("payment failed: {outcome:?}")
    };
    assert!(result["payment_id"].is_string(), "{result}");
    result
}

// Aeeron payment_required → AwaitingPayment → payment attached → the same key re-sent
// → success, executed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_required_then_payment_then_success() {
    let server = aeeron_server(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), aeeron(&server)).await;
    let id = engine
        .submit(search("pay-1", "1.00"))
        .await
        .unwrap()
        .intent
        .spec
        .id;
    let waiting = settle(&engine, id).await;
    let State::AwaitingPayment { reason } = &waiting.state else {
        panic!("{:?}", waiting.state)
    };
    assert_eq!(reason.code, "payment_required");
    let details: Value = serde_json::from_str(reason.details_json.as_deref().unwrap()).unwrap();
    assert_eq!(details, json!({"amount":"0.15","currency":"USDC"}));
    // Refused, not executed: the key is not in the audit yet.
    assert_eq!(executions(&audit(&server).await, "pay-1"), 0);
    let payment = authorise(&server, "0.15").await;
    attach(&engine, id, payment.clone()).await;
    let intent = settle(&engine, id).await;
    let State::Succeeded { result_json } = &intent.state else {
        panic!("{:?}", intent.state)
    };
    let result: Value = serde_json::from_str(result_json).unwrap();
    assert_eq!(
        (&result["status"], &result["payment"]["payment_id"]),
        (&json!("succeeded"), &payment["payment_id"]),
        "{result}"
    );
    assert_eq!(
        history(&intent),
        vec![
            pair("payment_required", "payment_required"),
            pair("success", "")
        ]
    );
    assert_exactly_once(&server, &["pay-1"]).await;
    engine.shutdown().await;
    server.shutdown().await;
}

// Aeeron execution_failed: the provider failed part-way after the payment cleared. The
// engine reconciles, then dead-letters for an operator, and never replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_failed_is_dead_lettered_never_replayed() {
    // Attempt 0 is refused for want of payment before the provider is reached (it still
    // counts as an attempt of the key); attempt 1, paid, fails part-way.
    let rule = first_attempts(EXECUTIONS_ROUTE, FaultKind::ExecutionFailed, 2);
    let server = aeeron_server(vec![rule]).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), aeeron(&server)).await;
    let id = engine
        .submit(search("failed-1", "1.00"))
        .await
        .unwrap()
        .intent
        .spec
        .id;
    let waiting = settle(&engine, id).await;
    assert_eq!(waiting.state.name(), StateName::AwaitingPayment);
    attach(&engine, id, authorise(&server, "0.15").await).await;
    let intent = settle(&engine, id).await;
    let State::DeadLettered { reason } = &intent.state else {
        panic!("{:?}", intent.state)
    };
    assert_eq!(reason.code, "execution_failed", "{reason:?}");
    assert_eq!(
        history(&intent),
        vec![
            pair("payment_required", "payment_required"),
            pair("execution_failed", "execution_failed")
        ]
    );
    assert!(intent.resource_id.is_some(), "{intent:?}");
    // Still dead-lettered a little later: nothing re-sent on its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(engine.get(id).unwrap().attempts.len(), 2);
    assert_exactly_once(&server, &["failed-1"]).await;
    engine.shutdown().await;
    server.shutdown().await;
}

// Aeeron budget_exceeded: the quote (0.15) is above the budget (0.10). Failed at once,
// with the provider's details kept; nothing executes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_exceeded_fails_with_its_details() {
    let server = aeeron_server(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), aeeron(&server)).await;
    let id = engine
        .submit(search("budget-1", "0.10"))
        .await
        .unwrap()
        .intent
        .spec
        .id;
    let intent = settle(&engine, id).await;
    let State::Failed { reason } = &intent.state else {
        panic!("{:?}", intent.state)
    };
    assert_eq!(
        (reason.code.as_str(), reason.http_status),
        ("budget_exceeded", Some(403))
    );
    let details: Value = serde_json::from_str(reason.details_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        details,
        json!({"budget":"0.10","quote":"0.15","currency":"USDC"})
    );
    assert_eq!(
        history(&intent),
        vec![pair("budget_exceeded", "budget_exceeded")]
    );
    let audit = audit(&server).await;
    assert_eq!(
        (executions(&audit, "budget-1"), &audit["duplicates"]),
        (0, &json!(0)),
        "{audit}"
    );
    engine.shutdown().await;
    server.shutdown().await;
}

/// Polls until the intent is in `name` (bounded).
async fn until_state(engine: &Engine, id: scheduler::IntentId, name: StateName) {
    for _ in 0..500 {
        if engine.get(id).unwrap().state.name() == name {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("never {name:?}: {:?}", engine.get(id).unwrap().state);
}

// Crash while the attempt is on the wire: the bet executed, its response is held. The
// engine is killed and reopened on the same directory; it finds the intent in flight,
// makes it ambiguous, checks, and reconciles. Exactly one execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_in_flight_then_restart_reconciles() {
    let hold = FaultRule {
        hold_ms: Some(3_000),
        ..first_attempts(BET_ROUTE, FaultKind::HoldAfterCommit, 1)
    };
    let server = purple_flea_server(vec![hold]).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let id = engine.submit(bet("crash-1")).await.unwrap().intent.spec.id;
    until_state(&engine, id, StateName::Sent).await;
    // The request reached the server and executed (its response is held).
    for _ in 0..500 {
        if executions(&audit(&server).await, "crash-1") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.kill();
    drop(engine);
    let (engine, report) = open(dir.path(), purple_flea(&server)).await;
    assert_eq!((report.intents, report.recovered_in_flight), (1, 1));
    let intent = settle(&engine, id).await;
    assert_eq!(
        intent.state.name(),
        StateName::Reconciled,
        "{:?}",
        intent.state
    );
    // The attempt cut short by the crash has no outcome.
    assert_eq!(history(&intent), vec![pair("", "")]);
    assert_exactly_once(&server, &["crash-1"]).await;
    engine.shutdown().await;
    server.shutdown().await;
}

// Crash right after submit (before or during the first attempt): the intent was logged
// (G1), so the reopened engine finishes it. Exactly one execution either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_right_after_submit_then_restart_finishes() {
    let server = purple_flea_server(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let id = engine.submit(bet("crash-2")).await.unwrap().intent.spec.id;
    engine.kill();
    drop(engine);
    let (engine, report) = open(dir.path(), purple_flea(&server)).await;
    assert_eq!(report.intents, 1);
    let intent = settle(&engine, id).await;
    assert!(
        matches!(
            intent.state.name(),
            StateName::Succeeded | StateName::Reconciled
        ),
        "{:?}",
        intent.state
    );
    assert_exactly_once(&server, &["crash-2"]).await;
    assert_eq!(audit(&server).await["total_executions"], 1);
    engine.shutdown().await;
    server.shutdown().await;
}

// G4: the same key with the same params is the same intent; with other params it is a
// conflict and nothing is recorded or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_reuse_same_payload_is_same_intent_other_payload_conflicts() {
    let server = purple_flea_server(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), purple_flea(&server)).await;
    let first = engine.submit(bet("g4-1")).await.unwrap();
    assert!(first.created);
    let id = first.intent.spec.id;
    let again = engine.submit(bet("g4-1")).await.unwrap();
    assert_eq!((again.intent.spec.id, again.created), (id, false));
    let mut other = bet("g4-1");
    other.params["amount"] = json!("2.00");
    match engine.submit(other).await {
        Err(scheduler::Error::IdempotencyConflict { key, existing }) => {
            assert_eq!((key.as_str(), existing), ("g4-1", id));
        }
        result => panic!("expected a conflict, got {result:?}"),
    }
    let intent = settle(&engine, id).await;
    assert!(
        matches!(intent.state, State::Succeeded { .. }),
        "{:?}",
        intent.state
    );
    // Resubmitted after it finished: still the same intent, nothing sent again.
    let late = engine.submit(bet("g4-1")).await.unwrap();
    assert_eq!((late.intent.spec.id, late.created), (id, false));
    assert_eq!(engine.list(&Default::default()).len(), 1);
    assert_exactly_once(&server, &["g4-1"]).await;
    assert_eq!(audit(&server).await["total_executions"], 1);
    engine.shutdown().await;
    server.shutdown().await;
}

// `wait` returns as soon as AwaitingPayment is applied, but the worker that applied it
// still holds the intent in flight for a moment; an agent attaching its payment at once
// gets `WrongState { state: "awaiting_payment", action: "attach_payment" }`, an error
// that names the very state the action is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_payment_right_after_wait_is_refused() {
    const INTENTS: usize = 50;
    let server = aeeron_server(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), aeeron(&server)).await;
    let mut refused = Vec::new();
    for index in 0..INTENTS {
        let key = format!("race-{index}");
        let id = engine
            .submit(search(&key, "1.00"))
            .await
            .unwrap()
            .intent
            .spec
            .id;
        assert_eq!(
            settle(&engine, id).await.state.name(),
            StateName::AwaitingPayment
        );
        let payment = authorise(&server, "0.15").await;
        if let Err(error) = engine.attach_payment(id, payment).await {
            refused.push(error.to_string());
        }
    }
    assert_eq!(refused, Vec::<String>::new());
    assert_eq!(audit(&server).await["duplicates"], 0);
    engine.shutdown().await;
    server.shutdown().await;
}
