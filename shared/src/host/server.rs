//! The HTTP face of a function (Knative mode and `relay serve`): events on
//! `POST /`, health, metrics, and the dead-letter API.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::delivery::deadletter::DeadLetterTarget;
use crate::delivery::engine::{Engine, EventResult, Mode, Outcome};
use crate::delivery::replay;
use crate::host::ingress::{self, Accepted, IngressError};

/// The function's state. The Engine (the compiled Notifications with their
/// store, dead letters and metrics) is swapped whole on a config reload; each
/// request takes its own `Arc` first, so an event in flight finishes on the
/// engine it started with.
pub struct App {
    engine: std::sync::RwLock<Arc<Engine>>,
    door: std::sync::OnceLock<Door>,
}

/// How the function's listener is exposed; set once, when it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// It listens on loopback only: its callers are on this host, as
    /// trusted as its log. Only then do answers carry provider detail and
    /// `/readyz` the Notifications to a caller without credentials.
    pub loopback: bool,
    /// The operator allowed events without `spec.inboundAuth` beyond
    /// loopback (`--insecure-no-auth`, `RELAY_INSECURE_NO_AUTH=true`).
    pub insecure_no_auth: bool,
    /// What the operator sets to allow that, for messages.
    pub insecure_switch: &'static str,
}

impl App {
    pub fn new(engine: Engine) -> App {
        App {
            engine: std::sync::RwLock::new(Arc::new(engine)),
            door: std::sync::OnceLock::new(),
        }
    }

    /// Records how the listener is exposed (once; later calls are ignored).
    pub fn set_door(&self, door: Door) {
        let _ = self.door.set(door);
    }

    pub fn door(&self) -> Option<&Door> {
        self.door.get()
    }

    /// Callers are local: the listener is on loopback. Not so without a
    /// listener (Lambda) or before it binds.
    pub fn is_local(&self) -> bool {
        self.door.get().is_some_and(|d| d.loopback)
    }

    /// Whether a (reloaded) config may serve on this listener: one without
    /// `spec.inboundAuth` may not open a door beyond loopback that was
    /// started closed.
    pub fn admits(&self, settings: &crate::event::config::RelaySettings) -> Result<(), String> {
        let Some(d) = self.door.get() else {
            return Ok(());
        };
        let has_auth = crate::host::door::guards_events(settings.inbound_auth.as_ref());
        crate::host::door::door_check(
            &d.addr.to_string(),
            d.loopback,
            has_auth,
            d.insecure_no_auth,
            d.insecure_switch,
        )?;
        if !d.loopback && !has_auth {
            tracing::warn!(addr = %d.addr, switch = d.insecure_switch,
                "INSECURE: the reloaded config has no spec.inboundAuth; anyone who can reach this address can send events");
            self.engine().metrics.set_insecure_no_auth();
        }
        Ok(())
    }

    /// The current engine; hold it for the whole request.
    pub fn engine(&self) -> Arc<Engine> {
        // A poisoned lock still holds a complete Arc: the swap is one store.
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `engine` current; returns the one it replaced.
    pub fn swap(&self, engine: Engine) -> Arc<Engine> {
        let mut cur = self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *cur, Arc::new(engine))
    }
}

pub type SharedApp = Arc<App>;

pub fn router(app: SharedApp) -> Router {
    let limited = Router::new()
        .route("/", post(receive))
        .route("/api/v1/dlq", get(dlq_list))
        .route("/api/v1/dlq/replay", post(dlq_replay))
        .route("/api/v1/dlq/{id}", delete(dlq_delete));
    // Probes and scrapes stay outside the limit: they come from a few
    // trusted addresses and must not be starved by a noisy sender.
    crate::host::ratelimit::limit_routes(limited, inbound_limiter(&app))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app)
        .layer(axum::middleware::from_fn(broker_answers))
}

/// The most of an error body a Knative Broker is sent: its dispatcher puts
/// the body, base64, into the dead letter's `knativeerrordata`, and panics
/// on one over 768 bytes (knative/eventing-natss#434; the same code in the
/// channel dispatcher).
pub const BROKER_ERROR_BODY_MAX: usize = 512;

/// Answers for a Knative Broker, which sends `Prefer: reply`: a 2xx with a
/// body that is no CloudEvent is a bad reply to it (broker-filter answers
/// 502, retries and dead-letters a delivery that succeeded), so a 2xx goes
/// back with no body; an error body is cut to [`BROKER_ERROR_BODY_MAX`].
/// A CloudEvent answer (the router's reply) goes back as it is. Other
/// callers get the answers of docs/operations.md unchanged.
pub async fn broker_answers(req: Request, next: axum::middleware::Next) -> Response {
    let broker = req
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("reply"));
    let resp = next.run(req).await;
    if !broker {
        return resp;
    }
    let is_event = resp.headers().contains_key("ce-specversion")
        || resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/cloudevents"));
    if is_event {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    if parts.status.is_success() {
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    if bytes.len() <= BROKER_ERROR_BODY_MAX {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let full: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = full["error"]["code"].as_str().unwrap_or("error");
    let mut message = full["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let room = BROKER_ERROR_BODY_MAX - 64 - code.len().min(64);
    if message.len() > room {
        let mut cut = room;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let short = json!({"error": {"code": code, "message": message}}).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(short))
}

/// The inbound limit of `spec.limits.inboundPerSource`, read once: its
/// buckets live as long as the router.
fn inbound_limiter(app: &App) -> Option<Arc<crate::host::ratelimit::InboundLimiter>> {
    let engine = app.engine();
    let spec = engine.plan.settings.limits.inbound_per_source.as_ref()?;
    Some(crate::host::ratelimit::InboundLimiter::new(
        spec,
        &engine.metrics,
    ))
}

/// Event types are bounded for the metric label; others count as `other`.
fn type_label(ty: &str) -> std::borrow::Cow<'_, str> {
    crate::delivery::metrics::event_type_label(ty)
}

async fn receive(State(app): State<SharedApp>, req: Request) -> Response {
    let engine = app.engine();
    let metrics = &engine.metrics;
    let limit = engine.plan.settings.limits.max_body_bytes;
    let (parts, body) = req.into_parts();
    let bytes = match read_limited(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let e = e.into_error(limit);
            metrics.requests_rejected.with_label_values(&[e.code]).inc();
            return body_error(&e);
        }
    };
    let entry = crate::host::auth::Entry::Events;
    if let Err(resp) = authorize(
        &engine,
        entry,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &bytes,
    )
    .await
    {
        return resp;
    }
    let accepted = ingress::parse_request(&parts.headers, bytes).and_then(ingress::decode);
    let (event, original) = match accepted {
        Err(e) => {
            metrics.requests_rejected.with_label_values(&[e.code]).inc();
            tracing::info!(code = e.code, error = %e.message, "request rejected");
            return IntoResponse::into_response(&e);
        }
        Ok(Accepted::Ignored { event_type }) => {
            metrics
                .events_received
                .with_label_values(&[type_label(&event_type)])
                .inc();
            return Json(json!({"outcome": Outcome::Ignored, "deliveries": []})).into_response();
        }
        Ok(Accepted::Run {
            event,
            mut original,
        }) => {
            original.adopt_trace_headers(&parts.headers);
            (event, original)
        }
    };
    metrics
        .events_received
        .with_label_values(&[type_label(&event.event_type)])
        .inc();
    let span = tracing::info_span!("event", ce_id = %event.event_id, ce_type = %event.event_type,
        run = %event.display_name(), state = %event.state, trace_id = tracing::field::Empty);
    let result = async {
        let r = engine.process(*event, &original, Mode::Live).await;
        tracing::info!(outcome = r.outcome.as_str(), "event processed");
        // The operator's record of why (a caller beyond loopback is not
        // told); dead-lettered ones are logged with their entry.
        for d in &r.deliveries {
            if matches!(d.outcome, Outcome::Failed | Outcome::Rejected) {
                tracing::warn!(notification = %d.notification, provider = %d.provider,
                    outcome = d.outcome.as_str(), detail = d.detail.as_deref().unwrap_or_default(),
                    "delivery failed");
            }
        }
        r
    }
    .instrument(span)
    .await;
    answer(&engine, result, app.is_local())
}

/// Checks the credentials of a door: `spec.inboundAuth` for events (open
/// without it), `spec.apiAuth` for the dead-letter API (`404`
/// `api_disabled` without it: event senders' credentials never open it).
/// `401` for bad credentials, `503` when the secret cannot be read.
/// `method` and `uri` as received: HMAC signatures cover them.
pub async fn authorize(
    engine: &Engine,
    entry: crate::host::auth::Entry,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let auth = match entry {
        crate::host::auth::Entry::Events => match &engine.plan.settings.inbound_auth {
            Some(a) => a,
            None => return Ok(()),
        },
        crate::host::auth::Entry::Api => match &engine.plan.settings.api_auth {
            Some(a) => a,
            None => return Err(api_disabled()),
        },
    };
    auth_check(auth, entry, method, uri, headers, body, &engine.metrics).await
}

/// [`authorize`] for the dead-letter API (`spec.apiAuth`), whose calls
/// carry no body but a replay's.
async fn authorize_api(
    engine: &Engine,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    authorize(
        engine,
        crate::host::auth::Entry::Api,
        method,
        uri,
        headers,
        body,
    )
    .await
}

fn api_disabled() -> Response {
    IntoResponse::into_response(IngressError::new(
        StatusCode::NOT_FOUND,
        "api_disabled",
        "the dead-letter API is off: it needs its own credential, spec.apiAuth",
    ))
}

pub async fn auth_check(
    auth: &crate::event::config::auth::InboundAuth,
    entry: crate::host::auth::Entry,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
    metrics: &crate::delivery::metrics::Metrics,
) -> Result<(), Response> {
    match crate::host::auth::verify(auth, entry, method, uri, headers, body).await {
        Ok(()) => Ok(()),
        Err(crate::host::auth::AuthError::Unauthorized) => {
            metrics
                .requests_rejected
                .with_label_values(&["unauthorized"])
                .inc();
            Err(IntoResponse::into_response(IngressError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid credentials",
            )))
        }
        Err(crate::host::auth::AuthError::Unavailable(e)) => {
            tracing::error!(error = %e, "inbound credentials cannot be checked");
            Err(IntoResponse::into_response(IngressError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "credentials cannot be checked right now",
            )))
        }
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit.
    TooLarge,
    /// Not all there within `spec.limits.bodyReadTimeoutSeconds`.
    TimedOut,
    /// The connection broke or the framing was invalid.
    Unreadable,
}

impl BodyError {
    /// From a body stream's error: the read deadline, else unreadable.
    pub fn from_stream(e: &(dyn std::error::Error + 'static)) -> BodyError {
        if crate::host::door::is_body_timeout(e) {
            BodyError::TimedOut
        } else {
            BodyError::Unreadable
        }
    }

    /// The answer, for a body limit of `limit` bytes.
    pub fn into_error(self, limit: usize) -> IngressError {
        match self {
            BodyError::TooLarge => IngressError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("body is over the limit of {limit} bytes"),
            ),
            BodyError::TimedOut => IngressError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time (spec.limits.bodyReadTimeoutSeconds)",
            ),
            BodyError::Unreadable => IngressError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "the body could not be read",
            ),
        }
    }
}

/// The answer to a body that was not read; the connection is closed, as
/// the rest of the body, if any, is not read.
pub fn body_error(e: &IngressError) -> Response {
    let mut r = e.into_response();
    if e.status != StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Reads a body of at most `limit` bytes. Past the limit the rest is read and
/// discarded (up to a bound), so a sender still writing gets the 413 rather
/// than a reset connection.
pub async fn read_limited(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    use futures::StreamExt;
    let drain_cap = limit.saturating_mul(4).max(8 << 20);
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // Past the limit already, the 413 says more than why the rest
            // did not come.
            Err(_) if seen > limit => break,
            Err(e) => return Err(BodyError::from_stream(&e)),
        };
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > drain_cap {
            break;
        }
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// docs/design.md "HTTP contract": 200, 503 + Retry-After, or 422 for `respond`.
/// Each delivery's outcome is in the answer, its `detail` (a provider's
/// error text, hosts and ports) only for a `local` caller: others find it in
/// the log and the dead letter. With `deadLetter: respond` the answer is
/// the dead letter, so a permanent failure's text stays in its message.
fn answer(engine: &Engine, mut r: EventResult, local: bool) -> Response {
    let rejected: Vec<String> = r
        .deliveries
        .iter()
        .filter(|d| d.outcome == Outcome::Rejected)
        .filter_map(|d| d.detail.clone())
        .collect();
    if !local {
        for d in &mut r.deliveries {
            d.detail = None;
        }
    }
    if let Some(wait) = r.retry_after {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(&r)).into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    if !rejected.is_empty() && matches!(engine.dead_letters, DeadLetterTarget::Respond) {
        let body = json!({
            "error": {"code": "permanent_failure", "message": rejected.join("; ")},
            "deliveries": r.deliveries,
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    Json(&r).into_response()
}

/// Does the caller prove it holds `spec.apiAuth`? Only asked of a caller
/// that presents credentials, so probes without them are not counted as
/// refused requests.
async fn is_admin(
    engine: &Engine,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> bool {
    let Some(api) = &engine.plan.settings.api_auth else {
        return false;
    };
    let presents = headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key(api.hmac_header.as_str());
    presents
        && authorize_api(engine, method, uri, headers, b"")
            .await
            .is_ok()
}

/// `ready` or `degraded` to anyone (probes); the store, dead letters and
/// Notifications only to a local caller (loopback listener) or one with the
/// `spec.apiAuth` credential: they name the deployment's providers.
async fn ready(
    State(app): State<SharedApp>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> Response {
    let engine = app.engine();
    let store = &engine.store;
    let store_ok = tokio::time::timeout(Duration::from_secs(2), store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let status = if store_ok { "ready" } else { "degraded" };
    if !(app.is_local() || is_admin(&engine, &method, &uri, &headers).await) {
        return Json(json!({"status": status})).into_response();
    }
    let body = json!({
        "status": status,
        "store": {"backend": store.backend(), "status": if store_ok { "ok" } else { "unreachable" }},
        "deadLetter": engine.dead_letters.describe(),
        "notifications": engine.plan.notifications.iter().map(|n| json!({
            "name": n.name, "provider": n.provider_name, "type": n.provider_type,
        })).collect::<Vec<_>>(),
    });
    // Degraded still serves: the relay fails open without its store.
    Json(body).into_response()
}

/// Prometheus text. With `spec.apiAuth` set, only for its credential (a
/// scraper's `authorization.credentials_file`); without it, for anyone who
/// reaches the port: keep that port to the cluster, or set apiAuth.
async fn metrics(
    State(app): State<SharedApp>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> Response {
    let engine = app.engine();
    if engine.plan.settings.api_auth.is_some()
        && let Err(r) = authorize_api(&engine, &method, &uri, &headers, b"").await
    {
        return r;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        engine.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    notification: Option<String>,
}

fn no_sink() -> Response {
    let e = IngressError::new(
        StatusCode::NOT_FOUND,
        "no_dead_letter_queue",
        "dead letters go back to the sender (deadLetter: respond); nothing is kept here",
    );
    IntoResponse::into_response(&e)
}

fn sink_error(e: impl std::fmt::Display) -> Response {
    let e = IngressError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "dead_letter_sink",
        e.to_string(),
    );
    IntoResponse::into_response(&e)
}

async fn dlq_list(
    State(app): State<SharedApp>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let engine = app.engine();
    if let Err(r) = authorize_api(&engine, &method, &uri, &headers, b"").await {
        return r;
    }
    let DeadLetterTarget::Sink(sink) = &engine.dead_letters else {
        return no_sink();
    };
    match sink.list(q.limit, q.notification.as_deref()).await {
        Ok((total, entries)) => Json(json!({"total": total, "entries": entries})).into_response(),
        Err(e) => sink_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    ids: Option<Vec<String>>,
}

async fn dlq_replay(
    State(app): State<SharedApp>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let engine = app.engine();
    if let Err(r) = authorize_api(&engine, &method, &uri, &headers, &body).await {
        return r;
    }
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                let e = IngressError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string());
                return IntoResponse::into_response(&e);
            }
        }
    };
    let DeadLetterTarget::Sink(sink) = &engine.dead_letters else {
        return no_sink();
    };
    match replay::replay(&engine, sink.as_ref(), req.ids.as_deref()).await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => sink_error(e),
    }
}

async fn dlq_delete(
    State(app): State<SharedApp>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let engine = app.engine();
    if let Err(r) = authorize_api(&engine, &method, &uri, &headers, b"").await {
        return r;
    }
    let DeadLetterTarget::Sink(sink) = &engine.dead_letters else {
        return no_sink();
    };
    match sink.remove(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => IntoResponse::into_response(IngressError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter with id {id:?}"),
        )),
        Err(e) => sink_error(e),
    }
}
