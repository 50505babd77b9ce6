//! The GitHub function against a mock GitHub (a real HTTP server): every
//! request's method, path, headers and body; statuses not re-posted; check
//! runs and PR comments created once and updated in place; comments found
//! on any page; rate limits waited out; two replicas never create twice.

use std::path::Path;

use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::process::FunctionProcess;
use relay_tests::receiver::{Receiver, Recorded};
use relay_tests::servers::ValkeyServer;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay-github");
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";

fn config(gh: &Receiver, token: &Path, store: &str, notifications: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: \"{store}\"\n  deadLetter: file://$DIR/dl.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gh}}\nspec:\n  type: github\n  github: {{baseURL: \"{}\", tokenFile: {}}}\n{notifications}",
        gh.url("/api/v3"),
        token.display()
    )
}

fn notification(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: gh}}\n{spec}\n"
    )
}

async fn send_scenario(base: &str, name: &str) {
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join(name));
    for req in outgoing(&sc) {
        let (status, body) = req.send(&client, &format!("{base}/")).await;
        assert_eq!(status, 200, "{}: {body}", req.file_name());
    }
}

fn token_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("token");
    std::fs::write(&p, "ghp_test_token\n").unwrap();
    (d, p)
}

fn assert_github_headers(r: &Recorded) {
    assert_eq!(r.headers["authorization"], "Bearer ghp_test_token");
    assert_eq!(r.headers["accept"], "application/vnd.github+json");
    assert_eq!(r.headers["x-github-api-version"], "2022-11-28");
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_per_run_and_per_task() {
    let gh = Receiver::start().await;
    let (_d, token) = token_file();
    let cfg = config(
        &gh,
        &token,
        "memory",
        &(notification("status", "  action: status")
            + &notification(
                "per-task",
                "  action: status\n  params: {context: ci, perTask: true}",
            )),
    );
    let (_f, base) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    send_scenario(&base, "tekton-pipelinerun-success").await;
    let statuses = gh.requests_on(&format!("/api/v3/repos/acme/widgets/statuses/{SHA}"));
    for r in &statuses {
        assert_eq!(r.method, "POST");
        assert_github_headers(r);
        let b = r.json();
        assert!(b["description"].as_str().unwrap().chars().count() <= 140);
        assert!(b["target_url"].as_str().unwrap().starts_with("https://"));
    }
    let run: Vec<Value> = statuses
        .iter()
        .map(Recorded::json)
        .filter(|b| b["context"] == "tekton/build-and-test")
        .collect();
    let states: Vec<&str> = run.iter().map(|b| b["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"pending"));
    assert_eq!(states.last(), Some(&"success"));
    assert!(states.iter().all(|s| *s == "pending" || *s == "success"));
    for w in run.windows(2) {
        assert!(
            w[0]["state"] != w[1]["state"] || w[0]["description"] != w[1]["description"],
            "re-posted the same status"
        );
    }
    let contexts: std::collections::BTreeSet<String> = statuses
        .iter()
        .map(|r| r.json()["context"].as_str().unwrap().to_string())
        .collect();
    for c in ["ci", "ci/fetch-source", "ci/unit-tests", "ci/build-image"] {
        assert!(contexts.contains(c), "{contexts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_and_check_run_are_created_once_and_updated() {
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    gh.reply("GET", &format!("{repo}/issues/47/comments"), 200, json!([]));
    gh.reply(
        "POST",
        &format!("{repo}/issues/47/comments"),
        201,
        json!({"id": 9001}),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/9001"),
        200,
        json!({"id": 9001}),
    );
    gh.reply(
        "POST",
        &format!("{repo}/check-runs"),
        201,
        json!({"id": 55}),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/check-runs/55"),
        200,
        json!({"id": 55}),
    );
    let (_d, token) = token_file();
    let cfg = config(
        &gh,
        &token,
        "memory",
        &(notification("summary", "  action: comment")
            + &notification("checks", "  action: checkRun")),
    );
    let (_f, base) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    send_scenario(&base, "tekton-pipelinerun-success").await;

    let created = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/issues/47/comments"))
        .count();
    assert_eq!(created, 1, "one comment per run");
    let updates: Vec<Recorded> = gh.requests_on(&format!("{repo}/issues/comments/9001"));
    assert!(!updates.is_empty());
    let last = updates.last().unwrap().json();
    let body = last["body"].as_str().unwrap();
    assert!(
        body.starts_with("<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->"),
        "{body}"
    );
    assert!(body.contains("✅ build\\-and\\-test: succeeded"), "{body}");
    assert_eq!(body.matches("✅ succeeded").count(), 3, "{body}");
    for r in updates
        .iter()
        .chain(gh.requests_on(&format!("{repo}/issues/47/comments")).iter())
    {
        assert_github_headers(r);
    }
    let comment_list = gh
        .requests_on(&format!("{repo}/issues/47/comments"))
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(comment_list.query, "per_page=100&page=1");

    let checks = gh
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(&format!("{repo}/check-runs")))
        .collect::<Vec<_>>();
    assert_eq!(checks.iter().filter(|r| r.method == "POST").count(), 1);
    let first = checks[0].json();
    assert_eq!(first["head_sha"], SHA);
    assert_eq!(first["name"], "tekton/build-and-test");
    let last = checks.last().unwrap().json();
    assert_eq!(
        (last["status"].as_str(), last["conclusion"].as_str()),
        (Some("completed"), Some("success"))
    );
    assert_eq!(
        last["output"]["summary"]
            .as_str()
            .unwrap()
            .matches("✅ succeeded")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_comment_on_a_later_page_is_adopted() {
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    let others: Vec<Value> = (0..100)
        .map(|i| json!({"id": i, "body": "looks good"}))
        .collect();
    gh.reply(
        "GET",
        &format!("{repo}/issues/47/comments?per_page=100&page=1"),
        200,
        Value::Array(others),
    );
    gh.reply(
        "GET",
        &format!("{repo}/issues/47/comments?per_page=100&page=2"),
        200,
        json!([{"id": 777, "body": "<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->\nold"}]),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/777"),
        200,
        json!({"id": 777}),
    );
    let (_d, token) = token_file();
    let cfg = config(
        &gh,
        &token,
        "memory",
        &notification("summary", "  action: comment"),
    );
    let (_f, base) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    send_scenario(&base, "tekton-pipelinerun-success").await;
    assert!(
        gh.requests().iter().all(|r| r.method != "POST"),
        "never created a second comment"
    );
    assert!(
        !gh.requests_on(&format!("{repo}/issues/comments/777"))
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_rate_limit_is_waited_out() {
    let gh = Receiver::start().await;
    let path = format!("/api/v3/repos/acme/widgets/statuses/{SHA}");
    gh.script(&path, &[(403, Some(1))]);
    let (_d, token) = token_file();
    let cfg = config(
        &gh,
        &token,
        "memory",
        &notification("status", "  action: status"),
    );
    let (_f, base) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0]
        .send(&reqwest::Client::new(), &format!("{base}/"))
        .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let sent = gh.requests_on(&path);
    assert_eq!(
        sent.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 200]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_create_one_comment() {
    let valkey = ValkeyServer::start();
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    gh.reply("GET", &format!("{repo}/issues/47/comments"), 200, json!([]));
    gh.reply(
        "POST",
        &format!("{repo}/issues/47/comments"),
        201,
        json!({"id": 4242}),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/4242"),
        200,
        json!({"id": 4242}),
    );
    gh.slow(
        &format!("{repo}/issues/47/comments"),
        std::time::Duration::from_millis(100),
    );
    let (_d, token) = token_file();
    let cfg = config(
        &gh,
        &token,
        &valkey.url("gh-replicas"),
        &notification("summary", "  action: comment"),
    );
    let (_a, a) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    let (_b, b) = FunctionProcess::start_http(Path::new(BIN), &cfg, &[]).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    for req in outgoing(&sc) {
        // The same event at both replicas at once; a 503 is retried like the Broker would.
        let sends = [&a, &b].map(|base| {
            let (client, req, url) = (client.clone(), req.clone(), format!("{base}/"));
            async move {
                for _ in 0..200 {
                    let (status, _) = req.send(&client, &url).await;
                    if status != 503 {
                        return status;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                503
            }
        });
        for s in futures::future::join_all(sends).await {
            assert_eq!(s, 200);
        }
    }
    let created = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(created, 1);
}
