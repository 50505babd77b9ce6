//! The Jira provider (comments and transitions on the issue a run names; API v3, ADF). Being written.

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "jira";

pub struct JiraFactory;

impl ProviderFactory for JiraFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(String::new(), "the jira provider is not written yet".into())])
    }
}
