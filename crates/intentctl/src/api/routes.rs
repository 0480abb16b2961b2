//! Every route the sidecar serves and the limits it enforces: the router is built from
//! [`ROUTES`], the OpenAPI document describes [`ROUTES`], and the CLI's client takes its
//! paths from it.

/// Largest request body accepted, in bytes.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Long-poll wait when `timeout` is not given, and the most it may be.
pub const WAIT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const WAIT_TIMEOUT_MS_MAX: u64 = 30_000;
/// Page size of listings when `limit` is not given, and the most it may be.
pub const LIST_LIMIT_DEFAULT: usize = 100;
pub const LIST_LIMIT_MAX: usize = 1_000;
/// Longest operator note or evidence, in characters.
pub const NOTE_CHARS_MAX: usize = 4_096;
/// Longest payment id, in bytes.
pub const PAYMENT_ID_BYTES_MAX: usize = 128;

/// An HTTP method the sidecar answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    /// The lower-case name OpenAPI uses as the key of an operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// What a route does. The router maps each to its handler and the OpenAPI document to
/// its operation, both with an exhaustive `match`, so a new endpoint cannot be half-wired.
/// The discriminant is the endpoint's index in [`ROUTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    SubmitIntent = 0,
    ListIntents = 1,
    GetIntent = 2,
    WaitIntent = 3,
    AttachPayment = 4,
    ListDeadLetters = 5,
    RetryDeadLetter = 6,
    ResolveDeadLetter = 7,
    Stats = 8,
    Metrics = 9,
    Health = 10,
    OpenApi = 11,
}

impl Endpoint {
    /// This endpoint's row of [`ROUTES`].
    pub fn route(self) -> &'static Route {
        &ROUTES[self as usize]
    }

    /// The path with `{id}` replaced by `id`.
    pub fn path_with_id(self, id: &str) -> String {
        self.route().path.replace("{id}", id)
    }
}

/// One (method, path) the sidecar serves.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub endpoint: Endpoint,
    pub method: Method,
    /// In the syntax axum 0.8 and OpenAPI share (`/v1/intents/{id}`).
    pub path: &'static str,
    /// Behind `Authorization: Bearer` when the server runs with `--token-env`.
    pub token_required: bool,
}

const fn route(endpoint: Endpoint, method: Method, path: &'static str) -> Route {
    Route {
        endpoint,
        method,
        path,
        token_required: true,
    }
}

/// Every route, in [`Endpoint`] order. Probes (`/healthz`) and the API's own description
/// (`/openapi.json`) answer without a token.
pub static ROUTES: [Route; 12] = [
    route(Endpoint::SubmitIntent, Method::Post, "/v1/intents"),
    route(Endpoint::ListIntents, Method::Get, "/v1/intents"),
    route(Endpoint::GetIntent, Method::Get, "/v1/intents/{id}"),
    route(Endpoint::WaitIntent, Method::Get, "/v1/intents/{id}/wait"),
    route(
        Endpoint::AttachPayment,
        Method::Post,
        "/v1/intents/{id}/payment",
    ),
    route(Endpoint::ListDeadLetters, Method::Get, "/v1/dlq"),
    route(
        Endpoint::RetryDeadLetter,
        Method::Post,
        "/v1/dlq/{id}/retry",
    ),
    route(
        Endpoint::ResolveDeadLetter,
        Method::Post,
        "/v1/dlq/{id}/resolve",
    ),
    route(Endpoint::Stats, Method::Get, "/v1/stats"),
    route(Endpoint::Metrics, Method::Get, "/metrics"),
    Route {
        token_required: false,
        ..route(Endpoint::Health, Method::Get, "/healthz")
    },
    Route {
        token_required: false,
        ..route(Endpoint::OpenApi, Method::Get, "/openapi.json")
    },
];
