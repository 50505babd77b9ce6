//! The Teams function against a mock Workflows endpoint (a real HTTP
//! server): the card request (method, path, query, body), the template as
//! the card's text, escaping of user-controlled names, and failures — a bad
//! `sig` and a refusal hidden in a 200 — dead-lettered without the URL's
//! secret.

use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, provider, refused,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "msteams");
const WORKFLOW: &str = "0f5ec9d0b7a84a6e9d8b2c3f4a5b6c7d";
const SIG: &str = "Xy9kQw3-Lm7pR2sT8vB4nC6dE1fG5hJ0kL3mN8qP2rS";

fn flow_path() -> String {
    format!("/workflows/{WORKFLOW}/triggers/manual/paths/invoke")
}

fn flow_query() -> String {
    format!("api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}")
}

/// A running function serving `notifications` against the mock Workflows.
async fn start(teams: &Receiver, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let url_file = secrets.line(
        "url",
        &format!("{}?{}", teams.url(&flow_path()), flow_query()),
    );
    let cfg = config(
        "teams",
        "msteams",
        &format!("{{urlFile: {url_file}}}"),
        notifications,
    );
    Function::start(BIN, &cfg, secrets, &[("RELAY_LOG", "debug")]).await
}

/// The dead letters, checked free of every part of the URL's secret (and
/// the log too).
fn secret_free_dead_letters(relay: &Function) -> Vec<Value> {
    let stderr = relay.stderr();
    assert!(!stderr.is_empty(), "the log is written");
    assert_absent(
        &[SIG, WORKFLOW],
        &[("dead letter", &relay.dead_letter_text()), ("log", &stderr)],
    );
    relay.dead_letters()
}

fn only_request(teams: &Receiver) -> Recorded {
    let sent = teams.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = sent.into_iter().next().unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, flow_path());
    assert_eq!(r.query, flow_query(), "the URL's query is kept as is");
    assert_eq!(r.headers["content-type"], "application/json");
    r
}

/// The Adaptive Card of a recorded request.
fn card(r: &Recorded) -> Value {
    let b = r.json();
    assert_eq!(b["type"], "message");
    let attachments = b["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(attachments[0]["contentUrl"].is_null());
    let c = attachments[0]["content"].clone();
    assert_eq!(c["type"], "AdaptiveCard");
    assert_eq!(
        c["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(c["version"], "1.4");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_event_posts_one_card() {
    let teams = Receiver::start().await;
    teams.always(&flow_path(), Some((202, None)));
    let relay = start(&teams, &[("chat", "  filter: {kinds: [PipelineRun]}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let c = card(&only_request(&teams));
    let body = c["body"].as_array().unwrap();
    assert_eq!(
        body[0],
        json!({"type": "TextBlock", "text": "✅ PipelineRun build-and-test-vjcdr succeeded",
               "weight": "Bolder", "size": "Medium", "color": "Good", "wrap": true})
    );
    assert_eq!(body[1]["type"], "FactSet");
    let facts = body[1]["facts"].as_array().unwrap();
    let fact = |t: &str| {
        facts
            .iter()
            .find(|f| f["title"] == t)
            .map(|f| f["value"].as_str().unwrap().to_string())
    };
    assert_eq!(fact("Pipeline").as_deref(), Some("build-and-test"));
    assert_eq!(fact("Namespace").as_deref(), Some("ci"));
    assert_eq!(fact("Repository").as_deref(), Some("acme/widgets"));
    assert_eq!(fact("Pull request").as_deref(), Some("#47"));
    assert_eq!(
        body[2],
        json!({"type": "TextBlock", "wrap": true,
               "text": "Tasks Completed: 3 \\(Failed: 0, Cancelled 0\\), Skipped: 0"})
    );
    assert_eq!(
        c["actions"],
        json!([
            {"type": "Action.OpenUrl", "title": "View run",
             "url": "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"},
            {"type": "Action.OpenUrl", "title": "Repository", "url": "https://github.com/acme/widgets"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_is_the_card_text() {
    let teams = Receiver::start().await;
    let relay = start(
        &teams,
        &[(
            "chat",
            "  template: '**{{ event.pipeline }}** {{ event.state }} on {{ event.scm.branch }}'",
        )],
    )
    .await;
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    let c = card(&only_request(&teams));
    let body = c["body"].as_array().unwrap();
    assert_eq!(body.len(), 3);
    assert_eq!(
        body[2]["text"], "**build-and-test** succeeded on main",
        "the template replaces the condition message, as written"
    );
}

/// The run name and condition message of this event carry HTML, markdown,
/// a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let teams = Receiver::start().await;
    let relay = start(&teams, &[("chat", "")]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let c = card(&only_request(&teams));
    let body = c["body"].as_array().unwrap();
    assert_eq!(
        body[0]["text"],
        "❌ PipelineRun <\u{2060}script>alert\\(1\\)<\u{2060}/script>\\*bold\\* failed"
    );
    assert_eq!(body[0]["color"], "Attention");
    assert_eq!(
        body[2]["text"],
        "@\u{2060}channel <\u{2060}!here> tests failed, see \\[logs\\]\\(https://evil.example.com/phish\\) `rm -rf /` \\_now\\_"
    );
    let rendered = c["body"].to_string();
    for bad in [
        "<script",
        "</script>",
        "*bold*",
        "@channel",
        "<!here>",
        "](https://evil",
        "_now_",
    ] {
        assert!(!rendered.contains(bad), "{bad} in {rendered}");
    }
    assert_eq!(
        c["actions"][0]["url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_flow_is_retried_then_delivered() {
    let teams = Receiver::start().await;
    teams.script(&flow_path(), &[(429, Some(0)), (502, None), (202, None)]);
    let relay = start(&teams, &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = teams.requests_on(&flow_path());
    let statuses: Vec<u16> = sent.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 502, 202]);
    assert!(
        sent.iter()
            .all(|r| r.body == sent[0].body && r.query == flow_query())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sig_is_dead_lettered_without_the_secret() {
    let teams = Receiver::start().await;
    // The answer even echoes the URL: its secret must still not show.
    teams.reply(
        "POST",
        &flow_path(),
        401,
        json!({"error": {"code": "DirectApiAuthorizationRequired",
            "message": format!("The request for {} must be authenticated", teams.url(&format!("{}?{}", flow_path(), flow_query())))}}),
    );
    let relay = start(&teams, &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(teams.requests().len(), 1, "permanent: asked once");
    let entries = secret_free_dead_letters(&relay);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["provider_type"], "msteams");
    assert_eq!(entries[0]["cause"]["kind"], "permanent");
    assert_eq!(entries[0]["cause"]["status"], 401);
    assert!(!answer.to_string().contains(SIG));
}

/// An Office 365 connector URL answers 200 with the refusal in its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_a_200_body_is_dead_lettered() {
    let teams = Receiver::start().await;
    teams.reply(
        "POST",
        &flow_path(),
        200,
        json!("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170"),
    );
    let relay = start(&teams, &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let entries = secret_free_dead_letters(&relay);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["cause"]["status"], 413);
    assert!(
        entries[0]["cause"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP error 413"),
        "{}",
        entries[0]
    );
}

/// The binary refuses a bad config at start, naming the error's path.
#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider("teams", "msteams", "{urlFile: /u, webhookURL: https://x}");
    let stderr = refused(BIN, &cfg);
    assert!(
        stderr.contains("Provider/teams")
            && stderr.contains("spec.msteams")
            && stderr.contains("webhookURL"),
        "{stderr}"
    );
}
