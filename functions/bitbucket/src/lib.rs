//! The `bitbucket` provider (being written).

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "bitbucket";

pub struct BitbucketFactory;

impl ProviderFactory for BitbucketFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(
            String::new(),
            "the bitbucket provider is not written yet".into(),
        )])
    }
}
