//! The GitLab function against a mock GitLab (a real HTTP server): commit
//! statuses (not re-posted), and one merge request note per run, found on
//! any page, created once and updated in place.

use std::path::Path;

use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::process::FunctionProcess;
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay-gitlab");
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const PROJECT: &str = "/api/v4/projects/acme%2Fwidgets";

fn config(gl: &Receiver, token: &Path, notifications: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gl}}\nspec:\n  type: gitlab\n  gitlab: {{baseURL: \"{}\", tokenFile: {}}}\n{notifications}",
        gl.url("/api/v4"),
        token.display()
    )
}

fn notification(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: gl}}\n{spec}\n"
    )
}

async fn run(notifications: &str, gl: &Receiver) {
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("token");
    std::fs::write(&token, "glpat-test\n").unwrap();
    let (_f, base) =
        FunctionProcess::start_http(Path::new(BIN), &config(gl, &token, notifications), &[]).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    for req in outgoing(&sc) {
        let (status, body) = req.send(&client, &format!("{base}/")).await;
        assert_eq!(status, 200, "{}: {body}", req.file_name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses() {
    let gl = Receiver::start().await;
    run(&notification("status", "  action: status"), &gl).await;
    let sent = gl.requests_on(&format!("{PROJECT}/statuses/{SHA}"));
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["private-token"], "glpat-test");
        let b = r.json();
        assert_eq!(b["name"], "tekton/build-and-test");
        assert_eq!(b["ref"], "main");
    }
    let states: Vec<String> = sent
        .iter()
        .map(|r| r.json()["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("running"));
    assert_eq!(states.last().map(String::as_str), Some("success"));
    assert_eq!(
        states.len(),
        3,
        "started, running (once: same description), success: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_request_note_is_found_on_any_page_or_created_once() {
    let gl = Receiver::start().await;
    let notes = format!("{PROJECT}/merge_requests/47/notes");
    gl.reply("GET", &notes, 200, json!([]));
    gl.reply("POST", &notes, 201, json!({"id": 31}));
    gl.reply("PUT", &format!("{notes}/31"), 200, json!({"id": 31}));
    run(&notification("summary", "  action: note"), &gl).await;
    let posted = gl
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posted, 1);
    let updates = gl.requests_on(&format!("{notes}/31"));
    let last: Value = updates.last().unwrap().json();
    let body = last["body"].as_str().unwrap();
    assert!(body.starts_with("<!-- tekton-relay:summary:"), "{body}");
    assert_eq!(body.matches("✅ succeeded").count(), 3, "{body}");

    let gl = Receiver::start().await;
    let page1: Vec<Value> = (0..100).map(|i| json!({"id": i, "body": "lgtm"})).collect();
    gl.reply(
        "GET",
        &format!("{notes}?per_page=100&page=1"),
        200,
        Value::Array(page1),
    );
    gl.reply(
        "GET",
        &format!("{notes}?per_page=100&page=2"),
        200,
        json!([{"id": 88, "body": "<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->\nold"}]),
    );
    gl.reply("PUT", &format!("{notes}/88"), 200, json!({"id": 88}));
    run(&notification("summary", "  action: note"), &gl).await;
    assert!(gl.requests().iter().all(|r| r.method != "POST"));
    assert!(!gl.requests_on(&format!("{notes}/88")).is_empty());
}

fn oauth2_config(gl: &Receiver, secret: &Path) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gl}}\nspec:\n  type: gitlab\n  gitlab:\n    baseURL: \"{}\"\n    oauth2: {{tokenURL: \"{}\", clientId: relay-app, clientSecretFile: {}, scopes: [api]}}\n{}",
        gl.url("/api/v4"),
        gl.url("/oauth/token"),
        secret.display(),
        notification("status", "  action: status")
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials_token_is_fetched_once_and_used() {
    let gl = Receiver::start().await;
    gl.reply(
        "POST",
        "/oauth/token",
        200,
        json!({"access_token": "gl-oauth-1", "token_type": "Bearer", "expires_in": 7200}),
    );
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("client-secret");
    std::fs::write(&secret, "s3cret-one\n").unwrap();
    let (_f, base) =
        FunctionProcess::start_http(Path::new(BIN), &oauth2_config(&gl, &secret), &[]).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    for req in outgoing(&sc) {
        let (status, body) = req.send(&client, &format!("{base}/")).await;
        assert_eq!(status, 200, "{body}");
    }
    let tokens = gl.requests_on("/oauth/token");
    assert_eq!(tokens.len(), 1, "one token for the whole run");
    let t = &tokens[0];
    assert_eq!(t.headers["authorization"], basic("relay-app", "s3cret-one"));
    assert_eq!(
        t.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        "grant_type=client_credentials&scope=api"
    );
    let statuses = gl.requests_on(&format!("{PROJECT}/statuses/{SHA}"));
    assert_eq!(statuses.len(), 3);
    for r in &statuses {
        assert_eq!(r.headers["authorization"], "Bearer gl-oauth-1");
        assert!(r.headers.get("private-token").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_secret_is_used_at_the_next_refresh() {
    let gl = Receiver::start().await;
    // A token with no lifetime left is refreshed at every use.
    gl.reply(
        "POST",
        "/oauth/token",
        200,
        json!({"access_token": "gl-short", "expires_in": 0}),
    );
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("client-secret");
    std::fs::write(&secret, "s3cret-one").unwrap();
    let (_f, base) =
        FunctionProcess::start_http(Path::new(BIN), &oauth2_config(&gl, &secret), &[]).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let events = outgoing(&sc);
    let (status, _) = events[0].send(&client, &format!("{base}/")).await;
    assert_eq!(status, 200);
    std::fs::write(&secret, "s3cret-two").unwrap();
    for req in &events[1..] {
        let (status, body) = req.send(&client, &format!("{base}/")).await;
        assert_eq!(status, 200, "{body}");
    }
    let tokens = gl.requests_on("/oauth/token");
    let statuses = gl.requests_on(&format!("{PROJECT}/statuses/{SHA}"));
    assert_eq!(tokens.len(), statuses.len(), "one fresh token per use");
    assert_eq!(
        tokens[0].headers["authorization"],
        basic("relay-app", "s3cret-one")
    );
    assert_eq!(
        tokens.last().unwrap().headers["authorization"],
        basic("relay-app", "s3cret-two")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_dead_lettered_without_its_secret() {
    let gl = Receiver::start().await;
    gl.reply(
        "POST",
        "/oauth/token",
        401,
        json!({"error": "invalid_client"}),
    );
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("client-secret");
    std::fs::write(&secret, "s3cret-never-shown").unwrap();
    let (f, base) =
        FunctionProcess::start_http(Path::new(BIN), &oauth2_config(&gl, &secret), &[]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0]
        .send(&reqwest::Client::new(), &format!("{base}/"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    let detail = body["deliveries"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("OAuth2 token request"), "{detail}");
    let dead = std::fs::read_to_string(f.dir.path().join("dl.jsonl")).unwrap();
    assert!(dead.contains("invalid_client"), "{dead}");
    for text in [dead, f.stderr(), body.to_string()] {
        assert!(!text.contains("s3cret-never-shown"));
    }
    assert!(
        gl.requests_on(&format!("{PROJECT}/statuses/{SHA}"))
            .is_empty()
    );
}
