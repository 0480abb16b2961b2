//! The sidecar's HTTP surface against a real engine on a temporary directory.

use serde_json::{json, Value};

use super::metrics::metrics_text;
use super::*;
use crate::api::{IntentView, StatsView, REQUEST_BODY_BYTES_MAX};

async fn start() -> (
    tempfile::TempDir,
    Engine,
    String,
    tokio::task::JoinHandle<()>,
) {
    // Connectors point at a closed port: nothing is dispatched successfully, which is
    // fine for testing the API surface.
    start_with(ServeConfig::defaults(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    ))
    .await
}

async fn start_with(
    config: ServeConfig,
) -> (
    tempfile::TempDir,
    Engine,
    String,
    tokio::task::JoinHandle<()>,
) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (engine, _) = Engine::open(
        config.engine_config(directory.path()).expect("config"),
        config.connector_settings().expect("connectors"),
    )
    .await
    .expect("engine");
    let (_stop, stopped) = watch::channel(false);
    let app = App {
        slot: Arc::new(EngineSlot::new(engine.clone())),
        token: Some("sekrit".into()),
        shutdown: stopped,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(app)).await;
    });
    (directory, engine, base, server)
}

/// `/healthz` says how the log syncs and how compaction fares; an unsynced log (the
/// benchmark-only opt-in) is a warning on every probe (issue 9, defect 8).
#[tokio::test]
async fn healthz_reports_sync_and_compaction() {
    let health = |base: String| async move {
        let answer = reqwest::get(format!("{base}/healthz"))
            .await
            .expect("healthz");
        assert_eq!(answer.status().as_u16(), 200);
        answer.json::<Value>().await.expect("json")
    };
    let (_directory, engine, base, server) = start().await;
    let body = health(base).await;
    assert_eq!(
        (&body["status"], &body["sync"], &body["compaction"]["state"]),
        (&json!("ok"), &json!("data"), &json!("ok")),
        "{body}"
    );
    engine.shutdown().await;
    server.abort();

    let mut config = ServeConfig::defaults("http://127.0.0.1:9", "http://127.0.0.1:9");
    config.sync = "none".to_string();
    config.unsafe_no_sync_benchmark_only = true;
    let (_directory, engine, base, server) = start_with(config).await;
    let body = health(base).await;
    assert_eq!(
        (&body["status"], &body["sync"]),
        (&json!("warning"), &json!("none_unsafe")),
        "{body}"
    );
    engine.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn api_statuses_table() {
    let (_directory, engine, base, server) = start().await;
    let client = reqwest::Client::new();
    let bet = json!({"connector":"purple_flea","operation":"bet","params":{"game":"dice","amount":"1.00","target":50,"prediction":"over"},"idempotency_key":"k1"});
    let other = json!({"connector":"purple_flea","operation":"bet","params":{"game":"dice","amount":"2.00","target":50,"prediction":"over"},"idempotency_key":"k1"});
    let big = "x".repeat(REQUEST_BODY_BYTES_MAX + 1);
    // (method, path, body, token, expected status)
    let cases: Vec<(&str, &str, Option<String>, bool, u16)> = vec![
        ("GET", "/healthz", None, false, 200),
        ("GET", "/v1/intents", None, false, 401),
        ("POST", "/v1/intents", Some(bet.to_string()), true, 201),
        ("POST", "/v1/intents", Some(bet.to_string()), true, 200),
        ("POST", "/v1/intents", Some(other.to_string()), true, 409),
        (
            "POST",
            "/v1/intents",
            Some("{not json".to_string()),
            true,
            400,
        ),
        (
            "POST",
            "/v1/intents",
            Some("{\"connector\":1}".to_string()),
            true,
            422,
        ),
        (
            "POST",
            "/v1/intents",
            Some(json!({"connector":"nope","operation":"bet","params":{}}).to_string()),
            true,
            422,
        ),
        (
            "POST",
            "/v1/intents",
            Some(
                json!({"connector":"purple_flea","operation":"bet","params":{"amount":"-1"}})
                    .to_string(),
            ),
            true,
            422,
        ),
        ("POST", "/v1/intents", Some(big), true, 413),
        ("GET", "/v1/intents?state=bogus", None, true, 422),
        ("GET", "/v1/intents?limit=abc", None, true, 422),
        ("GET", "/v1/intents?state=pending&limit=5", None, true, 200),
        ("GET", "/v1/intents/not-an-id", None, true, 404),
        (
            "GET",
            "/v1/intents/00000000-0000-0000-0000-000000000000",
            None,
            true,
            404,
        ),
        (
            "POST",
            "/v1/intents/00000000-0000-0000-0000-000000000000/payment",
            Some("{\"payment_id\":\"pay_1\"}".to_string()),
            true,
            404,
        ),
        ("GET", "/v1/dlq", None, true, 200),
        (
            "POST",
            "/v1/dlq/00000000-0000-0000-0000-000000000000/resolve",
            Some("{\"note\":\"\"}".to_string()),
            true,
            422,
        ),
        ("GET", "/metrics", None, true, 200),
        ("GET", "/nowhere", None, true, 404),
    ];
    for (method, path, body, token, expected) in cases {
        let url = format!("{base}{path}");
        let mut request = match method {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        if token {
            request = request.bearer_auth("sekrit");
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
    }
    let text = metrics_text(&engine);
    assert!(text.contains("intents{state=\"pending\"}"), "{text}");
    assert!(
        text.contains("intents_log_sync_micros_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    server.abort();
    engine.kill();
}

/// `GET /v1/stats` answers the counts, log figures and compaction status as JSON (issue
/// 10: `inspect --server` used to parse the Prometheus text of `/metrics` for them).
#[tokio::test]
async fn stats_answers_counts_log_and_compaction_as_json() {
    let (_directory, engine, base, server) = start().await;
    let client = reqwest::Client::new();
    let unauthorised = client
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .expect("stats");
    assert_eq!(unauthorised.status().as_u16(), 401);
    let submitted = client
        .post(format!("{base}/v1/intents"))
        .bearer_auth("sekrit")
        .json(&json!({"connector":"purple_flea","operation":"bet","params":{"game":"dice","amount":"1.00","target":50,"prediction":"over"}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(submitted.status().as_u16(), 201);
    let submitted: IntentView = submitted.json().await.expect("intent");
    let answer = client
        .get(format!("{base}/v1/stats"))
        .bearer_auth("sekrit")
        .send()
        .await
        .expect("stats");
    assert_eq!(answer.status().as_u16(), 200);
    let stats: StatsView = answer.json().await.expect("stats view");
    assert_eq!(
        stats.counts.len(),
        scheduler::StateName::ALL.len(),
        "{stats:?}"
    );
    assert_eq!(stats.counts.values().sum::<u64>(), 1, "{stats:?}");
    assert_eq!(stats.counts.get(&submitted.state), Some(&1), "{stats:?}");
    assert!(stats.log.bytes > 0 && stats.log.segments >= 1, "{stats:?}");
    assert!(stats.log.records_total >= 1, "{stats:?}");
    assert_eq!(stats.compaction.consecutive_failures, 0, "{stats:?}");
    server.abort();
    engine.kill();
}

/// The router serves every row of the route table with its method (none falls through
/// to the 404 of unknown routes, none is 405), and the token guards exactly the rows
/// that require it.
#[tokio::test]
async fn the_router_serves_every_route_in_the_table() {
    let (_directory, engine, base, server) = start().await;
    let client = reqwest::Client::new();
    let zero = "00000000-0000-0000-0000-000000000000";
    for route in &ROUTES {
        let url = format!("{base}{}?timeout=0", route.endpoint.path_with_id(zero));
        let request = |token: bool| {
            let request = match route.method {
                Method::Get => client.get(&url),
                Method::Post => client.post(&url).body("{}"),
            };
            if token {
                request.bearer_auth("sekrit")
            } else {
                request
            }
        };
        let answer = request(true).send().await.expect("request");
        let status = answer.status().as_u16();
        let text = answer.text().await.expect("body");
        assert_ne!(status, 405, "{route:?}: {text}");
        assert!(
            !text.contains("no such route"),
            "{route:?}: {status} {text}"
        );
        let without = request(false).send().await.expect("request");
        assert_eq!(
            without.status().as_u16() == 401,
            route.token_required,
            "{route:?}"
        );
    }
    server.abort();
    engine.kill();
}
