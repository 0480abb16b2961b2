//! HTTP plumbing: one pooled reqwest client per connector, turning a request into an [`Exchange`].
//!
//! This is the only file that touches reqwest. It decides how far a failed request got
//! (never connected, or possibly written) and reads bodies up to a size cap; everything
//! else is left to the pure classification in `classify.rs`.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;

use crate::classify::{Exchange, RawResponse, TransportFault};
use crate::error::{echo, Error, Result};
use crate::keys::IdempotencyKey;
use crate::secret::Secret;

/// Most response-body bytes read; past this the body is cut (and will not parse).
pub const RESPONSE_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most idle pooled connections kept per host.
pub const POOL_IDLE_CONNECTIONS_PER_HOST_MAX: usize = 32;

/// Idle pooled connections are closed after this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The header the simulator (and Purple Flea) set on replayed responses.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// One connector's client: a shared connection pool, the base URL and the API key.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base_url: String,
    /// `base_url` parsed once: a request only sets its path (parsing the whole URL, host
    /// and all, on every request was 3% of the engine's CPU).
    parsed_base: reqwest::Url,
    /// The base URL's own path, without a trailing slash (requests' paths follow it).
    base_path: String,
    api_key: Option<Secret>,
    connector: &'static str,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HttpTransport")
            .field("connector", &self.connector)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// Builds the client. The base URL must be absolute http(s) with no credentials,
    /// query or fragment (credentials in a URL would end up in error messages).
    pub fn new(
        connector: &'static str,
        base_url: &str,
        api_key: Option<Secret>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self> {
        // A URL with an '@' may carry credentials: never echo it into an error.
        let shown = if base_url.contains('@') {
            "<redacted>".to_owned()
        } else {
            echo(base_url)
        };
        let parsed = reqwest::Url::parse(base_url).map_err(|error| Error::Config {
            reason: format!("base URL {shown:?}: {error}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config {
                reason: format!("base URL {shown:?} is not http or https"),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::Config {
                reason: "the base URL carries credentials; put the API key in api_key instead"
                    .to_owned(),
            });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::Config {
                reason: format!("base URL {:?} has a query or fragment", echo(base_url)),
            });
        }
        if let Some(key) = &api_key {
            if HeaderValue::from_str(&format!("Bearer {}", key.expose())).is_err() {
                return Err(Error::Config {
                    reason: "the API key has characters not allowed in a header".to_owned(),
                });
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .pool_max_idle_per_host(POOL_IDLE_CONNECTIONS_PER_HOST_MAX)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // Following a redirect would re-send a POST somewhere else: never.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("intents-connectors/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::HttpClient {
                reason: error_text(&error),
            })?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            parsed_base: parsed,
            base_path,
            api_key,
            connector,
        })
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of `path` (which starts with '/') under the base URL.
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.parsed_base.clone();
        url.set_path(&format!("{}{}", self.base_path, path));
        url
    }

    /// Sends one request and reads the whole response (up to the cap). Never fails:
    /// every failure is an [`Exchange::Transport`] fault saying how far it got.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        idempotency_key: Option<&IdempotencyKey>,
        body: Option<&Value>,
    ) -> Exchange {
        let mut request = self.client.request(method.clone(), self.url(path));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key.as_str());
        }
        if let Some(key) = &self.api_key {
            match HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                Err(_) => {
                    return Exchange::Transport(TransportFault::NotBuilt {
                        message: "the API key has characters not allowed in a header".to_owned(),
                    })
                }
            }
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        tracing::debug!(connector = self.connector, %method, path, key = idempotency_key.map(IdempotencyKey::as_str), "sending");
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let fault = fault_from_send_error(&error);
                tracing::debug!(connector = self.connector, %method, path, ?fault, "transport fault");
                return Exchange::Transport(fault);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let replayed = response.headers().contains_key(IDEMPOTENT_REPLAYED_HEADER);
        let (collected, body_cut) = match read_capped(&mut response).await {
            Ok(read) => read,
            Err(error) => {
                let message = error_text(&error);
                tracing::debug!(connector = self.connector, %method, path, status, %message, "body broke off");
                return Exchange::Transport(TransportFault::BodyIncomplete { status, message });
            }
        };
        tracing::debug!(connector = self.connector, %method, path, status, replayed, body_bytes = collected.len(), body_cut, "response");
        Exchange::Response(RawResponse {
            status,
            retry_after,
            body: collected,
            body_cut,
        })
    }
}

/// The response body, cut at [`RESPONSE_BODY_BYTES_MAX`] (then `true`): a provider cannot
/// make the engine hold more than the cap, however much it sends.
async fn read_capped(
    response: &mut reqwest::Response,
) -> std::result::Result<(Vec<u8>, bool), reqwest::Error> {
    let mut collected = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = RESPONSE_BODY_BYTES_MAX.saturating_sub(collected.len());
        if chunk.len() > room {
            collected.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((collected, true));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok((collected, false))
}

/// How far a request that failed before its response head got.
///
/// Connect errors (refused, no route, DNS, connect timeout) are checked first: reqwest
/// reports a connect timeout as both "connect" and "timeout", and it is "not sent".
fn fault_from_send_error(error: &reqwest::Error) -> TransportFault {
    let message = error_text(error);
    if error.is_builder() {
        TransportFault::NotBuilt { message }
    } else if error.is_connect() {
        TransportFault::NotSent { message }
    } else if error.is_timeout() {
        TransportFault::Timeout { message }
    } else {
        TransportFault::ConnectionLost { message }
    }
}

/// The error and its sources on one line. reqwest errors name the URL, never headers,
/// so no API key can appear here.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls_keep_the_base_path() {
        // (base URL, request path, URL sent), one case a line.
        let rows = [
            ("http://127.0.0.1:9", "/bets", "http://127.0.0.1:9/bets"),
            (
                "http://127.0.0.1:9/",
                "/bets/b-1",
                "http://127.0.0.1:9/bets/b-1",
            ),
            (
                "http://h:9/api",
                "/wallet/balance",
                "http://h:9/api/wallet/balance",
            ),
            ("https://h/api/v1/", "/execute", "https://h/api/v1/execute"),
        ];
        for (base, path, expected) in rows {
            let transport = HttpTransport::new(
                "test",
                base,
                None,
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .expect(base);
            assert_eq!(transport.url(path).as_str(), expected, "{base} {path}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn base_url_table() {
        let rows: &[(&str, bool)] = &[
            ("http://127.0.0.1:8080", true),
            ("https://api.example.com/", true),
            ("https://api.example.com/prefix", true),
            ("ftp://example.com", false),
            ("not a url", false),
            ("http://user:hunter2@example.com", false),
            ("http://user:hunter2@example.com:notaport", false),
            ("http://example.com/?x=1", false),
            ("http://example.com/#frag", false),
        ];
        for (base_url, valid) in rows {
            let built = HttpTransport::new("test", base_url, None, Duration::from_secs(1), Duration::from_secs(1));
            assert_eq!(built.is_ok(), *valid, "{base_url}");
            if let Err(error) = built {
                assert!(!error.to_string().contains("hunter2"), "{error}");
            }
        }
        let trimmed = HttpTransport::new("test", "http://h/", None, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(trimmed.unwrap().base_url(), "http://h");
    }

    #[test]
    fn an_api_key_that_cannot_be_a_header_is_refused_without_echo() {
        let key = Some(Secret::new("bad\nkey-hunter2"));
        let error = HttpTransport::new(
            "test",
            "http://h",
            key,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
