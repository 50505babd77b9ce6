//! Flux notification-controller events: the generic provider's payload (not
//! a CloudEvent) as received, and the CloudEvent the relay wraps it in to
//! carry it over a Broker or an event bus (`io.fluxcd.notification.<severity>`,
//! the payload as data).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{DecodeError, str_at, string_map};
use crate::event::model::{EventFormat, RunEvent, RunState, ScmContext};

/// The type prefix of a Flux event wrapped in a CloudEvent.
pub const TYPE_PREFIX: &str = "io.fluxcd.notification.";

/// Is this a wrapped Flux event's type?
pub fn is_flux_type(ty: &str) -> bool {
    ty.strip_prefix(TYPE_PREFIX)
        .is_some_and(|sev| !sev.is_empty())
}

/// Is this JSON body a Flux event?
pub fn is_flux(body: &Value) -> bool {
    body.get("involvedObject").is_some_and(Value::is_object) && body.get("severity").is_some()
}

/// Splits a Flux revision: `main@sha1:<sha>`, `sha1:<sha>`, or legacy `main/<sha>`.
pub fn split_revision(rev: &str) -> (Option<String>, Option<String>) {
    if let Some((branch, digest)) = rev.split_once('@') {
        let sha = digest.split_once(':').map_or(digest, |(_, s)| s);
        return (Some(branch.to_string()), Some(sha.to_string()));
    }
    if let Some((_, sha)) = rev.split_once(':') {
        return (None, Some(sha.to_string()));
    }
    if let Some((branch, sha)) = rev.rsplit_once('/') {
        return (Some(branch.to_string()), Some(sha.to_string()));
    }
    (None, Some(rev.to_string()))
}

/// Decodes a Flux event. Flux sends no id: the id is a digest of the body, so
/// an identical re-post is recognised as a redelivery.
pub fn decode(raw: &[u8], body: &Value) -> Result<RunEvent, DecodeError> {
    decode_with_id(hex::encode(Sha256::digest(raw)), body)
}

/// A Flux event carried in a CloudEvent: its id is the one given at the door.
pub fn decode_cloudevent(id: &str, data: &Value) -> Result<RunEvent, DecodeError> {
    if !is_flux(data) {
        return Err(DecodeError::InvalidPayload(
            "a Flux event needs `involvedObject` and `severity` in its data".into(),
        ));
    }
    decode_with_id(id.to_string(), data)
}

/// The CloudEvent a Flux event travels in beyond the door: the same id
/// (the digest of the payload as received) and the payload as data.
pub fn to_cloudevent(event: &RunEvent, body: Value) -> cloudevents::Event {
    use cloudevents::{EventBuilder, EventBuilderV10};
    let seg = |s: &str| crate::event::escape::path_segment(s).unwrap_or_else(|| "_".into());
    let mut b = EventBuilderV10::new()
        .id(event.event_id.clone())
        .ty(event.event_type.clone())
        .source(format!(
            "/flux/{}/{}/{}",
            seg(&event.kind),
            seg(&event.namespace),
            seg(&event.name)
        ))
        .subject(format!("{}/{}/{}", event.kind, event.namespace, event.name))
        .data("application/json", body);
    if let Some(t) = event
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        b = b.time(t.with_timezone(&chrono::Utc));
    }
    b.build().expect("id, type and source are set")
}

fn decode_with_id(event_id: String, body: &Value) -> Result<RunEvent, DecodeError> {
    let obj = body.get("involvedObject").unwrap_or(&Value::Null);
    let need = |k: &str| {
        str_at(obj, &[k])
            .map(str::to_string)
            .ok_or_else(|| DecodeError::InvalidPayload(format!("involvedObject.{k} is missing")))
    };
    let kind = need("kind")?;
    let name = need("name")?;
    let namespace = need("namespace")?;
    // An empty severity reads as missing: `io.fluxcd.notification.` is no
    // Flux type, so the event would be ignored beyond the door (fuzz).
    let severity = str_at(body, &["severity"])
        .filter(|s| !s.is_empty())
        .unwrap_or("info")
        .to_string();
    let state = if severity == "error" {
        RunState::Failed
    } else {
        RunState::Succeeded
    };
    let metadata = string_map(body.get("metadata"));
    let (branch, sha) = metadata
        .get("revision")
        .map(|r| split_revision(r))
        .unwrap_or_default();
    let uid = str_at(obj, &["uid"])
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}/{namespace}/{name}"));
    let reason = str_at(body, &["reason"]).map(str::to_string);
    // Source errors quote the repository URL, credentials and all.
    let message = str_at(body, &["message"]).map(|m| super::scm::without_userinfo(m).into_owned());
    let time = str_at(body, &["timestamp"]).map(str::to_string);
    Ok(RunEvent {
        format: EventFormat::Flux,
        event_id,
        event_type: format!("{TYPE_PREFIX}{severity}"),
        phase: severity.clone(),
        time: time.clone(),
        kind,
        name,
        namespace,
        uid,
        state,
        condition_status: if state == RunState::Succeeded {
            "True"
        } else {
            "False"
        }
        .into(),
        reason,
        message,
        pipeline: None,
        task: None,
        pipeline_task: None,
        finally: false,
        pipeline_run: None,
        labels: Default::default(),
        annotations: metadata,
        started_at: None,
        completed_at: time,
        results: Default::default(),
        child_references: Vec::new(),
        pipeline_tasks: Vec::new(),
        finally_tasks: Vec::new(),
        skipped_tasks: Vec::new(),
        scm: ScmContext {
            sha,
            branch,
            ..Default::default()
        },
        url: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;

    #[test]
    fn wrapped_in_a_cloudevent_it_decodes_to_the_same_event() {
        let body = serde_json::json!({
            "involvedObject": {"kind": "GitRepository", "namespace": "flux-system", "name": "widgets"},
            "severity": "info", "timestamp": "2024-05-15T05:00:01Z", "reason": "GitOperationSucceeded",
            "message": "Fetched revision: main@sha1:abc", "metadata": {"revision": "main@sha1:abc"}
        });
        let raw = serde_json::to_vec(&body).unwrap();
        let direct = decode(&raw, &body).unwrap();
        let ce = to_cloudevent(&direct, body);
        assert_eq!(ce.ty(), "io.fluxcd.notification.info");
        assert_eq!(
            ce.source().to_string(),
            "/flux/GitRepository/flux-system/widgets"
        );
        match super::super::decode_cloudevent(&ce).unwrap() {
            super::super::Decoded::Run(ev) => assert_eq!(*ev, direct),
            other => panic!("{other:?}"),
        }
        assert!(is_flux_type("io.fluxcd.notification.error"));
        assert!(!is_flux_type("io.fluxcd.notification."));
    }

    /// Found by `scripts/fuzz` (target `flux`): accepted at the door, then
    /// ignored beyond it as `io.fluxcd.notification.`.
    #[test]
    fn an_empty_severity_survives_the_trip_beyond_the_door() {
        let raw = br#"{"involvedObject": {"kind": "Kustomization", "namespace": "flux-sy}tem", "name": "infrastructure", "uid": "338c4cb9-9efd-224"}, "severity": "", "timestamp": "2024-14-15Tation fn-cz2qd"}"#;
        let body: Value = serde_json::from_slice(raw).unwrap();
        assert!(is_flux(&body));
        let direct = decode(raw, &body).unwrap();
        assert_eq!(direct.event_type, "io.fluxcd.notification.info");
        let ce = to_cloudevent(&direct, body);
        match super::super::decode_cloudevent(&ce).unwrap() {
            super::super::Decoded::Run(ev) => assert_eq!(*ev, direct),
            other => panic!("{other:?}"),
        }
        // The fuzz target body's check of the same input is in `host::fuzz`.
    }

    #[test]
    fn splits_revisions() {
        assert_eq!(
            split_revision("main@sha1:abc"),
            (Some("main".into()), Some("abc".into()))
        );
        assert_eq!(split_revision("sha256:abc"), (None, Some("abc".into())));
        assert_eq!(
            split_revision("main/abc"),
            (Some("main".into()), Some("abc".into()))
        );
    }
}
