//! The Gitea function against a mock Gitea (a real HTTP server): commit
//! statuses (method, path, `token` auth, body; not re-posted when
//! unchanged), one PR comment per run found on any page or created once and
//! updated in place, escaping of user-controlled names, and a 401 dead-lettered
//! without the token.

use relay_tests::attack::{PATH_ATTACKS, assert_path_attacks_refused, pipelinerun_with};
use relay_tests::function::{Function, Secrets, assert_absent, config, fixture};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "gitea");
const TOKEN: &str = "gt-5ecret-token-0123456789";
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const REPO: &str = "/api/v1/repos/acme/widgets";
/// The success scenario's PipelineRun.
const RUN_UID: &str = "6cad4a26-8d11-4ece-9738-f7d93d9c1724";

/// Gitea's `GET /user` for the test token: the relay's own user.
fn user_is_relay_bot(gt: &Receiver) {
    gt.reply(
        "GET",
        "/api/v1/user",
        200,
        json!({"id": 1001, "login": "relay-bot", "full_name": "Relay Bot"}),
    );
}

/// An issue comment as Gitea lists it, by user `author` (id, login).
fn comment(id: u64, body: &str, author: (u64, &str)) -> Value {
    json!({"id": id, "body": body, "user": {"id": author.0, "login": author.1}})
}

/// A running function serving `notifications` against the mock Gitea.
async fn start(gt: &Receiver, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    // A trailing newline, as `kubectl create secret --from-file` leaves.
    let token = secrets.line("token", TOKEN);
    let settings = format!("{{baseURL: \"{}\", tokenFile: {token}}}", gt.url("/api/v1"));
    let cfg = config("gt", "gitea", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn assert_gitea_headers(r: &Recorded) {
    assert_eq!(r.headers["authorization"], format!("token {TOKEN}"));
    assert_eq!(r.headers["accept"], "application/json");
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

fn count(gt: &Receiver, method: &str, path: &str) -> usize {
    gt.requests_on(path)
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_follow_the_run() {
    let gt = Receiver::start().await;
    let relay = start(&gt, &[("status", "  action: status")]).await;
    relay.scenario("tekton-pipelinerun-success").await;

    let sent = gt.requests_on(&format!("{REPO}/statuses/{SHA}"));
    // TaskRun events post no status: these are all the requests.
    assert_eq!(sent.len(), gt.requests().len());
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_eq!(r.query, "");
        assert_gitea_headers(r);
        let b = r.json();
        assert_eq!(b["context"], "tekton/build-and-test");
        assert_eq!(
            b["target_url"],
            "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"
        );
    }
    let posted: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["state"].as_str().unwrap().to_string(),
                b["description"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // One status per PipelineRun condition (started, three progress
    // messages, succeeded): each differs from the one before.
    let want = [
        ("pending", "Started"),
        (
            "pending",
            "Running: Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0",
        ),
        (
            "pending",
            "Running: Tasks Completed: 1 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0",
        ),
        (
            "pending",
            "Running: Tasks Completed: 2 (Failed: 0, Cancelled 0), Incomplete: 1, Skipped: 0",
        ),
        (
            "success",
            "Succeeded: Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 0",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, d)| (s.to_string(), d.to_string()))
        .collect();
    assert_eq!(posted, want);
}

/// Two conditions whose descriptions are equal once cut to Gitea's 255
/// characters: the engine delivers both (they differ), the provider posts
/// the second one not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_status_is_not_posted_again() {
    let gt = Receiver::start().await;
    let relay = start(
        &gt,
        &[("status", "  action: status\n  params: {context: ci/tekton}")],
    )
    .await;
    let statuses = format!("{REPO}/statuses/{SHA}");
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/001-pipelinerun-started.json",
        ))
        .await;
    let running = fixture("tekton-pipelinerun-success/002-pipelinerun-running.json");
    let long = "x".repeat(300);
    let mut answers = Vec::new();
    for (i, tail) in ["first", "second"].into_iter().enumerate() {
        let mut f = running.clone();
        f.headers
            .insert("Ce-Id".into(), format!("running-long-message-{i}"));
        f.body["pipelineRun"]["status"]["conditions"][0]["message"] =
            format!("{long} {tail}").into();
        answers.push(relay.send(&f).await);
    }
    assert_eq!(
        answers[0]["deliveries"][0]["detail"],
        "status ci/tekton pending"
    );
    assert_eq!(answers[1]["deliveries"][0]["outcome"], "delivered");
    assert_eq!(
        answers[1]["deliveries"][0]["detail"], "status ci/tekton already pending",
        "{}",
        answers[1]
    );
    let sent = gt.requests_on(&statuses);
    assert_eq!(sent.len(), 2, "started, then the long running one once");
    let d = sent[1].json()["description"].as_str().unwrap().to_string();
    assert_eq!(d.chars().count(), 255);
    assert!(d.starts_with("Running: xxx") && d.ends_with('…'), "{d}");

    relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    let sent = gt.requests_on(&statuses);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].json()["state"], "success");
    assert_eq!(sent[2].json()["context"], "ci/tekton");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_ends_in_failure_with_its_summary() {
    let gt = Receiver::start().await;
    let comments = format!("{REPO}/issues/52/comments");
    gt.reply("GET", &comments, 200, json!([]));
    gt.reply("POST", &comments, 201, json!({"id": 4242}));
    gt.reply(
        "PATCH",
        &format!("{REPO}/issues/comments/4242"),
        200,
        json!({"id": 4242}),
    );
    let relay = start(
        &gt,
        &[
            ("status", "  action: status"),
            ("summary", "  action: comment"),
        ],
    )
    .await;
    relay.scenario("tekton-pipelinerun-failure").await;

    let sent = gt.requests_on(&format!(
        "{REPO}/statuses/7a86f7a243c71b9abd87a86557b6fb7ebfeaa155"
    ));
    let states: Vec<String> = sent
        .iter()
        .map(|r| r.json()["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("pending"));
    assert_eq!(states.last().map(String::as_str), Some("failure"));
    assert!(
        states[..states.len() - 1].iter().all(|s| s == "pending"),
        "{states:?}"
    );
    assert_eq!(
        sent.last().unwrap().json()["description"],
        "Failed: Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
    );

    assert_eq!(count(&gt, "POST", &comments), 1);
    let last = gt
        .requests_on(&format!("{REPO}/issues/comments/4242"))
        .last()
        .unwrap()
        .json();
    let body = last["body"].as_str().unwrap();
    assert!(
        body.starts_with("<!-- tekton-relay:summary:fa7f0eab-4c4f-4b06-8732-2e25c215a82a -->\n"),
        "{body}"
    );
    assert!(body.contains("❌ build\\-and\\-test: failed"), "{body}");
    assert!(body.contains("❌ failed"), "{body}");
    assert!(body.contains("⏭️ skipped"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_is_created_once_then_updated_in_place() {
    let gt = Receiver::start().await;
    let comments = format!("{REPO}/issues/47/comments");
    let comment = format!("{REPO}/issues/comments/9001");
    gt.reply("GET", &comments, 200, json!([]));
    gt.reply("POST", &comments, 201, json!({"id": 9001, "body": ""}));
    gt.reply("PATCH", &comment, 200, json!({"id": 9001}));
    let relay = start(&gt, &[("summary", "  action: comment")]).await;
    relay.scenario("tekton-pipelinerun-success").await;

    let marker = format!("<!-- tekton-relay:summary:{RUN_UID} -->\n");
    // The list is read once, before the one creation.
    let listed: Vec<Recorded> = gt
        .requests_on(&comments)
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].query, "limit=50&page=1");
    let created: Vec<Recorded> = gt
        .requests_on(&comments)
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(created.len(), 1, "one comment per run");
    assert!(
        created[0].json()["body"]
            .as_str()
            .unwrap()
            .starts_with(&marker)
    );
    let updates = gt.requests_on(&comment);
    assert!(!updates.is_empty());
    assert!(updates.iter().all(|r| r.method == "PATCH"));
    for r in listed.iter().chain(&created).chain(&updates) {
        assert_gitea_headers(r);
    }
    let last = updates.last().unwrap().json();
    let body = last["body"].as_str().unwrap();
    assert!(body.starts_with(&marker), "{body}");
    assert!(body.contains("✅ build\\-and\\-test: succeeded"), "{body}");
    assert_eq!(body.matches("✅ succeeded").count(), 3, "{body}");
    // Nothing but the list, the creation and the updates.
    assert_eq!(
        gt.requests().len(),
        listed.len() + created.len() + updates.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_comment_on_page_two_is_adopted() {
    let gt = Receiver::start().await;
    user_is_relay_bot(&gt);
    let comments = format!("{REPO}/issues/47/comments");
    let page1: Vec<Value> = (0..50)
        .map(|i| comment(i, "looks good", (7, "mchen")))
        .collect();
    gt.reply(
        "GET",
        &format!("{comments}?limit=50&page=1"),
        200,
        Value::Array(page1),
    );
    gt.reply(
        "GET",
        &format!("{comments}?limit=50&page=2"),
        200,
        json!([comment(
            88,
            &format!("<!-- tekton-relay:summary:{RUN_UID} -->\nold"),
            (1001, "relay-bot")
        )]),
    );
    gt.reply(
        "PATCH",
        &format!("{REPO}/issues/comments/88"),
        200,
        json!({"id": 88}),
    );
    let relay = start(&gt, &[("summary", "  action: comment")]).await;
    relay.scenario("tekton-pipelinerun-success").await;

    assert!(
        gt.requests().iter().all(|r| r.method != "POST"),
        "never created a second comment"
    );
    let queries: Vec<String> = gt
        .requests_on(&comments)
        .into_iter()
        .map(|r| r.query)
        .collect();
    assert_eq!(queries, ["limit=50&page=1", "limit=50&page=2"]);
    let updates = gt.requests_on(&format!("{REPO}/issues/comments/88"));
    assert!(!updates.is_empty());
    let last = updates.last().unwrap().json();
    let body = last["body"].as_str().unwrap();
    assert!(body.contains("✅ build\\-and\\-test: succeeded"), "{body}");
}

/// Gitea and Forgejo ignore `page` and `limit` on an issue's comments and
/// answer the whole list every time: it is read twice at most, not 100 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaged_comment_list_is_not_read_over_and_over() {
    let gt = Receiver::start().await;
    let comments = format!("{REPO}/issues/47/comments");
    let all: Vec<Value> = (0..60)
        .map(|i| json!({"id": i, "body": "looks good"}))
        .collect();
    gt.reply("GET", &comments, 200, Value::Array(all));
    gt.reply("POST", &comments, 201, json!({"id": 9001}));
    let relay = start(&gt, &[("summary", "  action: comment")]).await;
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/001-pipelinerun-started.json",
        ))
        .await;
    assert_eq!(count(&gt, "GET", &comments), 2);
    assert_eq!(count(&gt, "POST", &comments), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_run_gets_no_comment() {
    let gt = Receiver::start().await;
    let relay = start(&gt, &[("summary", "  action: comment")]).await;
    let answer = relay
        .send(&fixture("tekton-duplicates/001-pipelinerun-started.json"))
        .await;
    assert_eq!(answer["deliveries"][0]["outcome"], "delivered");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        "not a pull request: no comment"
    );
    assert!(gt.requests().is_empty());
}

/// The run name, condition message and log link of this event carry HTML,
/// markdown, a link and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let gt = Receiver::start().await;
    let comments = format!("{REPO}/issues/67/comments");
    gt.reply("GET", &comments, 200, json!([]));
    gt.reply("POST", &comments, 201, json!({"id": 5}));
    let relay = start(
        &gt,
        &[
            ("status", "  action: status"),
            ("summary", "  action: comment"),
        ],
    )
    .await;
    let answer = relay
        .send(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let created: Vec<Recorded> = gt
        .requests_on(&comments)
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(created.len(), 1);
    let body = created[0].json()["body"].as_str().unwrap().to_string();
    let marker = "<!-- tekton-relay:summary:d7cba27e-a447-41e3-9012-c22462d7be7a -->\n";
    assert!(body.starts_with(marker), "{body}");
    let rendered = &body[marker.len()..];
    for bad in [
        "<script",
        "</script>",
        "*bold*",
        "@channel",
        "<!here>",
        "](https://evil",
    ] {
        assert!(!rendered.contains(bad), "{bad} in {rendered}");
    }
    // The name is shown, escaped, and the link target percent-encoded.
    assert!(
        rendered.contains("&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\*bold\\*"),
        "{rendered}"
    );
    assert!(
        rendered.contains("pipelineruns/%3Cscript%3Ealert%281%29"),
        "{rendered}"
    );

    // Gitea shows a status description as HTML-escaped plain text, never
    // rendered: it is sent as one plain line, the markup inert.
    let status = gt.requests_on(&format!(
        "{REPO}/statuses/280f005d84949aabf044c0326655b9f00aadacf0"
    ));
    assert_eq!(status.len(), 1);
    let b = status[0].json();
    assert_eq!(b["state"], "failure");
    assert_eq!(b["context"], "tekton/build-and-test");
    assert_eq!(
        b["description"],
        "Failed: @channel <!here> tests failed, see [logs](https://evil.example.com/phish) `rm -rf /` _now_"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_dead_lettered_without_the_token() {
    let gt = Receiver::start().await;
    let statuses = format!("{REPO}/statuses/{SHA}");
    gt.reply(
        "POST",
        &statuses,
        401,
        json!({"message": "token is required", "url": "https://gitea.example.com/api/swagger"}),
    );
    let relay = start(&gt, &[("status", "  action: status")]).await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    // Permanent: asked once, never retried.
    assert_eq!(gt.requests_on(&statuses).len(), 1);

    let entry = relay.only_permanent_dead_letter("gitea", 401);
    assert_eq!(entry["notification"], "status");
    assert_eq!(entry["provider"], "gt");
    assert_eq!(entry["attempts"], 1);
    assert_eq!(
        entry["event"]["id"], "15fc899e-4fd5-4dbe-bbdc-968b7afb2c68",
        "the original event is kept for replay: {entry}"
    );
    assert_absent(
        &[TOKEN],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

/// A comment someone else posted with the relay's marker is not adopted:
/// it is never edited, and the relay posts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_comment_by_another_user_is_not_adopted() {
    let gt = Receiver::start().await;
    user_is_relay_bot(&gt);
    let comments = format!("{REPO}/issues/47/comments");
    let marker = format!("<!-- tekton-relay:summary:{RUN_UID} -->");
    gt.reply(
        "GET",
        &comments,
        200,
        json!([comment(
            66,
            &format!("{marker}\nplease approve"),
            (66, "mallory")
        )]),
    );
    gt.reply(
        "POST",
        &comments,
        201,
        comment(9001, &marker, (1001, "relay-bot")),
    );
    gt.reply(
        "PATCH",
        &format!("{REPO}/issues/comments/9001"),
        200,
        json!({"id": 9001}),
    );
    let relay = start(&gt, &[("summary", "  action: comment")]).await;
    relay.scenario("tekton-pipelinerun-success").await;
    assert!(
        gt.requests_on(&format!("{REPO}/issues/comments/66"))
            .is_empty(),
        "mallory's comment was edited"
    );
    assert_eq!(
        count(&gt, "POST", &comments),
        1,
        "a comment of its own instead"
    );
    assert!(
        !gt.requests_on(&format!("{REPO}/issues/comments/9001"))
            .is_empty()
    );
    let me = gt.requests_on("/api/v1/user");
    assert_eq!(me.len(), 1);
    assert_gitea_headers(&me[0]);
}

/// Event fields naming another API path are refused, dead-lettered, and
/// nothing at all is sent with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fields_cannot_steer_the_token_to_another_api() {
    let gt = Receiver::start().await;
    let relay = start(&gt, &[("status", "  action: status")]).await;
    assert_path_attacks_refused(&relay, "status", &[], PATH_ATTACKS).await;
    let sent: Vec<String> = gt.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// With `repositories`, a repository outside it is refused before any
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_repositories() {
    let gt = Receiver::start().await;
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {token}, repositories: [\"acme/api\"]}}",
        gt.url("/api/v1")
    );
    let cfg = config("gt", "gitea", &settings, &[("status", "  action: status")]);
    let relay = Function::start(BIN, &cfg, secrets, &[]).await;
    let answer = relay.delivery(&pipelinerun_with("outside", &[])).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert!(gt.requests().is_empty(), "{:?}", gt.requests());
    let answer = relay
        .delivery(&pipelinerun_with(
            "inside",
            &[("relay.tekton.dev/url-repository", "api")],
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(
        gt.requests_on(&format!("/api/v1/repos/acme/api/statuses/{SHA}"))
            .len(),
        1
    );
}

/// A Flux event names an object in a cluster, no repository or commit: a
/// git host declines it (filtered, with the reason) rather than failing
/// and dead-lettering it. Written once for every git host (the family).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_event_is_declined_not_dead_lettered() {
    let gt = Receiver::start().await;
    let relay = start(
        &gt,
        &[
            ("status", "  action: status"),
            ("comment", "  action: comment"),
        ],
    )
    .await;
    for f in [
        "flux-events/001-flux-gitrepository-widgets-info.json",
        "flux-events/003-flux-kustomization-apps-error.json",
    ] {
        let answer = relay.send(&fixture(f)).await;
        assert_eq!(answer["outcome"], "filtered", "{f}: {answer}");
        let deliveries = answer["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 2, "{f}: {answer}");
        for d in deliveries {
            assert_eq!(d["outcome"], "filtered", "{f}: {answer}");
            let detail = d["detail"].as_str().unwrap();
            assert!(
                detail.contains("names no repository or commit"),
                "{f}: {answer}"
            );
        }
    }
    assert_eq!(gt.requests().len(), 0, "nothing asked of Gitea");
    assert!(!relay.dead_letter_path().exists(), "no dead letter");
}
