//! The Azure DevOps function against a mock Azure DevOps (a real HTTP
//! server): commit statuses (path, encoded project, api-version, Basic PAT
//! auth, body; not re-posted), one PR thread per run created once or
//! adopted and updated in place, a sign-in page (203) or a 401 dead-lettered
//! without the PAT, and user-controlled names escaped.

use relay_tests::attack::{assert_path_attacks_refused, pipelinerun_with};
use relay_tests::expect::{Outgoing, outgoing};
use relay_tests::fixtures::{RequestFile, Scenario};
use relay_tests::function::{Function, Secrets, config, fixture};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "azuredevops");
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const PAT: &str = "ado-pat-s3cr3t";
/// base64(":ado-pat-s3cr3t")
const BASIC: &str = "Basic OmFkby1wYXQtczNjcjN0";
const REPO_URL: &str = "https://dev.azure.com/acme/Widget%20Team/_git/widgets";
/// The server's base path (`baseURL` ends in `/tfs`), then the repository.
const REPO: &str = "/tfs/acme/Widget%20Team/_apis/git/repositories/widgets";
const PR: u64 = 9;
const RUN_UID: &str = "6cad4a26-8d11-4ece-9738-f7d93d9c1724";

/// Who the PAT belongs to and someone else, as Azure DevOps shows them.
const RELAY_ID: &str = "6f0f7d3e-3b1a-4c59-a1f4-7f8e2b9c0d11";
const MALLORY_ID: &str = "0badc0de-0000-4000-8000-000000000066";

/// The organization's `connectionData` for the test PAT.
fn user_is_relay_bot(ado: &Receiver) {
    ado.reply(
        "GET",
        "/tfs/acme/_apis/connectionData",
        200,
        json!({
            "authenticatedUser": {"id": RELAY_ID, "descriptor": "Microsoft.IdentityModel.Claims.ClaimsIdentity;relay",
                                  "providerDisplayName": "Relay Bot", "isActive": true},
            "authorizedUser": {"id": RELAY_ID, "providerDisplayName": "Relay Bot"},
            "instanceId": "00000000-0000-0000-0000-000000000001",
        }),
    );
}

/// A thread comment as Azure DevOps lists it, by the identity `author`.
fn comment(id: u64, content: &str, author: &str) -> Value {
    json!({"id": id, "parentCommentId": 0, "content": content, "commentType": "text",
           "author": {"id": author, "displayName": "someone", "uniqueName": "someone@acme.dev"}})
}

/// The fixtures name a GitHub repository: the relay annotations (which win
/// over Pipelines-as-Code's) point every run at the Azure one instead.
fn on_azure(req: Outgoing) -> Outgoing {
    let Outgoing::File(mut f) = req else {
        panic!("the fixtures used here are HTTP requests")
    };
    retarget(&mut f);
    Outgoing::File(f)
}

fn retarget(f: &mut RequestFile) {
    let runs = f.body.as_object_mut().expect("a Tekton event body");
    for run in runs.values_mut() {
        let ann = &mut run["metadata"]["annotations"];
        ann["relay.tekton.dev/repo-url"] = REPO_URL.into();
        ann["relay.tekton.dev/pull-request"] = PR.to_string().into();
    }
}

fn scenario(name: &str) -> Vec<Outgoing> {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join(name));
    outgoing(&sc).into_iter().map(on_azure).collect()
}

/// The commit a scenario's runs built (each scenario has its own).
fn sha_of(reqs: &[Outgoing]) -> String {
    let Some(Outgoing::File(f)) = reqs.first() else {
        panic!("an HTTP request first")
    };
    let ann = &f.body["pipelineRun"]["metadata"]["annotations"];
    ann["pipelinesascode.tekton.dev/sha"]
        .as_str()
        .unwrap()
        .into()
}

async fn start(ado: &Receiver, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", PAT);
    let settings = format!("{{baseURL: \"{}\", tokenFile: {token}}}", ado.url("/tfs"));
    let cfg = config("ado", "azuredevops", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn assert_azure_request(r: &Recorded) {
    assert_eq!(r.query, "api-version=7.1", "{} {}", r.method, r.path);
    assert_eq!(r.headers["authorization"], BASIC);
    assert_eq!(r.headers["accept"], "application/json");
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

fn states(sent: &[Recorded]) -> Vec<String> {
    sent.iter()
        .map(|r| r.json()["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_on_the_encoded_project() {
    let ado = Receiver::start().await;
    let relay = start(&ado, &[("status", "  action: status")]).await;
    relay
        .send_all(&scenario("tekton-pipelinerun-success"), 200)
        .await;
    let sent = ado.requests_on(&format!("{REPO}/commits/{SHA}/statuses"));
    assert_eq!(
        ado.requests().len(),
        sent.len(),
        "nothing but statuses, on that path"
    );
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_azure_request(r);
        let b = r.json();
        assert_eq!(
            b["context"],
            json!({"name": "tekton/build-and-test", "genre": "tekton"})
        );
        assert_eq!(
            b["targetUrl"],
            "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"
        );
        assert!(b["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // started, running (three PipelineRun running events with one reason:
    // posted once), succeeded.
    assert_eq!(states(&sent), ["pending", "pending", "succeeded"]);
    assert_eq!(sent[2].json()["description"], "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_runs() {
    let ado = Receiver::start().await;
    let relay = start(
        &ado,
        &[(
            "status",
            "  action: status\n  params: {context: ci/build, genre: acme}",
        )],
    )
    .await;
    let reqs = scenario("tekton-pipelinerun-failure");
    relay.send_all(&reqs, 200).await;
    let sent = ado.requests_on(&format!("{REPO}/commits/{}/statuses", sha_of(&reqs)));
    let got = states(&sent);
    assert_eq!(got.first().map(String::as_str), Some("pending"), "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("failed"), "{got:?}");
    assert!(
        sent.iter()
            .all(|r| r.json()["context"] == json!({"name": "ci/build", "genre": "acme"}))
    );

    let ado = Receiver::start().await;
    let relay = start(&ado, &[("status", "  action: status")]).await;
    let reqs = scenario("tekton-cancelled");
    relay.send_all(&reqs, 200).await;
    let sent = ado.requests_on(&format!("{REPO}/commits/{}/statuses", sha_of(&reqs)));
    let got = states(&sent);
    assert_eq!(got.first().map(String::as_str), Some("pending"), "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("error"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_thread_is_created_once_then_updated_and_closed() {
    let ado = Receiver::start().await;
    let threads = format!("{REPO}/pullRequests/{PR}/threads");
    let comment = format!("{threads}/31/comments/1");
    ado.reply("GET", &threads, 200, json!({"value": [], "count": 0}));
    ado.reply(
        "POST",
        &threads,
        200,
        json!({"id": 31, "status": "active", "comments": [{"id": 1, "content": "…"}]}),
    );
    ado.reply("PATCH", &comment, 200, json!({"id": 1}));
    ado.reply(
        "PATCH",
        &format!("{threads}/31"),
        200,
        json!({"id": 31, "status": "closed"}),
    );
    let relay = start(&ado, &[("summary", "  action: thread")]).await;
    relay
        .send_all(&scenario("tekton-pipelinerun-success"), 200)
        .await;
    for r in ado.requests() {
        assert_azure_request(&r);
    }

    let created: Vec<Recorded> = ado
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(created.len(), 1, "one thread for the run");
    assert_eq!(created[0].path, threads);
    let b = created[0].json();
    assert_eq!(b["status"], "active");
    assert_eq!(b["comments"][0]["parentCommentId"], 0);
    assert_eq!(b["comments"][0]["commentType"], 1);
    let first = b["comments"][0]["content"].as_str().unwrap();
    let marker = format!("<!-- tekton-relay:summary:{RUN_UID} -->\n");
    assert!(first.starts_with(&marker), "{first}");
    assert_eq!(
        ado.requests_on(&threads).len(),
        2,
        "listed once, created once"
    );

    let updates = ado.requests_on(&comment);
    assert!(!updates.is_empty());
    assert!(updates.iter().all(|r| r.method == "PATCH"));
    let last = updates.last().unwrap().json();
    let content = last["content"].as_str().unwrap();
    assert!(content.starts_with(&marker), "{content}");
    // Three task rows.
    assert_eq!(content.matches("✅ succeeded").count(), 3, "{content}");

    // Closed once, when the run succeeded.
    let closed = ado.requests_on(&format!("{threads}/31"));
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].method.as_str(), closed[0].json()),
        ("PATCH", json!({"status": "closed"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_thread_is_found_and_updated_not_duplicated() {
    let ado = Receiver::start().await;
    let threads = format!("{REPO}/pullRequests/{PR}/threads");
    user_is_relay_bot(&ado);
    ado.reply(
        "GET",
        &threads,
        200,
        json!({"count": 4, "value": [
            {"id": 3, "comments": [comment(1, "lgtm", MALLORY_ID)]},
            // Another Notification's thread for the same run.
            {"id": 5, "comments": [comment(1, &format!("<!-- tekton-relay:other:{RUN_UID} -->\nx"), RELAY_ID)]},
            {"id": 6, "isDeleted": true, "comments": [comment(1, &format!("<!-- tekton-relay:summary:{RUN_UID} -->\ngone"), RELAY_ID)]},
            {"id": 7, "comments": [
                comment(4, &format!("<!-- tekton-relay:summary:{RUN_UID} -->\nold"), RELAY_ID),
                comment(5, "thanks", MALLORY_ID),
            ]},
        ]}),
    );
    ado.reply(
        "PATCH",
        &format!("{threads}/7/comments/4"),
        200,
        json!({"id": 4}),
    );
    let relay = start(&ado, &[("summary", "  action: thread")]).await;
    relay
        .send_all(&scenario("tekton-pipelinerun-success"), 200)
        .await;
    assert!(
        ado.requests().iter().all(|r| r.method != "POST"),
        "no second thread"
    );
    assert_eq!(ado.requests_on(&threads).len(), 1, "listed once");
    let updated = ado.requests_on(&format!("{threads}/7/comments/4"));
    assert!(!updated.is_empty());
    for r in &updated {
        assert_azure_request(r);
    }
    let others: Vec<String> = ado
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/threads/") && !r.path.starts_with(&format!("{threads}/7")))
        .map(|r| r.path)
        .collect();
    assert!(others.is_empty(), "touched {others:?}");
    let closed = ado.requests_on(&format!("{threads}/7"));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].json(), json!({"status": "closed"}));
}

/// One status request answered `code`: dead-lettered at once, without the PAT.
async fn dead_lettered_without_retry(code: u16) {
    let ado = Receiver::start().await;
    let path = format!("{REPO}/commits/{SHA}/statuses");
    ado.always(&path, Some((code, None)));
    let relay = start(&ado, &[("status", "  action: status")]).await;
    let first = scenario("tekton-pipelinerun-success").remove(0);
    let answers = relay.send_all(&[first], 200).await;
    assert_eq!(
        answers[0]["outcome"], "dead_lettered",
        "{code}: {}",
        answers[0]
    );
    assert_eq!(ado.requests_on(&path).len(), 1, "{code} is not retried");
    let dl = relay.dead_letter_text();
    let entry: Value = serde_json::from_str(dl.lines().next().unwrap()).unwrap();
    assert_eq!(entry["notification"], "status");
    assert!(dl.contains(&code.to_string()), "{dl}");
    relay.assert_secrets_absent(&[PAT, BASIC.trim_start_matches("Basic ")], &answers[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_page_is_a_permanent_failure() {
    dead_lettered_without_retry(203).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_a_permanent_failure() {
    dead_lettered_without_retry(401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let ado = Receiver::start().await;
    let threads = format!("{REPO}/pullRequests/{PR}/threads");
    ado.reply("GET", &threads, 200, json!({"value": []}));
    ado.reply(
        "POST",
        &threads,
        200,
        json!({"id": 2, "comments": [{"id": 1}]}),
    );
    let relay = start(
        &ado,
        &[
            ("status", "  action: status"),
            ("summary", "  action: thread"),
        ],
    )
    .await;
    let mut f = fixture("bad-input/008-markup-injection.json");
    retarget(&mut f);
    let answers = relay.send_all(&[Outgoing::File(f)], 200).await;
    assert_eq!(answers[0]["outcome"], "delivered", "{}", answers[0]);

    let status = ado.requests_on(&format!(
        "{REPO}/commits/280f005d84949aabf044c0326655b9f00aadacf0/statuses"
    ));
    assert_eq!(states(&status), ["failed"]);
    let created = ado.requests_on(&threads);
    let post = created.iter().find(|r| r.method == "POST").unwrap();
    let content = post.json()["comments"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // The run's name is there, escaped.
    assert!(content.contains("&lt;script&gt;"), "{content}");
    // Past the hidden marker, and in the status, nothing is raw.
    let body = content.split_once('\n').unwrap().1;
    for text in [body.to_string(), status[0].json().to_string()] {
        for bad in [
            "<script>",
            "*bold*",
            "@channel",
            "<!here>",
            "<@U0123456>",
            "](https://evil",
            "<b>",
        ] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
}

/// A thread someone else started with the relay's marker is not adopted:
/// it is never edited nor closed, and the relay starts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_thread_by_another_user_is_not_adopted() {
    let ado = Receiver::start().await;
    user_is_relay_bot(&ado);
    let threads = format!("{REPO}/pullRequests/{PR}/threads");
    ado.reply(
        "GET",
        &threads,
        200,
        json!({"count": 1, "value": [
            {"id": 7, "comments": [comment(4, &format!("<!-- tekton-relay:summary:{RUN_UID} -->\nplease approve"), MALLORY_ID)]},
        ]}),
    );
    ado.reply(
        "POST",
        &threads,
        200,
        json!({"id": 31, "status": "active", "comments": [comment(1, "", RELAY_ID)]}),
    );
    ado.reply(
        "PATCH",
        &format!("{threads}/31/comments/1"),
        200,
        json!({"id": 1}),
    );
    let relay = start(&ado, &[("summary", "  action: thread")]).await;
    relay
        .send_all(&scenario("tekton-pipelinerun-success"), 200)
        .await;
    let touched: Vec<String> = ado
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(&format!("{threads}/7")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        touched.is_empty(),
        "mallory's thread was touched: {touched:?}"
    );
    let created = ado
        .requests_on(&threads)
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(created, 1, "a thread of its own instead");
    let me = ado.requests_on("/tfs/acme/_apis/connectionData");
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].headers["authorization"], BASIC);
}

/// A repository URL whose project or repository would climb the API path,
/// or a commit that is no commit, is refused: dead-lettered, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fields_cannot_steer_the_token_to_another_api() {
    let ado = Receiver::start().await;
    let relay = start(&ado, &[("status", "  action: status")]).await;
    let attacks = [
        (
            "relay.tekton.dev/repo-url",
            "https://dev.azure.com/acme/%2E%2E/_git/widgets",
        ),
        (
            "relay.tekton.dev/repo-url",
            "https://dev.azure.com/acme/Widgets/_git/%2E%2E",
        ),
        (
            "relay.tekton.dev/repo-url",
            "https://dev.azure.com/acme/a%2F..%2F..%2F_apis/_git/widgets",
        ),
        (
            "relay.tekton.dev/repo-url",
            "https://dev.azure.com/acme/Wid%0Agets/_git/widgets",
        ),
        ("relay.tekton.dev/sha", "../../../../../_apis/projects#"),
    ];
    assert_path_attacks_refused(
        &relay,
        "status",
        &[("relay.tekton.dev/repo-url", REPO_URL)],
        &attacks,
    )
    .await;
    let sent: Vec<String> = ado.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// With `repositories` (`organization/project/repository`), a repository
/// outside it is refused before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_repositories() {
    let ado = Receiver::start().await;
    let secrets = Secrets::new();
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {}, repositories: [\"acme/Widget Team/*\"]}}",
        ado.url("/tfs"),
        secrets.line("token", PAT)
    );
    let cfg = config(
        "ado",
        "azuredevops",
        &settings,
        &[("status", "  action: status")],
    );
    let relay = Function::start(BIN, &cfg, secrets, &[]).await;
    let other = "https://dev.azure.com/acme/Other/_git/widgets";
    let answer = relay
        .delivery(&pipelinerun_with(
            "outside",
            &[("relay.tekton.dev/repo-url", other)],
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let message = relay.only_dead_letter()["cause"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("acme/Other/widgets"), "{message}");
    assert!(ado.requests().is_empty(), "{:?}", ado.requests());
    let answer = relay
        .delivery(&pipelinerun_with(
            "inside",
            &[("relay.tekton.dev/repo-url", REPO_URL)],
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(
        ado.requests_on(&format!("{REPO}/commits/{SHA}/statuses"))
            .len(),
        1
    );
}
