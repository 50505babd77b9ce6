//! The Tekton Triggers provider (posts to an EventListener, with a loop-depth marker). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "tekton-trigger";

pub struct TektonTriggerFactory;

impl ProviderFactory for TektonTriggerFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the tekton-trigger provider is not written yet".into())])
    }
}
