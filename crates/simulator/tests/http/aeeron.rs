//! Aeeron: quotes, payments, executions, the order of checks and the error shape.

use simulator::{Aeeron, FaultPlan};

use crate::{client, loopback, must_send};

/// (method, path, key, body, status, error code, replayed, (field or error detail, value))
type Step<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    String,
    u16,
    Option<&'a str>,
    bool,
    Option<(&'a str, &'a str)>,
);

const GPU_4H: &str = r#""action":"compute.gpu_hours","params":{"gpu":"a100","hours":4}"#;

#[tokio::test]
async fn documented_behaviour() {
    let server = Aeeron::start(loopback(), FaultPlan::none(1))
        .await
        .expect("start");
    let base = server.base_url();
    let http = client();
    let pay = |amount: &str, currency: &str| {
        format!(r#"{{"amount":"{amount}","currency":"{currency}"}}"#)
    };
    let mut payments = Vec::new();
    for (amount, currency) in [
        ("16.80", "USDC"),
        ("10.00", "USDC"),
        ("16.80", "EURC"),
        ("5.00", "USDC"),
        ("8408.40", "USDC"),
    ] {
        let reply = must_send(
            &http,
            &base,
            "POST",
            "/v1/payments",
            None,
            &pay(amount, currency),
        )
        .await;
        assert_eq!(
            (reply.status, reply.body["status"].as_str()),
            (201, Some("authorized")),
            "{reply:?}"
        );
        payments.push(
            reply.body["payment_id"]
                .as_str()
                .expect("payment id")
                .to_owned(),
        );
    }
    let execution = |budget: &str, payment: Option<&str>| match payment {
        Some(payment) => format!(
            r#"{{{GPU_4H},"budget":{{"amount":"{budget}","currency":"USDC"}},"payment_id":"{payment}"}}"#
        ),
        None => format!(r#"{{{GPU_4H},"budget":{{"amount":"{budget}","currency":"USDC"}}}}"#),
    };
    let (full, small, euro, tiny, big) = (
        &payments[0],
        &payments[1],
        &payments[2],
        &payments[3],
        &payments[4],
    );
    let over_capacity = format!(
        r#"{{"action":"compute.gpu_hours","params":{{"gpu":"h100","hours":1001}},"budget":{{"amount":"9000.00","currency":"USDC"}},"payment_id":"{big}"}}"#
    );
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("POST", "/v1/quotes".into(), None, format!(r#"{{{GPU_4H},"currency":"USDC"}}"#), 200, None, false, Some(("amount", "16.80"))),
        ("POST", "/v1/quotes".into(), None, r#"{"action":"teleport","params":{}}"#.into(), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/quotes".into(), None, format!(r#"{{{GPU_4H},"currency":"EURC"}}"#), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/payments".into(), None, r#"{"amount":16.8,"currency":"USDC"}"#.into(), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/executions".into(), None, execution("20.00", Some(full)), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-1"), r#"{"action":"compute.gpu_hours","params":{"gpu":"a100","hours":-1},"budget":{"amount":"20.00","currency":"USDC"}}"#.into(), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-1"), format!(r#"{{{GPU_4H},"budget":{{"amount":"20.00","currency":"EURC"}}}}"#), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", Some(euro)), 400, Some("invalid_input"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("12.00", Some(full)), 403, Some("budget_exceeded"), false, Some(("quote", "16.80"))),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", None), 402, Some("payment_required"), false, Some(("amount", "16.80"))),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", Some(small)), 402, Some("payment_required"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", Some("pay_unknown")), 402, Some("payment_required"), false, None),
        // None of the refusals bound the key: the funded request executes now.
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", Some(full)), 201, None, false, Some(("status", "succeeded"))),
        // payment_id is not part of the fingerprint: a replay without it is the same request.
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("20.00", None), 201, None, true, Some(("status", "succeeded"))),
        ("POST", "/v1/executions".into(), Some("ex-1"), execution("25.00", Some(full)), 409, Some("idempotency_conflict"), false, None),
        // The cleared payment cannot fund a second execution.
        ("POST", "/v1/executions".into(), Some("ex-2"), execution("20.00", Some(full)), 402, Some("payment_required"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-3"), r#"{"action":"web.search","params":{"queries":3},"budget":{"amount":"1.00","currency":"USDC"},"payment_id":"PAY"}"#.replace("PAY", tiny), 201, None, false, Some(("amount", "0.15"))),
        ("GET", "/v1/executions/by-idempotency-key?key=ex-1".into(), None, String::new(), 200, None, false, Some(("status", "succeeded"))),
        ("GET", "/v1/executions/by-idempotency-key?key=ex-2".into(), None, String::new(), 404, Some("not_found"), false, None),
        ("GET", "/v1/executions/ex_unknown".into(), None, String::new(), 404, Some("not_found"), false, None),
        ("GET", format!("/v1/payments/{full}"), None, String::new(), 200, None, false, Some(("status", "cleared"))),
        ("POST", "/v1/payments".into(), Some("pay-k"), pay("3.00", "USDC"), 201, None, false, Some(("status", "authorized"))),
        ("POST", "/v1/payments".into(), Some("pay-k"), pay("3.00", "USDC"), 201, None, true, Some(("amount", "3.00"))),
        ("POST", "/v1/payments".into(), Some("pay-k"), pay("4.00", "USDC"), 409, Some("idempotency_conflict"), false, None),
        ("POST", "/v1/executions".into(), Some("pay-k"), execution("20.00", Some(full)), 409, Some("idempotency_conflict"), false, None),
        // More H100 hours than the provider has: paid, started, failed part-way (no fault plan).
        ("POST", "/v1/executions".into(), Some("ex-big"), over_capacity.clone(), 502, Some("execution_failed"), false, None),
        ("POST", "/v1/executions".into(), Some("ex-big"), over_capacity.clone(), 502, Some("execution_failed"), true, None),
        ("GET", "/v1/executions/by-idempotency-key?key=ex-big".into(), None, String::new(), 200, None, false, Some(("status", "failed"))),
        ("GET", "/nowhere".into(), None, String::new(), 404, Some("not_found"), false, None),
    ];
    let mut first_id = None;
    for (index, (method, path, key, body, status, code, replayed, expected)) in
        steps.into_iter().enumerate()
    {
        let reply = must_send(&http, &base, method, &path, key, &body).await;
        let context = format!("step {index}: {method} {path} key={key:?} {body} -> {reply:?}");
        assert_eq!(
            (reply.status, reply.code(), reply.replayed),
            (status, code, replayed),
            "{context}"
        );
        if let Some(error) = reply.body.get("error") {
            // Aeeron's shape: an object with code, message and details.
            assert!(
                error["message"].is_string() && error["details"].is_object(),
                "{context}"
            );
        }
        if let Some((name, value)) = expected {
            let found = reply
                .body
                .get(name)
                .or_else(|| reply.body["error"]["details"].get(name));
            assert_eq!(
                found.and_then(|found| found.as_str()),
                Some(value),
                "{context}"
            );
        }
        if key == Some("ex-1") && status == 201 {
            let id = reply.body["id"].as_str().expect("id").to_owned();
            assert_eq!(first_id.get_or_insert_with(|| id.clone()), &id, "{context}");
            let provider = &reply.body["provider"];
            assert_eq!(
                provider["steps_completed"], provider["steps_total"],
                "{context}"
            );
            assert_eq!(reply.body["payment"]["status"], "cleared", "{context}");
        }
    }
    let by_id = must_send(
        &http,
        &base,
        "GET",
        &format!("/v1/executions/{}", first_id.expect("executed")),
        None,
        "",
    )
    .await;
    assert_eq!(by_id.body["idempotency_key"], "ex-1");
    let audit = server.audit();
    assert_eq!(
        (audit.total_keys, audit.total_executions, audit.duplicates),
        (4, 4, 0),
        "{audit:?}"
    );
    assert_eq!(audit.keys["ex-1"].route, "POST /v1/executions");
    assert_eq!(audit.keys["pay-k"].route, "POST /v1/payments");
}
