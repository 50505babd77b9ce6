//! The Discord function against a mock Discord (a real HTTP server): the
//! execute-webhook request (method, path, `wait=true`, body), the template
//! as message text, escaping of user-controlled names, a rate limit waited
//! out, and a deleted webhook dead-lettered without its token.

use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, provider, refused,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::json;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "discord");
const WEBHOOK_ID: &str = "112233445566778899";
const TOKEN: &str = "dcSup3rSecretWebhookToken-abcdefghijklmnop";

fn hook_path() -> String {
    format!("/api/webhooks/{WEBHOOK_ID}/{TOKEN}")
}

/// A running function serving `notifications` against the mock Discord;
/// `query` is appended to the webhook URL (`?thread_id=…`).
async fn start(
    dc: &Receiver,
    query: &str,
    settings: &str,
    notifications: &[(&str, &str)],
) -> Function {
    let secrets = Secrets::new();
    // A trailing newline, as `kubectl create secret --from-file` leaves.
    let url_file = secrets.line("url", &format!("{}{query}", dc.url(&hook_path())));
    let cfg = config(
        "dc",
        "discord",
        &format!("{{urlFile: {url_file}{settings}}}"),
        notifications,
    );
    Function::start(BIN, &cfg, secrets, &[("RELAY_LOG", "debug")]).await
}

fn only_request(dc: &Receiver) -> Recorded {
    let sent = dc.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = sent.into_iter().next().unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, hook_path());
    assert_eq!(r.headers["content-type"], "application/json");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_event_posts_one_embed() {
    let dc = Receiver::start().await;
    let relay = start(
        &dc,
        "",
        ", username: Tekton CI",
        &[("chat", "  filter: {kinds: [PipelineRun]}")],
    )
    .await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let r = only_request(&dc);
    assert_eq!(r.query, "wait=true");
    let b = r.json();
    assert!(b.get("content").is_none(), "no template, no text: {b}");
    assert_eq!(b["username"], "Tekton CI");
    assert_eq!(b["allowed_mentions"], json!({"parse": []}));
    let embeds = b["embeds"].as_array().unwrap();
    assert_eq!(embeds.len(), 1);
    let e = &embeds[0];
    assert_eq!(
        e["title"],
        "✅ PipelineRun build\\-and\\-test\\-vjcdr succeeded"
    );
    assert_eq!(
        e["url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"
    );
    assert_eq!(e["color"], 0x2EB67D);
    assert_eq!(
        e["description"],
        "Tasks Completed\\: 3 \\(Failed\\: 0, Cancelled 0\\), Skipped\\: 0"
    );
    let fields: Vec<(String, String)> = e["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["inline"], true);
            (
                f["name"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(field("Pipeline"), Some("build\\-and\\-test"));
    assert_eq!(field("Namespace"), Some("ci"));
    assert_eq!(
        field("Repository"),
        Some("[acme/widgets](https://github.com/acme/widgets)")
    );
    assert_eq!(field("Pull request"), Some("\\#47"));
    assert!(e["timestamp"].as_str().unwrap().starts_with("20"), "{e}");
    assert_eq!(e["footer"]["text"], "Tekton");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_is_the_message_text_in_the_thread_named_by_the_url() {
    let dc = Receiver::start().await;
    let relay = start(
        &dc,
        "?thread_id=4455",
        "",
        &[(
            "chat",
            "  template: '**{{ event.name }}** is {{ event.state }} @everyone'",
        )],
    )
    .await;
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    let r = only_request(&dc);
    assert_eq!(r.query, "thread_id=4455&wait=true");
    let b = r.json();
    // The template is the operator's own markdown, sent as written; the
    // empty allow-list keeps its @everyone from pinging anyone.
    assert_eq!(
        b["content"],
        "**build-and-test-vjcdr** is succeeded @everyone"
    );
    assert_eq!(b["allowed_mentions"], json!({"parse": []}));
    assert_eq!(b["embeds"].as_array().unwrap().len(), 1);
}

/// The run name and condition message of this event carry HTML, markdown,
/// a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let dc = Receiver::start().await;
    let relay = start(&dc, "", "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let b = only_request(&dc).json();
    assert_eq!(b["allowed_mentions"], json!({"parse": []}));
    let e = &b["embeds"][0];
    assert_eq!(
        e["title"],
        "❌ PipelineRun \\<script\\>alert\\(1\\)\\</script\\>\\*bold\\* failed"
    );
    let description = e["description"].as_str().unwrap();
    assert_eq!(
        description,
        "@\u{200B}channel \\<!here\\> tests failed, see \\[logs\\]\\(https\\://evil.example.com/phish\\) \\`rm \\-rf /\\` \\_now\\_"
    );
    let rendered = format!("{} {description} {}", e["title"], e["fields"]);
    for bad in ["@channel", "*bold*", "](https://evil", "_now_", "<!here>"] {
        assert!(!rendered.contains(bad), "{bad} in {rendered}");
    }
    // The link target is percent-encoded, not markup.
    assert_eq!(
        e["url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_then_delivered() {
    let dc = Receiver::start().await;
    dc.script(&hook_path(), &[(429, Some(1))]);
    let relay = start(&dc, "", "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let statuses: Vec<u16> = dc
        .requests_on(&hook_path())
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
    let sent = dc.requests_on(&hook_path());
    assert_eq!(sent[0].body, sent[1].body, "the same message, sent again");
}

/// A failing Discord whose answers echo the URL: retried, then handed back
/// to the sender, and the token is in no log line of any attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_and_never_logs_the_token() {
    let dc = Receiver::start().await;
    dc.reply(
        "POST",
        &hook_path(),
        503,
        json!({"message": format!("upstream down for {}", dc.url(&hook_path()))}),
    );
    let relay = start(&dc, "", "", &[("chat", "")]).await;
    let f = fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json");
    let (status, answer) = relay.send_raw(&f).await;
    assert_eq!(status, 503, "the sender is told to retry: {answer}");
    assert_eq!(answer["outcome"], "failed", "{answer}");
    assert!(dc.requests().len() > 1, "retried before giving up");
    let stderr = relay.f.stderr();
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_absent(
        &[TOKEN, WEBHOOK_ID],
        &[("log", &stderr), ("answer", &answer.to_string())],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_webhook_is_dead_lettered_without_its_token() {
    let dc = Receiver::start().await;
    // The answer even echoes the URL: the token must still not show.
    dc.reply(
        "POST",
        &hook_path(),
        404,
        json!({"message": "Unknown Webhook", "code": 10015, "url": dc.url(&hook_path())}),
    );
    let relay = start(&dc, "", "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(dc.requests().len(), 1, "permanent: asked once");

    relay.only_permanent_dead_letter("discord", 404);
    let text = relay.dead_letter_text();
    assert!(text.contains("Unknown Webhook"), "{text}");
    assert!(!relay.stderr().is_empty(), "the log is written");
    relay.assert_secrets_absent(&[TOKEN, WEBHOOK_ID], &answer);
}

/// The binary refuses a bad config at start, naming the error's path.
#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider("dc", "discord", "{urlFile: /u, username: my discord bot}");
    let stderr = refused(BIN, &cfg);
    assert!(
        stderr.contains("Provider/dc") && stderr.contains("spec.discord.username"),
        "{stderr}"
    );
}
