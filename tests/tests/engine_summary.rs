//! The engine feeds the accumulator once per event when a provider renders
//! summaries, and hands each delivery the run's summary so far.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use relay_core::RunState;
use relay_core::accumulator::RunSummary;
use relay_core::config::{ProviderDoc, RelayConfig};
use relay_core::deadletter::DeadLetterTarget;
use relay_core::engine::{Engine, Mode, Plan};
use relay_core::ingress::Original;
use relay_core::metrics::Metrics;
use relay_core::provider::{
    DeliveryInput, Outbound, Provider, ProviderError, ProviderFactory, Registry,
};
use relay_core::store::memory::MemoryStore;
use relay_tests::conformance::run_events;

/// A provider that keeps the summaries it is handed.
#[derive(Clone, Default)]
struct SummaryProbe(Arc<Mutex<Vec<Option<RunSummary>>>>);

#[async_trait]
impl Provider for SummaryProbe {
    fn type_name(&self) -> &'static str {
        "probe"
    }
    fn uses_summary(&self) -> bool {
        true
    }
    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        self.0.lock().unwrap().push(input.summary.cloned());
        Ok(Vec::new())
    }
}

impl ProviderFactory for SummaryProbe {
    fn type_name(&self) -> &'static str {
        "probe"
    }
    fn build(
        &self,
        _doc: &ProviderDoc,
    ) -> Result<Arc<dyn Provider>, relay_core::field::FieldErrors> {
        Ok(Arc::new(self.clone()))
    }
}

#[tokio::test]
async fn deliveries_see_the_accumulated_summary() {
    let probe = SummaryProbe::default();
    let cfg = RelayConfig::parse(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: p}\nspec: {type: probe}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: n}\nspec: {providerRef: {name: p}}\n",
    )
    .unwrap();
    let plan = Plan::compile(&cfg, &Registry::new().with(probe.clone())).unwrap();
    let engine = Engine::new(
        plan,
        Arc::new(MemoryStore::default()),
        DeadLetterTarget::Respond,
        Arc::new(Metrics::new()),
    );
    for ev in run_events("tekton-pipelinerun-success") {
        let r = engine
            .process(ev, &Original::Json(serde_json::Value::Null), Mode::Live)
            .await;
        assert_eq!(r.deliveries[0].outcome.as_str(), "delivered");
    }
    let seen = probe.0.lock().unwrap();
    let last = seen.last().unwrap().as_ref().unwrap();
    assert_eq!(last.run.as_ref().unwrap().state, RunState::Succeeded);
    assert_eq!(
        last.pipeline_tasks,
        ["fetch-source", "unit-tests", "build-image"]
    );
    assert!(last.tasks.values().all(|t| t.state == RunState::Succeeded));
    assert_eq!(last.tasks.len(), 3);
    // Summaries grow as events arrive: the third delivery knows one task.
    assert_eq!(seen[2].as_ref().unwrap().tasks.len(), 1);
}
