//! Every fault kind over real HTTP, the dropped-connection replay, and reproducibility from the seed.

use std::time::{Duration, Instant};

use simulator::{Aeeron, FaultKind, FaultPlan, FaultRule, PurpleFlea};

use crate::{client, client_with_timeout, loopback, must_send, send, BET};

/// What the client sees on the first attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Status(u16, &'static str),
    ClientTimeout,
    ConnectionClosed,
}

fn first_attempt_rule(kind: FaultKind) -> FaultRule {
    let mut rule = FaultRule::new("POST /casino/bet", kind, 1.0);
    rule.attempts_max_per_key = Some(1);
    rule
}

/// Each Purple Flea fault kind on the first attempt of a bet: what the client sees, whether
/// the bet executed anyway, and that a replay with the same key then settles it exactly once.
#[tokio::test]
async fn each_fault_kind_on_purple_flea() {
    let with = |kind, edit: fn(&mut FaultRule)| {
        let mut rule = first_attempt_rule(kind);
        edit(&mut rule);
        rule
    };
    #[rustfmt::skip]
    let cases: Vec<(FaultRule, Seen, bool)> = vec![
        (with(FaultKind::Latency, |rule| rule.latency_ms = Some(250)), Seen::Status(201, ""), true),
        (with(FaultKind::RateLimit, |rule| rule.retry_after_s = Some(7)), Seen::Status(429, "rate_limited"), false),
        (with(FaultKind::Unavailable, |_| {}), Seen::Status(503, "unavailable"), false),
        (with(FaultKind::BadGateway, |_| {}), Seen::Status(502, "bad_gateway"), false),
        (with(FaultKind::RequestTimeout, |_| {}), Seen::Status(408, "timeout"), false),
        (with(FaultKind::ErrorAfterCommit, |_| {}), Seen::Status(500, "internal_error"), true),
        (with(FaultKind::TimeoutAfterCommit, |_| {}), Seen::Status(504, "timeout"), true),
        (with(FaultKind::HoldAfterCommit, |rule| { rule.hold_ms = Some(5_000) }), Seen::ClientTimeout, true),
        (with(FaultKind::DropAfterCommit, |_| {}), Seen::ConnectionClosed, true),
    ];
    for (rule, expected, executed_first) in cases {
        let kind = rule.kind;
        let server = PurpleFlea::start(
            loopback(),
            FaultPlan {
                seed: 4,
                rules: vec![rule],
            },
        )
        .await
        .expect("start");
        let base = server.base_url();
        let http = client_with_timeout(Duration::from_millis(1_000));
        let started = Instant::now();
        let seen = match send(&http, &base, "POST", "/casino/bet", Some("bet-k"), BET).await {
            Ok(reply) => {
                if reply.status == 429 {
                    assert_eq!(reply.retry_after.as_deref(), Some("7"), "{kind:?}");
                }
                Seen::Status(
                    reply.status,
                    if reply.status == 201 {
                        ""
                    } else {
                        leak(reply.code().unwrap_or("?"))
                    },
                )
            }
            Err(error) if error.is_timeout() => Seen::ClientTimeout,
            Err(error) => {
                // A connection closed before any response: no status, not a timeout.
                assert!(error.status().is_none(), "{kind:?}: {error:?}");
                Seen::ConnectionClosed
            }
        };
        assert_eq!(seen, expected, "{kind:?}");
        if kind == FaultKind::Latency {
            assert!(
                started.elapsed() >= Duration::from_millis(250),
                "{kind:?} took {:?}",
                started.elapsed()
            );
        }
        // The status look-up tells whether the first attempt executed.
        let found = must_send(
            &http,
            &base,
            "GET",
            "/casino/bet/by-idempotency-key?key=bet-k",
            None,
            "",
        )
        .await;
        assert_eq!(found.status == 200, executed_first, "{kind:?}: {found:?}");
        // The retry with the same key: a replay when it executed, a fresh execution otherwise.
        let retry = must_send(&http, &base, "POST", "/casino/bet", Some("bet-k"), BET).await;
        assert_eq!(
            (retry.status, retry.replayed),
            (201, executed_first),
            "{kind:?}: {retry:?}"
        );
        if executed_first {
            assert_eq!(
                retry.body["id"], found.body["id"],
                "{kind:?}: the replay returns the stored bet"
            );
        }
        let audit = server.audit();
        assert_eq!(
            (audit.keys["bet-k"].executions, audit.duplicates),
            (1, 0),
            "{kind:?}"
        );
        server.shutdown().await;
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

#[tokio::test]
async fn a_key_replayed_after_a_dropped_connection_executes_once() {
    let mut rule = FaultRule::new("POST /wallet/transfer", FaultKind::DropAfterCommit, 1.0);
    rule.attempts_max_per_key = Some(2);
    let server = PurpleFlea::start(
        loopback(),
        FaultPlan {
            seed: 5,
            rules: vec![rule],
        },
    )
    .await
    .expect("start");
    let base = server.base_url();
    let http = client();
    for attempt in 0..2 {
        let error = send(
            &http,
            &base,
            "POST",
            "/wallet/transfer",
            Some("tx-drop"),
            r#"{"to":"b","amount":"5.00","currency":"USDC"}"#,
        )
        .await
        .expect_err("the connection is dropped");
        assert!(
            !error.is_timeout() && error.status().is_none(),
            "attempt {attempt}: {error:?}"
        );
    }
    let replay = must_send(
        &http,
        &base,
        "POST",
        "/wallet/transfer",
        Some("tx-drop"),
        r#"{"to":"b","amount":"5.00","currency":"USDC"}"#,
    )
    .await;
    assert_eq!((replay.status, replay.replayed), (201, true), "{replay:?}");
    let balance = must_send(&http, &base, "GET", "/wallet/balance", None, "").await;
    assert_eq!(balance.body["balance"], "9995.00", "debited once");
    let audit = server.audit();
    assert_eq!(
        (
            audit.keys["tx-drop"].executions,
            audit.total_executions,
            audit.duplicates
        ),
        (1, 1, 0)
    );
}

/// Aeeron's own fault kinds on `POST /v1/executions`, after the payment check passes.
#[tokio::test]
async fn each_fault_kind_on_aeeron_executions() {
    struct Case {
        kind: FaultKind,
        status: u16,
        code: &'static str,
        payment_cleared: bool,
        provider_touched: bool,
        resource_status: Option<&'static str>,
        replay_status: u16,
    }
    #[rustfmt::skip]
    let cases = [
        Case { kind: FaultKind::ProviderUnavailableBeforeProvider, status: 503, code: "provider_unavailable", payment_cleared: false, provider_touched: false, resource_status: None, replay_status: 201 },
        Case { kind: FaultKind::Unavailable, status: 503, code: "provider_unavailable", payment_cleared: false, provider_touched: false, resource_status: None, replay_status: 201 },
        Case { kind: FaultKind::ProviderUnavailableAfterProvider, status: 503, code: "provider_unavailable", payment_cleared: true, provider_touched: true, resource_status: Some("processing"), replay_status: 503 },
        Case { kind: FaultKind::ExecutionFailed, status: 502, code: "execution_failed", payment_cleared: true, provider_touched: true, resource_status: Some("failed"), replay_status: 502 },
        Case { kind: FaultKind::ErrorAfterCommit, status: 500, code: "internal_error", payment_cleared: true, provider_touched: true, resource_status: Some("succeeded"), replay_status: 201 },
        Case { kind: FaultKind::TimeoutAfterCommit, status: 504, code: "timeout", payment_cleared: true, provider_touched: true, resource_status: Some("succeeded"), replay_status: 201 },
        Case { kind: FaultKind::BadGateway, status: 502, code: "bad_gateway", payment_cleared: false, provider_touched: false, resource_status: None, replay_status: 201 },
        Case { kind: FaultKind::RateLimit, status: 429, code: "rate_limited", payment_cleared: false, provider_touched: false, resource_status: None, replay_status: 201 },
    ];
    for case in cases {
        let mut rule = FaultRule::new("POST /v1/executions", case.kind, 1.0);
        rule.attempts_max_per_key = Some(1);
        rule.settle_ms = Some(400);
        let server = Aeeron::start(
            loopback(),
            FaultPlan {
                seed: 6,
                rules: vec![rule],
            },
        )
        .await
        .expect("start");
        let base = server.base_url();
        let http = client();
        let payment = must_send(
            &http,
            &base,
            "POST",
            "/v1/payments",
            None,
            r#"{"amount":"16.80","currency":"USDC"}"#,
        )
        .await;
        let payment_id = payment.body["payment_id"]
            .as_str()
            .expect("payment id")
            .to_owned();
        let body = format!(
            r#"{{"action":"compute.gpu_hours","params":{{"gpu":"a100","hours":4}},"budget":{{"amount":"20.00","currency":"USDC"}},"payment_id":"{payment_id}"}}"#
        );
        let kind = case.kind;
        let first = must_send(&http, &base, "POST", "/v1/executions", Some("ex-k"), &body).await;
        assert_eq!(
            (first.status, first.code()),
            (case.status, Some(case.code)),
            "{kind:?}: {first:?}"
        );
        let details = &first.body["error"]["details"];
        if matches!(case.code, "provider_unavailable" | "execution_failed") {
            assert_eq!(
                details["payment_cleared"], case.payment_cleared,
                "{kind:?}: {first:?}"
            );
            assert_eq!(
                details["provider_touched"], case.provider_touched,
                "{kind:?}: {first:?}"
            );
            assert_eq!(
                details["execution_id"].is_string(),
                case.provider_touched,
                "{kind:?}: {first:?}"
            );
        }
        let resource = must_send(
            &http,
            &base,
            "GET",
            "/v1/executions/by-idempotency-key?key=ex-k",
            None,
            "",
        )
        .await;
        match case.resource_status {
            None => assert_eq!(
                resource.status, 404,
                "{kind:?}: nothing is bound: {resource:?}"
            ),
            Some(status) => {
                assert_eq!(
                    (resource.status, resource.body["status"].as_str()),
                    (200, Some(status)),
                    "{kind:?}: {resource:?}"
                );
                let provider = &resource.body["provider"];
                let (done, total) = (
                    provider["steps_completed"].as_u64(),
                    provider["steps_total"].as_u64(),
                );
                if status == "failed" {
                    assert!(
                        done < total,
                        "{kind:?}: a failed execution is partial: {resource:?}"
                    );
                }
            }
        }
        let replay = must_send(&http, &base, "POST", "/v1/executions", Some("ex-k"), &body).await;
        assert_eq!(replay.status, case.replay_status, "{kind:?}: {replay:?}");
        assert_eq!(
            replay.replayed, case.provider_touched,
            "{kind:?}: only a bound key replays"
        );
        if kind == FaultKind::ProviderUnavailableAfterProvider {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let settled =
                must_send(&http, &base, "POST", "/v1/executions", Some("ex-k"), &body).await;
            assert_eq!(
                (
                    settled.status,
                    settled.replayed,
                    settled.body["status"].as_str()
                ),
                (201, true, Some("succeeded")),
                "{settled:?}"
            );
        }
        let audit = server.audit();
        assert_eq!(
            (audit.keys["ex-k"].executions, audit.duplicates),
            (1, 0),
            "{kind:?}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn aeeron_drop_and_hold_after_commit_execute_once() {
    for kind in [FaultKind::DropAfterCommit, FaultKind::HoldAfterCommit] {
        let mut rule = FaultRule::new("POST /v1/executions", kind, 1.0);
        rule.attempts_max_per_key = Some(1);
        rule.hold_ms = Some(5_000);
        let server = Aeeron::start(
            loopback(),
            FaultPlan {
                seed: 8,
                rules: vec![rule],
            },
        )
        .await
        .expect("start");
        let base = server.base_url();
        let http = client_with_timeout(Duration::from_millis(800));
        let payment = must_send(
            &http,
            &base,
            "POST",
            "/v1/payments",
            None,
            r#"{"amount":"0.15","currency":"USDC"}"#,
        )
        .await;
        let body = format!(
            r#"{{"action":"web.search","params":{{"queries":3}},"budget":{{"amount":"1.00","currency":"USDC"}},"payment_id":"{}"}}"#,
            payment.body["payment_id"].as_str().expect("id")
        );
        let error = send(&http, &base, "POST", "/v1/executions", Some("ex-d"), &body)
            .await
            .expect_err("no answer");
        assert_eq!(
            error.is_timeout(),
            kind == FaultKind::HoldAfterCommit,
            "{kind:?}: {error:?}"
        );
        let replay = must_send(&http, &base, "POST", "/v1/executions", Some("ex-d"), &body).await;
        assert_eq!(
            (replay.status, replay.replayed),
            (201, true),
            "{kind:?}: {replay:?}"
        );
        assert_eq!(server.audit().keys["ex-d"].executions, 1, "{kind:?}");
    }
}

/// The same seed and plan give the same faults for the same requests, even when the
/// requests for different keys are sent concurrently in one run and in order in the other.
#[tokio::test]
async fn the_fault_plan_is_reproducible_from_its_seed() {
    let plan = |seed| FaultPlan {
        seed,
        rules: vec![
            FaultRule::new("*", FaultKind::RateLimit, 0.15),
            FaultRule::new("*", FaultKind::Unavailable, 0.15),
            FaultRule::new("*", FaultKind::ErrorAfterCommit, 0.15),
            FaultRule::new("*", FaultKind::TimeoutAfterCommit, 0.15),
        ],
    };
    let run = |seed: u64, concurrent: bool| async move {
        let server = PurpleFlea::start(loopback(), plan(seed))
            .await
            .expect("start");
        let base = server.base_url();
        let http = client();
        let mut statuses = Vec::new();
        // Each key is tried three times in order; keys run concurrently or one after another.
        let attempts = |key: String, http: reqwest::Client, base: String| async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(
                    must_send(&http, &base, "POST", "/casino/bet", Some(&key), BET)
                        .await
                        .status,
                );
            }
            seen
        };
        if concurrent {
            let tasks: Vec<_> = (0..40)
                .map(|index| {
                    tokio::spawn(attempts(format!("key-{index}"), http.clone(), base.clone()))
                })
                .collect();
            for task in tasks {
                statuses.push(task.await.expect("task"));
            }
        } else {
            for index in 0..40 {
                statuses.push(attempts(format!("key-{index}"), http.clone(), base.clone()).await);
            }
        }
        let audit = server.audit();
        assert_eq!(audit.duplicates, 0);
        statuses
    };
    let first = run(77, false).await;
    let second = run(77, true).await;
    assert_eq!(first, second, "same seed, same faults");
    let faulted = first
        .iter()
        .flatten()
        .filter(|status| **status != 201)
        .count();
    assert!(
        (20..=100).contains(&faulted),
        "about half of 120 requests are faulted: {faulted}"
    );
    let other = run(78, false).await;
    assert_ne!(first, other, "another seed, other faults");
}

#[tokio::test]
async fn shutdown_is_prompt_while_a_response_is_held() {
    let mut rule = FaultRule::new("*", FaultKind::HoldAfterCommit, 1.0);
    rule.hold_ms = Some(60_000);
    let server = PurpleFlea::start(
        loopback(),
        FaultPlan {
            seed: 9,
            rules: vec![rule],
        },
    )
    .await
    .expect("start");
    let base = server.base_url();
    let address = server.local_addr();
    let held = tokio::spawn(async move {
        send(&client(), &base, "POST", "/casino/bet", Some("held"), BET).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The held request is released (answered or cut), never left hanging for a minute.
    let outcome = tokio::time::timeout(Duration::from_secs(3), held)
        .await
        .expect("released");
    let _ = outcome;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the port is closed"
    );
}
