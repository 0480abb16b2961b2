//! The CLI's HTTP client of a running `intentctl serve`: every answer is read into the
//! typed views of [`crate::api`], paths come from its route table.

use std::time::Duration;

use anyhow::{anyhow, bail};
use scheduler::{IntentId, StateName};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::inspect::{counts_of, inspect_report, InspectReport, LogSummary, WAITING_STATES};
use crate::api::{Endpoint, ErrorBody, IntentPage, IntentView, ResolveBody, StatsView};

/// How long one HTTP call to the server may take.
const HTTP_TIMEOUT_MS: u64 = 30_000;

/// The HTTP API of a running `intentctl serve`.
pub struct ServerClient {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ServerClient {
    pub fn new(url: &str, token_env: Option<&str>) -> anyhow::Result<ServerClient> {
        let token = match token_env {
            Some(variable) => Some(
                std::env::var(variable)
                    .map_err(|_| anyhow!("the variable {variable} (--token-env) is not set"))?,
            ),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()?;
        Ok(ServerClient {
            client,
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn request(&self, endpoint: Endpoint, path: &str) -> reqwest::RequestBuilder {
        let method = match endpoint.route().method {
            crate::api::Method::Get => reqwest::Method::GET,
            crate::api::Method::Post => reqwest::Method::POST,
        };
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and reads the answer as `T`; an error answer becomes an error
    /// with the server's status, code and message.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let response = request
            .send()
            .await
            .map_err(|error| anyhow!("{what}: {}: {error}", self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| anyhow!("{what}: {error}"))?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => (body.error, body.message),
                Err(_) => ("error".to_string(), String::new()),
            };
            bail!("{what}: the server answered {status}: {code}: {message}");
        }
        serde_json::from_str(&text)
            .map_err(|error| anyhow!("{what}: the answer is not what the API describes: {error}"))
    }

    /// Calls `endpoint` on `path` with an optional JSON body.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let what = format!("{} {path}", endpoint.route().method.as_str().to_uppercase());
        let mut request = self.request(endpoint, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, &what).await
    }

    pub async fn get_intent(&self, id: IntentId) -> anyhow::Result<IntentView> {
        let path = Endpoint::GetIntent.path_with_id(&id.to_string());
        self.call(Endpoint::GetIntent, &path, None::<&()>).await
    }

    pub async fn dlq_retry(&self, id: IntentId) -> anyhow::Result<IntentView> {
        let path = Endpoint::RetryDeadLetter.path_with_id(&id.to_string());
        let empty = serde_json::Map::new();
        self.call(Endpoint::RetryDeadLetter, &path, Some(&empty))
            .await
    }

    pub async fn dlq_resolve(
        &self,
        id: IntentId,
        body: &ResolveBody,
    ) -> anyhow::Result<IntentView> {
        let path = Endpoint::ResolveDeadLetter.path_with_id(&id.to_string());
        self.call(Endpoint::ResolveDeadLetter, &path, Some(body))
            .await
    }

    /// One page of intents (of the DLQ when `state` is dead-lettered).
    pub async fn list(
        &self,
        state: Option<StateName>,
        connector: Option<&str>,
        cursor: Option<IntentId>,
        limit: usize,
    ) -> anyhow::Result<IntentPage> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(state) = state.filter(|state| *state != StateName::DeadLettered) {
            query.push(("state", state.as_str().to_string()));
        }
        if let Some(connector) = connector {
            query.push(("connector", connector.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        let endpoint = if state == Some(StateName::DeadLettered) {
            Endpoint::ListDeadLetters
        } else {
            Endpoint::ListIntents
        };
        let path = endpoint.route().path;
        let request = self.request(endpoint, path).query(&query);
        self.send(request, &format!("GET {path}")).await
    }

    pub async fn stats(&self) -> anyhow::Result<StatsView> {
        let path = Endpoint::Stats.route().path;
        self.call(Endpoint::Stats, path, None::<&()>).await
    }

    /// Counts and log size from `/v1/stats`, the oldest waiting intent from one-intent
    /// pages of each waiting state.
    pub async fn inspect(&self, now_ms: u64) -> anyhow::Result<InspectReport> {
        let stats = self.stats().await?;
        let mut oldest: Option<IntentView> = None;
        for state in WAITING_STATES {
            let page = self.list(Some(state), None, None, 1).await?;
            if let Some(first) = page.intents.into_iter().next() {
                let older = oldest
                    .as_ref()
                    .is_none_or(|current| first.submitted_at_ms < current.submitted_at_ms);
                if older {
                    oldest = Some(first);
                }
            }
        }
        let log = LogSummary::size(stats.log.bytes, stats.log.segments as u64);
        Ok(inspect_report(
            &counts_of(&stats),
            oldest.as_ref(),
            log,
            now_ms,
        ))
    }
}
