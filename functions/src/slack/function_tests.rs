//! The Slack function against a mock Slack (a real HTTP server): incoming
//! webhook posts, bot-token posts (`Authorization: Bearer`, channel, Block
//! Kit), one message per run updated in place (`mode: update`), a thread per
//! run, `ok: false` answers (permanent: dead-lettered without the token;
//! `ratelimited`: retried), escaping of user-controlled names, templates and
//! configuration errors.

use relay_tests::attack::{INVISIBLE, PHISH_HOST, markup_injection_plus};
use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, notification, provider, refused,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "slack");
const TOKEN: &str = "xoxb-1234567890-0987654321-s3cretT0ken";
const HOOK: &str = "/services/T0001/B0002/h00kS3cretPart";
const POST: &str = "/api/chat.postMessage";
const UPDATE: &str = "/api/chat.update";
const RUN_URL: &str = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr";

/// How the Provider reaches Slack.
enum Via<'a> {
    Webhook,
    /// A bot token with these extra settings (`channel: …, mode: …`).
    Token(&'a str),
}

/// A running function serving `notifications` against the mock Slack.
async fn start(slack: &Receiver, via: Via<'_>, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let settings = match via {
        Via::Webhook => {
            let hook = secrets.line("webhook-url", &slack.url(HOOK));
            format!("{{webhookURLFile: {hook}}}")
        }
        Via::Token(extra) => {
            let token = secrets.line("token", TOKEN);
            format!(
                "{{tokenFile: {token}, baseURL: \"{}\", {extra}}}",
                slack.url("/api")
            )
        }
    };
    let cfg = config("sl", "slack", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn posted(slack: &Receiver, channel: &str, ts: &str) {
    slack.reply(
        "POST",
        POST,
        200,
        json!({"ok": true, "channel": channel, "ts": ts, "message": {}}),
    );
}

fn assert_api_request(r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
}

/// Every text of a message's blocks, joined.
fn block_texts(body: &Value) -> String {
    let mut out = Vec::new();
    for b in body["blocks"].as_array().unwrap() {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push(t.to_string());
        }
        for f in b["fields"].as_array().into_iter().flatten() {
            out.push(f["text"].as_str().unwrap().to_string());
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"].as_str() {
                out.push(t.to_string());
            }
        }
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_webhook_gets_a_block_kit_message() {
    let slack = Receiver::start().await;
    let relay = start(
        &slack,
        Via::Webhook,
        &[("runs", "  filter: {kinds: [PipelineRun]}")],
    )
    .await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "posted to the incoming webhook"
    );

    let sent = slack.requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", HOOK));
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.get("authorization").is_none());
    let b = r.json();
    assert_eq!(b["text"], "✅ PipelineRun build-and-test-vjcdr succeeded");
    assert_eq!(b["unfurl_links"], false);
    assert!(
        b.get("channel").is_none(),
        "a webhook posts to its own channel"
    );
    let blocks = b["blocks"].as_array().unwrap();
    assert_eq!(
        blocks[0]["text"]["text"],
        format!("✅ *<{RUN_URL}|PipelineRun build-and-test-vjcdr succeeded>*")
    );
    let texts = block_texts(&b);
    for want in [
        "*Pipeline*\nbuild-and-test",
        "*Namespace*\nci",
        "*Repository*\nacme/widgets",
        "*Branch*\nmain",
        "*Pull request*\n#47",
        "*Commit*\n0c5c7fd",
        "<https://github.com/acme/widgets|acme/widgets>",
    ] {
        assert!(texts.contains(want), "{want} missing from {texts}");
    }
    let button = &blocks.last().unwrap()["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], RUN_URL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_token_posts_to_the_channel_of_each_notification() {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1700000000.000100");
    let relay = start(
        &slack,
        Via::Token("channel: \"#ci\""),
        &[
            ("ci", "  filter: {kinds: [PipelineRun]}"),
            (
                "alerts",
                "  filter: {kinds: [PipelineRun]}\n  params: {channel: C0ALERTS}",
            ),
        ],
    )
    .await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-failure/012-pipelinerun-failed.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "message 1700000000.000100 posted"
    );

    let sent = slack.requests_on(POST);
    assert_eq!(sent.len(), 2);
    assert_eq!(slack.requests().len(), 2);
    let mut channels: Vec<String> = sent
        .iter()
        .map(|r| r.json()["channel"].as_str().unwrap().to_string())
        .collect();
    channels.sort();
    assert_eq!(channels, ["#ci", "C0ALERTS"]);
    for r in &sent {
        assert_api_request(r);
        let b = r.json();
        assert!(b.get("thread_ts").is_none());
        assert!(
            b["text"].as_str().unwrap().starts_with("❌ PipelineRun "),
            "{b}"
        );
        let texts = block_texts(&b);
        assert!(texts.contains("*Reason*\nFailed"), "{texts}");
        assert!(texts.contains(">Tasks Completed: 2 (Failed: 1"), "{texts}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_mode_keeps_one_message_per_run() {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1700000000.000100");
    slack.reply(
        "POST",
        UPDATE,
        200,
        json!({"ok": true, "channel": "C0CHAN", "ts": "1700000000.000100"}),
    );
    let relay = start(
        &slack,
        Via::Token("channel: \"#ci\", mode: update"),
        &[("run", "")],
    )
    .await;
    relay.scenario("tekton-pipelinerun-success").await;

    let created = slack.requests_on(POST);
    assert_eq!(created.len(), 1, "one message per run");
    assert_eq!(created[0].json()["channel"], "#ci");
    let updates = slack.requests_on(UPDATE);
    assert!(updates.len() >= 5, "{} updates", updates.len());
    assert_eq!(slack.requests().len(), 1 + updates.len());
    let mut last_body = created[0].json();
    for r in &updates {
        assert_api_request(r);
        let b = r.json();
        // The channel id Slack answered, not the name configured.
        assert_eq!(b["channel"], "C0CHAN");
        assert_eq!(b["ts"], "1700000000.000100");
        assert_ne!(
            b["blocks"], last_body["blocks"],
            "an unchanged message is not re-sent"
        );
        last_body = b;
    }
    let texts = block_texts(&last_body);
    assert_eq!(
        last_body["text"],
        "✅ PipelineRun build-and-test-vjcdr succeeded"
    );
    // Each task on its line, linked to its run, with its state and duration.
    for task in ["fetch-source", "unit-tests", "build-image"] {
        assert!(
            texts
                .lines()
                .any(|l| l.starts_with("✅ <https://tekton.acme.dev/")
                    && l.contains(&format!("|{task}> · succeeded · "))),
            "{task}: {texts}"
        );
    }
    assert!(texts.contains("*Duration*\n3m 20s"), "{texts}");
    assert!(!texts.contains("running"), "{texts}");
}

/// The last update of a run's message, after a scenario in update mode.
async fn final_run_message(scenario: &str, extra: &str) -> (Receiver, Value) {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1700000000.000100");
    slack.reply("POST", UPDATE, 200, json!({"ok": true}));
    let relay = start(&slack, Via::Token(extra), &[("run", "")]).await;
    relay.scenario(scenario).await;
    let last = slack.requests_on(UPDATE).last().unwrap().json();
    (slack, last)
}

/// Events in another order (the PipelineRun's success before its last
/// TaskRun's): the final message is the same complete summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_message_ends_complete_whatever_the_order() {
    let (slack, last) =
        final_run_message("tekton-out-of-order", "channel: C0CHAN, mode: update").await;
    assert_eq!(slack.requests_on(POST).len(), 1);
    assert_eq!(
        last["text"],
        "✅ PipelineRun build-and-test-gbd26 succeeded"
    );
    let texts = block_texts(&last);
    for task in ["fetch-source", "unit-tests", "build-image"] {
        assert!(
            texts.contains(&format!("|{task}> · succeeded · ")),
            "{task}: {texts}"
        );
    }
}

/// `mode: update` with `thread: true`: the run's message is kept current
/// and every later event is a reply under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_mode_with_a_thread_replies_under_the_run_message() {
    let (slack, last) = final_run_message(
        "tekton-pipelinerun-success",
        "channel: C0CHAN, mode: update, thread: true",
    )
    .await;
    let posts = slack.requests_on(POST);
    assert_eq!(posts.len(), 17, "the run's message, then 16 replies");
    assert!(posts[0].json().get("thread_ts").is_none());
    assert!(
        posts[1..]
            .iter()
            .all(|r| r.json()["thread_ts"] == "1700000000.000100")
    );
    assert_eq!(
        posts.last().unwrap().json()["text"],
        "✅ PipelineRun build-and-test-vjcdr succeeded"
    );
    assert_eq!(last["ts"], "1700000000.000100");
    assert!(block_texts(&last).contains("|build-image> · succeeded · "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_run_message_is_posted_anew() {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1.000001");
    let relay = start(
        &slack,
        Via::Token("channel: C0CHAN, mode: update"),
        &[("run", "")],
    )
    .await;
    for f in [
        "001-pipelinerun-started.json",
        "002-pipelinerun-running.json",
    ] {
        relay
            .send(&fixture(&format!("tekton-pipelinerun-success/{f}")))
            .await;
    }
    assert_eq!(slack.requests_on(UPDATE).len(), 1);
    // Someone deleted it.
    slack.reply(
        "POST",
        UPDATE,
        200,
        json!({"ok": false, "error": "message_not_found"}),
    );
    posted(&slack, "C0CHAN", "2.000002");
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/006-taskrun-fetch-source-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(slack.requests_on(POST).len(), 2);
    // Later events update the new one.
    slack.reply("POST", UPDATE, 200, json!({"ok": true}));
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    let updates = slack.requests_on(UPDATE);
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[2].json()["ts"], "2.000002");
    assert_eq!(slack.requests_on(POST).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_mode_replies_under_the_runs_first_message() {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1700000000.000100");
    let relay = start(
        &slack,
        Via::Token("channel: \"#ci\", thread: true"),
        &[("run", "")],
    )
    .await;
    relay.scenario("tekton-pipelinerun-success").await;

    let sent = slack.requests_on(POST);
    assert_eq!(sent.len(), 17, "every event");
    assert_eq!(slack.requests().len(), 17);
    let parent = sent[0].json();
    assert!(parent.get("thread_ts").is_none());
    assert_eq!(parent["channel"], "#ci");
    assert_eq!(
        parent["text"],
        "▶️ PipelineRun build-and-test-vjcdr started"
    );
    for r in &sent[1..] {
        assert_api_request(r);
        let b = r.json();
        assert_eq!(b["thread_ts"], "1700000000.000100", "{b}");
        assert_eq!(b["channel"], "C0CHAN");
    }
    let last = sent.last().unwrap().json();
    assert_eq!(
        last["text"],
        "✅ PipelineRun build-and-test-vjcdr succeeded"
    );
    assert_eq!(
        last["reply_broadcast"], true,
        "the outcome shows in the channel"
    );
    let broadcast = sent
        .iter()
        .filter(|r| r.json().get("reply_broadcast").is_some())
        .count();
    assert_eq!(broadcast, 1);
    assert!(
        sent.iter()
            .any(|r| r.json()["text"] == "✅ TaskRun build-and-test-vjcdr-unit-tests succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_errors_are_dead_lettered_without_the_token() {
    let slack = Receiver::start().await;
    slack.reply(
        "POST",
        POST,
        200,
        json!({"ok": false, "error": "invalid_auth"}),
    );
    let relay = start(&slack, Via::Token("channel: C0CHAN"), &[("ci", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(slack.requests().len(), 1, "permanent: asked once");

    let entry = relay.only_permanent_dead_letter("slack", 200);
    assert!(
        entry["cause"]["message"]
            .as_str()
            .unwrap()
            .contains("Slack chat.postMessage: invalid_auth"),
        "{entry}"
    );
    assert_absent(
        &[TOKEN, "s3cretT0ken"],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_4xx_is_dead_lettered_without_the_url() {
    let slack = Receiver::start().await;
    slack.always(HOOK, Some((404, None)));
    let relay = start(&slack, Via::Webhook, &[("ci", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(slack.requests().len(), 1);
    let text = relay.dead_letter_text();
    assert!(text.contains("\"status\":404"), "{text}");
    assert_absent(
        &["h00kS3cretPart", "/services/"],
        &[("dead letter", &text), ("log", &relay.stderr())],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried() {
    let slack = Receiver::start().await;
    // The webhook's 429 is retried in place, after its Retry-After.
    slack.script(HOOK, &[(429, Some(0))]);
    let hook = start(&slack, Via::Webhook, &[("ci", "")]).await;
    let event = fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json");
    let answer = hook.send(&event).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let statuses: Vec<u16> = slack.requests_on(HOOK).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);

    // The Web API's `ratelimited` is retryable: the sender is asked to come
    // back, nothing is dead-lettered, and the redelivery posts.
    slack.reply(
        "POST",
        POST,
        200,
        json!({"ok": false, "error": "ratelimited"}),
    );
    let bot = start(&slack, Via::Token("channel: C0CHAN"), &[("ci", "")]).await;
    let (status, answer) = bot.send_raw(&event).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["deliveries"][0]["outcome"], "failed", "{answer}");
    assert!(!bot.dead_letter_path().exists());
    posted(&slack, "C0CHAN", "1.5");
    let answer = bot.send(&event).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(slack.requests_on(POST).len(), 2);
}

/// The run name and condition message of this event carry HTML, mrkdwn,
/// a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup_or_mentions() {
    let slack = Receiver::start().await;
    posted(&slack, "C0CHAN", "1.1");
    let relay = start(&slack, Via::Token("channel: C0CHAN"), &[("ci", "")]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let sent = slack.requests_on(POST);
    assert_eq!(sent.len(), 1);
    let b = sent[0].json();
    let texts = format!("{}\n{}", b["text"].as_str().unwrap(), block_texts(&b));
    for bad in [
        "<script",
        "*bold*",
        "@channel",
        "<!here>",
        "`rm",
        "_now_",
        "<https://evil",
    ] {
        assert!(!texts.contains(bad), "{bad} in {texts}");
    }
    // Shown, inert.
    assert!(
        texts.contains("&lt;script&gt;alert(1)&lt;/script&gt;\u{2217}bold\u{2217}"),
        "{texts}"
    );
    assert!(
        texts.contains("@\u{2060}channel &lt;!here&gt; tests failed"),
        "{texts}"
    );
    // The link target is percent-encoded by the engine: it cannot end the link.
    let button = &b["blocks"].as_array().unwrap().last().unwrap()["elements"][0];
    assert!(
        button["url"]
            .as_str()
            .unwrap()
            .ends_with("pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A")
    );
    for block in b["blocks"].as_array().unwrap() {
        if let Some(t) = block.get("text").filter(|t| t["type"] == "mrkdwn") {
            assert_eq!(t["verbatim"], true, "no auto-linking: {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_the_message_text() {
    let slack = Receiver::start().await;
    let relay = start(
        &slack,
        Via::Webhook,
        &[(
            "ci",
            "  template: \"*{{ event.pipeline }}* {{ event.state }}: {{ event.message }} <{{ event.url }}|logs>\"",
        )],
    )
    .await;
    relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    let b = slack.requests_on(HOOK)[0].json();
    let want = "*build-and-test* failed: @\u{2060}channel &lt;!here&gt; tests failed, see \
                [logs](https://evil.example.com/phish) `rm -rf /` _now_ \
                <https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A|logs>";
    assert_eq!(b["text"], want);
    assert_eq!(b["blocks"][0]["text"]["text"], want);
    assert_eq!(b["blocks"][0]["text"]["type"], "mrkdwn");

    // A template that renders nothing posts nothing.
    let quiet = start(
        &slack,
        Via::Webhook,
        &[(
            "ci",
            "  template: \"{% if event.state == 'succeeded' %}done{% endif %}\"",
        )],
    )
    .await;
    let answer = quiet
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "the template rendered nothing: not posted"
    );
    assert_eq!(slack.requests_on(HOOK).len(), 1);
}

#[test]
fn configuration_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {store: memory}")
        + &provider(
            "hook",
            "slack",
            "{webhookURLFile: /h, mode: update, thread: true}",
        )
        + &provider("bot", "slack", "{tokenFile: /t}")
        + &notification("n", "bot", "");
    let err = refused(BIN, &cfg);
    for want in [
        "Provider/hook: spec.slack.mode: `update` needs a bot token",
        "Provider/hook: spec.slack.thread: a thread needs a bot token",
        "Notification/n: spec.params.channel: required: the Provider names no channel",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
}

/// An annotation *key* `<!channel>` became a mention through a template;
/// RLO and zero-width characters passed every escaper; without
/// `dashboardURL`, the title link and "View run" button went wherever the
/// event's link annotation said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_keys_invisible_characters_and_event_links_cannot_inject() {
    let slack = Receiver::start().await;
    let relay = start(
        &slack,
        Via::Webhook,
        &[
            ("plain", ""),
            (
                "keys",
                "  template: \"keys: {% for k, v in event.annotations|items %}{{ k }}={{ v }} {% endfor %}{{ event.name }}\"",
            ),
        ],
    )
    .await;
    let answer = relay.send(&markup_injection_plus()).await;
    for d in answer["deliveries"].as_array().unwrap() {
        assert_eq!(d["outcome"], "delivered", "{answer}");
    }
    let bodies: Vec<Value> = slack.requests_on(HOOK).iter().map(Recorded::json).collect();
    assert_eq!(bodies.len(), 2);
    let (templated, plain): (Vec<&Value>, Vec<&Value>) = bodies
        .iter()
        .partition(|b| b["text"].as_str().unwrap().starts_with("keys: "));
    let keys = templated[0]["text"].as_str().unwrap();
    assert!(
        !keys.contains("<!channel>") && !keys.contains("<!here>"),
        "{keys}"
    );
    assert!(keys.contains("&lt;!channel&gt;=&lt;!here&gt;"), "{keys}");
    assert!(keys.ends_with("buildgpj.exex"), "{keys}");
    for b in &bodies {
        let all = b.to_string();
        assert!(!all.chars().any(|c| INVISIBLE.contains(&c)), "{all}");
    }
    // The link annotation is only printed as text by the template above;
    // the message of its own links nowhere near it.
    let plain_text = plain[0].to_string();
    assert!(!plain_text.contains(PHISH_HOST), "{plain_text}");
    let plain = plain[0];
    let blocks = plain["blocks"].as_array().unwrap();
    assert!(
        blocks.iter().all(|b| b["type"] != "actions"),
        "no View run button without a link: {plain}"
    );
    assert_eq!(
        blocks[0]["text"]["text"], "❌ *PipelineRun buildgpj.exex failed*",
        "an unlinked title"
    );
}
