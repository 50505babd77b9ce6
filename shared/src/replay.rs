//! Replaying dead letters: each entry re-runs only the Notification that
//! failed. Success removes it; failure keeps it with `replays` + 1. The
//! idempotency claims make a replay of an already-delivered change a no-op.

use serde::Serialize;
use serde_json::Value;

use crate::deadletter::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::decode::{self, Decoded};
use crate::engine::{Engine, Mode, Outcome};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ReplaySummary {
    pub replayed: usize,
    pub succeeded: usize,
    pub failed: usize,
}

pub async fn replay(
    engine: &Engine,
    sink: &dyn DeadLetterSink,
    ids: Option<&[String]>,
) -> Result<ReplaySummary, SinkError> {
    let (_, entries) = sink.list(None, None).await?;
    let mut summary = ReplaySummary::default();
    for mut entry in entries {
        if ids.is_some_and(|ids| !ids.contains(&entry.id)) {
            continue;
        }
        summary.replayed += 1;
        if entry.truncated.is_some() {
            // Kept without its data (over the per-entry size cap): sending
            // what is left would deliver a different event. It stays for
            // inspection; nothing is written.
            tracing::warn!(id = %entry.id, "dead letter was cut to the size cap; not replayed");
            engine.metrics.replays.with_label_values(&["refused"]).inc();
            summary.failed += 1;
            continue;
        }
        let ok = replay_one(engine, &entry).await;
        engine
            .metrics
            .replays
            .with_label_values(&[if ok { "succeeded" } else { "failed" }])
            .inc();
        if ok {
            summary.succeeded += 1;
            sink.remove(&entry.id).await?;
        } else {
            summary.failed += 1;
            entry.replays += 1;
            sink.update(&entry).await?;
        }
    }
    Ok(summary)
}

async fn replay_one(engine: &Engine, entry: &DeadLetterEntry) -> bool {
    let event = match event_of(&entry.event) {
        Ok(Some(ev)) => ev,
        Ok(None) => return true, // nothing handles it any more: nothing to deliver
        Err(e) => {
            tracing::warn!(id = %entry.id, error = %e, "dead letter does not decode");
            return false;
        }
    };
    if !engine
        .plan
        .notifications
        .iter()
        .any(|n| n.name == entry.notification)
    {
        tracing::warn!(id = %entry.id, notification = %entry.notification,
            "dead letter names a Notification that is not configured");
        return false;
    }
    let result = engine
        .process(
            event,
            &crate::ingress::Original::Json(entry.event.clone()),
            Mode::Replay {
                notification: &entry.notification,
            },
        )
        .await;
    let ok = result.deliveries.iter().all(|d| {
        matches!(
            d.outcome,
            Outcome::Delivered | Outcome::Duplicate | Outcome::Stale | Outcome::Filtered
        )
    });
    for d in &result.deliveries {
        tracing::info!(id = %entry.id, notification = %d.notification, outcome = d.outcome.as_str(),
            detail = d.detail.as_deref().unwrap_or(""), "dead letter replayed");
    }
    ok
}

fn event_of(v: &Value) -> Result<Option<crate::model::RunEvent>, String> {
    if decode::flux::is_flux(v) {
        let raw = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        return decode::flux::decode(&raw, v)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    let ce = decode::wrappers::structured(v.clone()).map_err(|e| e.to_string())?;
    match decode::decode_cloudevent(&ce).map_err(|e| e.to_string())? {
        Decoded::Run(ev) => Ok(Some(*ev)),
        Decoded::Ignored { .. } => Ok(None),
    }
}
