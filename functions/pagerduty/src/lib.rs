//! The PagerDuty provider (Events API v2: trigger on failure, resolve on the next success). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "pagerduty";

pub struct PagerdutyFactory;

impl ProviderFactory for PagerdutyFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the pagerduty provider is not written yet".into())])
    }
}
