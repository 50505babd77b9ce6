//! The Microsoft Teams provider (Workflows webhook, Adaptive Card). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "msteams";

pub struct MsteamsFactory;

impl ProviderFactory for MsteamsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the msteams provider is not written yet".into())])
    }
}
