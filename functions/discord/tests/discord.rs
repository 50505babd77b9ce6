//! The Discord function against a mock Discord (a real HTTP server): the
//! execute-webhook request (method, path, `wait=true`, body), the template
//! as message text, escaping of user-controlled names, a rate limit waited
//! out, and a deleted webhook dead-lettered without its token.

use std::path::{Path, PathBuf};

use relay_tests::fixtures::RequestFile;
use relay_tests::process::{FunctionProcess, send};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay-discord");
const WEBHOOK_ID: &str = "112233445566778899";
const TOKEN: &str = "dcSup3rSecretWebhookToken-abcdefghijklmnop";

fn hook_path() -> String {
    format!("/api/webhooks/{WEBHOOK_ID}/{TOKEN}")
}

/// A running function serving `notifications` against the mock Discord.
struct Relay {
    f: FunctionProcess,
    base: String,
    _secrets: tempfile::TempDir,
    client: reqwest::Client,
}

impl Relay {
    /// `query` is appended to the webhook URL (`?thread_id=…`).
    async fn start(
        dc: &Receiver,
        query: &str,
        settings: &str,
        notifications: &[(&str, &str)],
    ) -> Relay {
        let d = tempfile::tempdir().unwrap();
        let url_file = d.path().join("url");
        // A trailing newline, as `kubectl create secret --from-file` leaves.
        std::fs::write(&url_file, format!("{}{query}\n", dc.url(&hook_path()))).unwrap();
        let mut cfg = format!(
            "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: dc}}\nspec:\n  type: discord\n  discord: {{urlFile: {}{settings}}}\n",
            url_file.display()
        );
        for (name, spec) in notifications {
            cfg.push_str(&format!(
                "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: dc}}\n{spec}\n"
            ));
        }
        let env = [("RELAY_LOG".to_string(), "debug".to_string())];
        let (f, base) = FunctionProcess::start_http(Path::new(BIN), &cfg, &env).await;
        Relay {
            f,
            base,
            _secrets: d,
            client: reqwest::Client::new(),
        }
    }

    /// Sends one request file: the function's answer.
    async fn send(&self, f: &RequestFile) -> Value {
        let (status, body) = send(&self.client, &format!("{}/", self.base), f).await;
        assert_eq!(status, 200, "{}: {body}", f.file_name);
        body
    }

    fn dead_letters(&self) -> PathBuf {
        self.f.dir.path().join("dl.jsonl")
    }
}

fn fixture(path: &str) -> RequestFile {
    RequestFile::load(&relay_tests::fixtures::dir().join(path))
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
    let relay = Relay::start(
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
    let relay = Relay::start(
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
    let relay = Relay::start(&dc, "", "", &[("chat", "")]).await;
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
    let relay = Relay::start(&dc, "", "", &[("chat", "")]).await;
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
    let relay = Relay::start(&dc, "", "", &[("chat", "")]).await;
    let f = fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json");
    let (status, answer) = send(&relay.client, &format!("{}/", relay.base), &f).await;
    assert_eq!(status, 503, "the sender is told to retry: {answer}");
    assert_eq!(answer["outcome"], "failed", "{answer}");
    assert!(dc.requests().len() > 1, "retried before giving up");
    let stderr = relay.f.stderr();
    assert!(stderr.contains("retrying"), "{stderr}");
    for secret in [TOKEN, WEBHOOK_ID] {
        assert!(!stderr.contains(secret), "{secret} in the log: {stderr}");
        assert!(
            !answer.to_string().contains(secret),
            "{secret} in the answer"
        );
    }
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
    let relay = Relay::start(&dc, "", "", &[("chat", "")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(dc.requests().len(), 1, "permanent: asked once");

    let text = std::fs::read_to_string(relay.dead_letters()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let entry: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(entry["provider_type"], "discord");
    assert_eq!(entry["cause"]["kind"], "permanent");
    assert_eq!(entry["cause"]["status"], 404);
    assert!(text.contains("Unknown Webhook"), "{text}");
    let stderr = relay.f.stderr();
    assert!(!stderr.is_empty(), "the log is written");
    for secret in [TOKEN, WEBHOOK_ID] {
        assert!(
            !text.contains(secret),
            "{secret} in the dead letter: {text}"
        );
        assert!(!stderr.contains(secret), "{secret} in the log: {stderr}");
        assert!(
            !answer.to_string().contains(secret),
            "{secret} in the answer"
        );
    }
}

/// Runs the binary on `cfg`, which it must refuse: its stderr. A binary
/// that accepted the config and serves is killed, failing the test.
fn refused(cfg: &Path) -> String {
    let child = std::process::Command::new(BIN)
        .env("RELAY_CONFIG", cfg)
        .env("PORT", relay_tests::process::free_port().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => {
            let out = out.unwrap();
            assert!(!out.status.success(), "the config was accepted");
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            panic!("the function accepted the config and is serving");
        }
    }
}

/// The binary refuses a bad config at start, naming the error's path.
#[test]
fn config_errors_name_their_path() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("relay.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: dc}\nspec:\n  type: discord\n  discord: {urlFile: /u, username: my discord bot}\n",
    )
    .unwrap();
    let stderr = refused(&cfg);
    assert!(
        stderr.contains("Provider/dc") && stderr.contains("spec.discord.username"),
        "{stderr}"
    );
}
