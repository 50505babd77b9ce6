//! `knative/examples/tekton-trigger.yaml` is the other half of the loop
//! marker: its binding must read the header this provider sends, its
//! template must set the label this provider reads, and every body field it
//! binds must be in the payload.

use std::collections::BTreeSet;
use std::path::Path;

use relay_tekton_trigger::{DEPTH_HEADER, DEPTH_LABEL, payload};
use serde::Deserialize;
use serde_json::Value;

fn documents() -> Vec<Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knative/examples/tekton-trigger.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("valid YAML document"))
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the example");
    found[0]
}

fn params(v: &Value) -> &Vec<Value> {
    v["spec"]["params"].as_array().expect("spec.params")
}

#[test]
fn the_binding_reads_the_header_and_the_template_sets_the_label() {
    let docs = documents();
    let binding = one(&docs, "TriggerBinding");
    let template = one(&docs, "TriggerTemplate");
    let listener = one(&docs, "EventListener");

    // The binding param fed by exactly the header the provider sends.
    let header_ref = format!("$(header.{DEPTH_HEADER})");
    let fed: Vec<&str> = params(binding)
        .iter()
        .filter(|p| p["value"] == header_ref.as_str())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(fed.len(), 1, "one binding param reads {header_ref}");
    let param = fed[0];

    // The template declares it and sets exactly the label the provider reads.
    assert!(
        params(template).iter().any(|p| p["name"] == param),
        "the template declares {param}"
    );
    let runs = template["spec"]["resourcetemplates"].as_array().unwrap();
    assert!(!runs.is_empty());
    for run in runs {
        assert_eq!(run["kind"], "PipelineRun");
        assert_eq!(
            run["metadata"]["labels"][DEPTH_LABEL],
            format!("$(tt.params.{param})"),
            "every PipelineRun it creates carries {DEPTH_LABEL}"
        );
    }

    // The listener wires that binding to that template.
    let triggers = listener["spec"]["triggers"].as_array().unwrap();
    assert!(triggers.iter().all(|t| {
        t["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["ref"] == binding["metadata"]["name"])
            && t["template"]["ref"] == template["metadata"]["name"]
    }));
}

#[test]
fn every_bound_body_field_is_in_the_payload() {
    let docs = documents();
    let binding = one(&docs, "TriggerBinding");
    let body = payload::body(&relay_core::sample::run_event(), 1);
    let sent: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut bound = 0;
    for p in params(binding) {
        let value = p["value"].as_str().unwrap();
        if let Some(field) = value
            .strip_prefix("$(body.")
            .and_then(|v| v.strip_suffix(')'))
        {
            let top = field.split('.').next().unwrap();
            assert!(
                sent.contains(top),
                "the binding reads body.{field}, never sent"
            );
            bound += 1;
        }
    }
    assert!(bound >= 3, "the binding reads the payload");
}
