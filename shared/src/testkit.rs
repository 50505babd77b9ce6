//! What relay-core's unit tests share (the crate `relay-tests` is the kit
//! of the other crates' tests, but depends on this one).

use http::HeaderMap;

use crate::deadletter::{Cause, CauseKind, DeadLetterEntry};

/// A header map of `(name, value)` pairs.
pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                http::HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

/// The dead letter `id` of a permanent failure (`status`, `message`) of the
/// Notification `notification` of the webhook Provider `hook`, first
/// attempt, never replayed, with `event`.
pub(crate) fn dead_letter(
    id: &str,
    notification: &str,
    status: u16,
    message: &str,
    event: serde_json::Value,
) -> DeadLetterEntry {
    DeadLetterEntry {
        id: id.into(),
        failed_at: "2024-01-01T00:00:00Z".into(),
        notification: notification.into(),
        provider: "hook".into(),
        provider_type: "webhook".into(),
        cause: Cause {
            kind: CauseKind::Permanent,
            status: Some(status),
            message: message.into(),
        },
        attempts: 1,
        replays: 0,
        event,
        truncated: None,
        unknown_destination: false,
    }
}
