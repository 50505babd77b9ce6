//! The CloudEvents forwarding provider (the Tekton event as received, or converted to CDEvents). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "cloudevents";

pub struct CloudeventsFactory;

impl ProviderFactory for CloudeventsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the cloudevents provider is not written yet".into())])
    }
}
