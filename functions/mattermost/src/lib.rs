//! The Mattermost provider (incoming webhook). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "mattermost";

pub struct MattermostFactory;

impl ProviderFactory for MattermostFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the mattermost provider is not written yet".into())])
    }
}
