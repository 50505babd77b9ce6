//! Replaying dead letters: each entry re-runs only the Notification that
//! failed. Success removes it; failure keeps it with `replays` + 1. The
//! idempotency claims make a replay of an already-delivered change a no-op.

use serde::Serialize;
use serde_json::Value;

use crate::delivery::deadletter::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::delivery::engine::{Engine, Mode, Outcome};
use crate::event::decode::{self, Decoded};

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
            &crate::delivery::original::Original::Json(entry.event.clone()),
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

fn event_of(v: &Value) -> Result<Option<crate::event::model::RunEvent>, String> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::delivery::deadletter::{Cause, CauseKind, DeadLetterTarget, file::FileSink};
    use crate::delivery::engine::Plan;
    use crate::delivery::metrics::Metrics;
    use crate::delivery::outbound::{Outbound, ProviderError};
    use crate::delivery::provider::{DeliveryInput, Provider, ProviderFactory, Registry};
    use crate::event::config::{ProviderDoc, RelayConfig};

    /// A provider that counts the deliveries it is asked to build.
    #[derive(Clone, Default)]
    struct Probe(Arc<AtomicUsize>);

    #[async_trait]
    impl Provider for Probe {
        fn type_name(&self) -> &'static str {
            "probe"
        }
        async fn build(&self, _: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
    }

    impl ProviderFactory for Probe {
        fn type_name(&self) -> &'static str {
            "probe"
        }
        fn build(
            &self,
            _: &ProviderDoc,
        ) -> Result<Arc<dyn Provider>, crate::event::field::FieldErrors> {
            Ok(Arc::new(self.clone()))
        }
    }

    /// An entry cut to the size cap has lost its event's data: replaying
    /// what is left would deliver another event, or (decoding as nothing)
    /// count as delivered and delete the dead letter. It is refused and
    /// kept as it is.
    #[tokio::test]
    async fn a_truncated_dead_letter_is_not_replayed_and_stays() {
        let probe = Probe::default();
        let cfg = RelayConfig::parse(
            "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: p}\nspec: {type: probe}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: n}\nspec: {providerRef: {name: p}}\n",
        )
        .unwrap();
        let plan = Plan::compile(&cfg, &Registry::new().with(probe.clone())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let sink = FileSink::open(dir.path().join("dl.jsonl"), 1 << 20, metrics.clone()).unwrap();
        let engine = Engine::new(
            plan,
            Arc::new(crate::delivery::store::memory::MemoryStore::default()),
            DeadLetterTarget::Respond,
            metrics.clone(),
        );
        let entry = DeadLetterEntry {
            id: "cut".into(),
            failed_at: "2024-01-01T00:00:00Z".into(),
            notification: "n".into(),
            provider: "p".into(),
            provider_type: "probe".into(),
            cause: Cause {
                kind: CauseKind::Permanent,
                status: Some(400),
                message: "answered 400".into(),
            },
            attempts: 1,
            replays: 0,
            event: serde_json::json!({
                "specversion": "1.0", "id": "e1", "source": "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/p",
                "type": "dev.tekton.event.pipelinerun.failed.v1",
            }),
            truncated: Some(crate::delivery::deadletter::Truncated {
                original_bytes: 900_000,
            }),
            unknown_destination: false,
        };
        sink.put(&entry).await.unwrap();
        let summary = replay(&engine, sink.as_ref(), None).await.unwrap();
        assert_eq!(
            summary,
            ReplaySummary {
                replayed: 1,
                succeeded: 0,
                failed: 1
            }
        );
        assert_eq!(probe.0.load(Ordering::SeqCst), 0);
        assert_eq!(sink.list(None, None).await.unwrap().1, [entry]);
        assert!(
            metrics
                .render()
                .contains(r#"relay_dead_letter_replays_total{result="refused"} 1"#)
        );
    }
}
