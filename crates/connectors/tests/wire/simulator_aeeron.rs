//! The Aeeron connector against the Aeeron simulator: every error code, every fault kind,
//! payment kept apart from execution, status checks, and the exactly-once audit.

use std::time::Duration;

use serde_json::{json, Value};
use simulator::{Aeeron, FaultKind, FaultPlan, FaultRule, RunningServer};

use connectors::{
    AeeronConnector, Connector, DispatchRequest, IdempotencyKey, Outcome, RemoteStatus, RetryScope,
    StatusCheck,
};

use crate::support::aeeron;

const EXECUTIONS_ROUTE: &str = "POST /v1/executions";

/// `web.search` costs 0.05 per query: three queries are quoted at 0.15.
const QUOTE_FOR_THREE_QUERIES: &str = "0.15";

async fn start(rules: Vec<FaultRule>) -> RunningServer {
    Aeeron::start(
        "127.0.0.1:0".parse().unwrap(),
        FaultPlan { seed: 11, rules },
    )
    .await
    .unwrap()
}

fn first_attempt(kind: FaultKind) -> FaultRule {
    let mut rule = FaultRule::new(EXECUTIONS_ROUTE, kind, 1.0);
    rule.attempts_max_per_key = Some(1);
    rule
}

fn execute(queries: u64, budget: &str) -> DispatchRequest {
    let params = json!({"action":"web.search","params":{"queries":queries},"budget":{"amount":budget,"currency":"USDC"}});
    DispatchRequest::new("execute", params, IdempotencyKey::random())
}

async fn payment(connector: &AeeronConnector, amount: &str, currency: &str) -> Value {
    let outcome = connector
        .create_payment(amount, currency, &IdempotencyKey::random())
        .await;
    let Outcome::Success { result } = outcome else {
        panic!("payment failed: {outcome:?}")
    };
    result["payment_id"].clone()
}

fn code(outcome: &Outcome) -> &str {
    outcome.detail().map_or("", |detail| detail.code.as_str())
}

fn status_kind(check: &StatusCheck) -> &'static str {
    match check {
        StatusCheck::Found {
            remote_status: RemoteStatus::Complete,
            ..
        } => "complete",
        StatusCheck::Found {
            remote_status: RemoteStatus::Pending,
            ..
        } => "pending",
        StatusCheck::Found {
            remote_status: RemoteStatus::Failed,
            ..
        } => "failed",
        StatusCheck::NotFound => "not_found",
        _ => "unknown",
    }
}

fn executions(server: &RunningServer, key: &IdempotencyKey) -> u64 {
    server
        .audit()
        .keys
        .get(key.as_str())
        .map_or(0, |entry| entry.executions)
}

// One line per fault kind: first attempt meets the fault, then status check, a re-send
// with the same key and payment, and the audit.
#[tokio::test]
#[rustfmt::skip]
async fn fault_kind_table() {
    let rate_limit = FaultRule { retry_after_s: Some(3), ..first_attempt(FaultKind::RateLimit) };
    let settle = FaultRule { settle_ms: Some(1_500), ..first_attempt(FaultKind::ProviderUnavailableAfterProvider) };
    let hold = FaultRule { hold_ms: Some(5_000), ..first_attempt(FaultKind::HoldAfterCommit) };
    let latency = FaultRule { latency_ms: Some(50), ..first_attempt(FaultKind::Latency) };
    // (fault, outcome kind, outcome code, status check, outcome of the re-send, executions at the end)
    let rows: Vec<(FaultRule, &str, &str, &str, &str, u64)> = vec![
        (rate_limit, "retryable", "rate_limited", "not_found", "success", 1),
        (first_attempt(FaultKind::Unavailable), "retryable", "provider_unavailable", "not_found", "success", 1),
        (first_attempt(FaultKind::ProviderUnavailableBeforeProvider), "retryable", "provider_unavailable", "not_found", "success", 1),
        (settle, "ambiguous", "provider_unavailable", "pending", "ambiguous", 1),
        (first_attempt(FaultKind::ExecutionFailed), "execution_failed", "execution_failed", "failed", "execution_failed", 1),
        (first_attempt(FaultKind::ErrorAfterCommit), "ambiguous", "internal_error", "complete", "success", 1),
        (first_attempt(FaultKind::TimeoutAfterCommit), "ambiguous", "timeout", "complete", "success", 1),
        (hold, "ambiguous", "timeout", "complete", "success", 1),
        (first_attempt(FaultKind::DropAfterCommit), "ambiguous", "connection_lost", "complete", "success", 1),
        (latency, "success", "", "complete", "success", 1),
    ];
    for (rule, kind, expected_code, check, resend, executed) in rows {
        let name = format!("{:?}", rule.kind);
        let server = start(vec![rule]).await;
        let connector = aeeron(&server.base_url());
        let mut request = execute(3, "1.00");
        request.payment = Some(payment(&connector, "1.00", "USDC").await);
        let outcome = connector.dispatch(&request).await;
        assert_eq!((outcome.kind(), code(&outcome)), (kind, expected_code), "{name}: {outcome:?}");
        if let Outcome::Retryable { scope, retry_after, .. } = &outcome {
            let expected_scope = if expected_code == "rate_limited" { RetryScope::Connector } else { RetryScope::Intent };
            assert_eq!(*scope, expected_scope, "{name}");
            if expected_code == "rate_limited" {
                assert_eq!(*retry_after, Some(Duration::from_secs(3)), "{name}");
            }
        }
        let status = connector.check_status(&request).await;
        assert_eq!(status_kind(&status), check, "{name}: {status:?}");
        let again = connector.dispatch(&request).await;
        assert_eq!(again.kind(), resend, "{name}: {again:?}");
        if check == "pending" {
            // provider_touched: the execution settles on its own; the engine waits and checks again.
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            assert_eq!(status_kind(&connector.check_status(&request).await), "complete", "{name}");
            assert!(connector.dispatch(&request).await.is_success(), "{name}");
        }
        if let StatusCheck::Found { result, .. } = &status {
            // The execution id learnt from the look-up finds the same resource.
            let mut by_id = request.clone();
            by_id.resource_id = result["id"].as_str().map(str::to_owned);
            let found = connector.check_status(&by_id).await;
            assert!(matches!(&found, StatusCheck::Found { result: again, .. } if again["id"] == result["id"]), "{name}: {found:?}");
        }
        assert_eq!(executions(&server, &request.idempotency_key), executed, "{name}");
        assert_eq!(server.audit().duplicates, 0, "{name}");
        server.shutdown().await;
    }
}

// One line (or a few) per error code.
#[tokio::test]
async fn error_code_table() {
    let server = start(vec![]).await;
    let connector = aeeron(&server.base_url());

    // payment_required: valid but unfunded; nothing executed, key not bound.
    let mut request = execute(3, "1.00");
    let outcome = connector.dispatch(&request).await;
    let Outcome::PaymentRequired { details } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        details.details.as_ref().unwrap()["amount"],
        json!(QUOTE_FOR_THREE_QUERIES)
    );
    assert_eq!(
        connector.check_status(&request).await,
        StatusCheck::NotFound
    );
    // Funding attached → the same key executes (the fingerprint excludes payment_id).
    request.payment = Some(payment(&connector, QUOTE_FOR_THREE_QUERIES, "USDC").await);
    let outcome = connector.dispatch(&request).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(
        status_kind(&connector.check_status(&request).await),
        "complete"
    );

    // idempotency_conflict: the same key for different params.
    let mut conflicting = execute(4, "1.00");
    conflicting.idempotency_key = request.idempotency_key.clone();
    let outcome = connector.dispatch(&conflicting).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "idempotency_conflict"),
        "{outcome:?}"
    );

    // payment_required again: a payment already used by another execution.
    let mut reuse = execute(3, "1.00");
    reuse.payment = request.payment.clone();
    let outcome = connector.dispatch(&reuse).await;
    assert_eq!(outcome.kind(), "payment_required", "{outcome:?}");

    // budget_exceeded: quote above budget, details kept.
    let outcome = connector.dispatch(&execute(3, "0.10")).await;
    let Outcome::BudgetExceeded { details } = &outcome else {
        panic!("{outcome:?}")
    };
    let kept = details.details.as_ref().unwrap();
    assert_eq!(
        (kept["budget"].as_str(), kept["quote"].as_str()),
        (Some("0.10"), Some(QUOTE_FOR_THREE_QUERIES))
    );
    assert_eq!(details.http_status, Some(403));

    // invalid_input: an unknown action, and a payment in another currency than the budget.
    let unknown_action = DispatchRequest::new(
        "execute",
        json!({"action":"teleport","params":{},"budget":{"amount":"1.00","currency":"USDC"}}),
        IdempotencyKey::random(),
    );
    let outcome = connector.dispatch(&unknown_action).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "invalid_input"),
        "{outcome:?}"
    );
    let mut mismatch = execute(3, "1.00");
    mismatch.payment = Some(payment(&connector, "1.00", "EURC").await);
    let outcome = connector.dispatch(&mismatch).await;
    assert_eq!(
        (outcome.kind(), code(&outcome)),
        ("permanent", "invalid_input"),
        "{outcome:?}"
    );

    // not_found: status look-ups by key and by id for things that never existed.
    assert_eq!(
        connector.check_status(&execute(3, "1.00")).await,
        StatusCheck::NotFound
    );
    let mut by_id = execute(3, "1.00");
    by_id.resource_id = Some("ex_missing".to_owned());
    assert_eq!(connector.check_status(&by_id).await, StatusCheck::NotFound);

    // A quote is a plain success.
    let quote = connector
        .quote("web.search", &json!({"queries":3}), "USDC")
        .await;
    assert!(
        matches!(&quote, Outcome::Success { result } if result["amount"] == json!(QUOTE_FOR_THREE_QUERIES)),
        "{quote:?}"
    );

    assert_eq!(executions(&server, &request.idempotency_key), 1);
    assert_eq!(server.audit().duplicates, 0);
    server.shutdown().await;
}
