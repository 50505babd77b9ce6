//! Engine assembly: a config and a registry compiled into an [`Engine`]
//! with its store, dead-letter sink and metrics — for a start and for a
//! reload alike, so neither host module needs the other.

use std::sync::Arc;

use crate::delivery::engine::{Engine, Plan};
use crate::delivery::metrics::Metrics;
use crate::delivery::provider::Registry;
use crate::delivery::{deadletter, store};
use crate::event::config::{ConfigErrors, RelayConfig};

/// Compiles `cfg` into an Engine. With `previous` (a reload), its metrics are
/// kept, and so are its store and dead-letter sink when their settings did
/// not change: connections and the idempotency state of a memory store
/// survive the reload.
pub async fn build_engine(
    cfg: &RelayConfig,
    registry: &Registry,
    previous: Option<&Engine>,
) -> Result<Engine, ConfigErrors> {
    let plan = Plan::compile(cfg, registry)?;
    let metrics = previous.map_or_else(|| Arc::new(Metrics::new()), |p| p.metrics.clone());
    let mut errs = ConfigErrors::default();
    let store = match previous {
        Some(p) if p.plan.settings.store == plan.settings.store => Some(p.store.clone()),
        _ => store::open(&plan.settings.store)
            .await
            .map_err(|e| errs.push(&cfg.settings_document, "spec.store", e))
            .ok(),
    };
    let same_dead_letters = previous.is_some_and(|p| {
        p.plan.settings.dead_letter == plan.settings.dead_letter
            && p.plan.settings.dead_letter_max_bytes == plan.settings.dead_letter_max_bytes
            && p.plan.settings.dead_letter_max_entry_bytes
                == plan.settings.dead_letter_max_entry_bytes
    });
    let dead_letters = match previous {
        Some(p) if same_dead_letters => Some(p.dead_letters.clone()),
        _ => deadletter::open(
            &plan.settings.dead_letter,
            plan.settings.dead_letter_max_bytes,
            plan.settings.dead_letter_max_entry_bytes,
            metrics.clone(),
        )
        .await
        .map_err(|e| errs.push(&cfg.settings_document, "spec.deadLetter", e))
        .ok(),
    };
    match (store, dead_letters) {
        (Some(store), Some(dl)) => Ok(Engine::new(plan, store, dl, metrics)),
        _ => Err(errs),
    }
}
