//! Fitting an event into EventBridge's 256 KB: bulky fields that no provider
//! needs go first, one kind at a time, until the event fits.

use serde_json::Value;

/// The extension attribute naming what was trimmed.
pub const TRIMMED_EXTENSION: &str = "relaytrimmed";

type Step = (&'static str, fn(&mut Value));

fn each_run(detail: &mut Value, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    if let Some(data) = detail.get_mut("data").and_then(Value::as_object_mut) {
        for key in ["pipelineRun", "taskRun", "customRun", "run"] {
            if let Some(obj) = data.get_mut(key).and_then(Value::as_object_mut) {
                f(obj);
            }
        }
    }
}

fn status(obj: &mut serde_json::Map<String, Value>) -> Option<&mut serde_json::Map<String, Value>> {
    obj.get_mut("status").and_then(Value::as_object_mut)
}

const STEPS: &[Step] = &[
    ("managedFields", |d| {
        each_run(d, |o| {
            if let Some(md) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                md.remove("managedFields");
            }
        })
    }),
    ("taskSpec", |d| {
        each_run(d, |o| {
            if let Some(s) = status(o) {
                s.remove("taskSpec");
            }
        })
    }),
    ("pipelineSpec", |d| {
        each_run(d, |o| {
            if let Some(s) = status(o) {
                s.remove("pipelineSpec");
            }
        })
    }),
    ("steps", |d| {
        each_run(d, |o| {
            if let Some(s) = status(o) {
                for key in ["steps", "sidecars"] {
                    if let Some(steps) = s.get_mut(key).and_then(Value::as_array_mut) {
                        for step in steps {
                            // Keep what a summary shows: the name and how it ended.
                            let name = step.get("name").cloned();
                            let code = step.pointer("/terminated/exitCode").cloned();
                            let reason = step.pointer("/terminated/reason").cloned();
                            let mut kept = serde_json::Map::new();
                            if let Some(n) = name {
                                kept.insert("name".into(), n);
                            }
                            if code.is_some() || reason.is_some() {
                                let mut t = serde_json::Map::new();
                                if let Some(c) = code {
                                    t.insert("exitCode".into(), c);
                                }
                                if let Some(r) = reason {
                                    t.insert("reason".into(), r);
                                }
                                kept.insert("terminated".into(), Value::Object(t));
                            }
                            *step = Value::Object(kept);
                        }
                    }
                }
            }
        })
    }),
    ("lastAppliedConfiguration", |d| {
        each_run(d, |o| {
            if let Some(a) = o
                .get_mut("metadata")
                .and_then(|m| m.get_mut("annotations"))
                .and_then(Value::as_object_mut)
            {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
    }),
];

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The event does not fit even without its bulky fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Trims `detail` (a structured CloudEvent) until it is at most `limit`
/// bytes; returns what was trimmed (also recorded in the event's
/// `relaytrimmed` extension), or `Err` when it cannot fit.
pub fn fit(detail: &mut Value, limit: usize) -> Result<Vec<&'static str>, TooLarge> {
    let mut trimmed = Vec::new();
    for (name, step) in STEPS {
        if size(detail) <= limit {
            break;
        }
        step(detail);
        trimmed.push(*name);
        detail[TRIMMED_EXTENSION] = Value::String(trimmed.join(","));
    }
    if size(detail) <= limit {
        Ok(trimmed)
    } else {
        Err(TooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(pad: usize) -> Value {
        json!({
            "specversion": "1.0", "id": "x", "type": "dev.tekton.event.taskrun.successful.v1", "source": "/s",
            "data": {"taskRun": {
                "metadata": {"name": "t", "managedFields": [{"f": "x".repeat(pad)}]},
                "status": {"taskSpec": {"steps": [{"script": "y".repeat(pad)}]},
                           "steps": [{"name": "build", "terminated": {"exitCode": 0, "reason": "Completed"}, "imageID": "z".repeat(pad)}]}
            }}
        })
    }

    #[test]
    fn small_events_are_untouched() {
        let mut e = event(10);
        let before = e.clone();
        assert_eq!(fit(&mut e, 10_000), Ok(vec![]));
        assert_eq!(e, before);
    }

    #[test]
    fn bulky_fields_go_in_order_until_it_fits() {
        let mut e = event(100_000);
        let trimmed = fit(&mut e, 120_000).unwrap();
        assert_eq!(trimmed, ["managedFields", "taskSpec"]);
        assert_eq!(e[TRIMMED_EXTENSION], "managedFields,taskSpec");
        assert_eq!(e["id"], "x", "the CloudEvent id is preserved");
        let mut e = event(100_000);
        let trimmed = fit(&mut e, 2_000).unwrap();
        assert_eq!(
            trimmed,
            ["managedFields", "taskSpec", "pipelineSpec", "steps"]
        );
        assert_eq!(
            e.pointer("/data/taskRun/status/steps/0"),
            Some(&json!({"name": "build", "terminated": {"exitCode": 0, "reason": "Completed"}}))
        );
        assert_eq!(fit(&mut event(100_000), 100), Err(TooLarge));
    }
}
