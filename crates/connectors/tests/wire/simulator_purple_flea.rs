//! The Purple Flea connector against the Purple Flea simulator: every error code it can
//! produce, every fault kind, status checks, and the exactly-once audit.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use simulator::{FaultKind, FaultPlan, FaultRule, PurpleFlea, PurpleFleaOptions, RunningServer};

use connectors::{
    Connector, DispatchRequest, HttpConnectorConfig, IdempotencyKey, Outcome, PurpleFleaConnector,
    RemoteStatus, RetryScope, Secret, StatusCheck,
};

use connectors::http::HttpTransport;

use crate::support::purple_flea;

const BET_ROUTE: &str = "POST /casino/bet";

async fn start(rules: Vec<FaultRule>) -> RunningServer {
    start_with(rules, PurpleFleaOptions::default()).await
}

async fn start_with(rules: Vec<FaultRule>, options: PurpleFleaOptions) -> RunningServer {
    let plan = FaultPlan { seed: 7, rules };
    PurpleFlea::start_with("127.0.0.1:0".parse().unwrap(), plan, options)
        .await
        .unwrap()
}

/// A rule that fires on the first attempt of every key, and never again.
fn first_attempt(route: &str, kind: FaultKind) -> FaultRule {
    let mut rule = FaultRule::new(route, kind, 1.0);
    rule.attempts_max_per_key = Some(1);
    rule
}

fn bet_params(amount: &str, target: u64) -> Value {
    json!({"game":"dice","amount":amount,"target":target,"prediction":"over"})
}

fn bet(amount: &str) -> DispatchRequest {
    DispatchRequest::new("bet", bet_params(amount, 50), IdempotencyKey::random())
}

fn code(outcome: &Outcome) -> &str {
    outcome.detail().map_or("", |detail| detail.code.as_str())
}

fn executions(server: &RunningServer, key: &IdempotencyKey) -> u64 {
    server
        .audit()
        .keys
        .get(key.as_str())
        .map_or(0, |entry| entry.executions)
}

fn status_kind(check: &StatusCheck) -> &'static str {
    match check {
        StatusCheck::Found {
            remote_status: RemoteStatus::Complete,
            ..
        } => "found",
        StatusCheck::Found { .. } => "found_not_complete",
        StatusCheck::NotFound => "not_found",
        _ => "unknown",
    }
}

// One line per fault kind: the first attempt meets the fault; then the status check, a
// re-send with the same key, and the audit (executed exactly once, whatever happened).
#[tokio::test]
#[rustfmt::skip]
async fn fault_kind_table() {
    let hold = FaultRule { hold_ms: Some(5_000), ..first_attempt(BET_ROUTE, FaultKind::HoldAfterCommit) };
    let latency = FaultRule { latency_ms: Some(50), ..first_attempt(BET_ROUTE, FaultKind::Latency) };
    let rate_limit = FaultRule { retry_after_s: Some(2), ..first_attempt(BET_ROUTE, FaultKind::RateLimit) };
    // (fault, outcome kind, outcome code, status check before the re-send, executions after the first attempt)
    let rows: Vec<(FaultRule, &str, &str, &str, u64)> = vec![
        (rate_limit, "retryable", "rate_limited", "not_found", 0),
        (first_attempt(BET_ROUTE, FaultKind::Unavailable), "retryable", "unavailable", "not_found", 0),
        (first_attempt(BET_ROUTE, FaultKind::ErrorAfterCommit), "ambiguous", "internal_error", "found", 1),
        (first_attempt(BET_ROUTE, FaultKind::TimeoutAfterCommit), "ambiguous", "timeout", "found", 1),
        (hold, "ambiguous", "timeout", "found", 1),
        (first_attempt(BET_ROUTE, FaultKind::DropAfterCommit), "ambiguous", "connection_lost", "found", 1),
        (latency, "success", "", "found", 1),
    ];
    for (rule, kind, expected_code, check, executed) in rows {
        let name = format!("{:?}", rule.kind);
        let server = start(vec![rule]).await;
        let connector = purple_flea(&server.base_url());
        let request = bet("1.00");
        let outcome = connector.dispatch(&request).await;
        assert_eq!((outcome.kind(), code(&outcome)), (kind, expected_code), "{name}: {outcome:?}");
        match &outcome {
            Outcome::Retryable { scope, retry_after, .. } if expected_code == "rate_limited" => {
                assert_eq!((*scope, *retry_after), (RetryScope::Connector, Some(Duration::from_secs(2))), "{name}");
            }
            Outcome::Retryable { scope, .. } => assert_eq!(*scope, RetryScope::Intent, "{name}"),
            _ => {}
        }
        assert_eq!(executions(&server, &request.idempotency_key), executed, "{name}");
        let status = connector.check_status(&request).await;
        assert_eq!(status_kind(&status), check, "{name}: {status:?}");
        // Re-sending with the same key is safe in every case: it executes or replays.
        let again = connector.dispatch(&request).await;
        assert!(again.is_success(), "{name}: {again:?}");
        if let (Outcome::Success { result: first }, Outcome::Success { result: second }) = (&outcome, &again) {
            assert_eq!(first, second, "{name}: a replay returns the stored result");
        }
        if let StatusCheck::Found { result, .. } = &status {
            let Outcome::Success { result: replayed } = &again else { unreachable!() };
            assert_eq!(result.get("id"), replayed.get("id"), "{name}: the status check found the same bet");
        }
        assert_eq!(executions(&server, &request.idempotency_key), 1, "{name}");
        assert_eq!(server.audit().duplicates, 0, "{name}");
        server.shutdown().await;
    }
}

// One line per error code the simulator can send to this connector.
#[tokio::test]
async fn error_code_table() {
    let server = start(vec![]).await;
    let connector = purple_flea(&server.base_url());

    // invalid_request (400): a game the simulator does not offer (it has only dice).
    let params = json!({"game":"roulette","amount":"1.00","target":50,"prediction":"over"});
    let outcome = connector
        .dispatch(&DispatchRequest::new(
            "bet",
            params,
            IdempotencyKey::random(),
        ))
        .await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "invalid_request"),
        "{outcome:?}"
    );

    // missing_idempotency_key (400): the connectors always send a key, so go one layer down.
    let transport = HttpTransport::new(
        "test",
        &server.base_url(),
        None,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap();
    let exchange = transport
        .send(
            Method::POST,
            "/casino/bet",
            &[],
            None,
            Some(&bet_params("1.00", 50)),
        )
        .await;
    let outcome = connector.classify(&exchange);
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "missing_idempotency_key"),
        "{outcome:?}"
    );

    // idempotency_key_reused (422): the same key for a different bet.
    let first = bet("1.00");
    assert!(connector.dispatch(&first).await.is_success());
    let reused = DispatchRequest::new("bet", bet_params("2.00", 50), first.idempotency_key.clone());
    let outcome = connector.dispatch(&reused).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "idempotency_key_reused"),
        "{outcome:?}"
    );

    // not_found (404) on a mutation: funding an escrow that does not exist.
    let fund = DispatchRequest::new(
        "escrow_fund",
        json!({"escrow_id":"esc_missing"}),
        IdempotencyKey::random(),
    );
    let outcome = connector.dispatch(&fund).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "not_found"),
        "{outcome:?}"
    );
    assert_eq!(connector.check_status(&fund).await, StatusCheck::NotFound);

    // invalid_state_transition (422): releasing an escrow that was never funded.
    let create = DispatchRequest::new(
        "escrow_create",
        json!({"buyer":"a","seller":"b","amount":"3.00"}),
        IdempotencyKey::random(),
    );
    let Outcome::Success { result } = connector.dispatch(&create).await else {
        panic!("create failed")
    };
    let escrow_id = result["id"].as_str().unwrap().to_owned();
    let release = DispatchRequest::new(
        "escrow_release",
        json!({"escrow_id": escrow_id}),
        IdempotencyKey::random(),
    );
    let outcome = connector.dispatch(&release).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "invalid_state_transition"),
        "{outcome:?}"
    );
    assert_eq!(server.audit().duplicates, 0);
    server.shutdown().await;

    // insufficient_funds (422): a bet above the balance.
    let poor = start_with(
        vec![],
        PurpleFleaOptions::default().with_balance("1.00").unwrap(),
    )
    .await;
    let outcome = purple_flea(&poor.base_url()).dispatch(&bet("10.00")).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "insufficient_funds"),
        "{outcome:?}"
    );
    poor.shutdown().await;
}

#[tokio::test]
async fn request_in_progress_is_already_done() {
    let latency = FaultRule {
        latency_ms: Some(1_500),
        ..first_attempt(BET_ROUTE, FaultKind::Latency)
    };
    let server = start(vec![latency]).await;
    let mut config = HttpConnectorConfig::new(server.base_url());
    config.request_timeout = Duration::from_secs(5);
    let connector = PurpleFleaConnector::new(config).unwrap();
    let request = bet("1.00");
    let slow = connector.dispatch(&request);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        connector.dispatch(&request).await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert!(slow.is_success(), "{slow:?}");
    assert_eq!(
        (second.kind(), code(&second)),
        ("already_done", "request_in_progress"),
        "{second:?}"
    );
    // Already done → the status check fetches the existing result.
    let StatusCheck::Found {
        result,
        remote_status,
    } = connector.check_status(&request).await
    else {
        panic!()
    };
    let Outcome::Success { result: placed } = &slow else {
        unreachable!()
    };
    assert_eq!(
        (result.get("id"), remote_status),
        (placed.get("id"), RemoteStatus::Complete)
    );
    assert_eq!(executions(&server, &request.idempotency_key), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn api_key_is_sent_and_a_missing_one_is_permanent() {
    let options = PurpleFleaOptions {
        api_key: Some("pf_required_key".to_owned()),
        ..PurpleFleaOptions::default()
    };
    let server = start_with(vec![], options).await;
    let outcome = purple_flea(&server.base_url()).dispatch(&bet("1.00")).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "unauthorized"),
        "{outcome:?}"
    );
    let mut config = HttpConnectorConfig::new(server.base_url());
    config.api_key = Some(Secret::new("pf_required_key"));
    let connector = PurpleFleaConnector::new(config).unwrap();
    let outcome = connector.dispatch(&bet("1.00")).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(!format!("{connector:?}").contains("pf_required_key"));
    server.shutdown().await;
}

#[tokio::test]
async fn escrow_lifecycle_with_status_checks() {
    let server = start(vec![]).await;
    let connector = purple_flea(&server.base_url());
    let mut create = DispatchRequest::new(
        "escrow_create",
        json!({"buyer":"a","seller":"b","amount":"5.00"}),
        IdempotencyKey::random(),
    );
    assert_eq!(connector.check_status(&create).await, StatusCheck::NotFound);
    let Outcome::Success { result } = connector.dispatch(&create).await else {
        panic!("create failed")
    };
    let escrow_id = result["id"].as_str().unwrap().to_owned();
    assert_eq!(
        status_kind(&connector.check_status(&create).await),
        "found",
        "by key"
    );
    create.resource_id = Some(escrow_id.clone());
    assert_eq!(
        status_kind(&connector.check_status(&create).await),
        "found",
        "by id"
    );

    let params = json!({"escrow_id": escrow_id});
    let fund = DispatchRequest::new("escrow_fund", params.clone(), IdempotencyKey::random());
    let release = DispatchRequest::new("escrow_release", params.clone(), IdempotencyKey::random());
    let refund = DispatchRequest::new("escrow_refund", params, IdempotencyKey::random());
    // (step, status of fund, release, refund after it)
    let steps: [(&DispatchRequest, [&str; 3]); 2] = [
        (&fund, ["found", "not_found", "not_found"]),
        (&release, ["found", "found", "not_found"]),
    ];
    assert_eq!(
        status_kind(&connector.check_status(&fund).await),
        "not_found"
    );
    for (step, expected) in steps {
        let outcome = connector.dispatch(step).await;
        assert!(outcome.is_success(), "{}: {outcome:?}", step.operation);
        for (check, want) in [&fund, &release, &refund].into_iter().zip(expected) {
            let status = connector.check_status(check).await;
            assert_eq!(
                status_kind(&status),
                want,
                "after {}: {} {status:?}",
                step.operation,
                check.operation
            );
        }
    }
    let outcome = connector.dispatch(&refund).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "invalid_state_transition")
    );
    assert_eq!(server.audit().duplicates, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn transfer_and_balance() {
    let server = start(vec![]).await;
    let connector = purple_flea(&server.base_url());
    let transfer = DispatchRequest::new(
        "wallet_transfer",
        json!({"to":"bob","amount":"5.00","currency":"USDC"}),
        IdempotencyKey::derived("wallet_transfer", &json!({"to":"bob"}), "agent-1/seq-1"),
    );
    assert_eq!(
        connector.check_status(&transfer).await,
        StatusCheck::NotFound
    );
    let outcome = connector.dispatch(&transfer).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(
        status_kind(&connector.check_status(&transfer).await),
        "found"
    );
    let balance = DispatchRequest::new("balance", json!({}), IdempotencyKey::random());
    let Outcome::Success { result } = connector.dispatch(&balance).await else {
        panic!("balance failed")
    };
    assert_eq!(result["balance"], json!("9995.00"));
    assert!(connector.balance().await.is_success());
    assert_eq!(
        status_kind(&connector.check_status(&balance).await),
        "found"
    );
    assert_eq!(executions(&server, &transfer.idempotency_key), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stopped_simulator_is_not_sent() {
    let server = start(vec![]).await;
    let base_url = server.base_url();
    server.shutdown().await;
    let outcome = purple_flea(&base_url).dispatch(&bet("1.00")).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("retryable", "not_sent"),
        "{outcome:?}"
    );
}
