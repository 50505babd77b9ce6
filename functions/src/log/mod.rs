//! The `log` provider: one line per notification on standard output.

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::field::FieldErrors;
use relay_core::chat::escaped_template_text;
use relay_core::config::ProviderDoc;
use relay_core::escape::{log_text, prefix};
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

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        require_empty(doc)?;
        Ok(Arc::new(Log))
    }
}

/// The default line: readable, one event per line. Every field from the
/// event is [`log_text`]: a newline, an ANSI escape or a bidi override in a
/// run name shows as its escape, so it can neither start a forged line nor
/// restyle the terminal; the condition message's newlines become spaces.
pub fn line(notification: &str, ev: &relay_core::RunEvent) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = format!(
        "[{notification}] {} {}/{} {}",
        log_text(&ev.kind),
        log_text(&ev.namespace),
        log_text(&ev.name),
        ev.state
    );
    if let Some(r) = &ev.reason {
        out.push_str(&format!(" ({})", log_text(&one_line(r))));
    }
    if let Some(sha) = &ev.scm.sha {
        // Characters, not bytes: a sha is whatever the event says it is.
        out.push_str(&format!(" sha={}", log_text(prefix(sha, 12))));
    }
    if let Some(pr) = ev.scm.pull_request {
        out.push_str(&format!(" pr={pr}"));
    }
    out.push_str(&format!(" id={}", log_text(&ev.event_id)));
    if let Some(m) = ev.message.as_deref().filter(|m| !m.is_empty()) {
        // Quoted as Rust does (`\"`, `\\`, `\u{1b}`, `\u{202e}`): the
        // message may hold anything.
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
        // A template's own text is the operator's; what it interpolates
        // from the event is escaped like the default line's fields.
        let text = match escaped_template_text(input, log_text)? {
            Some(text) => text,
            None => line(input.notification, input.event),
        };
        Ok(vec![Outbound::Stdout(text)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_from_the_event_is_shown_escaped() {
        let mut ev = relay_core::sample::run_event();
        let hostile = "x\n{\"level\":\"ERROR\"}\u{1b}[31m\u{9b}\u{7f}\u{202e}\u{200b}\u{2028}";
        ev.kind = hostile.into();
        ev.namespace = hostile.into();
        ev.name = hostile.into();
        ev.reason = Some(hostile.into());
        ev.message = Some(hostile.into());
        ev.event_id = hostile.into();
        ev.scm.sha = Some(format!("0123456789a{hostile}"));
        let l = line("n", &ev);
        assert!(
            !l.chars()
                .any(|c| c.is_control() || relay_core::escape::is_format(c) || c == '\u{2028}'),
            "{l:?}"
        );
        assert_eq!(l.matches(r"\u{1b}[31m").count(), 6, "{l}");
    }

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
