//! Decoders: CloudEvents (Tekton, CDEvents), Flux payloads and delivery
//! wrappers into the normalized [`RunEvent`].

pub mod cdevents;
pub mod flux;
pub mod scm;
pub mod tekton;
pub mod wrappers;

use std::collections::BTreeMap;

use cloudevents::{AttributesReader, Data, Event};
use serde_json::Value;

use crate::event::model::RunEvent;

/// Why a request could not be decoded; each maps to a 4xx answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event type {event_type} needs its `{key}` object in the data, and the data has none")]
    MissingRunKey {
        event_type: String,
        key: &'static str,
    },
    #[error("data is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("unsupported data content type {0:?}: expected application/json")]
    UnsupportedContentType(String),
}

impl DecodeError {
    /// Stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::MissingRunKey { .. } => "missing_run_object",
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::InvalidPayload(_) => "invalid_payload",
            DecodeError::UnsupportedContentType(_) => "unsupported_content_type",
        }
    }
}

/// The CloudEvent attributes decoders need.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub time: Option<String>,
}

impl EventMeta {
    pub fn of(ev: &Event) -> EventMeta {
        EventMeta {
            id: ev.id().to_string(),
            event_type: ev.ty().to_string(),
            source: ev.source().to_string(),
            time: ev
                .time()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

/// What a CloudEvent decodes to.
#[derive(Debug, Clone)]
pub enum Decoded {
    Run(Box<RunEvent>),
    /// A valid CloudEvent of a type no decoder handles.
    Ignored {
        event_type: String,
    },
}

/// Does this relay handle events of this type at all?
pub fn is_handled_type(ty: &str) -> bool {
    tekton::parse_type(ty).is_some() || cdevents::parse_type(ty).is_some() || flux::is_flux_type(ty)
}

pub fn decode_cloudevent(ev: &Event) -> Result<Decoded, DecodeError> {
    let meta = EventMeta::of(ev);
    if let Some(ty) = tekton::parse_type(&meta.event_type) {
        let data = data_json(ev)?;
        return tekton::decode(&meta, ty, &data).map(|r| Decoded::Run(Box::new(r)));
    }
    if let Some(ty) = cdevents::parse_type(&meta.event_type) {
        let data = data_json(ev)?;
        return cdevents::decode(&meta, ty, &data).map(|r| Decoded::Run(Box::new(r)));
    }
    if flux::is_flux_type(&meta.event_type) {
        let data = data_json(ev)?;
        return flux::decode_cloudevent(&meta.id, &data).map(|r| Decoded::Run(Box::new(r)));
    }
    Ok(Decoded::Ignored {
        event_type: meta.event_type,
    })
}

pub fn is_json_content_type(ct: &str) -> bool {
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime == "text/json" || mime.ends_with("+json")
}

/// The event's data as JSON, whichever way the SDK stored it.
pub fn data_json(ev: &Event) -> Result<Value, DecodeError> {
    if let Some(ct) = ev.datacontenttype()
        && !is_json_content_type(ct)
    {
        return Err(DecodeError::UnsupportedContentType(ct.to_string()));
    }
    match ev.data() {
        None => Err(DecodeError::InvalidPayload("the event has no data".into())),
        Some(Data::Json(v)) => Ok(v.clone()),
        Some(Data::String(s)) => {
            serde_json::from_str(s).map_err(|e| DecodeError::InvalidJson(e.to_string()))
        }
        Some(Data::Binary(b)) => {
            serde_json::from_slice(b).map_err(|e| DecodeError::InvalidJson(e.to_string()))
        }
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// A JSON object of strings (labels, annotations, customData) as a map;
/// non-string values are kept as their JSON text. URL credentials are
/// dropped ([`scm::without_userinfo`]): a `repo-url` annotation is a clone URL.
pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), scm::without_userinfo(&s).into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}
