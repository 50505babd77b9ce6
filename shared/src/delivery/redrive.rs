//! Re-running one Notification of a dead letter where it failed (AWS): the
//! dead letter's event goes back on the event bus marked with two CloudEvent
//! extension attributes, `relayreplay` (the Notification) and
//! `relayreplays` (how many times it has been replayed). Every provider
//! function gets the event (the rules fan out); a function takes the marks
//! out and runs only that Notification, if it has it (none other does
//! anything), as it runs a live one: a permanent failure is dead-lettered
//! again (with `replays` carried), a retryable one fails the invocation. The
//! idempotency keys make a replay of what was delivered meanwhile post
//! nothing.
//!
//! The marks narrow what an event does and are never kept: the function
//! removes them before it processes (so a new dead letter holds the event
//! as it first came), and the ingress refuses an event that carries them
//! (only an operator with PutEvents on the bus marks events).

use cloudevents::event::ExtensionValue;
use serde_json::Value;

/// The Notification a marked event re-runs.
pub const NOTIFICATION_ATTRIBUTE: &str = "relayreplay";
/// How many times the dead letter was replayed, this time included.
pub const REPLAYS_ATTRIBUTE: &str = "relayreplays";

/// What a marked event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub notification: String,
    pub replays: u32,
}

/// Marks `event` (a structured CloudEvent) to re-run `notification` only,
/// replayed `replays` times with this one.
pub fn mark(event: &mut Value, notification: &str, replays: u32) {
    if let Value::Object(fields) = event {
        fields.insert(NOTIFICATION_ATTRIBUTE.into(), notification.into());
        fields.insert(REPLAYS_ATTRIBUTE.into(), replays.into());
    }
}

/// Whether `ce` carries either mark.
pub fn is_marked(ce: &cloudevents::Event) -> bool {
    ce.extension(NOTIFICATION_ATTRIBUTE).is_some() || ce.extension(REPLAYS_ATTRIBUTE).is_some()
}

/// Takes the marks out of `ce`: `Ok(None)` when it has none; an error when
/// they are not a Notification name and a count.
pub fn take(ce: &mut cloudevents::Event) -> Result<Option<Mark>, String> {
    let notification = ce.remove_extension(NOTIFICATION_ATTRIBUTE);
    let replays = ce.remove_extension(REPLAYS_ATTRIBUTE);
    let Some(notification) = notification else {
        return match replays {
            None => Ok(None),
            Some(_) => Err(format!(
                "{REPLAYS_ATTRIBUTE} without {NOTIFICATION_ATTRIBUTE}"
            )),
        };
    };
    let notification = match notification {
        ExtensionValue::String(s) if !s.is_empty() => s,
        other => {
            return Err(format!(
                "{NOTIFICATION_ATTRIBUTE} is no Notification name: {other}"
            ));
        }
    };
    let replays = match replays {
        None => 1,
        Some(ExtensionValue::Integer(n)) => u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{REPLAYS_ATTRIBUTE} is no count: {n}"))?,
        Some(ExtensionValue::String(s)) => s
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{REPLAYS_ATTRIBUTE} is no count: {s:?}"))?,
        Some(other) => return Err(format!("{REPLAYS_ATTRIBUTE} is no count: {other}")),
    };
    Ok(Some(Mark {
        notification,
        replays,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(extra: Value) -> cloudevents::Event {
        let mut v = serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "/s",
            "type": "dev.tekton.event.pipelinerun.failed.v1", "data": {"x": 1}
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        crate::event::decode::wrappers::structured(v).unwrap()
    }

    #[test]
    fn a_marked_event_round_trips_and_loses_its_marks() {
        let mut v = serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "/s", "type": "t", "data": {"x": 1}
        });
        mark(&mut v, "github-status", 3);
        let mut ce = crate::event::decode::wrappers::structured(v).unwrap();
        assert!(is_marked(&ce));
        assert_eq!(
            take(&mut ce),
            Ok(Some(Mark {
                notification: "github-status".into(),
                replays: 3
            }))
        );
        assert!(!is_marked(&ce));
        let kept = crate::delivery::original::structured_json(&ce);
        assert!(kept.get(NOTIFICATION_ATTRIBUTE).is_none(), "{kept}");
        assert_eq!(kept["data"], serde_json::json!({"x": 1}));
    }

    #[test]
    fn unmarked_is_none_and_bad_marks_are_errors() {
        assert_eq!(take(&mut event(serde_json::json!({}))), Ok(None));
        // Binary mode carries every attribute as a string.
        assert_eq!(
            take(&mut event(
                serde_json::json!({"relayreplay": "n", "relayreplays": "2"})
            )),
            Ok(Some(Mark {
                notification: "n".into(),
                replays: 2
            }))
        );
        for bad in [
            serde_json::json!({"relayreplays": 1}),
            serde_json::json!({"relayreplay": ""}),
            serde_json::json!({"relayreplay": true}),
            serde_json::json!({"relayreplay": "n", "relayreplays": -1}),
            serde_json::json!({"relayreplay": "n", "relayreplays": "many"}),
        ] {
            assert!(take(&mut event(bad.clone())).is_err(), "{bad}");
        }
    }
}
