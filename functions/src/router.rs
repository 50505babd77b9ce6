//! The router function: wakes only the provider functions with work.
//!
//! On Knative every event reaches the Broker (from Tekton directly, or
//! through the ingress). The router's Trigger takes each event once; the
//! router evaluates every Notification's filter and answers with the same
//! event as a reply, carrying one extension attribute per provider function
//! that has a Notification wanting it (`relaygithub: "true"`, see
//! [`route_attribute`]) and `relayrouted: "true"`. The Broker puts the reply
//! back on itself, and each provider function's Trigger matches its own
//! attribute exactly, so an event nobody wants wakes no function at all.
//! See docs/design.md, "Routing".

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use relay_core::ingress::{self, Accepted};
use relay_core::server::SharedApp;

/// The attribute a routed event carries; the router's Trigger excludes
/// events that have it, so a reply is never routed twice.
pub const ROUTED_ATTRIBUTE: &str = "relayrouted";

/// The CloudEvent extension attribute that sends an event to the provider
/// function `function`: `relay` and the name's letters and digits
/// (`azure-pipelines` would be `relayazurepipelines`). CloudEvents attribute names
/// are lower-case letters and digits, at most 20 of them by advice; the
/// provider table's names keep within that (checked by a test).
pub fn route_attribute(function: &str) -> String {
    let name: String = function
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("relay{name}")
}

pub fn router(app: SharedApp) -> Router {
    Router::new()
        .route("/", post(route))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(app): State<SharedApp>| async move { app.engine().metrics.render() }),
        )
        .with_state(app)
        .layer(axum::middleware::from_fn(
            relay_core::server::broker_answers,
        ))
}

async fn route(State(app): State<SharedApp>, req: Request) -> Response {
    let engine = app.engine();
    let metrics = &engine.metrics;
    let limit = engine.plan.settings.limits.max_body_bytes;
    let (parts, body) = req.into_parts();
    let bytes = match relay_core::server::read_limited(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let e = e.into_error(limit);
            metrics.requests_rejected.with_label_values(&[e.code]).inc();
            return relay_core::server::body_error(&e);
        }
    };
    if let Err(r) = relay_core::server::authorize(
        &engine,
        relay_core::auth::Entry::Events,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &bytes,
    )
    .await
    {
        return r;
    }
    if routed(&parts.headers, &bytes) {
        // A reply of ours back on the Broker (the Trigger's `not` filter
        // keeps them away where Trigger `filters` are on): never again.
        return StatusCode::ACCEPTED.into_response();
    }
    let (event, original) =
        match ingress::parse_request(&parts.headers, bytes).and_then(ingress::decode) {
            Err(e) => {
                metrics.requests_rejected.with_label_values(&[e.code]).inc();
                tracing::info!(code = e.code, error = %e.message, "request rejected");
                return relay_core::server::error(&e);
            }
            Ok(Accepted::Ignored { event_type }) => {
                tracing::debug!(%event_type, "no decoder takes this type; not routed");
                metrics.events_routed.with_label_values(&["none"]).inc();
                return StatusCode::ACCEPTED.into_response();
            }
            Ok(Accepted::Run { event, original }) => (event, original),
        };
    let wanted = engine.plan.wanted_by(&event);
    if wanted.is_empty() {
        metrics.events_routed.with_label_values(&["none"]).inc();
        tracing::info!(ce_id = %event.event_id, ce_type = %event.event_type, "no Notification wants this event");
        // A 2xx without an event: the Broker delivers nothing further.
        return StatusCode::ACCEPTED.into_response();
    }
    let relay_core::ingress::Original::CloudEvent(ce) = original else {
        // Decoding makes every accepted request a CloudEvent.
        return relay_core::server::error(&relay_core::ingress::IngressError::new(
            StatusCode::BAD_REQUEST,
            "not_a_cloudevent",
            "the router takes CloudEvents",
        ));
    };
    let mut reply = *ce;
    // A sender's own marks steer nothing: only the router's stay.
    for row in crate::PROVIDERS {
        reply.remove_extension(&route_attribute(row.name));
    }
    for function in &wanted {
        metrics.events_routed.with_label_values(&[function]).inc();
        reply.set_extension(&route_attribute(function), "true");
    }
    reply.set_extension(ROUTED_ATTRIBUTE, "true");
    tracing::info!(ce_id = %event.event_id, functions = ?wanted, "routed");
    let body = relay_core::ingress::structured_json(&reply).to_string();
    let mut answer = (StatusCode::OK, body).into_response();
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/cloudevents+json"),
    );
    answer
}

/// Whether the event was routed already: it carries [`ROUTED_ATTRIBUTE`]
/// (a `ce-` header in binary mode, a member in structured mode).
fn routed(headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    if headers.contains_key(format!("ce-{ROUTED_ATTRIBUTE}").as_str()) {
        return true;
    }
    relay_core::ingress::classify(headers) == relay_core::ingress::RequestKind::CloudEventStructured
        && serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v.get(ROUTED_ATTRIBUTE).is_some())
}

/// Serves as the router until stopped: HTTP on `$PORT`, the config from
/// `$RELAY_CONFIG` (the Notifications of every provider function), reloaded
/// when it changes.
pub async fn serve() -> Result<(), String> {
    use relay_core::runtime;
    if relay_core::lambda::on_lambda() {
        return Err("the router is for Knative; on AWS, EventBridge rules route".into());
    }
    let (cfg, keeper) = runtime::load_config_kept(None, false)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    let registry = crate::registry();
    let app = runtime::build_app(&cfg, &registry)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    let listener = runtime::bind_app(
        &app,
        &runtime::listen_addr(None),
        runtime::insecure_no_auth_env()?,
        "RELAY_INSECURE_NO_AUTH=true",
    )
    .await?;
    keeper.start(app.clone(), registry);
    let limits = runtime::ConnectionLimits::from_settings(&app.engine().plan.settings.limits);
    runtime::serve_router_with(
        router(Arc::clone(&app)),
        listener,
        std::time::Duration::from_secs(30),
        limits,
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_a_valid_route_attribute() {
        for row in crate::PROVIDERS {
            let a = route_attribute(row.name);
            assert!(
                a.len() <= 20
                    && a.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{}: {a}",
                row.name
            );
        }
        assert_eq!(route_attribute("Some-Provider_2"), "relaysomeprovider2");
        assert!(ROUTED_ATTRIBUTE.len() <= 20);
    }
}
