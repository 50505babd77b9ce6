//! A provider that panics on an event fails that one delivery: its claims
//! are released (its replay re-attempts it, no lease to wait out), it is
//! dead-lettered with an internal-error cause that quotes nothing of the
//! panic, and the event's other Notifications are delivered.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use relay_core::config::{ProviderDoc, RelayConfig};
use relay_core::deadletter::{
    CauseKind, DeadLetterEntry, DeadLetterSink, DeadLetterTarget, SinkError,
};
use relay_core::engine::{Engine, Mode, Plan};
use relay_core::ingress::Original;
use relay_core::metrics::Metrics;
use relay_core::provider::{
    DeliveryInput, Outbound, Provider, ProviderError, ProviderFactory, Registry,
};
use relay_tests::conformance::run_events;

/// What the panic says: event text, the kind a real panic would quote.
const PANIC_TEXT: &str = "byte index 3 is not a char boundary; it is inside '€' of `ab€-hostile`";

/// A provider that counts its deliveries, and panics in them if told to.
#[derive(Clone)]
struct Probe {
    name: &'static str,
    panics: bool,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl Provider for Probe {
    fn type_name(&self) -> &'static str {
        self.name
    }
    async fn build(&self, _input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            panic!("{PANIC_TEXT}");
        }
        Ok(Vec::new())
    }
}

impl ProviderFactory for Probe {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn build(
        &self,
        _doc: &ProviderDoc,
    ) -> Result<Arc<dyn Provider>, relay_core::field::FieldErrors> {
        Ok(Arc::new(self.clone()))
    }
}

#[derive(Default)]
struct Kept(Mutex<Vec<DeadLetterEntry>>);

#[async_trait]
impl DeadLetterSink for Kept {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(entry.clone());
        Ok(())
    }
    async fn list(
        &self,
        _limit: Option<usize>,
        _notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let all = self.0.lock().unwrap().clone();
        Ok((all.len(), all))
    }
    async fn update(&self, _entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        Ok(false)
    }
    async fn remove(&self, _id: &str) -> Result<bool, SinkError> {
        Ok(false)
    }
}

const CONFIG: &str = "apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: fine}
spec: {type: fine}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: boom}
spec: {type: boom}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: fine}
spec: {providerRef: {name: fine}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: boom}
spec: {providerRef: {name: boom}}
";

#[tokio::test]
async fn a_panicking_delivery_is_dead_lettered_alone_and_its_claims_released() {
    let fine = Probe {
        name: "fine",
        panics: false,
        calls: Default::default(),
    };
    let boom = Probe {
        name: "boom",
        panics: true,
        calls: Default::default(),
    };
    let registry = Registry::new().with(fine.clone()).with(boom.clone());
    let plan = Plan::compile(&RelayConfig::parse(CONFIG).unwrap(), &registry).unwrap();
    let kept = Arc::new(Kept::default());
    let store = relay_core::store::open("memory").await.unwrap();
    let engine = Engine::new(
        plan,
        store,
        DeadLetterTarget::Sink(kept.clone()),
        Arc::new(Metrics::new()),
    );
    let event = run_events("tekton-pipelinerun-success").pop().unwrap();
    let original = Original::Json(serde_json::Value::Null);

    let r = engine.process(event.clone(), &original, Mode::Live).await;
    let outcome = |r: &relay_core::engine::EventResult, n: &str| {
        r.deliveries
            .iter()
            .find(|d| d.notification == n)
            .map(|d| d.outcome.as_str())
            .unwrap()
    };
    assert_eq!(outcome(&r, "fine"), "delivered", "{r:?}");
    assert_eq!(outcome(&r, "boom"), "dead_lettered", "{r:?}");
    assert_eq!(fine.calls.load(Ordering::SeqCst), 1);

    let entries = kept.0.lock().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.notification, "boom");
    assert_eq!(entry.cause.kind, CauseKind::Permanent);
    assert!(
        entry.cause.message.starts_with("internal error"),
        "{entry:?}"
    );
    let answer = serde_json::to_string(&r).unwrap();
    for place in [entry.cause.message.as_str(), answer.as_str()] {
        assert!(
            !place.contains("hostile") && !place.contains('€'),
            "{place}"
        );
    }

    // The same event again (a sender's retry): the dead-lettered delivery
    // is settled for it, so it is neither attempted nor dead-lettered again,
    // and the delivered one is a duplicate.
    let r = engine.process(event.clone(), &original, Mode::Live).await;
    assert_eq!(outcome(&r, "boom"), "duplicate", "{r:?}");
    assert_eq!(outcome(&r, "fine"), "duplicate", "{r:?}");
    assert_eq!(boom.calls.load(Ordering::SeqCst), 1, "{r:?}");
    assert_eq!(kept.0.lock().unwrap().len(), 1);

    // Its replay is attempted at once: the panicking delivery's claims were
    // released (not `in progress` for the lease).
    let r = engine
        .process(
            event,
            &original,
            Mode::Replay {
                notification: "boom",
            },
        )
        .await;
    assert_eq!(boom.calls.load(Ordering::SeqCst), 2, "{r:?}");
    assert_eq!(outcome(&r, "boom"), "failed", "{r:?}");
    assert_eq!(fine.calls.load(Ordering::SeqCst), 1);
    let text = engine.metrics.render();
    assert!(
        text.contains(r#"relay_dead_letters_total{notification="boom"} 1"#),
        "{text}"
    );
}
