//! The bodies of the fuzz targets (`fuzz/`, run by `scripts/fuzz`). Each takes
//! arbitrary bytes and must return without a panic, whatever they are; a
//! refusal must be a 4xx. They live here, not in the fuzz crate, so the normal
//! test build compiles them and runs them on seeds (the fuzz build needs
//! nightly features the test command must not).
//!
//! Input layouts (the seeds in `scripts/fuzz` follow them):
//! - `ingress`: `Name: value` header lines, a blank line, the body.
//! - `tekton`, `cdevents`: one byte choosing the event type, the CloudEvent
//!   source up to the first newline, then the data.
//! - `flux`, `eventbridge`, `sqs`: the JSON payload.
//! - `config`: the YAML file.

use bytes::Bytes;
use cloudevents::{EventBuilder, EventBuilderV10};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::delivery::accumulator::RunSummary;
use crate::delivery::engine::Plan;
use crate::delivery::provider::Registry;
use crate::event::config::RelayConfig;
use crate::event::decode::{DecodeError, Decoded, EventMeta, cdevents, flux, tekton, wrappers};
use crate::event::model::RunEvent;
use crate::host::ingress::{self, Accepted, IngressError};

/// Every run event type the Tekton decoder handles, indexed by the first byte.
pub const TEKTON_TYPES: [&str; 20] = [
    "dev.tekton.event.pipelinerun.started.v1",
    "dev.tekton.event.pipelinerun.running.v1",
    "dev.tekton.event.pipelinerun.unknown.v1",
    "dev.tekton.event.pipelinerun.successful.v1",
    "dev.tekton.event.pipelinerun.failed.v1",
    "dev.tekton.event.taskrun.started.v1",
    "dev.tekton.event.taskrun.running.v1",
    "dev.tekton.event.taskrun.unknown.v1",
    "dev.tekton.event.taskrun.successful.v1",
    "dev.tekton.event.taskrun.failed.v1",
    "dev.tekton.event.customrun.started.v1",
    "dev.tekton.event.customrun.running.v1",
    "dev.tekton.event.customrun.unknown.v1",
    "dev.tekton.event.customrun.successful.v1",
    "dev.tekton.event.customrun.failed.v1",
    "dev.tekton.event.run.started.v1",
    "dev.tekton.event.run.running.v1",
    "dev.tekton.event.run.unknown.v1",
    "dev.tekton.event.run.successful.v1",
    "dev.tekton.event.run.failed.v1",
];

/// CDEvents run types of the three spec versions, indexed by the first byte.
pub const CDEVENTS_TYPES: [&str; 12] = [
    "dev.cdevents.pipelinerun.queued.0.1.1",
    "dev.cdevents.pipelinerun.started.0.1.1",
    "dev.cdevents.pipelinerun.finished.0.1.1",
    "dev.cdevents.taskrun.started.0.1.1",
    "dev.cdevents.taskrun.finished.0.1.1",
    "dev.cdevents.pipelinerun.queued.0.2.0",
    "dev.cdevents.pipelinerun.started.0.2.0",
    "dev.cdevents.pipelinerun.finished.0.2.0",
    "dev.cdevents.taskrun.started.0.2.0",
    "dev.cdevents.taskrun.finished.0.2.0",
    "dev.cdevents.pipelinerun.finished.0.3.0-draft",
    "dev.cdevents.taskrun.finished.0.3.0",
];

/// An HTTP request to `POST /`, up to the decoded event.
pub fn ingress(data: &[u8]) {
    let (head, body) = split_at_blank_line(data);
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(k, v);
        }
    }
    let inbound = match ingress::parse_request(&headers, Bytes::copy_from_slice(body)) {
        Ok(i) => i,
        Err(e) => return refused(&e),
    };
    match ingress::decode(inbound) {
        Ok(Accepted::Run { event, original }) => {
            run_event(&event);
            // What a dead letter of this event would hold.
            let _ = original.to_json();
        }
        Ok(Accepted::Ignored { .. }) => {}
        Err(e) => refused(&e),
    }
}

/// The Tekton decoder, on a CloudEvent of a run type.
pub fn tekton(data: &[u8]) {
    let Some((ty, source, body)) = typed(data, &TEKTON_TYPES) else {
        return;
    };
    let Some(ty) = tekton::parse_type(ty) else {
        panic!("{ty} is a Tekton run type");
    };
    let meta = meta(ty.kind, source);
    match parse_json(body) {
        Ok(v) => outcome(tekton::decode(&meta, ty, &v)),
        Err(e) => refused(&e.into()),
    }
    cloudevent(&meta.event_type, source, body);
}

/// The CDEvents decoder, on a CloudEvent of a run type.
pub fn cdevents(data: &[u8]) {
    let Some((ty, source, body)) = typed(data, &CDEVENTS_TYPES) else {
        return;
    };
    let Some(parsed) = cdevents::parse_type(ty) else {
        panic!("{ty} is a CDEvents run type");
    };
    let meta = meta(ty, source);
    match parse_json(body) {
        Ok(v) => outcome(cdevents::decode(&meta, parsed, &v)),
        Err(e) => refused(&e.into()),
    }
    cloudevent(ty, source, body);
}

/// A Flux payload as received, and the CloudEvent it travels in beyond the
/// door, which must decode to the same run.
pub fn flux(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if !flux::is_flux(&body) {
        // The door does not take it for a Flux event; the wrapped form must
        // still refuse it cleanly.
        outcome(flux::decode_cloudevent("fuzz", &body));
        return;
    }
    let event = match flux::decode(data, &body) {
        Ok(e) => e,
        Err(e) => return refused(&e.into()),
    };
    run_event(&event);
    let ce = flux::to_cloudevent(&event, body);
    match crate::event::decode::decode_cloudevent(&ce) {
        Ok(Decoded::Run(again)) => assert_eq!(*again, event, "a Flux event changes on the bus"),
        other => panic!("a Flux event accepted at the door fails beyond it: {other:?}"),
    }
}

/// A Lambda EventBridge invocation.
pub fn eventbridge(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match wrappers::from_eventbridge(&v) {
        Ok(ev) => decoded_event(&ev),
        Err(e) => refused(&e.into()),
    }
}

/// A Lambda SQS batch: each record decoded or refused on its own.
pub fn sqs(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match wrappers::from_sqs_batch(&v) {
        Ok(records) => {
            for r in records {
                match r.event {
                    Ok(ev) => decoded_event(&ev),
                    Err(e) => refused(&e.into()),
                }
            }
        }
        Err(e) => refused(&e.into()),
    }
}

/// A config file, as `relay validate` checks it: parsed, then compiled
/// (filters, CEL, templates rendered on a sample) against `registry`.
pub fn config(data: &[u8], registry: &Registry) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RelayConfig::parse(text).and_then(|cfg| Plan::compile(&cfg, registry).map(|_| ())) {
        Ok(()) => {}
        Err(errs) => {
            assert!(!errs.0.is_empty(), "a refused config names its errors");
            for e in &errs.0 {
                let _ = e.to_string();
            }
        }
    }
}

fn split_at_blank_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[], data),
    }
}

/// `(event type, source, data)` of a `tekton`/`cdevents` input.
fn typed<'a>(data: &'a [u8], types: &[&'static str]) -> Option<(&'static str, &'a str, &'a [u8])> {
    let (sel, rest) = data.split_first()?;
    let ty = types[*sel as usize % types.len()];
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let source = std::str::from_utf8(&rest[..nl]).ok()?;
    Some((ty, source, &rest[nl + 1..]))
}

fn meta(event_type: &str, source: &str) -> EventMeta {
    EventMeta {
        id: "fuzz".into(),
        event_type: event_type.into(),
        source: source.into(),
        time: None,
    }
}

fn parse_json(body: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

/// The same data through the SDK's event and the dispatching decoder.
fn cloudevent(ty: &str, source: &str, body: &[u8]) {
    if let Ok(ev) = EventBuilderV10::new()
        .id("fuzz")
        .ty(ty)
        .source(source)
        .data("application/json", body.to_vec())
        .build()
    {
        decoded_event(&ev);
    }
}

fn decoded_event(ev: &cloudevents::Event) {
    let _ = wrappers::knative_error(ev);
    let _ = crate::delivery::original::structured_json(ev);
    match crate::event::decode::decode_cloudevent(ev) {
        Ok(Decoded::Run(r)) => run_event(&r),
        Ok(Decoded::Ignored { .. }) => {}
        Err(e) => refused(&e.into()),
    }
}

fn outcome(r: Result<RunEvent, DecodeError>) {
    match r {
        Ok(ev) => run_event(&ev),
        Err(e) => refused(&e.into()),
    }
}

fn refused(e: &IngressError) {
    assert!(e.status.is_client_error(), "{e:?} is not a 4xx");
    let _ = e.body();
}

/// What the engine derives from every run event before any provider runs.
fn run_event(ev: &RunEvent) {
    let _ = ev.display_name();
    let _ = ev.condition_fingerprint();
    let _ = serde_json::to_vec(ev).expect("a run event serializes");
    if let Some(s) = RunSummary::from_event(ev) {
        let _ = crate::delivery::summary::text(&s.clone().merge(s));
    }
}

#[cfg(test)]
mod tests {
    //! Each target on seeds, including the hostile inputs they must survive.
    use super::*;

    fn deep(n: usize) -> Vec<u8> {
        let mut v = vec![b'['; n];
        v.extend(std::iter::repeat_n(b']', n));
        v
    }

    fn hostile() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            b"\xff\xfe\x00".to_vec(),
            b"null".to_vec(),
            deep(100_000),
            b"{\"a\":".repeat(5_000),
        ]
    }

    /// Found by `scripts/fuzz` (target `flux`): an empty severity, accepted
    /// at the door and ignored beyond it (the decoder's side of it is
    /// `event::decode::flux`'s test of the same input).
    #[test]
    fn the_flux_body_survives_an_empty_severity() {
        let raw = br#"{"involvedObject": {"kind": "Kustomization", "namespace": "flux-sy}tem", "name": "infrastructure", "uid": "338c4cb9-9efd-224"}, "severity": "", "timestamp": "2024-14-15Tation fn-cz2qd"}"#;
        flux(raw);
    }

    const PIPELINERUN: &str = r#"{"pipelineRun": {"metadata": {"name": "p", "namespace": "ci", "uid": "u1",
        "labels": {"tekton.dev/pipeline": "build"}},
        "status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "startTime": "2024-05-14T10:54:13Z", "completionTime": "2024-05-14T10:56:13Z"}}}"#;

    #[test]
    fn tekton_target() {
        let mut seed = vec![3u8];
        seed.extend_from_slice(b"/apis///namespaces/ci//p\n");
        seed.extend_from_slice(PIPELINERUN.as_bytes());
        tekton(&seed);
        for h in hostile() {
            for sel in [0u8, 9, 255] {
                let mut s = vec![sel, b'/', b'\n'];
                s.extend_from_slice(&h);
                tekton(&s);
            }
            tekton(&h);
        }
    }

    #[test]
    fn cdevents_target() {
        let seed = br#"{"context": {"id": "1", "source": "/ci", "type": "dev.cdevents.pipelinerun.finished.0.2.0", "version": "0.4.1"},
            "subject": {"id": "ci/p", "source": "/ci", "content": {"pipelineName": "build", "outcome": "success"}}}"#;
        let mut s = vec![7u8];
        s.extend_from_slice(b"/tekton/ci\n");
        s.extend_from_slice(seed);
        cdevents(&s);
        for h in hostile() {
            let mut s = vec![2u8, b'\n'];
            s.extend_from_slice(&h);
            cdevents(&s);
        }
    }

    #[test]
    fn ingress_target() {
        let mut binary =
            b"ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: dev.tekton.event.pipelinerun.successful.v1\ncontent-type: application/json\n\n"
                .to_vec();
        binary.extend_from_slice(PIPELINERUN.as_bytes());
        ingress(&binary);
        let structured = format!(
            "content-type: application/cloudevents+json\n\n{{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/s\", \"type\": \"dev.tekton.event.pipelinerun.successful.v1\", \"data\": {PIPELINERUN}}}"
        );
        ingress(structured.as_bytes());
        ingress(b"ce-specversion: 1.0\nce-subject: \xc3\xa9t\xc3\xa9\nce-id: \xff\n\n{}");
        for h in hostile() {
            ingress(&h);
            let mut s = b"content-type: application/cloudevents+json\n\n".to_vec();
            s.extend_from_slice(&h);
            ingress(&s);
        }
    }

    #[test]
    fn flux_target() {
        flux(br#"{"involvedObject": {"kind": "Kustomization", "name": "apps", "namespace": "flux-system"},
            "severity": "error", "reason": "ReconciliationFailed", "message": "boom",
            "metadata": {"revision": "main@sha1:0123456789abcdef0123456789abcdef01234567"}}"#);
        for h in hostile() {
            flux(&h);
        }
    }

    #[test]
    fn wrapper_targets() {
        let ce = format!(
            "{{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/s\", \"type\": \"dev.tekton.event.pipelinerun.successful.v1\", \"data\": {PIPELINERUN}}}"
        );
        let envelope = format!("{{\"version\": \"0\", \"detail-type\": \"x\", \"detail\": {ce}}}");
        eventbridge(envelope.as_bytes());
        let batch = serde_json::json!({"Records": [
            {"messageId": "a", "body": ce},
            {"messageId": "b", "body": envelope},
            {"messageId": "c", "body": "not json"},
        ]});
        sqs(batch.to_string().as_bytes());
        for h in hostile() {
            eventbridge(&h);
            sqs(&h);
        }
    }

    #[test]
    fn config_target() {
        let registry = Registry::new();
        config(crate::event::config::EMBEDDED_DEFAULT.as_bytes(), &registry);
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        config(bomb.as_bytes(), &registry);
        // Past the YAML recursion limit, yet short: the YAML scanner's time
        // grows with the square of the flow nesting depth.
        for h in hostile() {
            config(&h[..h.len().min(20_000)], &registry);
        }
    }
}
