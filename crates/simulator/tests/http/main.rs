//! Table-driven tests of both simulators over real HTTP on loopback: every documented behaviour and fault kind.

mod aeeron;
mod control;
mod faults;
mod purple_flea;

use std::time::Duration;

use serde_json::Value;

/// One HTTP answer, reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    /// The error code in either service's shape (`"error":"code"` or `"error":{"code":..}`).
    pub fn code(&self) -> Option<&str> {
        match &self.body["error"] {
            Value::String(code) => Some(code),
            Value::Object(error) => error.get("code").and_then(Value::as_str),
            _ => None,
        }
    }
}

pub fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(10))
}

pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Sends a request; `key` becomes the `Idempotency-Key` header.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> reqwest::Result<Reply> {
    let url = format!("{base}{path}");
    let mut request = match method {
        "GET" => client.get(url),
        _ => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    };
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        replayed,
        retry_after,
        body,
    })
}

pub async fn must_send(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Reply {
    send(client, base, method, path, key, body)
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

pub fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

pub const BET: &str = r#"{"game":"dice","amount":"10.00","target":50,"prediction":"over"}"#;
