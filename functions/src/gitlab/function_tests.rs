//! The GitLab function against a mock GitLab (a real HTTP server): commit
//! statuses (not re-posted), and one merge request note per run, found on
//! any page, created once and updated in place.

use relay_tests::attack::{PATH_ATTACKS, assert_path_attacks_refused, pipelinerun_with};
use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::function::{Function, Secrets, config};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "gitlab");
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const PROJECT: &str = "/api/v4/projects/acme%2Fwidgets";
const MARKER: &str = "<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->";

/// GitLab's `GET /user` for the test token: the relay's own user.
fn user_is_relay_bot(gl: &Receiver) {
    gl.reply(
        "GET",
        "/api/v4/user",
        200,
        json!({"id": 1001, "username": "relay-bot", "name": "Relay Bot"}),
    );
}

/// A merge request note as GitLab lists it, by user `author` (id, username).
fn note(id: u64, body: &str, author: (u64, &str)) -> Value {
    json!({"id": id, "body": body, "system": false,
           "author": {"id": author.0, "username": author.1, "name": author.1}})
}

/// A function with a token serving `notifications`, sent the success scenario.
async fn run(notifications: &[(&str, &str)], gl: &Receiver) {
    let secrets = Secrets::new();
    let token = secrets.line("token", "glpat-test");
    let settings = format!("{{baseURL: \"{}\", tokenFile: {token}}}", gl.url("/api/v4"));
    let cfg = config("gl", "gitlab", &settings, notifications);
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    f.scenario("tekton-pipelinerun-success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses() {
    let gl = Receiver::start().await;
    run(&[("status", "  action: status")], &gl).await;
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
    run(&[("summary", "  action: note")], &gl).await;
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
    user_is_relay_bot(&gl);
    let page1: Vec<Value> = (0..100).map(|i| note(i, "lgtm", (7, "mchen"))).collect();
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
        json!([note(88, &format!("{MARKER}\nold"), (1001, "relay-bot"))]),
    );
    gl.reply("PUT", &format!("{notes}/88"), 200, json!({"id": 88}));
    run(&[("summary", "  action: note")], &gl).await;
    assert!(gl.requests().iter().all(|r| r.method != "POST"));
    assert!(!gl.requests_on(&format!("{notes}/88")).is_empty());
}

/// A function with OAuth2 client credentials (the client secret file
/// holding `secret`) serving a status Notification.
async fn start_oauth2(gl: &Receiver, secret: &str) -> Function {
    let secrets = Secrets::new();
    let secret = secrets.file("client-secret", secret);
    let settings = format!(
        "baseURL: \"{}\"\noauth2: {{tokenURL: \"{}\", clientId: relay-app, clientSecretFile: {secret}, scopes: [api]}}",
        gl.url("/api/v4"),
        gl.url("/oauth/token"),
    );
    let cfg = config("gl", "gitlab", &settings, &[("status", "  action: status")]);
    Function::start(BIN, &cfg, secrets, &[]).await
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
    let f = start_oauth2(&gl, "s3cret-one\n").await;
    f.scenario("tekton-pipelinerun-success").await;
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
    let f = start_oauth2(&gl, "s3cret-one").await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let events = outgoing(&sc);
    f.send_all(&events[..1], 200).await;
    f.secrets.file("client-secret", "s3cret-two");
    f.send_all(&events[1..], 200).await;
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
    let f = start_oauth2(&gl, "s3cret-never-shown").await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0].send(&f.client, &f.url()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    let detail = body["deliveries"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("OAuth2 token request"), "{detail}");
    let dead = f.dead_letter_text();
    assert!(dead.contains("invalid_client"), "{dead}");
    f.assert_secrets_absent(&["s3cret-never-shown"], &body);
    assert!(
        gl.requests_on(&format!("{PROJECT}/statuses/{SHA}"))
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_grant_and_a_refused_token_dropped_for_the_next_event() {
    let gl = Receiver::start().await;
    gl.reply(
        "POST",
        "/oauth/token",
        200,
        json!({"access_token": "gl-rt-1", "expires_in": 7200, "refresh_token": "rt-server"}),
    );
    let secrets = Secrets::new();
    let refresh = secrets.line("refresh-token", "rt-file");
    let settings = format!(
        "baseURL: \"{}\"\noauth2: {{tokenURL: \"{}\", clientId: relay-app, refreshTokenFile: {refresh}}}",
        gl.url("/api/v4"),
        gl.url("/oauth/token"),
    );
    let cfg = config("gl", "gitlab", &settings, &[("status", "  action: status")]);
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let events = outgoing(&sc);
    let statuses = format!("{PROJECT}/statuses/{SHA}");
    // GitLab refuses the token once: that event is dead-lettered, and the
    // next one fetches a new token with the server's rotated refresh token.
    gl.script(&statuses, &[(401, None)]);
    f.send_all(&events[..1], 200).await;
    gl.reply(
        "POST",
        "/oauth/token",
        200,
        json!({"access_token": "gl-rt-2", "expires_in": 7200}),
    );
    f.send_all(&events[1..2], 200).await;
    let tokens = gl.requests_on("/oauth/token");
    assert_eq!(tokens.len(), 2, "{}", f.stderr());
    let form = |r: &relay_tests::receiver::Recorded| -> Vec<(String, String)> {
        url::form_urlencoded::parse(&r.body).into_owned().collect()
    };
    assert!(form(&tokens[0]).contains(&("refresh_token".into(), "rt-file".into())));
    assert!(form(&tokens[0]).contains(&("client_id".into(), "relay-app".into())));
    assert!(form(&tokens[1]).contains(&("refresh_token".into(), "rt-server".into())));
    let sent = gl.requests_on(&statuses);
    assert_eq!(sent[0].headers["authorization"], "Bearer gl-rt-1");
    assert_eq!(
        sent.last().unwrap().headers["authorization"],
        "Bearer gl-rt-2"
    );
    f.assert_secrets_absent(&["rt-file", "rt-server", "gl-rt-1", "gl-rt-2"], &json!({}));
}

/// A note someone else posted with the relay's marker is not adopted: it
/// is never edited, and the relay posts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_note_by_another_user_is_not_adopted() {
    let gl = Receiver::start().await;
    user_is_relay_bot(&gl);
    let notes = format!("{PROJECT}/merge_requests/47/notes");
    gl.reply(
        "GET",
        &notes,
        200,
        json!([note(
            66,
            &format!("{MARKER}\nplease approve"),
            (66, "mallory")
        )]),
    );
    gl.reply("POST", &notes, 201, note(31, MARKER, (1001, "relay-bot")));
    gl.reply("PUT", &format!("{notes}/31"), 200, json!({"id": 31}));
    run(&[("summary", "  action: note")], &gl).await;
    assert!(
        gl.requests_on(&format!("{notes}/66")).is_empty(),
        "mallory's note was edited"
    );
    let posted = gl
        .requests_on(&notes)
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posted, 1, "a note of its own instead");
    assert!(!gl.requests_on(&format!("{notes}/31")).is_empty());
    let me = gl.requests_on("/api/v4/user");
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].headers["private-token"], "glpat-test");
}

/// Event fields that made the relay send `PRIVATE-TOKEN` to another API
/// (a sha of `../../../../../user/repos#`) are refused, dead-lettered, and
/// nothing at all is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fields_cannot_steer_the_token_to_another_api() {
    let gl = Receiver::start().await;
    let secrets = Secrets::new();
    let token = secrets.line("token", "glpat-test");
    let settings = format!("{{baseURL: \"{}\", tokenFile: {token}}}", gl.url("/api/v4"));
    let cfg = config("gl", "gitlab", &settings, &[("status", "  action: status")]);
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    assert_path_attacks_refused(&f, "status", &[], PATH_ATTACKS).await;
    let sent: Vec<String> = gl.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// With `repositories`, a project outside it is refused before any
/// request; `group/**` takes subgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_projects() {
    let gl = Receiver::start().await;
    let secrets = Secrets::new();
    let token = secrets.line("token", "glpat-test");
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {token}, repositories: [\"platform/**\"]}}",
        gl.url("/api/v4")
    );
    let cfg = config("gl", "gitlab", &settings, &[("status", "  action: status")]);
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    let answer = f.delivery(&pipelinerun_with("outside", &[])).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let message = f.only_dead_letter()["cause"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("acme/widgets"), "{message}");
    assert!(gl.requests().is_empty(), "{:?}", gl.requests());
    let answer = f
        .delivery(&pipelinerun_with(
            "inside",
            &[("relay.tekton.dev/url-org", "platform/team")],
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = gl.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        format!("/api/v4/projects/platform%2Fteam%2Fwidgets/statuses/{SHA}")
    );
}
