//! The cloudevents function against a mock sink (a real HTTP server):
//! the event forwarded as received or as a CDEvent (spec 0.4), in binary
//! and structured mode, read back by the relay's own decoder and the
//! CDEvents SDK; templates; hostile names kept valid on the wire; a 401
//! dead-lettered without the token; config errors named by path.

use relay_core::RunEvent;
use relay_core::ingress::{Accepted, decode, parse_request};
use relay_tests::fixtures::RequestFile;
use relay_tests::function::{Function, Secrets, assert_absent, config, fixture, provider, refused};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "cloudevents");
const TOKEN: &str = "ce-t0ken-5ecret-0123456789";
const SINK: &str = "/sink";
const STARTED: &str = "tekton-pipelinerun-success/001-pipelinerun-started.json";
const RUNNING: &str = "tekton-pipelinerun-success/002-pipelinerun-running.json";
const TASK_DONE: &str = "tekton-pipelinerun-success/011-taskrun-unit-tests-successful.json";
const SUCCESS: &str = "tekton-pipelinerun-success/017-pipelinerun-successful.json";
const FLUX: &str = "flux-events/001-flux-gitrepository-widgets-info.json";
const RUN_PATH: &str = "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/build-and-test-vjcdr";

/// A function whose Provider has `settings` (YAML lines under
/// `cloudevents:`, not indented) and one Notification with `spec` (lines
/// under `spec:`).
async fn start(sink: &Receiver, settings: &str, spec: &str) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let settings = format!(
        "url: \"{}\"\ntokenFile: {token}\nheaders: {{X-Team: ci}}\n{settings}",
        sink.url(SINK)
    );
    let cfg = config("sink", "cloudevents", &settings, &[("forward", spec)]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// A request as the relay's own ingress decodes it.
fn decoded(headers: &http::HeaderMap, body: Vec<u8>) -> RunEvent {
    let inbound = parse_request(headers, body.into()).expect("a CloudEvent the relay accepts");
    match decode(inbound).expect("decodable") {
        Accepted::Run { event, .. } => *event,
        Accepted::Ignored { event_type } => panic!("ignored type {event_type}"),
    }
}

fn decoded_fixture(f: &RequestFile) -> RunEvent {
    let mut h = http::HeaderMap::new();
    for (k, v) in f.send_headers() {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    decoded(&h, f.body_bytes())
}

fn only_request(sink: &Receiver) -> Recorded {
    let sent = sink.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, SINK);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(sent[0].headers["x-team"], "ci");
    sent[0].clone()
}

/// What a receiving relay reads from the forwarded event is what this one
/// read from the event it received.
fn assert_same_run(got: &RunEvent, want: &RunEvent) {
    assert_eq!(got.event_id, want.event_id);
    assert_eq!(got.event_type, want.event_type);
    assert_eq!(got.time, want.time);
    assert_eq!(
        (&got.kind, &got.name, &got.namespace, &got.uid),
        (&want.kind, &want.name, &want.namespace, &want.uid)
    );
    assert_eq!(got.state, want.state);
    assert_eq!(
        (&got.condition_status, &got.reason, &got.message),
        (&want.condition_status, &want.reason, &want.message)
    );
    assert_eq!(got.pipeline, want.pipeline);
    assert_eq!(got.task, want.task);
    assert_eq!(got.pipeline_task, want.pipeline_task);
    assert_eq!(got.pipeline_run, want.pipeline_run);
    assert_eq!(got.labels, want.labels);
    assert_eq!(got.annotations, want.annotations);
    assert_eq!(
        (&got.started_at, &got.completed_at),
        (&want.started_at, &want.completed_at)
    );
    assert_eq!(got.results, want.results);
    assert_eq!(got.child_references, want.child_references);
    assert_eq!(got.pipeline_tasks, want.pipeline_tasks);
    assert_eq!(got.scm, want.scm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_event_in_binary_mode() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "", "").await;
    let f = fixture(SUCCESS);
    let answer = relay.send(&f).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&sink);
    let h = &r.headers;
    assert_eq!(h["ce-specversion"], "1.0");
    assert_eq!(h["ce-id"], "15fc899e-4fd5-4dbe-bbdc-968b7afb2c68");
    assert_eq!(h["ce-type"], "dev.tekton.event.pipelinerun.successful.v1");
    // Forwarded as received: Tekton's own source and data.
    assert_eq!(h["ce-source"], f.headers["Ce-Source"].as_str());
    assert_eq!(h["ce-subject"], "build-and-test-vjcdr");
    assert_eq!(r.json(), f.body, "the data as received");
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert_eq!(
        time(h["ce-time"].to_str().unwrap()),
        time(&f.headers["Ce-Time"])
    );
    assert_eq!(h["content-type"], "application/json");
    let b = r.json();
    assert_eq!(b["pipelineRun"]["metadata"]["name"], "build-and-test-vjcdr");
    assert_eq!(
        b["pipelineRun"]["status"]["conditions"][0]["status"],
        "True"
    );
    assert_same_run(&decoded(h, r.body.to_vec()), &decoded_fixture(&f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_event_in_structured_mode() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "mode: structured", "").await;
    let f = fixture(TASK_DONE);
    relay.send(&f).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["content-type"], "application/cloudevents+json");
    assert!(!r.headers.contains_key("ce-id"));
    let b = r.json();
    assert_eq!(b["specversion"], "1.0");
    assert_eq!(b["id"], f.headers["Ce-Id"].as_str());
    assert_eq!(b["type"], "dev.tekton.event.taskrun.successful.v1");
    assert_eq!(b["source"], f.headers["Ce-Source"].as_str());
    assert_eq!(b["data"], f.body, "the data as received");
    assert_eq!(b["datacontenttype"], "application/json");
    assert_eq!(b["data"]["taskRun"]["kind"], "TaskRun");
    assert_same_run(&decoded(&r.headers, r.body.to_vec()), &decoded_fixture(&f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_event_is_forwarded_as_a_cloudevent() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "", "").await;
    let f = fixture(FLUX);
    relay.send(&f).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["ce-type"], "io.fluxcd.notification.info");
    // As the relay's ingress wraps a Flux payload.
    assert_eq!(
        r.headers["ce-source"],
        "/flux/GitRepository/flux-system/widgets"
    );
    assert_eq!(r.headers["ce-subject"], "GitRepository/flux-system/widgets");
    let b = r.json();
    assert_eq!(b["involvedObject"]["kind"], "GitRepository");
    assert_eq!(b["severity"], "info");
    assert_eq!(
        b["metadata"]["revision"],
        "main@sha1:247aabb58d323d9e0d3be8ee03cc2f9b21460c5a"
    );
    let back = decoded(&r.headers, r.body.to_vec());
    let want = decoded_fixture(&f);
    assert_eq!(
        back.event_id, want.event_id,
        "the same id: a redelivery is one"
    );
    assert_eq!(
        (&back.kind, &back.name, back.state),
        (&want.kind, &want.name, want.state)
    );
    assert_eq!(
        (&back.scm.sha, &back.scm.branch),
        (&want.scm.sha, &want.scm.branch)
    );
    assert_eq!(back.annotations, want.annotations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdevent_received_is_forwarded_as_a_cdevent() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "", "").await;
    let f = fixture("cdevents/006-cdevent-v04-pipelinerun-finished-failure.json");
    relay.send(&f).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["ce-id"], f.headers["Ce-Id"].as_str());
    assert_eq!(
        r.headers["ce-type"],
        "dev.cdevents.pipelinerun.finished.0.2.0"
    );
    let b = r.json();
    cdevent(&b);
    assert_eq!(b["context"]["id"], f.body["context"]["id"]);
    assert_eq!(b["subject"]["content"]["outcome"], "failure");
    assert_eq!(
        b["customData"]["pipelinesascode.tekton.dev/sha"],
        f.body["customData"]["pipelinesascode.tekton.dev/sha"]
    );
    let (back, want) = (decoded(&r.headers, r.body.to_vec()), decoded_fixture(&f));
    assert_eq!((back.state, &back.scm), (want.state, &want.scm));
}

/// A CDEvent as the SDK reads it, and its JSON, checked against the
/// spec 0.4 envelope.
fn cdevent(v: &Value) -> cdevents_sdk::CDEvent {
    assert_eq!(v["context"]["version"], "0.4.1");
    for k in ["id", "source", "type", "timestamp"] {
        assert!(v["context"][k].is_string(), "context.{k}: {v}");
    }
    assert!(v["subject"]["id"].is_string() && v["subject"]["content"].is_object());
    serde_json::from_value(v.clone()).expect("a CDEvent the SDK accepts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdevents_in_binary_mode() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "format: cdevents", "").await;

    let started = fixture(STARTED);
    relay.send(&started).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["ce-specversion"], "1.0");
    assert_eq!(
        r.headers["ce-type"],
        "dev.cdevents.pipelinerun.started.0.2.0"
    );
    assert_eq!(r.headers["ce-id"], started.headers["Ce-Id"].as_str());
    assert_eq!(r.headers["ce-source"], RUN_PATH);
    assert_eq!(r.headers["ce-subject"], "ci/build-and-test-vjcdr");
    let b = r.json();
    let cd = cdevent(&b);
    assert_eq!(cd.ty(), "dev.cdevents.pipelinerun.started.0.2.0");
    assert_eq!(b["subject"]["type"], "pipelineRun");
    assert_eq!(b["subject"]["source"], RUN_PATH);
    assert_eq!(b["subject"]["content"]["pipelineName"], "build-and-test");
    assert_eq!(
        b["customData"]["pipelinesascode.tekton.dev/sha"],
        "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4"
    );

    // Running has no CDEvent: declined, nothing sent.
    sink.clear();
    let answer = relay.send(&fixture(RUNNING)).await;
    assert_eq!(answer["outcome"], "filtered", "{answer}");
    assert!(
        answer["deliveries"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no event for a PipelineRun running"),
        "{answer}"
    );
    assert!(sink.requests().is_empty());

    // A finished TaskRun, read back by the relay: the same outcome.
    let done = fixture(TASK_DONE);
    relay.send(&done).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["ce-type"], "dev.cdevents.taskrun.finished.0.2.0");
    let b = r.json();
    cdevent(&b);
    let c = &b["subject"]["content"];
    assert_eq!(c["outcome"], "success");
    assert_eq!(c["taskName"], "unit-tests");
    assert_eq!(c["pipelineRun"]["id"], "ci/build-and-test-vjcdr");
    let back = decoded(&r.headers, r.body.to_vec());
    assert_eq!(back.state, relay_core::RunState::Succeeded);
    assert_eq!(back.kind, "TaskRun");
    assert_eq!(back.scm.sha, decoded_fixture(&done).scm.sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdevents_in_structured_mode_with_a_source() {
    let sink = Receiver::start().await;
    let relay = start(
        &sink,
        "format: cdevents\nmode: structured\nsource: https://relay.example.com/tekton",
        "",
    )
    .await;
    relay.send(&fixture(SUCCESS)).await;
    let r = only_request(&sink);
    assert_eq!(r.headers["content-type"], "application/cloudevents+json");
    let b = r.json();
    assert_eq!(b["type"], "dev.cdevents.pipelinerun.finished.0.2.0");
    assert_eq!(b["source"], "https://relay.example.com/tekton");
    let data = &b["data"];
    cdevent(data);
    assert_eq!(
        data["context"]["source"],
        "https://relay.example.com/tekton"
    );
    assert_eq!(data["subject"]["source"], RUN_PATH);
    assert_eq!(data["subject"]["content"]["outcome"], "success");
    assert_eq!(data["subject"]["content"]["pipelineName"], "build-and-test");
    // Flux events have no CDEvent.
    let answer = relay.send(&fixture(FLUX)).await;
    assert_eq!(answer["outcome"], "filtered", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_writes_the_data() {
    let sink = Receiver::start().await;
    let template =
        "  template: '{\"run\": {{ event.name | tojson }}, \"state\": {{ event.state | tojson }}}'";
    let relay = start(&sink, "", template).await;
    relay.send(&fixture(SUCCESS)).await;
    let r = only_request(&sink);
    assert_eq!(
        r.headers["ce-type"],
        "dev.tekton.event.pipelinerun.successful.v1"
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        json!({"run": "build-and-test-vjcdr", "state": "succeeded"})
    );

    // For CDEvents it is the customData; text that is not JSON is a string.
    let sink = Receiver::start().await;
    let relay = start(
        &sink,
        "format: cdevents",
        "  template: 'done: {{ event.name }}'",
    )
    .await;
    relay.send(&fixture(SUCCESS)).await;
    let b = only_request(&sink).json();
    cdevent(&b);
    assert_eq!(b["customData"], "done: build-and-test-vjcdr");
}

/// Names carry HTML, markdown and mentions: a sink renders nothing, so they
/// travel verbatim in the JSON data, while the header and URI forms stay
/// valid (percent-encoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_stay_valid_on_the_wire() {
    let sink = Receiver::start().await;
    let relay = start(&sink, "", "").await;
    let f = fixture("bad-input/008-markup-injection.json");
    let answer = relay.send(&f).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let r = only_request(&sink);
    let name = "<script>alert(1)</script>*bold*";
    assert_eq!(
        r.headers["ce-subject"], name,
        "printable ASCII is sent as is"
    );
    // The source as Tekton sent it (a URI-reference it built from the name).
    assert_eq!(r.headers["ce-source"], f.headers["Ce-Source"].as_str());
    let b = r.json();
    assert_eq!(b["pipelineRun"]["metadata"]["name"], name);
    let message = b["pipelineRun"]["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("@channel <!here>"), "{message}");
    assert_same_run(&decoded(&r.headers, r.body.to_vec()), &decoded_fixture(&f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_dead_lettered_without_the_token() {
    let sink = Receiver::start().await;
    sink.always(SINK, Some((401, None)));
    let relay = start(&sink, "", "").await;
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(sink.requests().len(), 1, "permanent: asked once");
    let entry = relay.only_permanent_dead_letter("cloudevents", 401);
    assert_eq!(entry["event"]["id"], "15fc899e-4fd5-4dbe-bbdc-968b7afb2c68");
    assert_absent(
        &[TOKEN],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried() {
    let sink = Receiver::start().await;
    sink.script(SINK, &[(429, Some(0))]);
    let relay = start(&sink, "", "").await;
    let answer = relay.send(&fixture(SUCCESS)).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = sink.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].status, 429);
    assert_eq!(sent[1].headers["ce-id"], sent[0].headers["ce-id"]);
}

#[test]
fn config_errors_name_their_path() {
    let cfg = provider(
        "sink",
        "cloudevents",
        "{url: \"http://sink:8080\", mode: batch}",
    );
    let stderr = refused(BIN, &cfg);
    assert!(
        stderr.contains("spec.cloudevents.mode") && stderr.contains("batch"),
        "{stderr}"
    );
}
