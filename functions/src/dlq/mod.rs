//! The Knative dead-letter function (the Broker's `deadLetterSink`). Each
//! dead-lettered event is kept with its decoded `knativeerrorcode`,
//! `knativeerrordest` and `knativeerrordata`; the dead-letter API
//! (docs/operations.md "HTTP API") lists them, and replay re-sends each to the subscriber that
//! failed (its function's idempotency keeps succeeded Notifications from
//! repeating).
//!
//! Whoever can post here decides what is stored, so (issue #13): `POST /`
//! takes only deliveries carrying `spec.inboundAuth`'s credential; the API
//! has its own (`spec.apiAuth`) and is off without it; and replay sends only
//! to the subscribers configured in `RELAY_DLQ_SUBSCRIBERS`, at their
//! configured URL, never following a redirect. The destination named by an
//! event is only looked up in that list: an unknown one is kept (a dead
//! letter is never lost) but never contacted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use relay_core::auth::InboundAuth;
use relay_core::config::RelaySettings;
use relay_core::deadletter::{Cause, CauseKind, DeadLetterEntry, DeadLetterSink};
use relay_core::decode::wrappers;
use relay_core::ingress::{self, Inbound, IngressError};
use relay_core::metrics::Metrics;
use relay_core::ratelimit::InboundLimiter;
use relay_core::server::{auth_check, error};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The explicit switch that lets `POST /` run without `spec.inboundAuth`,
/// read as for the other binaries.
pub use relay_core::runtime::INSECURE_NO_AUTH_ENV;

/// The subscribers replay may send to: comma-separated `name=url`, or a
/// bare `name` for `http://relay-<name>.<RELAY_DLQ_NAMESPACE>.svc.cluster.local`,
/// or `*` for the bare name of every provider function this build has (the
/// provider table), so the manifests need no list of their own.
pub const SUBSCRIBERS_ENV: &str = "RELAY_DLQ_SUBSCRIBERS";
pub const NAMESPACE_ENV: &str = "RELAY_DLQ_NAMESPACE";

/// The metric label and `provider_type` of a destination that is not a
/// configured subscriber (so a sender cannot add label values).
pub const UNKNOWN: &str = "unknown";

pub struct DeadLetters {
    pub sink: Arc<dyn DeadLetterSink>,
    /// `spec.inboundAuth`: the Broker's deliveries on `POST /`. `None` only
    /// with [`INSECURE_NO_AUTH_ENV`] (see [`check_auth`]).
    pub auth: Option<InboundAuth>,
    /// `spec.apiAuth`: list, replay and delete. Without it the API answers
    /// 404 `api_disabled`.
    pub api_auth: Option<InboundAuth>,
    pub subscribers: Subscribers,
    /// `spec.limits.inboundPerSource`, on `POST /` after authentication.
    pub limiter: Option<Arc<InboundLimiter>>,
    /// Built by [`replay_client`]: no redirects, bounded time.
    pub client: reqwest::Client,
    /// The one set of metrics: the sink's evictions and the served ones.
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
}

impl DeadLetters {
    /// The function as its config and environment set it up: the sink
    /// `store` (`file://…`, `valkey://…`, `dynamodb://…`) counting on the
    /// one served set of metrics, both credentials, the subscribers replay
    /// may send to, the limits.
    pub async fn open(
        settings: &RelaySettings,
        store: &str,
        subscribers: Subscribers,
    ) -> Result<DeadLetters, String> {
        // One set of metrics: the sink counts its evictions on the one served.
        let metrics = Arc::new(Metrics::new());
        let sink = relay_core::deadletter::open_store(
            store,
            settings.dead_letter_max_bytes,
            settings.dead_letter_max_entry_bytes,
            metrics.clone(),
        )
        .await?;
        let limiter = settings
            .limits
            .inbound_per_source
            .as_ref()
            .map(|spec| InboundLimiter::new(spec, &metrics));
        Ok(DeadLetters {
            sink,
            auth: settings.inbound_auth.clone(),
            api_auth: settings.api_auth.clone(),
            subscribers,
            limiter,
            client: replay_client()?,
            metrics,
            max_body_bytes: settings.limits.max_body_bytes,
        })
    }
}

pub fn router(dl: Arc<DeadLetters>) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(d): State<Arc<DeadLetters>>| async move { d.metrics.render() }),
        )
        .route("/api/v1/dlq", get(list))
        .route("/api/v1/dlq/replay", post(replay))
        .route("/api/v1/dlq/{id}", delete(remove))
        .with_state(dl)
        .layer(axum::middleware::from_fn(
            relay_core::server::broker_answers,
        ))
}

/// Whether [`INSECURE_NO_AUTH_ENV`] is on in `env` (`true`/`false`;
/// anything else is an error, as for every binary).
pub fn insecure_no_auth(env: impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    relay_core::runtime::insecure_no_auth_from(env)
}

/// `POST /` stores whatever it is sent and replay acts on it: without
/// inbound auth the function does not start, unless told so explicitly.
pub fn check_auth(auth: Option<&InboundAuth>, insecure: bool) -> Result<(), String> {
    // Flux's secret alone leaves CloudEvents (all the Broker sends) open.
    if relay_core::runtime::guards_events(auth) {
        if insecure {
            tracing::info!(
                "{INSECURE_NO_AUTH_ENV}=true has no effect: spec.inboundAuth is set and checked"
            );
        }
        return Ok(());
    }
    if !insecure {
        return Err(format!(
            "spec.inboundAuth is not set: anyone who reaches POST / could store dead letters. \
             Set it (bearer, HMAC, or the Broker's OIDC tokens as jwt), or set \
             {INSECURE_NO_AUTH_ENV}=true to run without (never on a reachable network)"
        ));
    }
    tracing::warn!(
        "INSECURE: {INSECURE_NO_AUTH_ENV}=true and no spec.inboundAuth: POST / accepts \
         dead letters from anyone who can reach this function"
    );
    Ok(())
}

/// The client replays go out on: a redirect is an answer (a failed replay),
/// never followed, so a subscriber (or whoever answers for it) cannot send
/// the event and its credential elsewhere.
pub fn replay_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// One configured subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Its metric label and `provider_type` (`github`).
    pub name: String,
    /// Where its replays go, whatever a dead letter names.
    pub url: url::Url,
}

/// The subscribers replay may send to ([`SUBSCRIBERS_ENV`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribers(Vec<Subscriber>);

/// What must match for a destination to be a subscriber: scheme, host,
/// port, path (without trailing `/`) and query. A URL with credentials
/// matches nothing.
fn match_key(u: &url::Url) -> Option<(String, String, u16, String, Option<String>)> {
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    Some((
        u.scheme().to_string(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
        u.path().trim_end_matches('/').to_string(),
        u.query().map(str::to_string),
    ))
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name != UNKNOWN
}

impl Subscribers {
    /// Parses [`SUBSCRIBERS_ENV`]'s value; `namespace` is needed for bare
    /// names.
    pub fn parse(spec: &str, namespace: Option<&str>) -> Result<Subscribers, String> {
        let mut out: Vec<Subscriber> = Vec::new();
        let items = spec.split(',').map(str::trim).filter(|s| !s.is_empty());
        // `*`: every provider function of the image, and the router.
        let every_provider = crate::PROVIDERS
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.name)
            .chain(["router"]);
        let items = items.flat_map(|item| -> Box<dyn Iterator<Item = &str>> {
            if item == "*" {
                Box::new(every_provider.clone())
            } else {
                Box::new(std::iter::once(item))
            }
        });
        for item in items {
            let (name, url) = match item.split_once('=') {
                Some((n, u)) => (n.trim(), u.trim().to_string()),
                None => {
                    let ns = namespace.filter(|n| !n.is_empty()).ok_or_else(|| {
                        format!(
                            "{SUBSCRIBERS_ENV}: {item:?} has no URL; give `name=url`, or set {NAMESPACE_ENV}"
                        )
                    })?;
                    (item, format!("http://relay-{item}.{ns}.svc.cluster.local"))
                }
            };
            if !valid_name(name) {
                return Err(format!(
                    "{SUBSCRIBERS_ENV}: {name:?} is not a subscriber name (lower-case letters, digits and `-`, at most 63, not `{UNKNOWN}`)"
                ));
            }
            let url = url::Url::parse(&url)
                .map_err(|e| format!("{SUBSCRIBERS_ENV}: {name}: invalid URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https")
                || url.fragment().is_some()
                || match_key(&url).is_none()
            {
                return Err(format!(
                    "{SUBSCRIBERS_ENV}: {name}: expected an http(s) URL with a host, without credentials or fragment"
                ));
            }
            if out.iter().any(|s| s.name == name) {
                return Err(format!("{SUBSCRIBERS_ENV}: {name} is given twice"));
            }
            out.push(Subscriber {
                name: name.to_string(),
                url,
            });
        }
        Ok(Subscribers(out))
    }

    /// From the environment; none configured is valid (every dead letter
    /// is then kept, and none replayed).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Subscribers, String> {
        Subscribers::parse(
            &env(SUBSCRIBERS_ENV).unwrap_or_default(),
            env(NAMESPACE_ENV).as_deref(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.name.as_str())
    }

    /// The subscriber whose URL `dest` (a `knativeerrordest`) is.
    pub fn resolve(&self, dest: &str) -> Option<&Subscriber> {
        let key = match_key(&url::Url::parse(dest).ok()?)?;
        self.0
            .iter()
            .find(|s| match_key(&s.url).as_ref() == Some(&key))
    }
}

/// `http://relay-github.ns.svc.cluster.local` -> `github`.
pub fn function_of(dest: &str) -> String {
    let host = dest
        .split("://")
        .nth(1)
        .unwrap_or(dest)
        .split(['/', ':', '.'])
        .next()
        .unwrap_or("");
    host.strip_prefix("relay-").unwrap_or(host).to_string()
}

/// The entry for one dead-lettered delivery. `provider` keeps the
/// destination as the Broker reported it (for inspection);
/// `provider_type` is the configured subscriber it is, else
/// [`UNKNOWN`] with `unknown_destination` set.
pub fn entry_for(mut ce: cloudevents::Event, subscribers: &Subscribers) -> DeadLetterEntry {
    let k = wrappers::knative_error(&ce);
    // Keep the event as it was first sent: the error is in the cause.
    for name in ["knativeerrorcode", "knativeerrordest", "knativeerrordata"] {
        ce.remove_extension(name);
    }
    let dest = k.as_ref().and_then(|k| k.dest.clone()).unwrap_or_default();
    let subscriber = subscribers.resolve(&dest);
    DeadLetterEntry {
        id: uuid::Uuid::new_v4().to_string(),
        failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        notification: "*".into(),
        provider_type: subscriber.map_or(UNKNOWN, |s| s.name.as_str()).to_string(),
        unknown_destination: subscriber.is_none(),
        provider: dest,
        cause: Cause {
            kind: CauseKind::RetriesExhausted,
            status: k.as_ref().and_then(|k| k.code.as_deref()?.parse().ok()),
            message: k
                .and_then(|k| k.data)
                .unwrap_or_else(|| "dead-lettered by the Broker".into()),
        },
        attempts: 0,
        replays: 0,
        event: ingress::structured_json(&ce),
        truncated: None,
    }
}

fn reject(dl: &DeadLetters, e: &IngressError) -> Response {
    dl.metrics
        .requests_rejected
        .with_label_values(&[e.code])
        .inc();
    error(e)
}

/// The API's credential, `spec.apiAuth`, and nothing else: without it the
/// API is not there.
async fn api_authorized(
    dl: &DeadLetters,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let Some(a) = &dl.api_auth else {
        return Err(reject(
            dl,
            &IngressError::new(
                StatusCode::NOT_FOUND,
                "api_disabled",
                "the dead-letter API is off: it needs its own credential, spec.apiAuth",
            ),
        ));
    };
    let entry = relay_core::auth::Entry::Api;
    auth_check(a, entry, method, uri, headers, body, &dl.metrics).await
}

async fn receive(State(dl): State<Arc<DeadLetters>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, dl.max_body_bytes).await else {
        return reject(
            &dl,
            &IngressError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("body is over the limit of {} bytes", dl.max_body_bytes),
            ),
        );
    };
    if let Some(a) = &dl.auth
        && let Err(r) = auth_check(
            a,
            relay_core::auth::Entry::Events,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &bytes,
            &dl.metrics,
        )
        .await
    {
        return r;
    }
    // After authentication: unauthenticated requests must not spend the
    // bucket of a source they share with the Broker (on Knative every
    // request comes from the queue-proxy). 429 + Retry-After: the Broker
    // retries later, nothing is lost.
    if let Some(l) = &dl.limiter
        && let Some(source) = l.source(&parts.headers, peer)
        && let Err(wait) = l.check(source)
    {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = error(&IngressError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many dead letters from this source; retry after {secs} s"),
        ));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let mut ce = match ingress::parse_request(&parts.headers, bytes) {
        Ok(Inbound::CloudEvent(ce)) => *ce,
        Ok(Inbound::Flux { .. }) => {
            return reject(
                &dl,
                &IngressError::new(
                    StatusCode::BAD_REQUEST,
                    "not_a_cloudevent",
                    "expected a CloudEvent",
                ),
            );
        }
        Err(e) => return reject(&dl, &e),
    };
    // The Broker sends the trace context as a header; kept in the event, a
    // replay continues the trace.
    ingress::adopt_trace_headers(&mut ce, &parts.headers);
    let entry = entry_for(ce, &dl.subscribers);
    match dl.sink.put(&entry).await {
        Ok(()) => {
            dl.metrics
                .dead_letters
                .with_label_values(&[&entry.provider_type])
                .inc();
            if entry.unknown_destination {
                tracing::warn!(id = %entry.id, destination = ?entry.provider,
                    "dead letter kept; its destination is not a configured subscriber, so it will not be replayed");
            } else {
                tracing::warn!(id = %entry.id, subscriber = %entry.provider_type, cause = %entry.cause.message, "dead letter kept");
            }
            // Never a CloudEvent body: the Broker would take it as a reply.
            (StatusCode::ACCEPTED, axum::Json(json!({"id": entry.id}))).into_response()
        }
        // The Broker retries the dead-letter sink too: nothing is lost. The
        // store's own error (hosts, ports) is for the log, not the sender.
        Err(e) => {
            dl.metrics.dead_letter_errors.inc();
            tracing::error!(id = %entry.id, error = %e, "dead letter not stored; the Broker will retry");
            let mut resp = error(&IngressError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dead_letter_store",
                "the dead-letter store is unavailable; retry later",
            ));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            resp
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    notification: Option<String>,
}

async fn list(
    State(dl): State<Arc<DeadLetters>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = api_authorized(&dl, &method, &uri, &headers, b"").await {
        return r;
    }
    match dl.sink.list(q.limit, q.notification.as_deref()).await {
        Ok((total, entries)) => {
            axum::Json(json!({"total": total, "entries": entries})).into_response()
        }
        Err(e) => error(&IngressError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "dead_letter_store",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    ids: Option<Vec<String>>,
}

/// An entry replay would not send, and why.
#[derive(Debug, Serialize)]
struct Refusal {
    id: String,
    code: &'static str,
    message: String,
}

/// The subscriber `e` goes to, by the configuration as it is now (an entry
/// kept as unknown is replayed once its subscriber is configured).
fn target<'a>(dl: &'a DeadLetters, e: &DeadLetterEntry) -> Result<&'a Subscriber, Refusal> {
    if e.truncated.is_some() {
        return Err(Refusal {
            id: e.id.clone(),
            code: "truncated",
            message: "the dead letter was over the per-entry size cap and was kept without its event data; it cannot be replayed".into(),
        });
    }
    dl.subscribers.resolve(&e.provider).ok_or_else(|| Refusal {
        id: e.id.clone(),
        code: "unknown_destination",
        message: format!(
            "the destination {:?} is not a configured subscriber ({SUBSCRIBERS_ENV}); not replayed",
            e.provider
        ),
    })
}

/// Re-sends an entry's event (structured mode) to `to`'s configured URL,
/// with `spec.inboundAuth`'s bearer token when that is its scheme (the
/// subscriber checks the same credential).
async fn resend(dl: &DeadLetters, e: &DeadLetterEntry, to: &Subscriber) -> bool {
    let body = e.event.to_string();
    let mut req = dl
        .client
        .post(to.url.clone())
        .header("content-type", "application/cloudevents+json");
    // The subscriber checks the same spec.inboundAuth as this function:
    // present its bearer token, or sign the replay as a sender would.
    if let Some(auth) = dl.auth.as_ref() {
        match replay_credentials(auth, to, body.as_bytes()).await {
            Ok(headers) => req = req.headers(headers),
            Err(err) => {
                tracing::warn!(id = %e.id, error = %err, "replay credential unreadable");
                return false;
            }
        }
    }
    let req = req.body(body);
    match req.send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) if r.status().is_redirection() => {
            tracing::warn!(id = %e.id, subscriber = %to.name, status = %r.status(),
                "replay answered with a redirect, which is not followed");
            false
        }
        Ok(r) => {
            tracing::warn!(id = %e.id, subscriber = %to.name, status = %r.status(), "replay refused");
            false
        }
        Err(err) => {
            tracing::warn!(id = %e.id, subscriber = %to.name, error = %err.without_url(), "replay failed");
            false
        }
    }
}

/// The headers that authenticate a replay to `to` under `auth`: the bearer
/// token, or an HMAC signature of the request (a JWT cannot be minted here:
/// such a subscriber refuses the replay and the entry stays).
async fn replay_credentials(
    auth: &InboundAuth,
    to: &Subscriber,
    body: &[u8],
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    if let Some(f) = &auth.bearer_token_file {
        let token = f.read().await.map_err(|e| e.to_string())?;
        let value = format!("Bearer {}", token.expose());
        let mut value = axum::http::HeaderValue::from_str(&value)
            .map_err(|_| "the bearer token is not a valid header value".to_string())?;
        value.set_sensitive(true);
        headers.insert(axum::http::header::AUTHORIZATION, value);
    } else if let Some(f) = &auth.hmac_secret_file {
        let secret = f.read().await.map_err(|e| e.to_string())?;
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/cloudevents+json"),
        );
        let path = match to.url.query() {
            Some(q) => format!("{}?{q}", to.url.path()),
            None => to.url.path().to_string(),
        };
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = relay_core::auth::hmac_signature(
            secret.expose().as_bytes(),
            &ts,
            "POST",
            &path,
            &headers,
            body,
        );
        for (name, value) in [
            (auth.hmac_timestamp_header.as_str(), ts),
            (auth.hmac_header.as_str(), sig),
        ] {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            let value = axum::http::HeaderValue::from_str(&value)
                .map_err(|_| "not a header value".to_string())?;
            headers.insert(name, value);
        }
    }
    Ok(headers)
}

async fn replay(
    State(dl): State<Arc<DeadLetters>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(r) = api_authorized(&dl, &method, &uri, &headers, &body).await {
        return r;
    }
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return reject(
                    &dl,
                    &IngressError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
                );
            }
        }
    };
    let entries = match dl.sink.list(None, None).await {
        Ok((_, e)) => e,
        Err(e) => {
            return error(&IngressError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "dead_letter_store",
                e.to_string(),
            ));
        }
    };
    let (mut replayed, mut succeeded, mut failed) = (0, 0, 0);
    let mut refused = Vec::new();
    for mut e in entries {
        if req.ids.as_ref().is_some_and(|ids| !ids.contains(&e.id)) {
            continue;
        }
        replayed += 1;
        let to = match target(&dl, &e) {
            Ok(to) => to,
            Err(r) => {
                // Nothing sent, nothing written: the entry stays as it is.
                dl.metrics.replays.with_label_values(&["refused"]).inc();
                tracing::warn!(id = %e.id, code = r.code, "replay refused");
                failed += 1;
                refused.push(r);
                continue;
            }
        };
        let ok = resend(&dl, &e, to).await;
        dl.metrics
            .replays
            .with_label_values(&[if ok { "succeeded" } else { "failed" }])
            .inc();
        let stored = if ok {
            succeeded += 1;
            dl.sink.remove(&e.id).await
        } else {
            failed += 1;
            e.replays += 1;
            dl.sink.update(&e).await
        };
        if let Err(err) = stored {
            return error(&IngressError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "dead_letter_store",
                err.to_string(),
            ));
        }
    }
    let mut answer = json!({"replayed": replayed, "succeeded": succeeded, "failed": failed});
    if !refused.is_empty() {
        answer["refused"] = json!(refused);
    }
    axum::Json(answer).into_response()
}

async fn remove(
    State(dl): State<Arc<DeadLetters>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = api_authorized(&dl, &method, &uri, &headers, b"").await {
        return r;
    }
    match dl.sink.remove(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(&IngressError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter with id {id:?}"),
        )),
        Err(e) => error(&IngressError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "dead_letter_store",
            e.to_string(),
        )),
    }
}

/// Serves as the dead-letter function until stopped: HTTP on `$PORT`,
/// store from `RELAY_DLQ_STORE`, replay targets from `RELAY_DLQ_SUBSCRIBERS`.
pub async fn serve() -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = relay_core::runtime::load_config_once(None)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    check_auth(cfg.settings.inbound_auth.as_ref(), insecure_no_auth(env)?)?;
    let subscribers = Subscribers::from_env(env)?;
    if subscribers.is_empty() {
        tracing::warn!(
            "no {} configured: dead letters are kept, but none can be replayed",
            SUBSCRIBERS_ENV
        );
    }
    if cfg.settings.api_auth.is_none() {
        tracing::info!("no spec.apiAuth: the dead-letter API answers 404");
    }
    let store = std::env::var("RELAY_DLQ_STORE").map_err(|_| {
        "set RELAY_DLQ_STORE (file:///path.jsonl, valkey://… or dynamodb://…)".to_string()
    })?;
    relay_core::runtime::check_state_is_shared("RELAY_DLQ_STORE", &store, env)?;
    let dl = DeadLetters::open(&cfg.settings, &store, subscribers).await?;
    let addr = relay_core::runtime::listen_addr(None);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    relay_core::runtime::serve_router_with(
        router(Arc::new(dl)),
        listener,
        std::time::Duration::from_secs(30),
        relay_core::runtime::ConnectionLimits::from_settings(&cfg.settings.limits),
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_from_destination() {
        assert_eq!(
            function_of("http://relay-github.tekton-relay.svc.cluster.local"),
            "github"
        );
        assert_eq!(function_of("http://relay-webhook:8080/"), "webhook");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn only_true_turns_the_insecure_switch_on() {
        assert_eq!(
            insecure_no_auth(env(&[(INSECURE_NO_AUTH_ENV, "true")])),
            Ok(true)
        );
        for v in ["1", "yes", "on"] {
            assert!(
                insecure_no_auth(env(&[(INSECURE_NO_AUTH_ENV, v)])).is_err(),
                "{v:?} is refused, not guessed"
            );
        }
        for v in ["", "false"] {
            assert_eq!(
                insecure_no_auth(env(&[(INSECURE_NO_AUTH_ENV, v)])),
                Ok(false)
            );
        }
        assert_eq!(insecure_no_auth(env(&[])), Ok(false));
        assert!(check_auth(None, false).is_err());
        assert!(check_auth(None, true).is_ok());
        let flux_only: InboundAuth =
            serde_json::from_str(r#"{"fluxHmacSecretFile": "/x"}"#).unwrap();
        assert!(
            check_auth(Some(&flux_only), false).is_err(),
            "Flux's secret alone leaves the Broker's CloudEvents open"
        );
    }

    #[test]
    fn subscribers_by_url_or_by_name_in_the_namespace() {
        let s = Subscribers::from_env(env(&[
            (
                SUBSCRIBERS_ENV,
                " github , hook=http://127.0.0.1:9000/relay-webhook/ ",
            ),
            (NAMESPACE_ENV, "tekton-relay"),
        ]))
        .unwrap();
        assert_eq!(s.names().collect::<Vec<_>>(), ["github", "hook"]);
        // `*`: every provider of the table and the router, at its
        // cluster-local address.
        let every = Subscribers::parse("*", Some("ns")).unwrap();
        let names: Vec<&str> = every.names().collect();
        let mut table: Vec<&str> = crate::PROVIDERS.iter().map(|r| r.name).collect();
        table.push("router");
        assert_eq!(names, table);
        assert_eq!(
            every
                .resolve("http://relay-github.ns.svc.cluster.local/")
                .map(|s| s.name.as_str()),
            Some("github")
        );
        assert!(
            Subscribers::parse("*", None).is_err(),
            "bare names need a namespace"
        );
        assert!(
            Subscribers::parse("*,github", Some("ns")).is_err(),
            "github twice"
        );
        let gh = s
            .resolve("http://relay-github.tekton-relay.svc.cluster.local")
            .unwrap();
        assert_eq!(gh.name, "github");
        // The same URL written differently is the same subscriber.
        for same in [
            "http://RELAY-GITHUB.tekton-relay.svc.cluster.local:80/",
            "http://relay-github.tekton-relay.svc.cluster.local/",
        ] {
            assert_eq!(s.resolve(same).map(|s| s.name.as_str()), Some("github"));
        }
        assert_eq!(
            s.resolve("http://127.0.0.1:9000/relay-webhook")
                .map(|s| s.name.as_str()),
            Some("hook")
        );
        // Anything else is not a subscriber.
        for other in [
            "http://169.254.169.254/latest/meta-data/",
            "http://relay-github.tekton-relay.svc.cluster.local.evil.example/",
            "https://relay-github.tekton-relay.svc.cluster.local",
            "http://relay-github.tekton-relay.svc.cluster.local:8080",
            "http://relay-github.tekton-relay.svc.cluster.local/admin",
            "http://user:pw@relay-github.tekton-relay.svc.cluster.local",
            "http://127.0.0.1:9000/relay-webhook?x=1",
            "relay-github",
            "",
        ] {
            assert!(s.resolve(other).is_none(), "{other}");
        }
    }

    #[test]
    fn bad_subscriber_lists_are_refused() {
        for (spec, ns) in [
            ("github", None),
            ("Git Hub=http://x", None),
            ("unknown=http://x", None),
            ("a=ftp://x", None),
            ("a=http://u:p@x", None),
            ("a=http://x#f", None),
            ("a=not a url", None),
            ("a=http://x,a=http://y", None),
        ] {
            assert!(Subscribers::parse(spec, ns).is_err(), "{spec}");
        }
        assert!(Subscribers::parse("", None).unwrap().is_empty());
    }
}
