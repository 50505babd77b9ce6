//! The body an EventListener receives: the webhook payload v1 (docs/design.md),
//! extended with what a TriggerBinding needs to start a PipelineRun from a
//! Flux source or another run: the event's format, branch, Flux revision,
//! labels and the trigger depth (also sent as a header).

use relay_core::RunEvent;
use relay_core::model::EventFormat;
use serde_json::{Value, json};

pub fn body(ev: &RunEvent, depth: u32) -> Value {
    let mut v = crate::webhook::payload::v1(ev);
    let format = match ev.format {
        EventFormat::Tekton => "tekton",
        EventFormat::Cdevents => "cdevents",
        EventFormat::Flux => "flux",
    };
    let extra = json!({
        "format": format,
        "branch": ev.scm.branch,
        // Flux's `metadata.revision` (`main@sha1:<sha>`), as sent.
        "revision": ev.annotations.get("revision"),
        "labels": ev.labels,
        "trigger": {"depth": depth},
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_the_webhook_payload() {
        let mut ev = relay_core::sample::run_event();
        ev.format = EventFormat::Flux;
        ev.annotations
            .insert("revision".into(), "main@sha1:247aabb".into());
        let b = body(&ev, 1);
        assert_eq!(b["version"], "1");
        assert_eq!(b["sha"], "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4");
        assert_eq!(b["format"], "flux");
        assert_eq!(b["branch"], "main");
        assert_eq!(b["revision"], "main@sha1:247aabb");
        assert_eq!(b["trigger"]["depth"], 1);
        let ev = relay_core::sample::run_event();
        assert_eq!(body(&ev, 2)["revision"], Value::Null);
    }
}
