//! HTTP requests into events: CloudEvents in binary or structured mode (the
//! SDK's job), Flux payloads, and the errors each can raise.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudevents::Event;
use serde_json::Value;

use crate::delivery::original::Original;
use crate::event::decode::{self, DecodeError, Decoded};
use crate::event::model::RunEvent;

/// A request the relay refuses, with the answer to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl IngressError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        IngressError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// The answer to a refused request: its status and the error body
/// `{"error": {"code", "message"}}`, the same at every door.
impl IntoResponse for &IngressError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        (&self).into_response()
    }
}

impl From<DecodeError> for IngressError {
    fn from(e: DecodeError) -> Self {
        let status = match e {
            DecodeError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        IngressError::new(status, e.code(), e.to_string())
    }
}

/// What a request carried.
#[derive(Debug)]
pub enum Inbound {
    CloudEvent(Box<Event>),
    /// A Flux notification-controller payload (not a CloudEvent).
    Flux {
        raw: Bytes,
        body: Value,
    },
}

/// What kind of request this is, from its headers alone. Authentication
/// (`auth::verify`, which decides whether Flux's `generic-hmac` signature
/// applies) and parsing (`parse_request`) both ask this one function, so they
/// can never disagree on what a request is.
///
/// Following the CloudEvents HTTP binding, in this order:
/// - media type `application/cloudevents+json`: structured mode;
/// - any other `application/cloudevents…` media type (batch mode, other
///   formats): not something the relay takes, whatever the other headers say;
/// - a `ce-specversion` header: binary mode;
/// - no content type, or a JSON one: a Flux notification-controller payload,
///   if the body turns out to be one (parsing decides; it never makes a
///   request of this kind into a CloudEvent);
/// - anything else: neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    CloudEventBinary,
    CloudEventStructured,
    Flux,
    Neither,
}

impl RequestKind {
    pub fn is_cloudevent(self) -> bool {
        matches!(
            self,
            RequestKind::CloudEventBinary | RequestKind::CloudEventStructured
        )
    }
}

pub fn classify(headers: &HeaderMap) -> RequestKind {
    let ct = content_type(headers);
    if ct == STRUCTURED {
        RequestKind::CloudEventStructured
    } else if ct.starts_with("application/cloudevents") {
        RequestKind::Neither
    } else if headers.contains_key("ce-specversion") {
        RequestKind::CloudEventBinary
    } else if ct.is_empty() || decode::is_json_content_type(&ct) {
        RequestKind::Flux
    } else {
        RequestKind::Neither
    }
}

const STRUCTURED: &str = "application/cloudevents+json";

/// The media type of `Content-Type`, lower case, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn parse_request(headers: &HeaderMap, body: Bytes) -> Result<Inbound, IngressError> {
    match classify(headers) {
        RequestKind::CloudEventStructured => {
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                IngressError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("body is not valid JSON: {e}"),
                )
            })?;
            let ev = serde_json::from_value::<Event>(v).map_err(|e| {
                IngressError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_cloudevent",
                    format!("not a valid structured CloudEvent: {e}"),
                )
            })?;
            Ok(Inbound::CloudEvent(Box::new(ev)))
        }
        RequestKind::CloudEventBinary => {
            let ev = binary_event(headers, body.to_vec()).map_err(|e| {
                IngressError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_cloudevent",
                    format!("not a valid binary-mode CloudEvent: {e}"),
                )
            })?;
            Ok(Inbound::CloudEvent(Box::new(ev)))
        }
        RequestKind::Flux => match serde_json::from_slice::<Value>(&body) {
            Ok(v) if decode::flux::is_flux(&v) => Ok(Inbound::Flux { raw: body, body: v }),
            _ => Err(not_a_cloudevent()),
        },
        RequestKind::Neither => {
            let ct = content_type(headers);
            if ct == "application/cloudevents-batch+json" {
                Err(IngressError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "batch_not_supported",
                    "CloudEvents batch mode is not supported; send one event per request",
                ))
            } else if ct.starts_with("application/cloudevents") {
                Err(IngressError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_event_format",
                    format!("structured mode is supported in JSON only ({STRUCTURED})"),
                ))
            } else {
                Err(not_a_cloudevent())
            }
        }
    }
}

fn not_a_cloudevent() -> IngressError {
    IngressError::new(
        StatusCode::BAD_REQUEST,
        "not_a_cloudevent",
        "not a CloudEvent: no ce-specversion header and not application/cloudevents+json",
    )
}

/// A decoded request: the run event and the original kept for dead
/// letters, or the type that no decoder handles.
#[derive(Debug)]
pub enum Accepted {
    Run {
        event: Box<RunEvent>,
        original: Original,
    },
    Ignored {
        event_type: String,
    },
}

pub fn decode(inbound: Inbound) -> Result<Accepted, IngressError> {
    match inbound {
        Inbound::CloudEvent(ce) => match decode::decode_cloudevent(&ce)? {
            Decoded::Ignored { event_type } => Ok(Accepted::Ignored { event_type }),
            Decoded::Run(event) => Ok(Accepted::Run {
                event,
                original: Original::CloudEvent(ce),
            }),
        },
        Inbound::Flux { raw, body } => {
            // Beyond the door a Flux event travels as a CloudEvent, so a
            // Broker, an event bus, a dead letter and a replay all carry it.
            let event = decode::flux::decode(&raw, &body)?;
            let ce = decode::flux::to_cloudevent(&event, body);
            Ok(Accepted::Run {
                event: Box::new(event),
                original: Original::CloudEvent(Box::new(ce)),
            })
        }
    }
}

use cloudevents::AttributesWriter;

/// Binary mode through the SDK. The SDK reads header values as visible
/// ASCII, but senders put UTF-8 subjects (run names) in raw header bytes;
/// such values pass the SDK as a placeholder and are restored afterwards.
fn binary_event(headers: &HeaderMap, body: Vec<u8>) -> Result<Event, cloudevents::message::Error> {
    let non_ascii: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, v)| k.as_str().starts_with("ce-") && v.to_str().is_err())
        .filter_map(|(k, v)| {
            let text = std::str::from_utf8(v.as_bytes()).ok()?;
            Some((k.as_str()["ce-".len()..].to_string(), text.to_string()))
        })
        .collect();
    if non_ascii.is_empty() {
        return cloudevents::binding::http::to_event(headers, body);
    }
    let mut cleaned = headers.clone();
    for (name, _) in &non_ascii {
        cleaned.insert(
            http::HeaderName::from_bytes(format!("ce-{name}").as_bytes()).expect("was a header"),
            http::HeaderValue::from_static("x"),
        );
    }
    let mut ev = cloudevents::binding::http::to_event(&cleaned, body)?;
    for (name, value) in non_ascii {
        match name.as_str() {
            "subject" => {
                ev.set_subject(Some(value));
            }
            "id" => {
                ev.set_id(value);
            }
            "type" => {
                ev.set_type(value);
            }
            "source" => {
                ev.set_source(value);
            }
            _ => {
                ev.set_extension(&name, value);
            }
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::delivery::testkit::headers;

    /// One classifier for auth and parsing (issue #13 item 6): every
    /// request parses as the kind it is classified as, or is refused.
    #[test]
    fn the_classifier_and_the_parser_agree() {
        use RequestKind::*;
        let flux = br#"{"involvedObject":{},"severity":"info"}"#;
        let structured =
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"io.fluxcd.notification.info"}"#;
        type Case<'a> = (
            &'a [(&'static str, &'a str)],
            &'a [u8],
            RequestKind,
            Option<&'a str>,
        );
        let cases: [Case; 12] = [
            (
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "io.fluxcd.notification.info"),
                    ("content-type", "application/json"),
                ],
                flux,
                CloudEventBinary,
                None,
            ),
            (
                &[("content-type", "application/cloudevents+json")],
                structured,
                CloudEventStructured,
                None,
            ),
            (
                &[(
                    "content-type",
                    " Application/CloudEvents+JSON; charset=utf-8",
                )],
                structured,
                CloudEventStructured,
                None,
            ),
            // Structured mode wins over a stray ce-specversion header.
            (
                &[
                    ("content-type", "application/cloudevents+json"),
                    ("ce-specversion", "1.0"),
                ],
                structured,
                CloudEventStructured,
                None,
            ),
            (&[("content-type", "application/json")], flux, Flux, None),
            (&[], flux, Flux, None),
            (
                &[("content-type", "application/json")],
                structured,
                Flux,
                Some("not_a_cloudevent"),
            ),
            (
                &[("content-type", "application/cloudevents-batch+json")],
                b"[]",
                Neither,
                Some("batch_not_supported"),
            ),
            (
                &[
                    ("content-type", "application/cloudevents-batch+json"),
                    ("ce-specversion", "1.0"),
                ],
                b"[]",
                Neither,
                Some("batch_not_supported"),
            ),
            // Another structured format: not binary mode with that data.
            (
                &[
                    ("content-type", "application/cloudevents+xml"),
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                ],
                b"<x/>",
                Neither,
                Some("unsupported_event_format"),
            ),
            (
                &[("content-type", "application/cloudevents")],
                structured,
                Neither,
                Some("unsupported_event_format"),
            ),
            (
                &[("content-type", "text/plain")],
                flux,
                Neither,
                Some("not_a_cloudevent"),
            ),
        ];
        for (h, body, kind, refused) in cases {
            let h = headers(h);
            assert_eq!(classify(&h), kind, "{h:?}");
            let parsed = parse_request(&h, Bytes::copy_from_slice(body));
            match (parsed, refused) {
                (Ok(Inbound::CloudEvent(_)), None) => assert!(kind.is_cloudevent(), "{h:?}"),
                (Ok(Inbound::Flux { .. }), None) => assert_eq!(kind, Flux, "{h:?}"),
                (Err(e), Some(code)) => assert_eq!(e.code, code, "{h:?}"),
                (other, want) => panic!("{h:?}: {other:?}, want {want:?}"),
            }
        }
    }
}
