//! Transport faults against real sockets: refused, silent, reset, closed, truncated, huge, garbage.

use serde_json::json;

use connectors::{
    AeeronConnector, Connector, DispatchRequest, HttpConnectorConfig, IdempotencyKey, Outcome,
    PurpleFleaConnector, Secret, StatusCheck,
};

use crate::support::{aeeron, purple_flea, raw_server, refused_address, Misbehaviour};

fn bet() -> DispatchRequest {
    let params = json!({"game":"dice","amount":"10.00","target":50,"prediction":"over"});
    DispatchRequest::new("bet", params, IdempotencyKey::random())
}

fn execute() -> DispatchRequest {
    let params = json!({"action":"web.search","params":{"queries":3},"budget":{"amount":"1.00","currency":"USDC"}});
    DispatchRequest::new("execute", params, IdempotencyKey::random())
}

fn code(outcome: &Outcome) -> &str {
    outcome.detail().map_or("", |detail| detail.code.as_str())
}

fn reply(status_line: &str, headers: &str, body: &[u8]) -> Misbehaviour {
    let mut bytes =
        format!("HTTP/1.1 {status_line}\r\n{headers}Connection: close\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    Misbehaviour::Reply(bytes)
}

// One line per fault kind: what the server does → outcome kind and code, for both
// connectors (the transport table of docs/connectors.md, on real sockets).
#[tokio::test]
#[rustfmt::skip]
async fn transport_fault_table_on_real_sockets() {
    let rows: Vec<(&str, Misbehaviour, &str, &str)> = vec![
        ("never answers", Misbehaviour::NeverAnswer, "ambiguous", "timeout"),
        ("resets after reading", Misbehaviour::ResetAfterRequest, "ambiguous", "connection_lost"),
        ("closes after reading", Misbehaviour::CloseAfterRequest, "ambiguous", "connection_lost"),
        ("truncated success body", reply("201 Created", "Content-Type: application/json\r\nContent-Length: 200\r\n", br#"{"id":"bet_1","sta"#), "ambiguous", "body_incomplete"),
        ("truncated error body", reply("500 Internal Server Error", "Content-Length: 100\r\n", br#"{"error""#), "ambiguous", "body_incomplete"),
        ("not HTTP at all", Misbehaviour::Reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()), "ambiguous", "connection_lost"),
        ("2xx, body not JSON", reply("201 Created", "Content-Length: 5\r\n", b"hello"), "ambiguous", "unreadable_success_body"),
        ("2xx, huge body", reply("201 Created", "", &vec![b' '; 3 * 1024 * 1024]), "ambiguous", "unreadable_success_body"),
    ];
    for (name, behaviour, kind, expected_code) in rows {
        for connector_name in ["purple_flea", "aeeron"] {
            let server = raw_server(behaviour.clone()).await;
            let outcome = if connector_name == "purple_flea" {
                purple_flea(&server.base_url).dispatch(&bet()).await
            } else {
                aeeron(&server.base_url).dispatch(&execute()).await
            };
            assert_eq!(server.requests.lock().unwrap().len(), 1, "{connector_name}: {name}: one request, no hidden retry");
            assert_eq!((outcome.kind(), code(&outcome)), (kind, expected_code), "{connector_name}: {name}: {outcome:?}");
            if let Some(raw) = outcome.detail().and_then(|detail| detail.raw_body.as_ref()) {
                assert!(raw.len() < 2100 + 64, "{name}: raw body kept {} bytes", raw.len());
            }
        }
    }
}

#[tokio::test]
async fn connection_refused_is_not_sent_and_retryable() {
    let address = refused_address().await;
    let base_url = format!("http://{address}");
    for outcome in [
        purple_flea(&base_url).dispatch(&bet()).await,
        aeeron(&base_url).dispatch(&execute()).await,
    ] {
        assert!(
            matches!(&outcome, Outcome::Retryable { reason, .. } if reason.code == "not_sent"),
            "{outcome:?}"
        );
    }
    let check = purple_flea(&base_url).check_status(&bet()).await;
    assert!(matches!(check, StatusCheck::Unknown { .. }), "{check:?}");
}

#[tokio::test]
async fn status_check_against_a_silent_server_is_unknown() {
    let server = raw_server(Misbehaviour::NeverAnswer).await;
    let check = purple_flea(&server.base_url).check_status(&bet()).await;
    assert!(
        matches!(&check, StatusCheck::Unknown { reason } if reason.code == "timeout"),
        "{check:?}"
    );
    let check = aeeron(&server.base_url).check_status(&execute()).await;
    assert!(
        matches!(&check, StatusCheck::Unknown { reason } if reason.code == "timeout"),
        "{check:?}"
    );
}

#[tokio::test]
async fn a_bare_404_is_not_trusted_as_not_found() {
    let server = raw_server(reply("404 Not Found", "Content-Length: 0\r\n", b"")).await;
    let check = purple_flea(&server.base_url).check_status(&bet()).await;
    assert!(matches!(check, StatusCheck::Unknown { .. }), "{check:?}");
}

#[tokio::test]
async fn requests_carry_the_keys_and_the_api_key_never_leaks() {
    let body = br#"{"id":"bet_1","status":"complete"}"#;
    let headers = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    let server = raw_server(reply("201 Created", &headers, body)).await;
    let mut config = HttpConnectorConfig::new(&server.base_url);
    config.api_key = Some(Secret::new("pf_live_hunter2"));
    let connector = PurpleFleaConnector::new(config.clone()).unwrap();
    let request = bet();
    let outcome = connector.dispatch(&request).await;
    assert!(outcome.is_success(), "{outcome:?}");
    let seen = server.requests.lock().unwrap().first().cloned().unwrap();
    assert!(seen.starts_with("POST /casino/bet HTTP/1.1"), "{seen}");
    let lower = seen.to_ascii_lowercase();
    let key_line = format!(
        "idempotency-key: {}",
        request.idempotency_key.as_str().to_ascii_lowercase()
    );
    assert!(lower.contains(&key_line), "{seen}");
    assert!(seen.contains("Bearer pf_live_hunter2"), "{seen}");
    assert!(
        seen.contains(r#""game":"dice""#) && seen.contains(r#""amount":"10.00""#),
        "{seen}"
    );
    assert!(!format!("{connector:?} {config:?}").contains("hunter2"));
    // A failure's detail and Debug never carry the key either.
    config.base_url = format!("http://{}", refused_address().await);
    let failing = PurpleFleaConnector::new(config).unwrap();
    let outcome = failing.dispatch(&bet()).await;
    assert!(!format!("{outcome:?}").contains("hunter2"), "{outcome:?}");
}

#[tokio::test]
async fn aeeron_sends_the_payment_id_outside_the_params() {
    let body = br#"{"id":"ex_1","status":"succeeded"}"#;
    let headers = format!("Content-Length: {}\r\n", body.len());
    let server = raw_server(reply("201 Created", &headers, body)).await;
    let mut config = HttpConnectorConfig::new(&server.base_url);
    config.api_key = Some(Secret::new("ae_key_42"));
    let connector = AeeronConnector::new(config).unwrap();
    let mut request = execute();
    request.payment = Some(json!({"payment_id": "pay_abc"}));
    let outcome = connector.dispatch(&request).await;
    assert!(outcome.is_success(), "{outcome:?}");
    let seen = server.requests.lock().unwrap().first().cloned().unwrap();
    assert!(seen.starts_with("POST /v1/executions HTTP/1.1"), "{seen}");
    assert!(seen.contains(r#""payment_id":"pay_abc""#), "{seen}");
    assert!(seen.contains("Bearer ae_key_42"), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("idempotency-key: "),
        "{seen}"
    );
}

#[tokio::test]
async fn reads_send_no_idempotency_key_and_escape_the_lookup_key() {
    let server = raw_server(reply(
        "404 Not Found",
        "Content-Length: 21\r\n",
        br#"{"error":"not_found"}"#,
    ))
    .await;
    let mut request = bet();
    request.idempotency_key = IdempotencyKey::new("a&b=c#d+e").unwrap();
    let check = purple_flea(&server.base_url).check_status(&request).await;
    assert_eq!(check, StatusCheck::NotFound);
    let seen = server.requests.lock().unwrap().first().cloned().unwrap();
    assert!(
        seen.starts_with("GET /casino/bet/by-idempotency-key?key=a%26b%3Dc%23d%2Be HTTP/1.1"),
        "{seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("idempotency-key:"),
        "{seen}"
    );
}
