#![no_main]
//! See `relay_core::host::fuzz::config`; two real providers, so Provider
//! documents are built too, and every Notification's filter and template.

use std::sync::LazyLock;

use relay_core::provider::Registry;

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::new()
        .with(relay::webhook::WebhookFactory)
        .with(relay::log::LogFactory)
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::host::fuzz::config(data, &REGISTRY));
