//! The tekton-trigger function against a mock EventListener (a real HTTP
//! server): the loop marker (depth header sent, a triggered run's events
//! cut at `maxDepth`), a Flux revision forwarded with its sha and branch,
//! the GitHub-style signature and bearer token, templates, user-controlled
//! names carried as inert JSON, a 401 dead-lettered without the secrets,
//! and config errors named by path.

use relay::tekton_trigger::{DEPTH_LABEL, SIGNATURE_HEADER};
use relay_tests::fixtures::RequestFile;
use relay_tests::function::{Function, Secrets, assert_absent, config, fixture, provider, refused};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::Value;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "tekton-trigger");
const TOKEN: &str = "el-t0ken-5ecret-0123456789";
const HMAC: &str = "hm4c-5ecret-abcdef";
const LISTENER: &str = "/el";
const SUCCESS: &str = "tekton-pipelinerun-success/017-pipelinerun-successful.json";

/// A function whose Provider has `extra` settings (lines, not indented) and
/// one Notification with `spec` (YAML lines under `spec:`).
async fn start(el: &Receiver, extra: &str, spec: &str) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let hmac = secrets.file("hmac", HMAC);
    let settings = format!(
        "url: \"{}\"\ntokenFile: {token}\nhmacSecretFile: {hmac}\nheaders: {{X-Team: ci}}\n{extra}",
        el.url(LISTENER)
    );
    let cfg = config("el", "tekton-trigger", &settings, &[("trigger", spec)]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// The successful PipelineRun as another run, started by a trigger at `depth`.
fn triggered(depth: &str) -> RequestFile {
    let mut f = fixture(SUCCESS);
    f.headers
        .insert("Ce-Id".into(), format!("triggered-at-{depth}"));
    let meta = &mut f.body["pipelineRun"]["metadata"];
    let n = depth.bytes().fold(0u64, |a, b| a * 256 + u64::from(b));
    meta["uid"] = format!("00000000-0000-4000-8000-{n:012x}").into();
    meta["labels"][DEPTH_LABEL] = depth.into();
    f
}

/// What every request to the listener carries: JSON, the configured
/// header, the token and a valid signature over the body.
fn assert_signed(r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-team"], "ci");
    assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        r.headers[SIGNATURE_HEADER],
        relay::webhook::signature(HMAC.as_bytes(), &r.body).as_str()
    );
}

fn only_request(el: &Receiver) -> Recorded {
    let sent = el.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, LISTENER);
    sent[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggered_runs_events_are_not_forwarded_again() {
    let el = Receiver::start().await;
    let relay = start(&el, "", "  filter: {kinds: [PipelineRun]}").await;

    // A run nobody triggered: forwarded, the new run will be at depth 1.
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&el);
    assert_signed(&r);
    assert_eq!(r.headers["x-relay-trigger-depth"], "1");
    let b = r.json();
    assert_eq!(b["version"], "1");
    assert_eq!(b["kind"], "PipelineRun");
    assert_eq!(b["name"], "build-and-test-vjcdr");
    assert_eq!(b["state"], "succeeded");
    assert_eq!(b["sha"], "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4");
    assert_eq!(b["format"], "tekton");
    assert_eq!(b["trigger"]["depth"], 1);

    // That run's own events (label depth 1): the loop is cut.
    el.clear();
    let answer = relay.send(&triggered("1")).await;
    let d = &answer["deliveries"][0];
    assert_eq!(answer["outcome"], "filtered", "{answer}");
    assert_eq!(d["outcome"], "filtered");
    let why = d["detail"].as_str().unwrap();
    assert!(
        why.starts_with("loop cut:") && why.contains("depth 1"),
        "{why}"
    );

    // A label that is not a number is not trusted either.
    let answer = relay.send(&triggered("x1")).await;
    assert_eq!(answer["outcome"], "filtered", "{answer}");
    assert!(el.requests().is_empty(), "the listener got nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeper_chain_is_allowed_up_to_max_depth() {
    let el = Receiver::start().await;
    let relay = start(&el, "maxDepth: 2", "").await;
    let answer = relay.send(&triggered("1")).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&el);
    assert_signed(&r);
    assert_eq!(r.headers["x-relay-trigger-depth"], "2");
    assert_eq!(r.json()["labels"][DEPTH_LABEL], "1");
    let answer = relay.send(&triggered("2")).await;
    assert_eq!(answer["outcome"], "filtered", "{answer}");
    assert_eq!(el.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_revision_reaches_the_listener() {
    let el = Receiver::start().await;
    let relay = start(&el, "", "").await;
    let answer = relay
        .send(&fixture(
            "flux-events/001-flux-gitrepository-widgets-info.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&el);
    assert_signed(&r);
    assert_eq!(r.headers["x-relay-trigger-depth"], "1");
    let b = r.json();
    assert_eq!(b["format"], "flux");
    assert_eq!(b["kind"], "GitRepository");
    assert_eq!(b["name"], "widgets");
    assert_eq!(b["namespace"], "flux-system");
    assert_eq!(
        b["revision"],
        "main@sha1:247aabb58d323d9e0d3be8ee03cc2f9b21460c5a"
    );
    assert_eq!(b["sha"], "247aabb58d323d9e0d3be8ee03cc2f9b21460c5a");
    assert_eq!(b["branch"], "main");
    assert_eq!(b["state"], "succeeded");
    assert_eq!(b["reason"], "GitOperationSucceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_writes_the_body() {
    let el = Receiver::start().await;
    let relay = start(
        &el,
        "",
        "  template: '{\"pipeline\": {{ event.pipeline | tojson }}, \"sha\": {{ event.scm.sha | tojson }}}'",
    )
    .await;
    relay.send(&fixture(SUCCESS)).await;
    let r = only_request(&el);
    assert_signed(&r);
    assert_eq!(r.headers["x-relay-trigger-depth"], "1");
    assert_eq!(
        r.json(),
        serde_json::json!({"pipeline": "build-and-test", "sha": "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_is_not_json_is_dead_lettered() {
    let el = Receiver::start().await;
    let relay = start(&el, "", "  template: 'run {{ event.name }}'").await;
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert!(el.requests().is_empty());
    let text = relay.dead_letter_text();
    assert!(text.contains("invalid JSON"), "{text}");
}

/// The run name, message and links carry HTML, markdown and chat
/// mentions. An EventListener reads JSON, renders nothing: they arrive as
/// the same strings, JSON-encoded, and the headers stay plain ASCII.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_arrive_as_inert_json_strings() {
    let el = Receiver::start().await;
    let relay = start(&el, "", "").await;
    let f = fixture("bad-input/008-markup-injection.json");
    let answer = relay.send(&f).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&el);
    assert_signed(&r);
    let b: Value = serde_json::from_slice(&r.body).expect("the body is JSON");
    let sent = &f.body["pipelineRun"];
    assert_eq!(b["name"], sent["metadata"]["name"]);
    assert_eq!(b["name"], "<script>alert(1)</script>*bold*");
    assert_eq!(b["message"], sent["status"]["conditions"][0]["message"]);
    assert!(b["message"].as_str().unwrap().contains("@channel <!here>"));
    // The dashboard link is the engine's sanitised one, percent-encoded.
    if let Some(url) = b["url"].as_str() {
        assert!(!url.contains('<') && !url.contains(' '), "{url}");
    }
    for (k, v) in &r.headers {
        assert!(v.to_str().is_ok(), "header {k} is not plain ASCII");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_dead_lettered_without_the_secrets() {
    let el = Receiver::start().await;
    el.always(LISTENER, Some((401, None)));
    let relay = start(&el, "", "").await;
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(el.requests().len(), 1, "permanent: asked once");

    let entry = relay.only_permanent_dead_letter("tekton-trigger", 401);
    assert_eq!(entry["event"]["id"], "15fc899e-4fd5-4dbe-bbdc-968b7afb2c68");
    assert_absent(
        &[TOKEN, HMAC],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried() {
    let el = Receiver::start().await;
    el.script(LISTENER, &[(503, Some(0))]);
    let relay = start(&el, "", "").await;
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = el.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].status, 503);
    assert_eq!(sent[0].body, sent[1].body, "the same request again");
}

#[test]
fn config_errors_name_their_path() {
    let cfg = provider(
        "el",
        "tekton-trigger",
        "{url: \"http://el:8080\", maxDepth: 0}",
    );
    let stderr = refused(BIN, &cfg);
    assert!(
        stderr.contains("spec.tekton-trigger.maxDepth") && stderr.contains("at least 1"),
        "{stderr}"
    );
}

// Was `tests/example.rs`.
mod example {
//! `knative/examples/tekton-trigger.yaml` is the other half of the loop
//! marker: its binding must read the header this provider sends, its
//! template must set the label this provider reads, and every body field it
//! binds must be in the payload.

use std::collections::BTreeSet;
use std::path::Path;

use relay::tekton_trigger::{DEPTH_HEADER, DEPTH_LABEL, payload};
use serde::Deserialize;
use serde_json::Value;

fn documents() -> Vec<Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../knative/examples/tekton-trigger.yaml");
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
}
