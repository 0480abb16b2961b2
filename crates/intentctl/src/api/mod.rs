//! The sidecar's HTTP API in one place: the table of routes and limits, and the typed
//! request and response views. `serve` builds these views, the CLI's `--server` client
//! reads them, and the OpenAPI document describes them, so the three cannot drift apart.

mod routes;
mod views;

#[cfg(test)]
mod tests;

pub use routes::{
    Endpoint, Method, Route, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, NOTE_CHARS_MAX,
    PAYMENT_ID_BYTES_MAX, REQUEST_BODY_BYTES_MAX, ROUTES, WAIT_TIMEOUT_MS_DEFAULT,
    WAIT_TIMEOUT_MS_MAX,
};
pub use views::{
    present, CompactionState, CompactionView, ErrorBody, HealthStatus, HealthView, IntentPage,
    IntentView, LogHealth, LogStatsView, PaymentBody, ReasonView, ResolveBody, StatsView,
    SubmitBody, SyncName,
};
