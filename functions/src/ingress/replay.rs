//! `relay dlq replay --sqs`: every failure on the AWS dead-letter queue goes
//! back on the EventBridge bus, to run in AWS with AWS's credentials (the
//! operator needs `sqs:ReceiveMessage`, `sqs:DeleteMessage`,
//! `sqs:ChangeMessageVisibility` and `events:PutEvents`, no provider
//! secret).
//!
//! - An invocation record (or an event from Lambda's own dead-letter
//!   queue): the event the function got, with its own source, detail-type
//!   and detail, as the ingress put it. Every provider function gets it
//!   again; the idempotency keys make what was delivered post nothing.
//! - A dead letter: its event, marked for the one Notification that failed
//!   (`relay_core::redrive`), under the detail-type the ingress gives it
//!   and `--source`. The function with that Notification runs it alone.
//!
//! What went on the bus is deleted from the queue; the rest (malformed, not
//! replayable, refused by EventBridge) stays, and the summary says why.

use relay_core::deadletter::aws_queue::{AwsQueue, Replay};
use serde::Serialize;

use super::put_event;

/// What became of one message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Replayed {
    pub message_id: String,
    pub kind: &'static str,
    /// A dead letter's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `replayed` (on the bus, deleted from the queue) or `kept`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Summary {
    /// Messages tried (those `--id` selects, else all).
    pub replayed: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// More messages than one run reads were on the queue: run it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    pub messages: Vec<Replayed>,
}

/// Where replayed events go.
pub struct Bus {
    pub client: aws_sdk_eventbridge::Client,
    pub name: String,
    /// The source of a dead letter's event (the ingress's `RELAY_EVENT_SOURCE`).
    pub source: String,
    /// The Notifications the functions serve, when known (`--config`): a
    /// dead letter of another one stays on the queue rather than going
    /// where no function acts on it.
    pub notifications: Option<Vec<String>>,
}

/// How long a message is hidden while a replay holds it.
const HOLD_SECONDS: i32 = 300;

/// Replays the messages of `queue` that `ids` names (all when empty).
pub async fn replay(queue: &AwsQueue, bus: &Bus, ids: &[String]) -> Result<Summary, String> {
    let (messages, more) = queue
        .receive_all(HOLD_SECONDS)
        .await
        .map_err(|e| e.to_string())?;
    let mut summary = Summary {
        more,
        ..Summary::default()
    };
    for m in messages {
        if !ids.is_empty() && !ids.iter().any(|id| m.has_id(id)) {
            release(queue, &m).await;
            continue;
        }
        summary.replayed += 1;
        let id = match &m.body {
            relay_core::deadletter::aws_queue::Body::Entry(e) => Some(e.id.clone()),
            _ => None,
        };
        let put = match m.body.replay() {
            Err(why) => Err(format!("not replayable: {why}")),
            Ok(Replay::Event {
                source,
                detail_type,
                detail,
            }) => put_event(&bus.client, &bus.name, &source, &detail_type, detail)
                .await
                .map_err(|e| e.to_string()),
            Ok(Replay::Marked { notification, .. })
                if bus
                    .notifications
                    .as_ref()
                    .is_some_and(|known| !known.contains(&notification)) =>
            {
                Err(format!(
                    "not replayable: the config has no Notification {notification:?}"
                ))
            }
            Ok(Replay::Marked {
                detail_type,
                detail,
                ..
            }) => put_event(&bus.client, &bus.name, &bus.source, &detail_type, detail)
                .await
                .map_err(|e| e.to_string()),
        };
        let (outcome, detail) = match put {
            Ok(_) => match queue.delete(&m).await {
                Ok(()) => ("replayed", None),
                // On the bus, and still on the queue: a second replay is
                // harmless (the idempotency keys), so it is reported, not undone.
                Err(e) => (
                    "kept",
                    Some(format!(
                        "put on the bus, but not deleted from the queue: {e}"
                    )),
                ),
            },
            Err(why) => {
                release(queue, &m).await;
                ("kept", Some(why))
            }
        };
        if outcome == "replayed" {
            summary.succeeded += 1;
        } else {
            summary.failed += 1;
        }
        tracing::info!(message_id = %m.message_id, kind = m.body.kind(), outcome,
            detail = detail.as_deref().unwrap_or(""), "dead-letter queue message");
        summary.messages.push(Replayed {
            message_id: m.message_id.clone(),
            kind: m.body.kind(),
            id,
            outcome,
            detail,
        });
    }
    Ok(summary)
}

/// Visible again at once; if that fails it is visible when its hold ends.
async fn release(queue: &AwsQueue, m: &relay_core::deadletter::aws_queue::QueueMessage) {
    if let Err(e) = queue.release(m).await {
        tracing::warn!(message_id = %m.message_id, error = %e,
            "cannot make the message visible again; it is when its hold ends");
    }
}
