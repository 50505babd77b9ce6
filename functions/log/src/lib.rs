//! The `log` provider: one line per notification on standard output.

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::config::ProviderDoc;
use relay_core::engine::template_context;
use relay_core::provider::{
    DeliveryInput, Outbound, Provider, ProviderError, ProviderFactory, require_empty,
};

pub const TYPE: &str = "log";

pub struct Log;
pub struct LogFactory;

impl ProviderFactory for LogFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        require_empty(doc)?;
        Ok(Arc::new(Log))
    }
}

/// The default line: readable, one event per line, without newlines from the
/// condition message breaking it.
pub fn line(notification: &str, ev: &relay_core::RunEvent) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = format!(
        "[{notification}] {} {}/{} {}",
        ev.kind, ev.namespace, ev.name, ev.state
    );
    if let Some(r) = &ev.reason {
        out.push_str(&format!(" ({})", one_line(r)));
    }
    if let Some(sha) = &ev.scm.sha {
        out.push_str(&format!(" sha={}", &sha[..sha.len().min(12)]));
    }
    if let Some(pr) = ev.scm.pull_request {
        out.push_str(&format!(" pr={pr}"));
    }
    out.push_str(&format!(" id={}", ev.event_id));
    if let Some(m) = ev.message.as_deref().filter(|m| !m.is_empty()) {
        out.push_str(&format!(" message={:?}", one_line(m)));
    }
    out
}

#[async_trait]
impl Provider for Log {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        let text = match input.template {
            Some(t) => t
                .render(template_context(input.event, input.notification))
                .map_err(|e| ProviderError::Permanent(format!("template: {e}")))?,
            None => line(input.notification, input.event),
        };
        Ok(vec![Outbound::Stdout(text)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_single_and_informative() {
        let mut ev = relay_core::sample::run_event();
        ev.message = Some("two\nlines".into());
        let l = line("n", &ev);
        assert!(!l.contains('\n'));
        assert!(
            l.starts_with(
                "[n] PipelineRun ci/build-and-test-abcde failed (Failed) sha=0c5c7fd0a6a3 pr=47"
            ),
            "{l}"
        );
    }
}
