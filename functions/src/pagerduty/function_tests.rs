//! The PagerDuty function against a mock Events API v2 (a real HTTP
//! server): a failed run triggers, the next success on the same pipeline,
//! repository and branch resolves with the same `dedup_key`; the template is
//! the summary; user text is bounded and inert; a 400 is dead-lettered
//! without the routing key; a 429 is retried; config errors name their path.

use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, provider, refused,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "pagerduty");
const ROUTING_KEY: &str = "R0UT1NG-k3y-0123456789abcdef0123";
const ENQUEUE: &str = "/v2/enqueue";
const DEDUP_KEY: &str = "tekton/ci/build-and-test/acme/widgets@main";

/// A function whose Provider has `settings` (beside the routing key and the
/// mock's URL) serving `notifications` (`page` first).
async fn start(pd: &Receiver, settings: &str, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let key = secrets.line("routing-key", ROUTING_KEY);
    let settings = format!(
        "{{baseURL: \"{}\", routingKeyFile: {key}{settings}}}",
        pd.url("")
    );
    let cfg = config("pd", "pagerduty", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// PagerDuty's answer to an accepted event.
fn accept(pd: &Receiver) {
    pd.reply(
        "POST",
        ENQUEUE,
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": DEDUP_KEY}),
    );
}

fn assert_event_request(r: &Recorded) -> Value {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, ENQUEUE);
    assert_eq!(r.query, "");
    assert_eq!(r.headers["content-type"], "application/json");
    // The key travels in the body, never in a header.
    assert!(r.headers.get("authorization").is_none());
    let b = r.json();
    assert_eq!(b["routing_key"], ROUTING_KEY);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_triggers_and_the_next_success_resolves() {
    let pd = Receiver::start().await;
    accept(&pd);
    let relay = start(&pd, "", &[("page", "  filter: {}")]).await;

    relay.scenario("tekton-pipelinerun-failure").await;
    // TaskRun events and non-terminal states send nothing: one trigger.
    let sent = pd.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let b = assert_event_request(&sent[0]);
    assert_eq!(b["event_action"], "trigger");
    assert_eq!(b["dedup_key"], DEDUP_KEY);
    assert_eq!(b["client"], "Tekton");
    let run = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vpg5w";
    assert_eq!(b["client_url"], run);
    assert_eq!(
        b["links"],
        json!([
            {"href": run, "text": "PipelineRun build-and-test-vpg5w"},
            {"href": "https://github.com/acme/widgets", "text": "Repository"}
        ])
    );
    let p = &b["payload"];
    assert_eq!(
        p["summary"],
        "PipelineRun build-and-test-vpg5w failed (acme/widgets@main): \
         Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
    );
    assert_eq!(p["severity"], "error");
    assert_eq!(p["source"], "github.com/acme/widgets");
    assert_eq!(p["component"], "build-and-test");
    assert_eq!(p["group"], "ci");
    assert_eq!(p["class"], "PipelineRun");
    assert!(
        p["timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-14T12:")
    );
    let d = &p["custom_details"];
    assert_eq!(d["Run"], "PipelineRun/build-and-test-vpg5w");
    assert_eq!(d["Pull request"], "#52");
    assert_eq!(d["Commit"], "7a86f7a");
    assert_eq!(d["Reason"], "Failed");

    relay.scenario("tekton-pipelinerun-success").await;
    let sent = pd.requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let b = assert_event_request(&sent[1]);
    assert_eq!(
        b,
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": DEDUP_KEY})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_triggers_and_other_states_are_filtered_with_a_reason() {
    let pd = Receiver::start().await;
    accept(&pd);
    let relay = start(
        &pd,
        ", severity: warning",
        &[("page", "  params: {severity: critical}")],
    )
    .await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/002-pipelinerun-running.json",
        ))
        .await;
    assert_eq!(answer["deliveries"][0]["outcome"], "filtered", "{answer}");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "a running run neither triggers nor resolves an alert"
    );
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/006-taskrun-fetch-source-successful.json",
        ))
        .await;
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "pagerduty acts on PipelineRun events (settings kinds), not TaskRun"
    );
    assert!(pd.requests().is_empty());

    relay.scenario("tekton-timeout").await;
    let sent = pd.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let b = assert_event_request(&sent[0]);
    assert_eq!(b["event_action"], "trigger");
    // A push to main: the same key as the pull request runs against main.
    assert_eq!(b["dedup_key"], DEDUP_KEY);
    assert_eq!(b["payload"]["severity"], "critical", "the param wins");
    assert!(
        b["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains(" timed out "),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_is_the_summary() {
    let pd = Receiver::start().await;
    accept(&pd);
    let relay = start(
        &pd,
        "",
        &[("page", "  template: \"{{ event.pipeline }} {{ event.state }} on {{ event.scm.branch }} ({{ notification }})\"")],
    )
    .await;
    relay
        .send(&fixture(
            "tekton-pipelinerun-failure/012-pipelinerun-failed.json",
        ))
        .await;
    let sent = pd.requests();
    assert_eq!(sent.len(), 1);
    let b = assert_event_request(&sent[0]);
    assert_eq!(
        b["payload"]["summary"],
        "build-and-test failed on main (page)"
    );
}

/// The run name, condition message and link carry HTML, markdown and chat
/// mentions. PagerDuty shows text as text, so the JSON string is enough for
/// markup; what PagerDuty forwards to chat must not mention anyone, and
/// every field stays within PagerDuty's limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_bounded_and_cannot_mention() {
    let pd = Receiver::start().await;
    accept(&pd);
    // A second Notification whose template says far more than PagerDuty's
    // 1024-character summary.
    let long = "  template: \"{% for i in range(100) %}{{ event.name }} {{ event.message }}\\n{% endfor %}\"";
    let relay = start(&pd, "", &[("page", "  filter: {}"), ("long", long)]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let sent = pd.requests();
    assert_eq!(sent.len(), 2);
    let bodies: Vec<Value> = sent.iter().map(assert_event_request).collect();
    let (plain, templated) = match bodies[0]["payload"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("PipelineRun ")
    {
        true => (&bodies[0], &bodies[1]),
        false => (&bodies[1], &bodies[0]),
    };

    let summary = plain["payload"]["summary"].as_str().unwrap();
    assert_eq!(
        summary.replace('\u{2060}', ""),
        "PipelineRun <script>alert(1)</script>*bold* failed (acme/widgets@main): \
         @channel <!here> tests failed, see [logs](https://evil.example.com/phish) `rm -rf /` _now_"
    );
    for text in [
        summary.to_string(),
        plain["payload"]["custom_details"].to_string(),
    ] {
        for bad in ["@channel", "<!here>"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
    // The link's target was percent-encoded by the engine.
    assert_eq!(
        plain["client_url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );
    assert_eq!(plain["dedup_key"], DEDUP_KEY);

    // The template's text is the summary: one line, cut to 1024 characters.
    let summary = templated["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…') && !summary.contains('\n'));
    assert!(
        summary.starts_with("<script>alert(1)</script>*bold* @channel <!here> tests failed"),
        "the user's own text, as written: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_is_dead_lettered_without_the_routing_key() {
    let pd = Receiver::start().await;
    // PagerDuty's 400 names what is wrong; this one even echoes the key.
    pd.reply(
        "POST",
        ENQUEUE,
        400,
        json!({"status": "invalid event", "message": "Event object is invalid",
               "errors": [format!("routing_key {ROUTING_KEY} is not an integration key")]}),
    );
    let relay = start(&pd, "", &[("page", "  filter: {}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-failure/012-pipelinerun-failed.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(pd.requests().len(), 1, "permanent: never retried");

    let entry = relay.only_permanent_dead_letter("pagerduty", 400);
    assert_eq!(entry["notification"], "page");
    let message = entry["cause"]["message"].as_str().unwrap();
    assert!(message.contains("Event object is invalid"), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
    relay.assert_secrets_absent(&[ROUTING_KEY], &answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_event_is_retried() {
    let pd = Receiver::start().await;
    pd.script(ENQUEUE, &[(429, Some(0))]);
    let relay = start(&pd, "", &[("page", "  filter: {}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = pd.requests();
    assert_eq!(
        sent.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(assert_event_request(&sent[1])["event_action"], "resolve");
}

/// Retries are logged as they happen, before the delivery ends: an answer
/// echoing the key is masked there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_echoing_the_key_is_masked_in_retry_logs() {
    let pd = Receiver::start().await;
    pd.reply(
        "POST",
        ENQUEUE,
        429,
        json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly",
               "errors": [format!("routing_key {ROUTING_KEY}")]}),
    );
    let relay = start(&pd, "", &[("page", "  filter: {}")]).await;
    let f = fixture("tekton-pipelinerun-failure/012-pipelinerun-failed.json");
    let (status, answer) = relay.send_raw(&f).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["outcome"], "failed", "{answer}");
    assert_eq!(pd.requests().len(), 4, "retried up to the attempts");
    let log = relay.f.stderr();
    assert!(log.contains("retrying"), "{log}");
    assert!(log.contains("arriving too quickly"), "{log}");
    assert_absent(
        &[ROUTING_KEY],
        &[("log", &log), ("answer", &answer.to_string())],
    );
}

#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider("pd", "pagerduty", "{routingKeyFile: /k, severity: fatal}");
    let err = refused(BIN, &cfg);
    assert!(err.contains("spec.pagerduty.severity"), "{err}");
    assert!(err.contains("unknown variant `fatal`"), "{err}");
}
