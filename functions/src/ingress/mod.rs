//! The ingress function: the authenticated front door for Tekton (and Flux)
//! events. On AWS it puts each event on an EventBridge bus; on Knative it
//! forwards it unchanged to `K_SINK` (a SinkBinding to the Broker). The
//! W3C trace context it was sent with travels on in the event (`otel`).

pub mod replay;
pub mod trim;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use relay_core::auth::InboundAuth;
use relay_core::config::InboundLimit;
use relay_core::ingress::{self, Accepted, IngressError, Original};
use relay_core::metrics::Metrics;
use relay_core::ratelimit::InboundLimiter;
use relay_core::server::{auth_check, error};
use serde_json::json;

/// Where accepted events go.
pub enum Forward {
    EventBridge {
        client: aws_sdk_eventbridge::Client,
        bus: String,
        source: String,
    },
    Sink {
        client: reqwest::Client,
        url: String,
    },
}

/// The Notifications' filters by provider type: on AWS the ingress marks
/// each event for the functions with a Notification whose filter it could
/// match (`relay<function>: "true"` in the detail, see
/// [`crate::router::route_attribute`]), and each function's EventBridge rule
/// matches its own mark. Filters only: a provider that would decline the
/// event still gets it (and declines it), so nothing wanted is missed.
#[derive(Default)]
pub struct Routes(Vec<(String, relay_core::config::filter::Filter)>);

impl Routes {
    /// From a config's Notifications and Providers; every filter error.
    pub fn compile(cfg: &relay_core::config::RelayConfig) -> Result<Routes, String> {
        let mut routes = Vec::new();
        let mut errors = Vec::new();
        for n in &cfg.notifications {
            let Some(p) = cfg
                .providers
                .iter()
                .find(|p| p.name == n.spec.provider_ref.name)
            else {
                errors.push(format!(
                    "Notification/{}: no Provider {}",
                    n.name, n.spec.provider_ref.name
                ));
                continue;
            };
            let filter = match &n.spec.filter {
                Some(spec) => relay_core::config::filter::Filter::compile(spec),
                None => Ok(relay_core::config::filter::Filter::any()),
            };
            match filter {
                Ok(f) => routes.push((p.provider_type.clone(), f)),
                Err(es) => errors.extend(es.into_iter().map(|(path, msg)| {
                    format!("Notification/{}: spec.filter{path}: {msg}", n.name)
                })),
            }
        }
        if errors.is_empty() {
            Ok(Routes(routes))
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The functions (provider types) with a Notification that could want `ev`.
    pub fn wanted_by(&self, ev: &relay_core::RunEvent) -> std::collections::BTreeSet<&str> {
        use relay_core::config::filter::FilterVerdict;
        self.0
            .iter()
            .filter(|(_, f)| !matches!(f.evaluate(ev), FilterVerdict::NoMatch))
            .map(|(t, _)| t.as_str())
            .collect()
    }
}

pub struct Ingress {
    pub forward: Forward,
    /// Marks for EventBridge rules (AWS only; on Knative the router marks).
    pub routes: Routes,
    pub auth: Option<InboundAuth>,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
    /// `spec.limits.inboundPerSource`, off when `None`.
    pub inbound_limit: Option<InboundLimit>,
}

/// How long the Broker may take to take an event.
pub const SINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(55);

/// EventBridge's limit on one entry.
pub const EVENTBRIDGE_MAX_BYTES: usize = 256 * 1024;

impl Ingress {
    /// From the environment: `RELAY_EVENT_BUS` (and `RELAY_EVENT_SOURCE`,
    /// default `tekton.relay`) on AWS, else `K_SINK` on Knative.
    pub async fn from_env(
        auth: Option<InboundAuth>,
        max_body_bytes: usize,
    ) -> Result<Ingress, String> {
        let forward = if let Ok(bus) = std::env::var("RELAY_EVENT_BUS") {
            let conf = relay_core::config::aws::loader().load().await;
            Forward::EventBridge {
                client: aws_sdk_eventbridge::Client::new(&conf),
                bus,
                source: std::env::var("RELAY_EVENT_SOURCE")
                    .unwrap_or_else(|_| "tekton.relay".into()),
            }
        } else if let Ok(url) = std::env::var("K_SINK") {
            Forward::Sink {
                // A Broker's ingress answers once every Trigger has had
                // the event (retries included): wait for it, within the
                // Service's 60 s request timeout.
                client: relay_core::transport::client(SINK_TIMEOUT)?,
                url,
            }
        } else {
            return Err(
                "set RELAY_EVENT_BUS (AWS EventBridge) or K_SINK (Knative SinkBinding)".into(),
            );
        };
        Ok(Ingress {
            forward,
            routes: Routes::default(),
            auth,
            max_body_bytes,
            metrics: Metrics::new(),
            inbound_limit: None,
        })
    }
}

pub fn router(ingress: Arc<Ingress>) -> Router {
    // The same per-source limit as `relay serve`, on events only.
    let limiter = ingress
        .inbound_limit
        .as_ref()
        .map(|spec| InboundLimiter::new(spec, &ingress.metrics));
    relay_core::ratelimit::limit_routes(Router::new().route("/", post(receive)), limiter)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(i): State<Arc<Ingress>>| async move { i.metrics.render() }),
        )
        .with_state(ingress)
        .layer(axum::middleware::from_fn(lambda_source_ip))
}

/// On Lambda there is no peer address: the Function URL's request context
/// has the caller's (`requestContext.http.sourceIp`, set by AWS from the
/// connection, unlike `X-Forwarded-For`). It becomes the peer address the
/// inbound limit keys on; without it every request would share no bucket
/// at all (and so not be limited).
async fn lambda_source_ip(mut req: Request, next: axum::middleware::Next) -> Response {
    use axum::extract::ConnectInfo;
    use lambda_http::request::RequestContext;
    if req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_none()
        && let Some(RequestContext::ApiGatewayV2(ctx)) = req.extensions().get::<RequestContext>()
        && let Some(ip) = ctx
            .http
            .source_ip
            .as_deref()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
    {
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::new(ip, 0)));
    }
    next.run(req).await
}

async fn receive(State(ing): State<Arc<Ingress>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match relay_core::server::read_limited(body, ing.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let e = e.into_error(ing.max_body_bytes);
            ing.metrics
                .requests_rejected
                .with_label_values(&[e.code])
                .inc();
            return relay_core::server::body_error(&e);
        }
    };
    if let Some(auth) = &ing.auth
        && let Err(r) = auth_check(
            auth,
            relay_core::auth::Entry::Events,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &bytes,
            &ing.metrics,
        )
        .await
    {
        return r;
    }
    // Decode at the door, so a malformed event is refused here, clearly.
    let accepted = ingress::parse_request(&parts.headers, bytes.clone()).and_then(ingress::decode);
    let (event_type, rewrap, original, wanted) = match accepted {
        Err(e) => {
            ing.metrics
                .requests_rejected
                .with_label_values(&[e.code])
                .inc();
            return error(&e);
        }
        Ok(Accepted::Ignored { event_type }) => {
            ing.metrics
                .events_received
                .with_label_values(&["other"])
                .inc();
            tracing::info!(%event_type, "ignored");
            return axum::Json(json!({"outcome": "ignored"})).into_response();
        }
        Ok(Accepted::Run { original, .. }) if matches!(&original, Original::CloudEvent(ce) if relay_core::redrive::is_marked(ce)) =>
        {
            // Only an operator's replay marks an event for one Notification
            // (`relay dlq replay --sqs`, straight onto the bus).
            let e = IngressError::new(
                StatusCode::BAD_REQUEST,
                "reserved_attribute",
                format!(
                    "the extension attributes {} and {} are the relay's own",
                    relay_core::redrive::NOTIFICATION_ATTRIBUTE,
                    relay_core::redrive::REPLAYS_ATTRIBUTE
                ),
            );
            ing.metrics
                .requests_rejected
                .with_label_values(&[e.code])
                .inc();
            return error(&e);
        }
        Ok(Accepted::Run {
            event,
            mut original,
        }) => {
            ing.metrics
                .events_received
                .with_label_values(&[relay_core::metrics::event_type_label(&event.event_type)])
                .inc();
            // A Flux payload is no CloudEvent, and a CloudEvent that took the
            // tracing extension from a header is no longer the bytes received:
            // either goes on as the structured event it now is.
            let adopted = original.adopt_trace_headers(&parts.headers);
            let rewrap = event.format == relay_core::model::EventFormat::Flux || adopted;
            let wanted: Vec<String> = ing
                .routes
                .wanted_by(&event)
                .into_iter()
                .map(str::to_string)
                .collect();
            (event.event_type.clone(), rewrap, original, wanted)
        }
    };
    let span = relay_core::otel::start_forward(&original, &event_type);
    let answer = match &ing.forward {
        Forward::EventBridge {
            client,
            bus,
            source,
        } => {
            if wanted.is_empty() {
                ing.metrics.events_routed.with_label_values(&["none"]).inc();
                tracing::info!(%event_type, "no Notification wants this event; not put on the bus");
                return axum::Json(json!({"outcome": "unrouted"})).into_response();
            }
            for f in &wanted {
                ing.metrics.events_routed.with_label_values(&[f]).inc();
            }
            to_eventbridge(client, bus, source, &event_type, &original, &wanted).await
        }
        Forward::Sink { client, url } if rewrap => {
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/cloudevents+json"),
            );
            let body = bytes::Bytes::from(original.to_json().to_string());
            to_sink(client, url, &headers, body, &span).await
        }
        Forward::Sink { client, url } => to_sink(client, url, &parts.headers, bytes, &span).await,
    };
    let failed = !answer.status().is_success();
    relay_core::otel::end(
        &span,
        "relay.outcome",
        if failed { "failed" } else { "forwarded" },
        failed,
    );
    answer
}

async fn to_eventbridge(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    source: &str,
    event_type: &str,
    original: &Original,
    wanted: &[String],
) -> Response {
    let mut detail = original.to_json();
    // The marks each function's rule matches (infra/: detail.relay<function>).
    if let Some(obj) = detail.as_object_mut() {
        // A sender's own marks steer nothing: only the ingress's stay.
        obj.retain(|k, _| {
            k != crate::router::ROUTED_ATTRIBUTE
                && !crate::PROVIDERS
                    .iter()
                    .any(|r| *k == crate::router::route_attribute(r.name))
        });
        for f in wanted {
            obj.insert(crate::router::route_attribute(f), "true".into());
        }
        obj.insert(crate::router::ROUTED_ATTRIBUTE.into(), "true".into());
    }
    match put_event(client, bus, source, event_type, detail).await {
        Ok(trimmed) => {
            axum::Json(json!({"outcome": "forwarded", "trimmed": trimmed})).into_response()
        }
        Err(PutError::TooLarge) => error(&IngressError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            "the event exceeds EventBridge's 256 KB limit even without its bulky fields",
        )),
        Err(PutError::Failed(why)) => retryable(&why),
    }
}

/// Why an event did not go on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// Over EventBridge's 256 KB even without its bulky fields.
    TooLarge,
    /// EventBridge refused it or could not be reached: why.
    Failed(String),
}

impl std::fmt::Display for PutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutError::TooLarge => write!(
                f,
                "the event exceeds EventBridge's 256 KB limit even without its bulky fields"
            ),
            PutError::Failed(why) => f.write_str(why),
        }
    }
}

/// Puts `detail` (a structured CloudEvent) on `bus` under `source` and the
/// detail-type `event_type`, trimmed to fit ([`trim::fit`]): what the
/// ingress sends each event as, and `relay dlq replay --sqs` sends it
/// again. The fields trimmed.
pub async fn put_event(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    source: &str,
    event_type: &str,
    mut detail: serde_json::Value,
) -> Result<Vec<&'static str>, PutError> {
    let trimmed = trim::fit(
        &mut detail,
        EVENTBRIDGE_MAX_BYTES.saturating_sub(source.len() + event_type.len() + 512),
    )
    .map_err(|_| PutError::TooLarge)?;
    if !trimmed.is_empty() {
        tracing::info!(fields = %trimmed.join(","), "trimmed for EventBridge");
    }
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(source)
        .detail_type(event_type)
        .detail(detail.to_string())
        .build();
    match client.put_events().entries(entry).send().await {
        Ok(out) if out.failed_entry_count() == 0 => Ok(trimmed),
        Ok(out) => {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            Err(PutError::Failed(format!(
                "EventBridge refused the event: {why}"
            )))
        }
        Err(e) => Err(PutError::Failed(format!(
            "EventBridge unavailable: {}",
            aws_sdk_eventbridge::error::DisplayErrorContext(e)
        ))),
    }
}

/// The sender learns that forwarding failed and to retry; why (AWS error
/// text, the sink's address) goes to the log only.
fn retryable(message: &str) -> Response {
    tracing::warn!(error = %message, "forward failed");
    let mut r = error(&IngressError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "forward_failed",
        "the event could not be forwarded; retry later",
    ));
    r.headers_mut().insert("retry-after", 1.into());
    r
}

/// Knative: the event goes on unchanged, headers and body as received.
async fn to_sink(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: bytes::Bytes,
    span: &relay_core::otel::Context,
) -> Response {
    let mut forwarded = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        if name.starts_with("ce-") || name == "content-type" {
            forwarded.append(k, v.clone());
        }
    }
    // The hop's own context; the event's origin stays in its extension.
    relay_core::otel::inject(span, &mut forwarded);
    let req = client.post(url).body(body).headers(forwarded);
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            axum::Json(json!({"outcome": "forwarded"})).into_response()
        }
        Ok(r) if r.status().is_client_error() => {
            tracing::warn!(status = %r.status(), "the sink refused the event");
            error(&IngressError::new(
                StatusCode::BAD_REQUEST,
                "sink_rejected",
                format!("the sink refused the event: {}", r.status()),
            ))
        }
        Ok(r) => retryable(&format!("the sink answered {}", r.status())),
        Err(e) => retryable(&format!("the sink is unreachable: {}", e.without_url())),
    }
}

/// Serves as the ingress function until stopped: HTTP on `$PORT`
/// (Knative, onto `K_SINK`), or the Lambda runtime behind a Function URL
/// (onto EventBridge).
pub async fn serve() -> Result<(), String> {
    // Read once: the ingress keeps the auth and limits it started with.
    let cfg = relay_core::runtime::load_config_once(None)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    if let Some(Err((path, msg))) = cfg.settings.inbound_auth.as_ref().map(|a| a.check_config()) {
        return Err(format!("invalid config: spec.inboundAuth{path}: {msg}"));
    }
    let mut ingress = Ingress::from_env(
        cfg.settings.inbound_auth.clone(),
        cfg.settings.limits.max_body_bytes,
    )
    .await?;
    ingress.inbound_limit = cfg.settings.limits.inbound_per_source.clone();
    if matches!(ingress.forward, Forward::EventBridge { .. }) {
        ingress.routes = Routes::compile(&cfg).map_err(|e| format!("invalid config:\n{e}"))?;
        if cfg.notifications.is_empty() {
            tracing::warn!("no Notifications in the config: no event will be put on the bus");
        }
    }
    let has_auth = relay_core::runtime::guards_events(ingress.auth.as_ref());
    let on_lambda = relay_core::lambda::on_lambda();
    // A Function URL is public: there is no network to keep senders out,
    // so no switch opens it.
    if on_lambda && !has_auth {
        return Err("refusing to start on Lambda without spec.inboundAuth: the Function URL is public. Set spec.inboundAuth (bearerTokenFile, hmacSecretFile or jwt; fluxHmacSecretFile alone leaves CloudEvents open)".into());
    }
    let ingress = Arc::new(ingress);
    let router = router(ingress.clone());
    if on_lambda {
        // After each request: its metrics as EMF lines, its spans exported.
        let emf = Arc::new(relay_core::emf::Emf::from_env());
        let router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let (ingress, emf) = (ingress.clone(), emf.clone());
                async move {
                    let answer = next.run(req).await;
                    relay_core::lambda::after_invocation(&emf, &ingress.metrics).await;
                    answer
                }
            },
        ));
        return lambda_http::run(router).await.map_err(|e| e.to_string());
    }
    let (listener, _door) = relay_core::runtime::bind_checked(
        &relay_core::runtime::listen_addr(None),
        has_auth,
        relay_core::runtime::insecure_no_auth_env()?,
        "RELAY_INSECURE_NO_AUTH=true",
        &ingress.metrics,
    )
    .await?;
    relay_core::runtime::serve_router_with(
        router,
        listener,
        std::time::Duration::from_secs(30),
        relay_core::runtime::ConnectionLimits::from_settings(&cfg.settings.limits),
    )
    .await
    .map_err(|e| e.to_string())
}
