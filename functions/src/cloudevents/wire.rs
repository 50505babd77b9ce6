//! A CloudEvent on the wire: binary mode (attributes as `ce-*` headers, the
//! data as the body) or structured mode (the whole event as
//! `application/cloudevents+json`), both written by the CloudEvents SDK.

use bytes::Bytes;
use cloudevents::{AttributesReader, AttributesWriter, Event};
use http::{HeaderValue, Method, header::CONTENT_TYPE};
use relay_core::provider::OutboundRequest;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Binary,
    Structured,
}

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

pub fn request(mode: Mode, event: Event, url: url::Url) -> Result<OutboundRequest, String> {
    let (headers, body) = match mode {
        Mode::Structured => {
            let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
            let mut headers = http::HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(STRUCTURED_CONTENT_TYPE),
            );
            (headers, body)
        }
        Mode::Binary => {
            let req: http::Request<Option<Vec<u8>>> =
                http::Request::try_from(header_safe(event))
                    .map_err(|e| format!("cannot write the CloudEvent as headers: {e}"))?;
            let (parts, body) = req.into_parts();
            (parts.headers, body.unwrap_or_default())
        }
    };
    Ok(OutboundRequest {
        method: Method::POST,
        url,
        headers,
        body: Bytes::from(body),
        masked: Vec::new(),
    })
}

/// The HTTP binding (§3.1.3.2) percent-encodes header values outside
/// printable ASCII, `"` and `%`; the SDK does not, and a run name can be
/// any UTF-8. Only `subject` carries free text here (ids, types and sources
/// are ASCII by construction).
fn header_safe(mut event: Event) -> Event {
    if let Some(s) = event.subject().map(str::to_string) {
        event.set_subject(Some(percent_encode(&s)));
    }
    event
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event() -> Event {
        EventBuilderV10::new()
            .id("e-1")
            .ty("dev.tekton.event.pipelinerun.started.v1")
            .source("/apis/tekton.dev/v1/namespaces/ci/pipelineruns/p")
            .subject("p-ünï \"q\" 100%")
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap()
    }

    fn url() -> url::Url {
        "http://sink.example/".parse().unwrap()
    }

    #[test]
    fn binary_mode_puts_attributes_in_headers() {
        let r = request(Mode::Binary, event(), url()).unwrap();
        assert_eq!(r.headers["ce-specversion"], "1.0");
        assert_eq!(r.headers["ce-id"], "e-1");
        assert_eq!(
            r.headers["ce-type"],
            "dev.tekton.event.pipelinerun.started.v1"
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["ce-subject"], "p-%C3%BCn%C3%AF %22q%22 100%25");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, serde_json::json!({"a": 1}));
    }

    #[test]
    fn structured_mode_is_one_json_document() {
        let r = request(Mode::Structured, event(), url()).unwrap();
        assert_eq!(r.headers["content-type"], STRUCTURED_CONTENT_TYPE);
        assert!(!r.headers.contains_key("ce-id"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "e-1");
        assert_eq!(body["subject"], "p-ünï \"q\" 100%");
        assert_eq!(body["data"]["a"], 1);
    }
}
