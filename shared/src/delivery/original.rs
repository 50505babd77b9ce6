//! The event as received, kept beside its decoded form: what a dead letter
//! stores, what a forwarding provider sends on, where the trace context
//! travels.

use cloudevents::{AttributesReader, Event};
use http::HeaderMap;
use serde_json::Value;

use crate::delivery::otel::{TRACEPARENT, TRACESTATE, is_valid};
use crate::event::decode;

/// The event as received, turned into its dead-letter form (a structured
/// CloudEvent, or the Flux payload) only when a dead letter needs it.
#[derive(Debug, Clone)]
pub enum Original {
    CloudEvent(Box<Event>),
    Json(Value),
}

impl Original {
    pub fn to_json(&self) -> Value {
        match self {
            Original::CloudEvent(ce) => structured_json(ce),
            Original::Json(v) => v.clone(),
        }
    }

    /// The event's W3C trace context (`traceparent`, `tracestate`): the
    /// CloudEvents distributed-tracing extension, also in a dead-lettered
    /// structured event.
    pub fn trace_context(&self) -> (Option<String>, Option<String>) {
        match self {
            Original::CloudEvent(ce) => {
                let get = |k| ce.extension(k).map(|v| v.to_string());
                (get(TRACEPARENT), get(TRACESTATE))
            }
            Original::Json(v) => {
                let get = |k| v.get(k).and_then(Value::as_str).map(str::to_string);
                (get(TRACEPARENT), get(TRACESTATE))
            }
        }
    }

    /// An event without the tracing extension takes a valid `traceparent`
    /// (and `tracestate`) from the request headers into it, so the context
    /// travels on with the event: over an event bus, into a dead letter, to
    /// a replay. Whether it took one.
    pub fn adopt_trace_headers(&mut self, headers: &HeaderMap) -> bool {
        match self {
            Original::CloudEvent(ce) => adopt_trace_headers(ce, headers),
            Original::Json(_) => false,
        }
    }
}

/// `ce` without the tracing extension takes a valid `traceparent` (and
/// `tracestate`) from the request headers into it. Whether it took one.
pub fn adopt_trace_headers(ce: &mut Event, headers: &HeaderMap) -> bool {
    if ce.extension(TRACEPARENT).is_some() {
        return false;
    }
    let header = |k| headers.get(k).and_then(|v| v.to_str().ok());
    let Some(tp) = header(TRACEPARENT).filter(|tp| is_valid(tp)) else {
        return false;
    };
    ce.set_extension(TRACEPARENT, tp.trim().to_string());
    if let Some(ts) = header(TRACESTATE).filter(|ts| !ts.is_empty()) {
        ce.set_extension(TRACESTATE, ts.to_string());
    }
    true
}

/// The event as a structured-mode CloudEvent, with binary JSON data inlined
/// so a dead letter reads as JSON.
pub fn structured_json(ce: &Event) -> Value {
    let mut ev = ce.clone();
    if let Ok(v) = decode::data_json(ce) {
        let ct = ce
            .datacontenttype()
            .unwrap_or("application/json")
            .to_string();
        ev.set_data(ct, v);
    }
    serde_json::to_value(&ev).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::EventBuilder;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn event() -> Original {
        let ev = cloudevents::EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .build()
            .unwrap();
        Original::CloudEvent(Box::new(ev))
    }

    #[test]
    fn a_valid_trace_header_is_adopted_into_an_event_without_one() {
        let mut o = event();
        assert!(o.adopt_trace_headers(&headers(&[("traceparent", TP), ("tracestate", "a=b")])));
        assert_eq!(
            o.trace_context(),
            (Some(TP.to_string()), Some("a=b".to_string()))
        );
        // A dead letter (structured JSON) keeps it; a replay reads it back.
        let replayed = Original::Json(o.to_json());
        assert_eq!(replayed.trace_context(), o.trace_context());
    }

    #[test]
    fn a_malformed_header_or_an_existing_extension_is_left_alone() {
        let mut o = event();
        assert!(!o.adopt_trace_headers(&headers(&[("traceparent", "00-zz-01")])));
        assert_eq!(o.trace_context(), (None, None));

        let origin = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        assert!(o.adopt_trace_headers(&headers(&[("traceparent", origin)])));
        assert!(!o.adopt_trace_headers(&headers(&[("traceparent", TP)])));
        assert_eq!(
            o.trace_context().0.as_deref(),
            Some(origin),
            "the origin stays"
        );
    }
}
