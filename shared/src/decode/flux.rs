//! Flux notification-controller events (generic provider payload, not CloudEvents).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{DecodeError, str_at, string_map};
use crate::model::{EventFormat, RunEvent, RunState, ScmContext};

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
    let obj = body.get("involvedObject").unwrap_or(&Value::Null);
    let need = |k: &str| {
        str_at(obj, &[k])
            .map(str::to_string)
            .ok_or_else(|| DecodeError::InvalidPayload(format!("involvedObject.{k} is missing")))
    };
    let kind = need("kind")?;
    let name = need("name")?;
    let namespace = need("namespace")?;
    let severity = str_at(body, &["severity"]).unwrap_or("info").to_string();
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
    let message = str_at(body, &["message"]).map(str::to_string);
    let time = str_at(body, &["timestamp"]).map(str::to_string);
    Ok(RunEvent {
        format: EventFormat::Flux,
        event_id: hex::encode(Sha256::digest(raw)),
        event_type: format!("io.fluxcd.notification.{severity}"),
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
