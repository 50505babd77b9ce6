//! The Lambda host: the same engine behind the Lambda Runtime API. Accepted
//! events: EventBridge envelopes (`detail` = the structured CloudEvent) and
//! SQS batches (partial batch responses). A retryable failure is an error, so
//! Lambda retries and then hands the event to the on-failure destination; a
//! permanent failure is dead-lettered (to SQS) by the engine and succeeds.
//! An event marked for one Notification (a dead letter replayed onto the
//! bus, `redrive`) runs that Notification only. A config in SSM or S3 is
//! checked at the start of an invocation once its TTL has passed
//! (`remote_config`).

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::Instrument;

use crate::delivery::engine::{EventResult, Mode};
use crate::delivery::original::Original;
use crate::delivery::provider::Registry;
use crate::delivery::redrive;
use crate::event::decode::{self, Decoded, wrappers};
use crate::host::remote_config::Refresh;
use crate::host::server::App;

/// Why an invocation failed; Lambda retries it.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("retryable delivery failure: {0}")]
    Retryable(String),
    /// Nothing here can decode it; failing keeps it (retries, then the
    /// on-failure destination) rather than dropping it.
    #[error("cannot decode the invocation: {0}")]
    Undecodable(String),
}

fn failures(r: &EventResult) -> String {
    r.deliveries
        .iter()
        .filter_map(|d| Some(format!("{}: {}", d.notification, d.detail.as_deref()?)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs one CloudEvent through the engine: all its Notifications, or, when
/// it is a dead letter's event marked for one (`redrive`), that one.
async fn process_cloudevent(
    app: &App,
    mut ce: cloudevents::Event,
) -> Result<EventResult, InvocationError> {
    let mark = redrive::take(&mut ce).map_err(InvocationError::Undecodable)?;
    let engine = app.engine();
    let metrics = &engine.metrics;
    match decode::decode_cloudevent(&ce).map_err(|e| InvocationError::Undecodable(e.to_string()))? {
        Decoded::Ignored { event_type } => {
            metrics.events_received.with_label_values(&["other"]).inc();
            tracing::info!(%event_type, "ignored");
            Ok(EventResult {
                outcome: crate::delivery::engine::Outcome::Ignored,
                deliveries: Vec::new(),
                retry_after: None,
            })
        }
        Decoded::Run(ev) => {
            metrics
                .events_received
                .with_label_values(&[crate::delivery::metrics::event_type_label(&ev.event_type)])
                .inc();
            let span = tracing::info_span!("event", ce_id = %ev.event_id, ce_type = %ev.event_type,
                run = %ev.display_name(), state = %ev.state, trace_id = tracing::field::Empty,
                replay = mark.as_ref().map(|m| m.notification.as_str()));
            let mode = match &mark {
                Some(m) => Mode::Redrive {
                    notification: &m.notification,
                    replays: m.replays,
                },
                None => Mode::Live,
            };
            // The span is entered for each poll, not held across the await
            // (an `enter()` guard would stay on this thread while another
            // task runs there, and be left on the wrong one).
            let r = async {
                let r = engine
                    .process(*ev, &Original::CloudEvent(Box::new(ce)), mode)
                    .await;
                tracing::info!(outcome = r.outcome.as_str(), "event processed");
                r
            }
            .instrument(span)
            .await;
            if r.retry_after.is_some() {
                return Err(InvocationError::Retryable(failures(&r)));
            }
            Ok(r)
        }
    }
}

pub fn is_sqs_batch(v: &Value) -> bool {
    v.get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// Handles one invocation payload.
pub async fn handle(app: &App, payload: Value) -> Result<Value, InvocationError> {
    if is_sqs_batch(&payload) {
        let records = wrappers::from_sqs_batch(&payload)
            .map_err(|e| InvocationError::Undecodable(e.to_string()))?;
        let mut failed = Vec::new();
        for rec in records {
            let ok = match rec.event {
                Ok(ce) => match process_cloudevent(app, ce).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(message_id = %rec.message_id, error = %e, "SQS record failed");
                        false
                    }
                },
                Err(e) => {
                    tracing::error!(message_id = %rec.message_id, error = %e, "SQS record does not decode");
                    false
                }
            };
            if !ok {
                failed.push(json!({"itemIdentifier": rec.message_id}));
            }
        }
        return Ok(json!({"batchItemFailures": failed}));
    }
    if wrappers::is_eventbridge(&payload) {
        let ce = wrappers::from_eventbridge(&payload)
            .map_err(|e| InvocationError::Undecodable(e.to_string()))?;
        let r = process_cloudevent(app, ce).await?;
        return Ok(serde_json::to_value(&r).unwrap_or(Value::Null));
    }
    Err(InvocationError::Undecodable(
        "expected an EventBridge event or an SQS batch".into(),
    ))
}

/// Serves invocations until the runtime stops the process.
/// After each invocation its metrics go out as EMF log lines and its spans
/// are exported, before Lambda freezes the sandbox.
/// With `refresh`, a config in SSM or S3 is checked at the start of an
/// invocation once its TTL has passed (`remote_config`).
pub async fn run(
    app: crate::host::server::SharedApp,
    refresh: Option<Arc<(Refresh, Registry)>>,
) -> Result<(), String> {
    let emf = Arc::new(crate::host::emf::Emf::from_env());
    app.engine().metrics.keep_duration_samples();
    let handler = lambda_runtime::service_fn(move |ev: lambda_runtime::LambdaEvent<Value>| {
        let app = app.clone();
        let emf = emf.clone();
        let refresh = refresh.clone();
        async move {
            if let Some(r) = refresh.as_deref() {
                r.0.if_due(&app, &r.1).await;
            }
            let result = handle(&app, ev.payload).await;
            after_invocation(&emf, &app.engine().metrics).await;
            result
        }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| e.to_string())
}

/// Writes the invocation's metrics as EMF and exports its spans.
pub async fn after_invocation(
    emf: &crate::host::emf::Emf,
    metrics: &crate::delivery::metrics::Metrics,
) {
    emf.flush(metrics);
    let _ = tokio::task::spawn_blocking(crate::delivery::otel::flush).await;
}

/// Is this process running under the Lambda Runtime API?
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        let error_type = match e {
            InvocationError::Retryable(_) => "RetryableDeliveryFailure",
            InvocationError::Undecodable(_) => "UndecodableInvocation",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}
