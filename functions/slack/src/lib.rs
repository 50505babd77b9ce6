//! The Slack provider (incoming webhook or bot token, Block Kit, one message per run updated in place). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "slack";

pub struct SlackFactory;

impl ProviderFactory for SlackFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the slack provider is not written yet".into())])
    }
}
