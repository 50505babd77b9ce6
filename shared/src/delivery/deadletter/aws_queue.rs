//! What the relay's SQS dead-letter queue holds on AWS, read for
//! `relay dlq list|replay --sqs`. Three kinds of message reach it:
//!
//! - the relay's dead letters ([`DeadLetterEntry`]): one Notification of an
//!   event failed for good, and the function wrote it (the invocation
//!   succeeded);
//! - Lambda's invocation records, from the on-failure destination: an
//!   invocation failed (a retryable failure, a timeout, a crash) until
//!   Lambda's retries ran out or the event grew too old. The record holds
//!   the EventBridge event the function got (`requestPayload`), unless
//!   Lambda dropped it as too large for the queue;
//! - the event alone, as Lambda's own dead-letter queue (a function's
//!   `DeadLetterConfig`) sends it, its error in message attributes.
//!
//! Anything else is malformed: listed with the reason, and never deleted.
//! Every message says whether it can be replayed and, when so, what goes
//! back on the bus ([`Replay`]).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DeadLetterEntry, SinkError};
use crate::event::decode::{self, Decoded};

/// The most messages one listing or replay reads; past it the rest stay
/// untouched (and the answer says so).
pub const MAX_MESSAGES: usize = 10_000;

/// Lambda's record of an asynchronous invocation (its documented format,
/// "Capturing records of Lambda asynchronous invocations").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub version: String,
    pub timestamp: String,
    pub request_context: RequestContext,
    /// The event the function got; absent (or null) when Lambda dropped it
    /// for size.
    #[serde(default)]
    pub request_payload: Option<Value>,
    #[serde(default)]
    pub response_context: Option<ResponseContext>,
    /// The function's error document (`errorType`, `errorMessage`).
    #[serde(default)]
    pub response_payload: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub request_id: String,
    pub function_arn: String,
    /// `RetriesExhausted`, `EventAgeExceeded` (or `Success` on a success
    /// destination).
    pub condition: String,
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub executed_version: Option<String>,
    /// `Handled` or `Unhandled`.
    #[serde(default)]
    pub function_error: Option<String>,
}

impl InvocationRecord {
    /// The function's name, from its ARN (`…:function:<name>[:<qualifier>]`).
    pub fn function(&self) -> String {
        let arn = &self.request_context.function_arn;
        arn.split(":function:")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or(arn)
            .to_string()
    }

    /// Why the invocation is here: the condition, the attempts and the
    /// function's error.
    pub fn cause(&self) -> String {
        let rc = &self.request_context;
        let mut cause = format!(
            "{} after {} attempt{}",
            rc.condition,
            rc.approximate_invoke_count,
            if rc.approximate_invoke_count == 1 {
                ""
            } else {
                "s"
            }
        );
        let field = |k: &str| {
            self.response_payload
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
        };
        match (field("errorType"), field("errorMessage")) {
            (Some(t), Some(m)) => cause.push_str(&format!(": {t}: {m}")),
            (None, Some(m)) => cause.push_str(&format!(": {m}")),
            (Some(t), None) => cause.push_str(&format!(": {t}")),
            (None, None) => {
                if let Some(e) = self
                    .response_context
                    .as_ref()
                    .and_then(|c| c.function_error.as_deref())
                {
                    cause.push_str(&format!(": {e} error"));
                }
            }
        }
        cause
    }
}

/// What one message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Entry(Box<DeadLetterEntry>),
    Record(Box<InvocationRecord>),
    /// An event from Lambda's own dead-letter queue, and its error message.
    Event {
        event: Value,
        error: Option<String>,
    },
    /// Not any of these: why.
    Malformed(String),
}

/// One message of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub message_id: String,
    /// To delete it, or make it visible again.
    pub receipt: String,
    /// When SQS took it (RFC 3339), for the order of the listing.
    pub sent_at: Option<String>,
    pub body: Body,
}

/// What a replay puts back on the event bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The event as the function got it: its own source and detail-type.
    Event {
        source: String,
        detail_type: String,
        detail: Value,
    },
    /// A dead letter's event, marked for its Notification (`redrive`), under
    /// the detail-type the ingress gives it; the source is the bus's.
    Marked {
        notification: String,
        detail_type: String,
        detail: Value,
    },
}

/// Reads one message body; `error` is Lambda's `ErrorMessage` attribute.
pub fn classify(body: &str, error: Option<String>) -> Body {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Body::Malformed(format!("not JSON: {e}")),
    };
    if !v.is_object() {
        return Body::Malformed("not a JSON object".into());
    }
    if v.get("requestContext").is_some() && v.get("version").is_some() {
        return match serde_path_to_error::deserialize::<_, InvocationRecord>(v) {
            Ok(r) => Body::Record(Box::new(r)),
            Err(e) => Body::Malformed(format!("an invocation record, but {e}")),
        };
    }
    if v.get("notification").is_some() && v.get("cause").is_some() {
        return match serde_path_to_error::deserialize::<_, DeadLetterEntry>(v) {
            Ok(e) => Body::Entry(Box::new(e)),
            Err(e) => Body::Malformed(format!("a dead-letter entry, but {e}")),
        };
    }
    if decode::wrappers::is_eventbridge(&v) && v.get("source").is_some() {
        return Body::Event { event: v, error };
    }
    Body::Malformed(
        "neither a dead-letter entry, an invocation record nor an EventBridge event".into(),
    )
}

/// The event's id and type, of a structured CloudEvent.
fn id_and_type(ce: Option<&Value>) -> (Option<String>, Option<String>) {
    let get = |k: &str| {
        ce.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (get("id"), get("type"))
}

/// `payload` as it goes back on the bus, if it is an EventBridge event.
fn eventbridge_replay(payload: Option<&Value>) -> Result<Replay, String> {
    let Some(p) = payload.filter(|p| !p.is_null()) else {
        return Err("Lambda dropped the event from the record (over the destination's size limit); find it by the request id in the function's log".into());
    };
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    match (text("source"), text("detail-type"), p.get("detail")) {
        (Some(source), Some(detail_type), Some(detail)) if detail.is_object() => {
            Ok(Replay::Event {
                source,
                detail_type,
                detail: detail.clone(),
            })
        }
        _ => Err("the event is not an EventBridge event (source, detail-type, detail)".into()),
    }
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Entry(_) => "dead-letter",
            Body::Record(_) => "invocation-record",
            Body::Event { .. } => "lambda-dead-letter",
            Body::Malformed(_) => "malformed",
        }
    }

    /// What to put back on the bus, or why nothing can be.
    pub fn replay(&self) -> Result<Replay, String> {
        match self {
            Body::Entry(e) => entry_replay(e),
            Body::Record(r) => eventbridge_replay(r.request_payload.as_ref()),
            Body::Event { event, .. } => eventbridge_replay(Some(event)),
            Body::Malformed(why) => Err(why.clone()),
        }
    }
}

fn entry_replay(e: &DeadLetterEntry) -> Result<Replay, String> {
    if e.truncated.is_some() {
        return Err("kept without its event's data (over the per-entry size cap)".into());
    }
    if e.unknown_destination {
        return Err("its destination was not a known subscriber".into());
    }
    let ce = decode::wrappers::structured(e.event.clone())
        .map_err(|err| format!("its event is no CloudEvent: {err}"))?;
    let detail_type = match decode::decode_cloudevent(&ce) {
        Ok(Decoded::Run(ev)) => ev.event_type,
        Ok(Decoded::Ignored { event_type }) => {
            return Err(format!("no decoder takes its type {event_type:?} any more"));
        }
        Err(err) => return Err(format!("its event does not decode: {err}")),
    };
    let mut detail = e.event.clone();
    crate::delivery::redrive::mark(&mut detail, &e.notification, e.replays.saturating_add(1));
    Ok(Replay::Marked {
        notification: e.notification.clone(),
        detail_type,
        detail,
    })
}

/// One line of `relay dlq list --sqs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// `dead-letter`, `invocation-record`, `lambda-dead-letter` or `malformed`.
    pub kind: &'static str,
    pub message_id: String,
    /// A dead letter's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function: a Lambda function's name, or a dead letter's provider type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    pub cause: String,
    /// A dead letter's replays so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replays: Option<u32>,
    pub replayable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_replayable: Option<String>,
}

impl QueueMessage {
    /// Whether `--id` selects it: a dead letter's id, or the message id.
    pub fn has_id(&self, id: &str) -> bool {
        self.message_id == id || matches!(&self.body, Body::Entry(e) if e.id == id)
    }

    pub fn listed(&self) -> Listed {
        let replay = self.body.replay();
        let mut l = Listed {
            kind: self.body.kind(),
            message_id: self.message_id.clone(),
            id: None,
            function: None,
            notification: None,
            event_id: None,
            event_type: None,
            failed_at: self.sent_at.clone(),
            cause: String::new(),
            replays: None,
            replayable: replay.is_ok(),
            not_replayable: replay.err(),
        };
        match &self.body {
            Body::Entry(e) => {
                (l.event_id, l.event_type) = id_and_type(Some(&e.event));
                l.id = Some(e.id.clone());
                l.function = Some(e.provider_type.clone());
                l.notification = Some(e.notification.clone());
                l.failed_at = Some(e.failed_at.clone());
                let status = e.cause.status.map(|s| format!(" {s}")).unwrap_or_default();
                let kind = match e.cause.kind {
                    super::CauseKind::Permanent => "permanent",
                    super::CauseKind::RetriesExhausted => "retries exhausted",
                };
                l.cause = format!("{kind}{status}: {}", e.cause.message);
                l.replays = Some(e.replays);
            }
            Body::Record(r) => {
                let detail = r.request_payload.as_ref().and_then(|p| p.get("detail"));
                (l.event_id, l.event_type) = id_and_type(detail);
                l.function = Some(r.function());
                l.failed_at = Some(r.timestamp.clone());
                l.cause = r.cause();
            }
            Body::Event { event, error } => {
                (l.event_id, l.event_type) = id_and_type(event.get("detail"));
                l.cause = error
                    .clone()
                    .unwrap_or_else(|| "failed (Lambda's dead-letter queue)".into());
            }
            Body::Malformed(why) => l.cause = why.clone(),
        }
        l
    }
}

/// The queue, read and emptied message by message.
pub struct AwsQueue {
    client: Client,
    url: String,
}

fn err(e: impl std::error::Error + 'static) -> SinkError {
    SinkError(DisplayErrorContext(e).to_string())
}

impl AwsQueue {
    /// `sqs://…` or the queue URL; credentials, region and endpoint
    /// (`AWS_ENDPOINT_URL`) from the environment.
    pub async fn open(url: &str) -> Result<AwsQueue, String> {
        let url = if url.starts_with("sqs://") {
            url.to_string()
        } else {
            format!("sqs://{url}")
        };
        let queue_url = super::sqs::queue_url(&url)?;
        let conf = crate::event::config::aws::loader().load().await;
        Ok(AwsQueue::from_conf(&conf, &queue_url))
    }

    pub fn from_conf(conf: &aws_config::SdkConfig, queue_url: &str) -> AwsQueue {
        AwsQueue {
            client: Client::new(conf),
            url: queue_url.to_string(),
        }
    }

    /// Every message (at most [`MAX_MESSAGES`]; `true` when there were
    /// more), each hidden from other readers for `hide_seconds`: give each
    /// back with [`AwsQueue::release`] or take it with [`AwsQueue::delete`].
    /// Oldest first.
    pub async fn receive_all(
        &self,
        hide_seconds: i32,
    ) -> Result<(Vec<QueueMessage>, bool), SinkError> {
        let mut all = Vec::new();
        let mut more = false;
        loop {
            if all.len() >= MAX_MESSAGES {
                more = true;
                break;
            }
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .visibility_timeout(hide_seconds)
                // Long polling asks every SQS server, so an empty answer
                // means an empty queue (short polling samples some).
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(err)?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let Some(receipt) = m.receipt_handle else {
                    continue;
                };
                let error = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("ErrorMessage"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                let sent_at = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|ms| ms.parse::<i64>().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                all.push(QueueMessage {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt,
                    sent_at,
                    body: classify(m.body.as_deref().unwrap_or_default(), error),
                });
            }
        }
        all.sort_by_cached_key(|m| m.listed().failed_at);
        Ok((all, more))
    }

    /// Makes a message visible again at once.
    pub async fn release(&self, m: &QueueMessage) -> Result<(), SinkError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&m.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn delete(&self, m: &QueueMessage) -> Result<(), SinkError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&m.receipt)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure example of Lambda's documentation, with an EventBridge
    /// event as the request.
    fn record(payload: Value) -> String {
        serde_json::json!({
            "version": "1.0",
            "timestamp": "2019-11-14T18:16:05.568Z",
            "requestContext": {
                "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:tekton-relay-github:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": payload,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "RetryableDeliveryFailure", "errorMessage": "retryable delivery failure: gh: answered 503"}
        })
        .to_string()
    }

    fn eventbridge() -> Value {
        serde_json::json!({
            "version": "0", "id": "ev-1", "detail-type": "dev.tekton.event.pipelinerun.failed.v1",
            "source": "tekton.relay", "account": "123456789012", "time": "2024-05-16T00:48:58Z",
            "region": "us-east-1", "resources": [],
            "detail": {
                "specversion": "1.0", "id": "ce-1", "type": "dev.tekton.event.pipelinerun.failed.v1",
                "source": "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/p",
                "datacontenttype": "application/json",
                "data": {"pipelineRun": {"metadata": {"name": "p", "namespace": "ci", "uid": "u1"},
                    "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]}}}
            }
        })
    }

    fn message(body: Body) -> QueueMessage {
        QueueMessage {
            message_id: "m1".into(),
            receipt: "r1".into(),
            sent_at: Some("2024-01-01T00:00:00.000Z".into()),
            body,
        }
    }

    #[test]
    fn an_invocation_record_lists_its_function_event_and_cause_and_replays_its_event() {
        let body = classify(&record(eventbridge()), None);
        let l = message(body.clone()).listed();
        assert_eq!(l.kind, "invocation-record");
        assert_eq!(l.function.as_deref(), Some("tekton-relay-github"));
        assert_eq!(
            (l.event_id.as_deref(), l.event_type.as_deref()),
            (Some("ce-1"), Some("dev.tekton.event.pipelinerun.failed.v1"))
        );
        assert_eq!(
            l.cause,
            "RetriesExhausted after 3 attempts: RetryableDeliveryFailure: retryable delivery failure: gh: answered 503"
        );
        assert_eq!(l.failed_at.as_deref(), Some("2019-11-14T18:16:05.568Z"));
        assert!(l.replayable);
        let eb = eventbridge();
        assert_eq!(
            body.replay(),
            Ok(Replay::Event {
                source: "tekton.relay".into(),
                detail_type: "dev.tekton.event.pipelinerun.failed.v1".into(),
                detail: eb["detail"].clone()
            })
        );
    }

    #[test]
    fn a_record_without_its_event_is_listed_but_not_replayable() {
        for payload in [Value::Null, serde_json::json!({"ORDER_IDS": ["x"]})] {
            let l = message(classify(&record(payload), None)).listed();
            assert_eq!(l.kind, "invocation-record");
            assert!(!l.replayable);
            assert!(l.not_replayable.is_some());
        }
        let mut r: Value = serde_json::from_str(&record(Value::Null)).unwrap();
        r.as_object_mut().unwrap().remove("requestPayload");
        r["requestContext"]["condition"] = "EventAgeExceeded".into();
        r["requestContext"]["approximateInvokeCount"] = 1.into();
        r.as_object_mut().unwrap().remove("responsePayload");
        let l = message(classify(&r.to_string(), None)).listed();
        assert_eq!(l.cause, "EventAgeExceeded after 1 attempt: Unhandled error");
        assert!(l.not_replayable.unwrap().contains("dropped"));
    }

    #[test]
    fn a_dead_letter_replays_its_event_marked_for_its_notification() {
        let mut entry = super::super::dead_letter(
            "dl-1",
            "gh-status",
            401,
            "answered 401",
            eventbridge()["detail"].clone(),
        );
        entry.replays = 2;
        let body = classify(&serde_json::to_string(&entry).unwrap(), None);
        let l = message(body.clone()).listed();
        assert_eq!(
            (l.kind, l.id.as_deref(), l.notification.as_deref()),
            ("dead-letter", Some("dl-1"), Some("gh-status"))
        );
        assert_eq!(l.function.as_deref(), Some("webhook"));
        assert_eq!(l.cause, "permanent 401: answered 401");
        assert_eq!(l.replays, Some(2));
        let Ok(Replay::Marked {
            notification,
            detail_type,
            detail,
        }) = body.replay()
        else {
            panic!("{:?}", body.replay());
        };
        assert_eq!(notification, "gh-status");
        assert_eq!(detail_type, "dev.tekton.event.pipelinerun.failed.v1");
        assert_eq!(detail["relayreplay"], "gh-status");
        assert_eq!(detail["relayreplays"], 3);
        assert!(message(body).has_id("dl-1"));

        entry.truncated = Some(super::super::Truncated {
            original_bytes: 1 << 20,
        });
        let l = message(classify(&serde_json::to_string(&entry).unwrap(), None)).listed();
        assert!(!l.replayable && l.not_replayable.unwrap().contains("size cap"));
    }

    #[test]
    fn lambdas_own_dead_letter_queue_holds_the_event() {
        let body = classify(
            &eventbridge().to_string(),
            Some("retryable delivery failure".into()),
        );
        let l = message(body.clone()).listed();
        assert_eq!(l.kind, "lambda-dead-letter");
        assert_eq!(l.cause, "retryable delivery failure");
        assert_eq!(l.event_id.as_deref(), Some("ce-1"));
        assert!(matches!(body.replay(), Ok(Replay::Event { .. })));
    }

    #[test]
    fn anything_else_is_malformed_with_the_reason() {
        for (body, why) in [
            ("{not json", "not JSON"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"hello": "world"}"#, "neither"),
            (
                r#"{"version": "1.0", "requestContext": {"requestId": 1}}"#,
                "an invocation record, but requestContext.requestId",
            ),
            (
                r#"{"notification": "n", "cause": {}}"#,
                "a dead-letter entry, but",
            ),
        ] {
            let l = message(classify(body, None)).listed();
            assert_eq!(l.kind, "malformed", "{body}");
            assert!(l.cause.contains(why), "{body}: {}", l.cause);
            assert!(!l.replayable);
        }
    }
}
