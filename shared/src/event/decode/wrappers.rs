//! Delivery wrappers around CloudEvents: EventBridge envelopes, SQS batches,
//! and the `knativeerror*` extensions of Knative dead-lettered deliveries.

use base64::Engine;
use cloudevents::Event;
use serde_json::Value;

use super::DecodeError;

/// An EventBridge event as handed to Lambda: `detail` is the structured CloudEvent.
pub fn from_eventbridge(envelope: &Value) -> Result<Event, DecodeError> {
    let detail = envelope
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| DecodeError::InvalidPayload("EventBridge envelope has no detail".into()))?;
    structured(detail.clone())
}

pub fn is_eventbridge(v: &Value) -> bool {
    v.get("detail-type").is_some() && v.get("detail").is_some()
}

/// One record of an SQS batch: its message id and the CloudEvent (or the
/// decode error, so the caller can report that record alone as failed).
pub struct SqsRecord {
    pub message_id: String,
    pub event: Result<Event, DecodeError>,
}

/// Unwraps a Lambda SQS batch. A record body may be a structured CloudEvent or
/// an EventBridge envelope (an SQS target of an EventBridge rule).
pub fn from_sqs_batch(batch: &Value) -> Result<Vec<SqsRecord>, DecodeError> {
    let records = batch
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| DecodeError::InvalidPayload("SQS batch has no Records".into()))?;
    Ok(records
        .iter()
        .map(|r| {
            let message_id = r
                .get("messageId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let event = r
                .get("body")
                .and_then(Value::as_str)
                .ok_or_else(|| DecodeError::InvalidPayload("SQS record has no body".into()))
                .and_then(|b| {
                    serde_json::from_str::<Value>(b)
                        .map_err(|e| DecodeError::InvalidJson(e.to_string()))
                })
                .and_then(|v| {
                    if is_eventbridge(&v) {
                        from_eventbridge(&v)
                    } else {
                        structured(v)
                    }
                });
            SqsRecord { message_id, event }
        })
        .collect())
}

/// A structured-mode CloudEvent given as JSON.
pub fn structured(v: Value) -> Result<Event, DecodeError> {
    serde_json::from_value(v)
        .map_err(|e| DecodeError::InvalidPayload(format!("not a structured CloudEvent: {e}")))
}

/// What Knative attached to a dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KnativeError {
    pub code: Option<String>,
    pub dest: Option<String>,
    /// `knativeerrordata`, base64-decoded when it is base64.
    pub data: Option<String>,
}

pub fn knative_error(ev: &Event) -> Option<KnativeError> {
    let ext = |name: &str| ev.extension(name).map(|v| v.to_string());
    let (code, dest, data) = (
        ext("knativeerrorcode"),
        ext("knativeerrordest"),
        ext("knativeerrordata"),
    );
    if code.is_none() && dest.is_none() && data.is_none() {
        return None;
    }
    let data = data.map(|d| {
        base64::engine::general_purpose::STANDARD
            .decode(d.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or(d)
    });
    Some(KnativeError { code, dest, data })
}
