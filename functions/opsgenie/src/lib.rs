//! The Opsgenie provider (alerts created and closed by alias). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "opsgenie";

pub struct OpsgenieFactory;

impl ProviderFactory for OpsgenieFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the opsgenie provider is not written yet".into())])
    }
}
