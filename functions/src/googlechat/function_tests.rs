//! The Google Chat function against a mock Chat webhook (a real HTTP
//! server): the card request (method, path, the URL's `key` and `token`
//! kept, body), one thread per PipelineRun, the template as message text
//! with mentions disarmed, escaping of user-controlled names, and a 403
//! dead-lettered without the webhook's key or token.

use relay_tests::function::{Function, Secrets, config, document, fixture, provider, refused};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "googlechat");
const SPACE: &str = "/v1/spaces/AAAAq1B2c3D/messages";
const KEY: &str = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
const TOKEN: &str = "Xq3vB8nM2kL5pR7tY1wZ4cF6hJ9dG0sA-eU_iO3yT5E%3D";
/// The success scenario's PipelineRun.
const RUN_UID: &str = "6cad4a26-8d11-4ece-9738-f7d93d9c1724";

fn credentials() -> String {
    format!("key={KEY}&token={TOKEN}")
}

/// A running function serving `notifications` against the mock Chat.
async fn start(chat: &Receiver, settings: &str, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let url_file = secrets.line("url", &format!("{}?{}", chat.url(SPACE), credentials()));
    let cfg = config(
        "chat",
        "googlechat",
        &format!("{{urlFile: {url_file}{settings}}}"),
        notifications,
    );
    Function::start(BIN, &cfg, secrets, &[("RELAY_LOG", "debug")]).await
}

fn assert_chat_request(r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, SPACE);
    assert_eq!(r.headers["content-type"], "application/json");
}

fn only_request(chat: &Receiver) -> Recorded {
    let sent = chat.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = sent.into_iter().next().unwrap();
    assert_chat_request(&r);
    r
}

fn widgets(body: &Value) -> Vec<Value> {
    let cards = body["cardsV2"].as_array().unwrap();
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["cardId"], "tekton-run");
    cards[0]["card"]["sections"][0]["widgets"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_event_posts_one_card() {
    let chat = Receiver::start().await;
    let relay = start(&chat, "", &[("chat", "  filter: {kinds: [PipelineRun]}")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let r = only_request(&chat);
    assert_eq!(
        r.query,
        credentials(),
        "the URL's key and token, as written"
    );
    let b = r.json();
    assert!(b.get("text").is_none(), "no template, no text: {b}");
    assert!(b.get("thread").is_none());
    assert_eq!(
        b["fallbackText"],
        "✅ PipelineRun build-and-test-vjcdr succeeded"
    );
    assert_eq!(
        b["cardsV2"][0]["card"]["header"],
        json!({"title": "✅ PipelineRun build-and-test-vjcdr succeeded", "subtitle": "ci · build-and-test"})
    );
    let w = widgets(&b);
    assert_eq!(
        w[0],
        json!({"decoratedText": {"topLabel": "State", "text": "<font color=\"#2EB67D\"><b>succeeded</b></font>"}})
    );
    let fact = |label: &str| {
        w.iter()
            .find(|x| x["decoratedText"]["topLabel"] == label)
            .map(|x| x["decoratedText"]["text"].as_str().unwrap().to_string())
    };
    assert_eq!(fact("Pipeline").as_deref(), Some("build-and-test"));
    assert_eq!(fact("Repository").as_deref(), Some("acme/widgets"));
    assert_eq!(fact("Pull request").as_deref(), Some("#47"));
    assert!(
        w.iter().any(|x| x["textParagraph"]["text"]
            == "Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 0")
    );
    assert_eq!(
        w.last().unwrap()["buttonList"]["buttons"],
        json!([
            {"text": "View run", "onClick": {"openLink": {"url": "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"}}},
            {"text": "Repository", "onClick": {"openLink": {"url": "https://github.com/acme/widgets"}}},
        ])
    );
}

/// Every message about one PipelineRun, its TaskRuns' included, goes to
/// one thread; the template is the message text, its mentions disarmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_to_its_thread_and_the_template_is_the_text() {
    let chat = Receiver::start().await;
    let relay = start(
        &chat,
        ", threadPerRun: true",
        &[(
            "chat",
            "  filter: {states: [started, succeeded]}\n  template: '*{{ event.name }}* {{ event.state }} <users/all>'",
        )],
    )
    .await;
    relay.scenario("tekton-pipelinerun-success").await;
    let sent = chat.requests();
    // The PipelineRun and its three TaskRuns, each started and succeeded.
    assert_eq!(sent.len(), 8, "{sent:?}");
    for r in &sent {
        assert_chat_request(r);
        assert_eq!(
            r.query,
            format!(
                "{}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
                credentials()
            )
        );
        let b = r.json();
        assert_eq!(
            b["thread"],
            json!({"threadKey": format!("tekton-{RUN_UID}")})
        );
        let text = b["text"].as_str().unwrap();
        assert!(
            text.ends_with(" <\u{2060}users/all>") && text.starts_with('*'),
            "the template as written, the mention broken: {text}"
        );
    }
    let last = sent.last().unwrap().json();
    assert_eq!(
        last["text"],
        "*build-and-test-vjcdr* succeeded <\u{2060}users/all>"
    );
}

/// The run name and condition message of this event carry HTML, markdown,
/// a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let chat = Receiver::start().await;
    let relay = start(&chat, "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let b = only_request(&chat).json();
    // Unformatted fields: shown as written, no tag spelled.
    let title = "❌ PipelineRun <\u{2060}script>alert(1)<\u{2060}/script>*bold* failed";
    assert_eq!(b["fallbackText"], title);
    assert_eq!(b["cardsV2"][0]["card"]["header"]["title"], title);
    // Formatted (HTML subset) fields: entities.
    let w = widgets(&b);
    assert!(
        w.iter().any(|x| x["textParagraph"]["text"]
            == "@channel &lt;!here&gt; tests failed, see [logs](https://evil.example.com/phish) `rm -rf /` _now_"),
        "{w:?}"
    );
    let rendered = b.to_string();
    for bad in ["<script", "</script>", "<!here>", "<users/"] {
        assert!(!rendered.contains(bad), "{bad} in {rendered}");
    }
    assert_eq!(
        w.last().unwrap()["buttonList"]["buttons"][0]["onClick"]["openLink"]["url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );
}

/// A space takes about one webhook message a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_retried_then_delivered() {
    let chat = Receiver::start().await;
    chat.script(SPACE, &[(429, Some(0))]);
    let relay = start(&chat, "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = chat.requests_on(SPACE);
    let statuses: Vec<u16> = sent.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert_eq!(sent[0].body, sent[1].body, "the same message, sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_dead_lettered_without_the_credentials() {
    let chat = Receiver::start().await;
    // The answer even echoes the URL: the key and token must still not show.
    chat.reply(
        "POST",
        SPACE,
        403,
        json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": format!("Invalid token for {}?{}", chat.url(SPACE), credentials())}}),
    );
    let relay = start(&chat, ", threadPerRun: true", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(chat.requests().len(), 1, "permanent: asked once");

    relay.only_permanent_dead_letter("googlechat", 403);
    let text = relay.dead_letter_text();
    assert!(text.contains("PERMISSION_DENIED"), "{text}");
    assert!(!relay.stderr().is_empty(), "the log is written");
    let decoded_token = TOKEN.replace("%3D", "=");
    relay.assert_secrets_absent(&[KEY, TOKEN, decoded_token.as_str()], &answer);
}

/// The binary refuses a bad config at start, naming the error's path.
#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider(
            "chat",
            "googlechat",
            "{urlFile: /u, threadPerRun: sometimes}",
        );
    let stderr = refused(BIN, &cfg);
    assert!(
        stderr.contains("Provider/chat") && stderr.contains("spec.googlechat.threadPerRun"),
        "{stderr}"
    );
}
