//! The Knative dead-letter function (the Broker's `deadLetterSink`). Each
//! dead-lettered event is kept with its decoded `knativeerrorcode`,
//! `knativeerrordest` and `knativeerrordata`; the dead-letter API of
//! DESIGN.md lists them, and replay re-sends each to the subscriber that
//! failed (its function's idempotency keeps succeeded Notifications from
//! repeating).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use relay_core::auth::InboundAuth;
use relay_core::deadletter::{Cause, CauseKind, DeadLetterEntry, DeadLetterSink};
use relay_core::decode::wrappers;
use relay_core::ingress::{self, Inbound, IngressError};
use relay_core::metrics::Metrics;
use relay_core::server::{auth_check, error};
use serde::Deserialize;
use serde_json::json;

pub struct DeadLetters {
    pub sink: Arc<dyn DeadLetterSink>,
    pub auth: Option<InboundAuth>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
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

/// The entry for one dead-lettered delivery.
pub fn entry_for(mut ce: cloudevents::Event) -> DeadLetterEntry {
    let k = wrappers::knative_error(&ce);
    // Keep the event as it was first sent: the error is in the cause.
    for name in ["knativeerrorcode", "knativeerrordest", "knativeerrordata"] {
        ce.remove_extension(name);
    }
    let dest = k.as_ref().and_then(|k| k.dest.clone()).unwrap_or_default();
    DeadLetterEntry {
        id: uuid::Uuid::new_v4().to_string(),
        failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        notification: "*".into(),
        provider_type: function_of(&dest),
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
    }
}

async fn authorized(
    dl: &DeadLetters,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    match &dl.auth {
        Some(a) => {
            let entry = relay_core::auth::Entry::Api;
            auth_check(a, entry, method, uri, headers, body, &dl.metrics).await
        }
        None => Ok(()),
    }
}

async fn receive(State(dl): State<Arc<DeadLetters>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, dl.max_body_bytes).await else {
        return error(&IngressError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body over the limit",
        ));
    };
    let mut ce = match ingress::parse_request(&parts.headers, bytes) {
        Ok(Inbound::CloudEvent(ce)) => *ce,
        Ok(Inbound::Flux { .. }) => {
            return error(&IngressError::new(
                StatusCode::BAD_REQUEST,
                "not_a_cloudevent",
                "expected a CloudEvent",
            ));
        }
        Err(e) => return error(&e),
    };
    // The Broker sends the trace context as a header; kept in the event, a
    // replay continues the trace.
    ingress::adopt_trace_headers(&mut ce, &parts.headers);
    let entry = entry_for(ce);
    match dl.sink.put(&entry).await {
        Ok(()) => {
            dl.metrics
                .dead_letters
                .with_label_values(&[&entry.provider_type])
                .inc();
            tracing::warn!(id = %entry.id, subscriber = %entry.provider, cause = %entry.cause.message, "dead letter kept");
            // Never a CloudEvent body: the Broker would take it as a reply.
            (StatusCode::ACCEPTED, axum::Json(json!({"id": entry.id}))).into_response()
        }
        // The Broker retries the dead-letter sink too: nothing is lost.
        Err(e) => {
            dl.metrics.dead_letter_errors.inc();
            error(&IngressError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dead_letter_store",
                e.to_string(),
            ))
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
    if let Err(r) = authorized(&dl, &method, &uri, &headers, b"").await {
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

/// Re-sends an entry's event (structured mode) to the subscriber that failed.
async fn resend(dl: &DeadLetters, e: &DeadLetterEntry) -> bool {
    if e.provider.is_empty() {
        return false;
    }
    let sent = dl
        .client
        .post(&e.provider)
        .header("content-type", "application/cloudevents+json")
        .body(e.event.to_string())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!(id = %e.id, status = %r.status(), "replay refused");
            false
        }
        Err(err) => {
            tracing::warn!(id = %e.id, error = %err.without_url(), "replay failed");
            false
        }
    }
}

async fn replay(
    State(dl): State<Arc<DeadLetters>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(r) = authorized(&dl, &method, &uri, &headers, &body).await {
        return r;
    }
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(&IngressError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    e.to_string(),
                ));
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
    for mut e in entries {
        if req.ids.as_ref().is_some_and(|ids| !ids.contains(&e.id)) {
            continue;
        }
        replayed += 1;
        let ok = resend(&dl, &e).await;
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
    axum::Json(json!({"replayed": replayed, "succeeded": succeeded, "failed": failed}))
        .into_response()
}

async fn remove(
    State(dl): State<Arc<DeadLetters>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&dl, &method, &uri, &headers, b"").await {
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
}
