//! The `azuredevops` provider (being written).

use std::sync::Arc;

use relay_core::config::ProviderDoc;
use relay_core::provider::{Provider, ProviderFactory};

pub const TYPE: &str = "azuredevops";

pub struct AzureDevopsFactory;

impl ProviderFactory for AzureDevopsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, _doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        Err(vec![(
            String::new(),
            "the azuredevops provider is not written yet".into(),
        )])
    }
}
