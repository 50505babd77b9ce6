//! The Opsgenie function against a mock Alert API (a real HTTP server): a
//! failed run creates an alert, the next success on the same pipeline,
//! repository and branch closes it by the same alias; the template is the
//! message; user text is bounded and inert; a 403 is dead-lettered without
//! the API key; a 429 is retried; config errors name their path.

use relay_tests::function::{Function, Secrets, config, document, fixture, provider, refused};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "opsgenie");
const API_KEY: &str = "0g-4p1-k3y-5ecret-0123456789";
const ALERTS: &str = "/v2/alerts";
const ALIAS: &str = "tekton:ci:build-and-test:acme:widgets@main";
const CLOSE: &str = "/v2/alerts/tekton%3Aci%3Abuild-and-test%3Aacme%3Awidgets%40main/close";

/// A function whose Provider has `settings` (beside the API key and the
/// mock's URL) serving `notifications` (`alert` first).
async fn start(og: &Receiver, settings: &str, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let key = secrets.line("api-key", API_KEY);
    let settings = format!(
        "{{baseURL: \"{}\", apiKeyFile: {key}{settings}}}",
        og.url("")
    );
    let cfg = config("og", "opsgenie", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// Opsgenie's answer to an accepted request (processed later).
fn accept(og: &Receiver) {
    let answer = json!({"result": "Request will be processed", "took": 0.107, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"});
    og.reply("POST", ALERTS, 202, answer.clone());
    og.reply("POST", CLOSE, 202, answer);
}

fn assert_alert_request(r: &Recorded) -> Value {
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["authorization"], format!("GenieKey {API_KEY}"));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["accept"], "application/json");
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_creates_and_the_next_success_closes_by_alias() {
    let og = Receiver::start().await;
    accept(&og);
    let relay = start(&og, ", tags: [team:payments]", &[("alert", "  filter: {}")]).await;

    relay.scenario("tekton-pipelinerun-failure").await;
    // TaskRun events and non-terminal states send nothing: one creation.
    let sent = og.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].path.as_str(), sent[0].query.as_str()),
        (ALERTS, "")
    );
    let b = assert_alert_request(&sent[0]);
    let run = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vpg5w";
    assert_eq!(
        b["message"],
        "PipelineRun build-and-test-vpg5w failed (acme/widgets@main)"
    );
    assert_eq!(b["alias"], ALIAS);
    assert_eq!(b["priority"], "P3");
    assert_eq!(b["source"], "Tekton");
    assert_eq!(b["entity"], "github.com/acme/widgets");
    assert_eq!(
        b["tags"],
        json!([
            "tekton",
            "namespace:ci",
            "pipeline:build-and-test",
            "repository:acme/widgets",
            "team:payments"
        ])
    );
    assert_eq!(b["details"]["Pull request"], "#52");
    assert_eq!(b["details"]["Commit"], "7a86f7a");
    assert_eq!(b["details"]["Link"], run);
    let d = b["description"].as_str().unwrap();
    assert!(
        d.starts_with("Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1\n\n"),
        "{d}"
    );
    assert!(d.ends_with(&format!("\nRun: {run}")), "{d}");

    relay.scenario("tekton-pipelinerun-success").await;
    let sent = og.requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].path, CLOSE);
    assert_eq!(sent[1].query, "identifierType=alias");
    let b = assert_alert_request(&sent[1]);
    assert_eq!(
        b,
        json!({"source": "Tekton", "note": "PipelineRun build-and-test-vjcdr succeeded: https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_that_neither_create_nor_close_are_filtered_with_a_reason() {
    let og = Receiver::start().await;
    accept(&og);
    let relay = start(
        &og,
        ", priority: P4, source: ci-east",
        &[("alert", "  params: {priority: P1}")],
    )
    .await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/001-pipelinerun-started.json",
        ))
        .await;
    assert_eq!(answer["deliveries"][0]["outcome"], "filtered", "{answer}");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "a started run neither creates nor closes an alert"
    );
    assert!(og.requests().is_empty());
    relay.scenario("tekton-timeout").await;
    let sent = og.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let b = assert_alert_request(&sent[0]);
    assert_eq!(b["alias"], ALIAS);
    assert_eq!(b["priority"], "P1", "the param wins");
    assert_eq!(b["source"], "ci-east");
    assert!(
        b["message"].as_str().unwrap().contains(" timed out "),
        "{b}"
    );
}

/// The run name and condition message carry HTML, markdown and chat
/// mentions. Opsgenie shows text as text, so the JSON string is enough for
/// markup; what it forwards to chat must not mention anyone, and every
/// field stays within its limit (the template's message too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_bounded_and_cannot_mention() {
    let og = Receiver::start().await;
    accept(&og);
    let templated = "  template: \"{{ event.name }} {{ event.message }} in {{ notification }}\"";
    let relay = start(
        &og,
        "",
        &[("alert", "  filter: {}"), ("templated", templated)],
    )
    .await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let sent = og.requests();
    assert_eq!(sent.len(), 2);
    let bodies: Vec<Value> = sent.iter().map(assert_alert_request).collect();
    let (plain, templated) = if bodies[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("PipelineRun ")
    {
        (&bodies[0], &bodies[1])
    } else {
        (&bodies[1], &bodies[0])
    };
    assert_eq!(
        plain["message"],
        "PipelineRun <script>alert(1)</script>*bold* failed (acme/widgets@main)"
    );
    let text = plain.to_string();
    for bad in ["@channel", "<!here>"] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
    assert!(
        plain["description"]
            .as_str()
            .unwrap()
            .replace('\u{2060}', "")
            .starts_with(
                "@channel <!here> tests failed, see [logs](https://evil.example.com/phish)"
            )
    );
    assert_eq!(plain["alias"], ALIAS);

    // The template's text is the message: the user's own, as written, cut
    // to Opsgenie's 130 characters.
    let m = templated["message"].as_str().unwrap();
    assert_eq!(m.chars().count(), 130);
    assert!(
        m.starts_with("<script>alert(1)</script>*bold* @channel <!here> tests failed")
            && m.ends_with('…'),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_dead_lettered_without_the_api_key() {
    let og = Receiver::start().await;
    og.reply(
        "POST",
        ALERTS,
        403,
        json!({"message": "You are not authorized for this request", "took": 0.001, "requestId": "r"}),
    );
    let relay = start(&og, "", &[("alert", "  filter: {}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-failure/012-pipelinerun-failed.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(og.requests().len(), 1, "permanent: never retried");

    let entry = relay.only_permanent_dead_letter("opsgenie", 403);
    assert_eq!(entry["notification"], "alert");
    relay.assert_secrets_absent(&[API_KEY], &answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_close_is_retried() {
    let og = Receiver::start().await;
    og.script(CLOSE, &[(429, Some(0))]);
    let relay = start(&og, "", &[("alert", "  filter: {}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        format!("closed alert {ALIAS}")
    );
    let sent = og.requests_on(CLOSE);
    assert_eq!(
        sent.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
}

#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider("og", "opsgenie", "{apiKeyFile: /k, priority: P9}");
    let err = refused(BIN, &cfg);
    assert!(err.contains("spec.opsgenie.priority"), "{err}");
    assert!(err.contains("unknown variant `P9`"), "{err}");
}
