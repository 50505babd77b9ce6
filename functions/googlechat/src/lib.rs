//! The Google Chat provider (webhook cards). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "googlechat";

pub struct GooglechatFactory;

impl ProviderFactory for GooglechatFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the googlechat provider is not written yet".into())])
    }
}
