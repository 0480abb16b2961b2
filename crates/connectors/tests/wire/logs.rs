//! What the connectors write to the log: useful lines, and never the API key.

use std::sync::{Arc, Mutex};

use serde_json::json;

use connectors::{
    Connector, DispatchRequest, HttpConnectorConfig, IdempotencyKey, PurpleFleaConnector, Secret,
};

use crate::support::{raw_server, refused_address, Misbehaviour};

/// A minimal subscriber that writes every event's message and fields as one text line.
/// (Hand-written so the crate needs no logging backend, not even in tests.)
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

struct LineWriter<'a>(&'a mut String);

impl tracing::field::Visit for LineWriter<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut LineWriter(&mut line));
        line.push('\n');
        self.0.lock().unwrap().push_str(&line);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

impl Captured {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

// The subscriber is the process-wide default: a thread-local one loses events when other
// tests of this binary register the same callsites concurrently (tracing caches interest
// per callsite). Other tests' lines land in the buffer too; they carry other keys.
#[tokio::test]
async fn trace_logs_never_contain_the_api_key() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(captured.clone()).unwrap();

    let body = br#"{"error":"rate_limited"}"#;
    let reply = format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: whenever-7c1f\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut bytes = reply.into_bytes();
    bytes.extend_from_slice(body);
    let server = raw_server(Misbehaviour::Reply(bytes)).await;
    let mut config = HttpConnectorConfig::new(&server.base_url);
    config.api_key = Some(Secret::new("pf_secret_in_logs_check"));
    let connector = PurpleFleaConnector::new(config.clone()).unwrap();
    let request = DispatchRequest::new(
        "bet",
        json!({"game":"dice","amount":"1.00","target":50,"prediction":"over"}),
        IdempotencyKey::random(),
    );
    let outcome = connector.dispatch(&request).await;
    assert_eq!(outcome.kind(), "retryable", "{outcome:?}");
    config.base_url = format!("http://{}", refused_address().await);
    let outcome = PurpleFleaConnector::new(config)
        .unwrap()
        .dispatch(&request)
        .await;
    assert_eq!(outcome.kind(), "retryable", "{outcome:?}");

    let logs = captured.text();
    assert!(logs.contains("sending"), "{logs}");
    assert!(logs.contains(request.idempotency_key.as_str()), "{logs}");
    let warned = logs.lines().any(|line| {
        line.starts_with("WARN")
            && line.contains("unreadable Retry-After")
            && line.contains("whenever-7c1f")
    });
    assert!(warned, "garbage Retry-After is warned about: {logs}");
    assert!(!logs.contains("pf_secret_in_logs_check"), "{logs}");
}
