//! The Mattermost function against a mock Mattermost (a real HTTP server):
//! the incoming-webhook post (method, path, body: channel, username, icon,
//! one coloured attachment), escaping of user-controlled names, templates,
//! retries, a 4xx dead-lettered without the hook's secret path, and
//! configuration errors.

use relay_tests::attack::{INVISIBLE, PHISH_HOST, markup_injection_plus};
use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, provider, refused,
};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "mattermost");
const HOOK_ID: &str = "k9x3mq7hooks3cretid0123ab";
const RUN_URL: &str = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr";

fn hook_path() -> String {
    format!("/hooks/{HOOK_ID}")
}

/// A running function serving `notifications` against the mock Mattermost;
/// `extra`: more settings of `spec.mattermost` (`channel: …`).
async fn start(mm: &Receiver, extra: &str, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let hook = secrets.line("url", &mm.url(&hook_path()));
    let cfg = config(
        "mm",
        "mattermost",
        &format!("{{urlFile: {hook}{extra}}}"),
        notifications,
    );
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// Every Markdown text of a posted body (not the plain-text fallback).
fn texts(body: &Value) -> String {
    let mut out = vec![body["text"].as_str().unwrap_or_default().to_string()];
    for a in body["attachments"].as_array().unwrap() {
        for k in ["title", "text"] {
            out.push(a[k].as_str().unwrap_or_default().to_string());
        }
        for f in a["fields"].as_array().into_iter().flatten() {
            out.push(f["value"].as_str().unwrap().to_string());
        }
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_posted_as_one_coloured_attachment() {
    let mm = Receiver::start().await;
    let relay = start(
        &mm,
        ", channel: builds, username: tekton, iconURL: \"https://example.com/tekton.png\"",
        &[
            ("runs", "  filter: {kinds: [PipelineRun]}"),
            (
                "alerts",
                "  filter: {kinds: [PipelineRun]}\n  params: {channel: alerts}",
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

    let sent = mm.requests();
    assert_eq!(sent.len(), 2);
    let mut channels = Vec::new();
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, hook_path());
        assert_eq!(r.query, "");
        assert_eq!(r.headers["content-type"], "application/json");
        let b = r.json();
        channels.push(b["channel"].as_str().unwrap().to_string());
        assert_eq!(b["username"], "tekton");
        assert_eq!(b["icon_url"], "https://example.com/tekton.png");
        let a = &b["attachments"][0];
        assert_eq!(a["color"], "#E01E5A");
        assert_eq!(a["fallback"], "❌ PipelineRun build-and-test-vpg5w failed");
        assert_eq!(
            a["title"],
            "❌ PipelineRun build\\-and\\-test\\-vpg5w failed"
        );
        assert!(
            a["title_link"]
                .as_str()
                .unwrap()
                .starts_with("https://tekton.acme.dev/")
        );
        assert_eq!(
            a["text"],
            "Tasks Completed\\: 2 \\(Failed\\: 1, Cancelled 0\\), Skipped\\: 1"
        );
        let fields = a["fields"].as_array().unwrap();
        assert!(fields.iter().all(|f| f["short"] == true));
        assert!(fields.contains(&json!({"title": "Reason", "value": "Failed", "short": true})));
        assert!(fields.contains(&json!({"title": "Namespace", "value": "ci", "short": true})));
    }
    channels.sort();
    assert_eq!(channels, ["alerts", "builds"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_own_channel_is_used_by_default() {
    let mm = Receiver::start().await;
    let relay = start(&mm, "", &[("runs", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "posted to the hook's channel"
    );
    let b = mm.requests_on(&hook_path())[0].json();
    for k in ["channel", "username", "icon_url", "text"] {
        assert!(b.get(k).is_none(), "{k} in {b}");
    }
    let a = &b["attachments"][0];
    assert_eq!(a["color"], "#2EB67D");
    assert_eq!(a["title_link"], RUN_URL);
    let repo = a["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == "Repository")
        .unwrap();
    assert_eq!(
        repo["value"],
        "[acme/widgets](https://github.com/acme/widgets)"
    );
}

/// The run name and condition message of this event carry HTML, markdown,
/// a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup_or_mentions() {
    let mm = Receiver::start().await;
    let relay = start(&mm, "", &[("runs", "")]).await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let b = mm.requests_on(&hook_path())[0].json();
    let all = texts(&b);
    for bad in [
        "<script",
        "*bold*",
        "@channel",
        "<!here>",
        "](https://evil",
        "`rm -rf /`",
        "_now_",
    ] {
        assert!(!all.contains(bad), "{bad} in {all}");
    }
    let a = &b["attachments"][0];
    // The fallback is plain text (notifications): shown as written, no mention.
    assert_eq!(
        a["fallback"],
        "❌ PipelineRun <script>alert(1)</script>*bold* failed"
    );
    assert_eq!(
        a["title"],
        "❌ PipelineRun &lt;script&gt;alert\\(1\\)&lt;/script&gt;\\*bold\\* failed"
    );
    assert!(
        a["text"]
            .as_str()
            .unwrap()
            .starts_with("@\u{2060}channel &lt;\\!here&gt; tests failed"),
        "{a}"
    );
    assert!(
        a["title_link"]
            .as_str()
            .unwrap()
            .ends_with("pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_the_message_text() {
    let mm = Receiver::start().await;
    let relay = start(
        &mm,
        "",
        &[(
            "runs",
            "  template: \"**{{ event.pipeline }}** {{ event.state }}: {{ event.message }} ([logs]({{ event.url }}))\"",
        )],
    )
    .await;
    relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    let b = mm.requests_on(&hook_path())[0].json();
    let a = &b["attachments"][0];
    assert_eq!(
        a["text"],
        "**build-and-test** failed: @\u{2060}channel &lt;!here&gt; tests failed, see \
         \\[logs\\](https://evil.example.com/phish) `rm -rf /` _now_ \
         ([logs](https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A))"
    );
    assert_eq!(a["color"], "#E01E5A");
    assert!(a.get("title").is_none() && a.get("fields").is_none(), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let mm = Receiver::start().await;
    mm.script(&hook_path(), &[(503, Some(0)), (429, Some(0))]);
    let relay = start(&mm, "", &[("runs", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let statuses: Vec<u16> = mm.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_dead_lettered_without_the_hook() {
    let mm = Receiver::start().await;
    // An answer that echoes the hook, to prove it is cut out.
    mm.reply(
        "POST",
        &hook_path(),
        400,
        json!({"id": "web.incoming_webhook.invalid.app_error",
               "message": format!("Invalid webhook /hooks/{HOOK_ID}"), "status_code": 400}),
    );
    let relay = start(&mm, "", &[("runs", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(mm.requests().len(), 1, "permanent: asked once");

    let entry = relay.only_permanent_dead_letter("mattermost", 400);
    let cause = entry["cause"]["message"].as_str().unwrap();
    assert!(cause.contains("Invalid webhook <redacted>"), "{cause}");
    assert_absent(
        &[HOOK_ID, "/hooks/"],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

#[test]
fn configuration_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {store: memory}")
        + &provider(
            "mm",
            "mattermost",
            "{urlFile: /h, iconURL: \"ftp://x/i.png\"}",
        )
        + &provider(
            "mm2",
            "mattermost",
            "{url: \"https://chat.example.com/hooks/x\"}",
        );
    let err = refused(BIN, &cfg);
    for want in [
        "Provider/mm: spec.mattermost.iconURL: scheme \"ftp\" is not http or https",
        "Provider/mm2: spec.mattermost.url: unknown field `url`",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    assert!(
        !err.contains("hooks/x"),
        "a URL given inline is not echoed: {err}"
    );
}

/// An annotation *key* `<!channel>` or `@all` became a mention through a
/// template; RLO and zero-width characters passed every escaper; without
/// `dashboardURL`, the title link went wherever the event's link
/// annotation said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_keys_invisible_characters_and_event_links_cannot_inject() {
    let mm = Receiver::start().await;
    let relay = start(
        &mm,
        "",
        &[
            ("plain", ""),
            (
                "keys",
                "  template: \"keys: {% for k, v in event.annotations|items %}{{ k }}={{ v }} {% endfor %}{{ event.name }}\"",
            ),
        ],
    )
    .await;
    let mut event = markup_injection_plus();
    event.body["pipelineRun"]["metadata"]["annotations"]["@all [x](https://evil)"] = "y".into();
    let answer = relay.send(&event).await;
    for d in answer["deliveries"].as_array().unwrap() {
        assert_eq!(d["outcome"], "delivered", "{answer}");
    }
    let bodies: Vec<Value> = mm
        .requests_on(&hook_path())
        .iter()
        .map(|r| r.json())
        .collect();
    assert_eq!(bodies.len(), 2);
    let (templated, plain): (Vec<&Value>, Vec<&Value>) = bodies.iter().partition(|b| {
        b["attachments"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("keys: "))
    });
    let keys = templated[0]["attachments"][0]["text"].as_str().unwrap();
    for bad in ["<!channel>", "<!here>", "@all", "[x](https://evil)"] {
        assert!(!keys.contains(bad), "{bad} in {keys}");
    }
    assert!(keys.contains("&lt;!channel&gt;=&lt;!here&gt;"), "{keys}");
    assert!(
        keys.contains("@\u{2060}all \\[x\\](https://evil)=y"),
        "{keys}"
    );
    assert!(keys.ends_with("buildgpj.exex"), "{keys}");
    for b in &bodies {
        let all = b.to_string();
        assert!(!all.chars().any(|c| INVISIBLE.contains(&c)), "{all}");
    }
    // The link annotation is only printed as text by the template above;
    // the message of its own links nowhere near it.
    let plain_text = plain[0].to_string();
    assert!(!plain_text.contains(PHISH_HOST), "{plain_text}");
    let a = &plain[0]["attachments"][0];
    assert!(a.get("title_link").is_none(), "no link: {a}");
    assert_eq!(a["fallback"], "❌ PipelineRun buildgpj.exex failed");
}
