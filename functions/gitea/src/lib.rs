//! The `gitea` provider (being written).

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "gitea";

pub struct GiteaFactory;

impl ProviderFactory for GiteaFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(
            String::new(),
            "the gitea provider is not written yet".into(),
        )])
    }
}
