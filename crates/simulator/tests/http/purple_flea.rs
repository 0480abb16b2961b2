//! Purple Flea: routes, validation, the idempotency cache and the escrow state machine.

use std::collections::HashMap;

use simulator::{FaultKind, FaultPlan, FaultRule, PurpleFlea, PurpleFleaOptions};

use crate::{client, loopback, must_send, BET};

/// One step: method, path (`{esc}` and `{esc2}` are replaced by ids created earlier), key,
/// body, expected status, expected error code, expected replay header, expected field.
type Step = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    Option<&'static str>,
    bool,
    Option<(&'static str, &'static str)>,
);

#[tokio::test]
async fn documented_behaviour() {
    let key_64 = Box::leak("k".repeat(64).into_boxed_str());
    let key_65 = Box::leak("k".repeat(65).into_boxed_str());
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("POST", "/casino/bet", Some("bet-1"), BET, 201, None, false, Some(("status", "complete"))),
        ("POST", "/casino/bet", Some("bet-1"), BET, 201, None, true, Some(("amount", "10.00"))),
        ("POST", "/casino/bet", Some("bet-1"), r#"{"game":"dice","amount":"11.00","target":50,"prediction":"over"}"#, 422, Some("idempotency_key_reused"), false, None),
        ("POST", "/casino/bet", None, BET, 400, Some("missing_idempotency_key"), false, None),
        ("POST", "/casino/bet", Some(""), BET, 400, Some("missing_idempotency_key"), false, None),
        ("POST", "/casino/bet", Some(key_65), BET, 400, Some("invalid_request"), false, None),
        ("POST", "/casino/bet", Some(key_64), BET, 201, None, false, Some(("game", "dice"))),
        ("POST", "/casino/bet", Some("bet-float"), r#"{"game":"dice","amount":10.0,"target":50,"prediction":"over"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/casino/bet", Some("bet-3dp"), r#"{"game":"dice","amount":"10.001","target":50,"prediction":"over"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/casino/bet", Some("bet-poker"), r#"{"game":"poker","amount":"1.00","target":50,"prediction":"over"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/casino/bet", Some("bet-target"), r#"{"game":"dice","amount":"1.00","target":100,"prediction":"over"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/casino/bet", Some("bet-json"), "{not json", 400, Some("invalid_request"), false, None),
        // A 400 does not bind the key: the corrected request executes.
        ("POST", "/casino/bet", Some("bet-json"), BET, 201, None, false, Some(("status", "complete"))),
        ("POST", "/casino/bet", Some("bet-broke"), r#"{"game":"dice","amount":"20000.00","target":50,"prediction":"over"}"#, 422, Some("insufficient_funds"), false, None),
        ("POST", "/casino/bet", Some("bet-broke"), r#"{"game":"dice","amount":"20000.00","target":50,"prediction":"over"}"#, 422, Some("insufficient_funds"), true, None),
        ("GET", "/casino/bet/by-idempotency-key?key=bet-1", None, "", 200, None, false, Some(("idempotency_key", "bet-1"))),
        ("GET", "/casino/bet/by-idempotency-key?key=bet-broke", None, "", 404, Some("not_found"), false, None),
        ("GET", "/casino/bet/by-idempotency-key?key=nobody", None, "", 404, Some("not_found"), false, None),
        ("GET", "/casino/bet/by-idempotency-key", None, "", 400, Some("invalid_request"), false, None),
        ("POST", "/escrow/create", Some("esc-1"), r#"{"buyer":"agent-a","seller":"agent-b","amount":"100.00"}"#, 201, None, false, Some(("state", "created"))),
        ("POST", "/escrow/create", Some("esc-1"), r#"{"buyer":"agent-a","seller":"agent-b","amount":"100.00"}"#, 201, None, true, Some(("state", "created"))),
        ("POST", "/escrow/create", Some("esc-bad"), r#"{"buyer":"","seller":"agent-b","amount":"100.00"}"#, 400, Some("invalid_request"), false, None),
        ("GET", "/escrow/{esc}", None, "", 200, None, false, Some(("state", "created"))),
        ("GET", "/escrow/by-idempotency-key?key=esc-1", None, "", 200, None, false, Some(("buyer", "agent-a"))),
        ("POST", "/escrow/{esc}/release", Some("esc-1-release-early"), "", 422, Some("invalid_state_transition"), false, None),
        ("POST", "/escrow/{esc}/fund", Some("esc-1-fund"), "", 200, None, false, Some(("state", "funded"))),
        ("POST", "/escrow/{esc}/fund", Some("esc-1-fund"), "{}", 200, None, true, Some(("state", "funded"))),
        ("POST", "/escrow/{esc}/fund", Some("esc-1-fund-again"), "{}", 422, Some("invalid_state_transition"), false, None),
        ("POST", "/escrow/{esc}/fund", Some("esc-1-fund-body"), r#"{"amount":"1.00"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/escrow/{esc}/release", Some("esc-1-release"), "{}", 200, None, false, Some(("state", "released"))),
        ("POST", "/escrow/{esc}/refund", Some("esc-1-refund"), "{}", 422, Some("invalid_state_transition"), false, None),
        ("GET", "/escrow/by-idempotency-key?key=esc-1-release", None, "", 200, None, false, Some(("state", "released"))),
        ("POST", "/escrow/esc_unknown/fund", Some("esc-unknown-fund"), "{}", 404, Some("not_found"), false, None),
        ("GET", "/escrow/esc_unknown", None, "", 404, Some("not_found"), false, None),
        ("POST", "/escrow/create", Some("esc-2"), r#"{"buyer":"agent-a","seller":"agent-c","amount":"50.00"}"#, 201, None, false, Some(("state", "created"))),
        ("POST", "/escrow/{esc2}/refund", Some("esc-2-refund"), "{}", 200, None, false, Some(("state", "refunded"))),
        ("POST", "/escrow/{esc2}/fund", Some("esc-2-fund"), "{}", 422, Some("invalid_state_transition"), false, None),
        // The same key on another route is a different request.
        ("POST", "/escrow/{esc2}/fund", Some("bet-1"), "{}", 422, Some("idempotency_key_reused"), false, None),
        ("POST", "/wallet/transfer", Some("tx-1"), r#"{"to":"agent-b","amount":"5.00","currency":"USDC"}"#, 201, None, false, Some(("status", "complete"))),
        ("POST", "/wallet/transfer", Some("tx-1"), r#"{"to":"agent-b","amount":"5.00","currency":"USDC"}"#, 201, None, true, Some(("currency", "USDC"))),
        ("POST", "/wallet/transfer", Some("tx-eur"), r#"{"to":"agent-b","amount":"5.00","currency":"EUR"}"#, 400, Some("invalid_request"), false, None),
        ("POST", "/wallet/transfer", Some("tx-broke"), r#"{"to":"agent-b","amount":"99999.00","currency":"USDC"}"#, 422, Some("insufficient_funds"), false, None),
        ("GET", "/wallet/transfer/by-idempotency-key?key=tx-1", None, "", 200, None, false, Some(("amount", "5.00"))),
        ("GET", "/wallet/transfer/by-idempotency-key?key=tx-broke", None, "", 404, Some("not_found"), false, None),
        ("GET", "/no/such/route", None, "", 404, Some("not_found"), false, None),
    ];
    let server = PurpleFlea::start(loopback(), FaultPlan::none(1))
        .await
        .expect("start");
    let base = server.base_url();
    let http = client();
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut bet_ids: HashMap<String, String> = HashMap::new();
    for (index, (method, path, key, body, status, code, replayed, field)) in
        steps.into_iter().enumerate()
    {
        let mut real_path = path.to_owned();
        for (name, id) in &ids {
            real_path = real_path.replace(&format!("{{{name}}}"), id);
        }
        let reply = must_send(&http, &base, method, &real_path, key, body).await;
        let context = format!("step {index}: {method} {path} key={key:?} -> {reply:?}");
        assert_eq!(reply.status, status, "{context}");
        assert_eq!(reply.code(), code, "{context}");
        assert_eq!(reply.replayed, replayed, "{context}");
        if let Some((name, value)) = field {
            assert_eq!(reply.body[name], value, "{context}");
        }
        if path == "/escrow/create" && status == 201 {
            let slot = if key == Some("esc-1") { "esc" } else { "esc2" };
            ids.insert(
                slot,
                reply.body["id"].as_str().expect("escrow id").to_owned(),
            );
        }
        if path == "/casino/bet" && status == 201 {
            // A replay returns the very same bet.
            let id = reply.body["id"].as_str().expect("bet id").to_owned();
            let first = bet_ids
                .entry(key.unwrap_or_default().to_owned())
                .or_insert_with(|| id.clone());
            assert_eq!(*first, id, "{context}");
        }
    }

    // Money adds up exactly: start 10000.00, three bets of 10.00 with their payouts, escrow
    // esc-1 funded (100.00), one transfer (5.00). Cents, never floats.
    let mut expected_cents: i64 = 1_000_000 - 10_000 - 500;
    for key in ["bet-1", "bet-json", &"k".repeat(64)] {
        let bet = must_send(
            &http,
            &base,
            "GET",
            &format!("/casino/bet/by-idempotency-key?key={key}"),
            None,
            "",
        )
        .await;
        let payout = bet.body["payout"]
            .as_str()
            .expect("payout")
            .replace('.', "");
        expected_cents += payout.parse::<i64>().expect("cents") - 10_00;
    }
    let balance = must_send(&http, &base, "GET", "/wallet/balance", None, "").await;
    let shown = balance.body["balance"]
        .as_str()
        .expect("balance")
        .replace('.', "");
    assert_eq!(
        shown.parse::<i64>().expect("cents"),
        expected_cents,
        "{balance:?}"
    );

    let audit = server.audit();
    assert_eq!(audit.duplicates, 0);
    // bet-1, key_64, bet-json, esc-1, esc-1-fund, esc-1-release, esc-2, esc-2-refund, tx-1.
    assert_eq!(
        (audit.total_keys, audit.total_executions),
        (9, 9),
        "{audit:?}"
    );
    assert_eq!(audit.keys["esc-1-fund"].route, "POST /escrow/{id}/fund");
    server.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_replays_of_one_key_execute_once() {
    // Latency holds the first request in progress, so the others arrive while it runs.
    let mut latency = FaultRule::new("POST /casino/bet", FaultKind::Latency, 1.0);
    latency.latency_ms = Some(300);
    latency.attempts_max_per_key = Some(1);
    for plan in [
        FaultPlan::none(2),
        FaultPlan {
            seed: 2,
            rules: vec![latency],
        },
    ] {
        let slow = !plan.rules.is_empty();
        let server = PurpleFlea::start(loopback(), plan).await.expect("start");
        let base = server.base_url();
        let http = client();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                must_send(&http, &base, "POST", "/casino/bet", Some("one-key"), BET).await
            }));
        }
        let mut by_outcome: HashMap<(u16, bool), usize> = HashMap::new();
        for task in tasks {
            let reply = task.await.expect("task");
            *by_outcome
                .entry((reply.status, reply.replayed))
                .or_default() += 1;
            if reply.status == 409 {
                assert_eq!(reply.code(), Some("request_in_progress"));
            }
        }
        assert_eq!(
            by_outcome.get(&(201, false)),
            Some(&1),
            "exactly one fresh execution: {by_outcome:?}"
        );
        assert!(
            by_outcome
                .keys()
                .all(|outcome| [(201, false), (201, true), (409, false)].contains(outcome)),
            "{by_outcome:?}"
        );
        if slow {
            assert!(
                by_outcome
                    .get(&(409, false))
                    .is_some_and(|count| *count > 0),
                "in-progress replays get 409: {by_outcome:?}"
            );
        }
        let audit = server.audit();
        assert_eq!(
            (
                audit.keys["one-key"].executions,
                audit.duplicates,
                audit.total_executions
            ),
            (1, 0, 1)
        );
    }
}

#[tokio::test]
async fn api_key_is_enforced_when_configured() {
    let options = PurpleFleaOptions {
        api_key: Some("sekrit".to_owned()),
        ..PurpleFleaOptions::default()
    };
    assert!(
        !format!("{options:?}").contains("sekrit"),
        "Debug must not show the key"
    );
    let server = PurpleFlea::start_with(loopback(), FaultPlan::none(3), options)
        .await
        .expect("start");
    let http = client();
    let url = format!("{}/casino/bet", server.base_url());
    let cases = [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("Bearer sekrit"), 201),
    ];
    for (authorization, status) in cases {
        let mut request = http
            .post(&url)
            .header("Idempotency-Key", "auth-1")
            .body(BET);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status().as_u16(), status, "{authorization:?}");
    }
    assert_eq!(server.audit().total_executions, 1);
}
