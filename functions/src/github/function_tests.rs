//! The GitHub function against a mock GitHub (a real HTTP server): every
//! request's method, path, headers and body; statuses not re-posted; check
//! runs and PR comments created once and updated in place; comments found
//! on any page; rate limits waited out; two replicas never create twice.

use std::path::Path;

use relay_tests::attack::{PATH_ATTACKS, assert_path_attacks_refused, pipelinerun_with};
use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::function::{
    Function, Secrets, config, provider, refused, relay_config_with, served,
};
use relay_tests::receiver::{Receiver, Recorded};
use relay_tests::servers::ValkeyServer;
use serde_json::{Value, json};

const BIN: relay_tests::process::Binary =
    relay_tests::process::Binary::function(env!("CARGO_BIN_EXE_relay"), "github");
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const MARKER: &str = "<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->";

/// GitHub's `GET /user` for the test token: the relay's own login.
fn user_is_relay_bot(gh: &Receiver) {
    gh.reply(
        "GET",
        "/api/v3/user",
        200,
        json!({"login": "relay-bot", "id": 1001, "type": "User"}),
    );
}

/// An issue comment as GitHub lists it, by `login`.
fn issue_comment(id: u64, body: &str, login: &str) -> Value {
    json!({"id": id, "body": body, "user": {"login": login, "id": id + 5000, "type": "User"}})
}

/// A config with the test token (written to `secrets`) and `store`,
/// serving `notifications`.
fn token_config(
    gh: &Receiver,
    secrets: &Secrets,
    store: &str,
    notifications: &[(&str, &str)],
) -> String {
    let token = secrets.line("token", "ghp_test_token");
    let settings = format!("{{baseURL: \"{}\", tokenFile: {token}}}", gh.url("/api/v3"));
    relay_config_with(&format!("  store: \"{store}\""))
        + &served("gh", "github", &settings, notifications)
}

/// A function with the test token on `store`, serving `notifications`.
async fn start(gh: &Receiver, store: &str, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let cfg = token_config(gh, &secrets, store, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn assert_github_headers(r: &Recorded) {
    assert_eq!(r.headers["authorization"], "Bearer ghp_test_token");
    assert_eq!(r.headers["accept"], "application/vnd.github+json");
    assert_eq!(r.headers["x-github-api-version"], "2022-11-28");
    r.traceparent();
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_per_run_and_per_task() {
    let gh = Receiver::start().await;
    let f = start(
        &gh,
        "memory",
        &[
            ("status", "  action: status"),
            (
                "per-task",
                "  action: status\n  params: {context: ci, perTask: true}",
            ),
        ],
    )
    .await;
    f.scenario("tekton-pipelinerun-success").await;
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
    let f = start(
        &gh,
        "memory",
        &[
            ("summary", "  action: comment"),
            ("checks", "  action: checkRun"),
        ],
    )
    .await;
    f.scenario("tekton-pipelinerun-success").await;

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
    user_is_relay_bot(&gh);
    let others: Vec<Value> = (0..100)
        .map(|i| issue_comment(i, "looks good", "mchen"))
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
        json!([issue_comment(777, &format!("{MARKER}\nold"), "relay-bot")]),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/777"),
        200,
        json!({"id": 777}),
    );
    let f = start(&gh, "memory", &[("summary", "  action: comment")]).await;
    f.scenario("tekton-pipelinerun-success").await;
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
    let f = start(&gh, "memory", &[("status", "  action: status")]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0].send(&f.client, &f.url()).await;
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
    let metrics = reqwest::get(format!("{}/metrics", f.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"relay_provider_rate_limited_total{provider="gh"} 1"#),
        "{metrics}"
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
    let secrets = Secrets::new();
    let cfg = token_config(
        &gh,
        &secrets,
        &valkey.url("gh-replicas"),
        &[("summary", "  action: comment")],
    );
    // The first replica keeps the token file for both.
    let a = Function::start(BIN, &cfg, secrets, &[]).await;
    let b = Function::start(BIN, &cfg, Secrets::new(), &[]).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    for req in outgoing(&sc) {
        // The same event at both replicas at once; a 503 is retried like the Broker would.
        let sends = [&a.base, &b.base].map(|base| {
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

/// An RSA key pair as GitHub issues App keys (PKCS#1 PEM): `(private, public)`.
fn rsa_key(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let key = dir.join(name);
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(public.status.success(), "{public:?}");
    (key, public.stdout)
}

/// The claims of an App JWT, verified with `public`.
fn app_jwt_claims(r: &Recorded, public: &[u8]) -> Value {
    let auth = r.headers["authorization"].to_str().unwrap();
    let jwt = auth.strip_prefix("Bearer ").unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.required_spec_claims = ["exp", "iat", "iss"].map(String::from).into();
    v.set_issuer(&["4321"]);
    jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(public).unwrap(),
        &v,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", r.path))
    .claims
}

/// A function authenticating as App 4321 with the key `app.pem` of
/// `secrets` (`installation`: more App settings), serving a status
/// Notification.
async fn start_app(gh: &Receiver, secrets: Secrets, installation: &str) -> Function {
    let settings = format!(
        "baseURL: \"{}\"\napp: {{appId: 4321, privateKeyFile: {}{installation}}}",
        gh.url("/api/v3"),
        secrets.path("app.pem").display(),
    );
    let cfg = config("gh", "github", &settings, &[("status", "  action: status")]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_installation_token_is_minted_once_and_cached() {
    let gh = Receiver::start().await;
    let secrets = Secrets::new();
    let (_, public) = rsa_key(secrets.dir(), "app.pem");
    gh.reply(
        "GET",
        "/api/v3/repos/acme/widgets/installation",
        200,
        json!({"id": 77}),
    );
    gh.reply(
        "POST",
        "/api/v3/app/installations/77/access_tokens",
        201,
        json!({"token": "ghs_installation_1", "expires_at": rfc3339(chrono_now() + 3600)}),
    );
    let f = start_app(&gh, secrets, "").await;
    f.scenario("tekton-pipelinerun-success").await;

    let lookups = gh.requests_on("/api/v3/repos/acme/widgets/installation");
    let mints = gh.requests_on("/api/v3/app/installations/77/access_tokens");
    assert_eq!(
        (lookups.len(), mints.len()),
        (1, 1),
        "looked up and minted once"
    );
    for r in lookups.iter().chain(&mints) {
        let c = app_jwt_claims(r, &public);
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert!(
            exp - iat <= 600,
            "GitHub refuses JWTs over ten minutes: {c}"
        );
        assert!(
            iat <= chrono_now(),
            "issued in the past against clock drift: {c}"
        );
    }
    assert_eq!(mints[0].method, "POST");
    let statuses = gh.requests_on(&format!("/api/v3/repos/acme/widgets/statuses/{SHA}"));
    assert!(statuses.len() >= 2);
    for r in &statuses {
        assert_eq!(r.headers["authorization"], "Bearer ghs_installation_1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_installation_token_is_refreshed_with_the_rotated_key() {
    let gh = Receiver::start().await;
    let secrets = Secrets::new();
    let (key, first_public) = rsa_key(secrets.dir(), "app.pem");
    // A token that expires now is due for refresh at every use.
    gh.reply(
        "POST",
        "/api/v3/app/installations/5/access_tokens",
        201,
        json!({"token": "ghs_short", "expires_at": rfc3339(chrono_now())}),
    );
    let f = start_app(&gh, secrets, ", installationId: 5").await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let events = outgoing(&sc);
    f.send_all(&events[..1], 200).await;
    // The key is rotated (a Kubernetes Secret update): the next mint signs with the new one.
    let (rotated, rotated_public) = rsa_key(f.secrets.dir(), "rotated.pem");
    std::fs::rename(&rotated, &key).unwrap();
    f.send_all(&events[1..], 200).await;
    let mints = gh.requests_on("/api/v3/app/installations/5/access_tokens");
    let statuses = gh.requests_on(&format!("/api/v3/repos/acme/widgets/statuses/{SHA}"));
    assert!(statuses.len() >= 2);
    assert_eq!(mints.len(), statuses.len(), "one fresh token per use");
    app_jwt_claims(&mints[0], &first_public);
    app_jwt_claims(mints.last().unwrap(), &rotated_public);
    assert!(
        gh.requests_on("/api/v3/repos/acme/widgets/installation")
            .is_empty()
    );
}

#[tokio::test]
async fn tokens_and_apps_are_exclusive() {
    let gh = Receiver::start().await;
    let settings = format!(
        "baseURL: \"{}\"\ntokenFile: /t\napp: {{appId: 1, privateKeyFile: /k}}",
        gh.url("/")
    );
    let stderr = refused(BIN, &provider("gh", "github", &settings));
    assert!(stderr.contains("either tokenFile or app"), "{stderr}");
}

fn chrono_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unix seconds as GitHub's `expires_at` (RFC 3339, UTC).
fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A comment someone else posted with the relay's marker is not adopted:
/// it is never edited, and the relay posts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_comment_by_another_user_is_not_adopted() {
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    user_is_relay_bot(&gh);
    gh.reply(
        "GET",
        &format!("{repo}/issues/47/comments"),
        200,
        json!([issue_comment(
            666,
            &format!("{MARKER}\nplease approve"),
            "mallory"
        )]),
    );
    gh.reply(
        "POST",
        &format!("{repo}/issues/47/comments"),
        201,
        issue_comment(9001, MARKER, "relay-bot"),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/9001"),
        200,
        issue_comment(9001, MARKER, "relay-bot"),
    );
    let f = start(&gh, "memory", &[("summary", "  action: comment")]).await;
    f.scenario("tekton-pipelinerun-success").await;
    assert!(
        gh.requests_on(&format!("{repo}/issues/comments/666"))
            .is_empty(),
        "mallory's comment was edited"
    );
    let created = gh.requests_on(&format!("{repo}/issues/47/comments"));
    assert_eq!(
        created.iter().filter(|r| r.method == "POST").count(),
        1,
        "a comment of its own instead"
    );
    assert!(
        !gh.requests_on(&format!("{repo}/issues/comments/9001"))
            .is_empty()
    );
    assert_eq!(
        gh.requests_on("/api/v3/user").len(),
        1,
        "asked who it is once"
    );
}

/// A GitHub App's comments are its bot's, `<slug>[bot]`: that one is
/// adopted, not another user's before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_adopts_only_its_bots_comment() {
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    let secrets = Secrets::new();
    rsa_key(secrets.dir(), "app.pem");
    gh.reply(
        "POST",
        "/api/v3/app/installations/5/access_tokens",
        201,
        json!({"token": "ghs_installation_1", "expires_at": rfc3339(chrono_now() + 3600)}),
    );
    gh.reply(
        "GET",
        "/api/v3/app",
        200,
        json!({"id": 4321, "slug": "tekton-relay", "name": "Tekton Relay"}),
    );
    gh.reply(
        "GET",
        &format!("{repo}/issues/47/comments"),
        200,
        json!([
            issue_comment(666, MARKER, "mallory"),
            {"id": 777, "body": format!("{MARKER}\nold"), "user": {"login": "tekton-relay[bot]", "id": 9, "type": "Bot"}},
        ]),
    );
    gh.reply(
        "PATCH",
        &format!("{repo}/issues/comments/777"),
        200,
        json!({"id": 777}),
    );
    let settings = format!(
        "baseURL: \"{}\"\napp: {{appId: 4321, installationId: 5, privateKeyFile: {}}}",
        gh.url("/api/v3"),
        secrets.path("app.pem").display(),
    );
    let cfg = config(
        "gh",
        "github",
        &settings,
        &[("summary", "  action: comment")],
    );
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    f.scenario("tekton-pipelinerun-success").await;
    assert!(
        gh.requests()
            .iter()
            .all(|r| r.method != "POST" || r.path.ends_with("/access_tokens"))
    );
    assert!(
        gh.requests_on(&format!("{repo}/issues/comments/666"))
            .is_empty()
    );
    assert!(
        !gh.requests_on(&format!("{repo}/issues/comments/777"))
            .is_empty()
    );
    let app = gh.requests_on("/api/v3/app");
    assert_eq!(app.len(), 1);
    assert!(
        !app[0].headers["authorization"]
            .to_str()
            .unwrap()
            .contains("ghs_"),
        "GET /app takes the App's JWT"
    );
}

/// `url-org: ../../../../admin/hooks?` made the relay `POST
/// /admin/hooks?/…`, a sha of `../../../../../user/repos#` `POST
/// /user/repos`, both with its token: every such event is refused,
/// dead-lettered, and nothing at all is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fields_cannot_steer_the_token_to_another_api() {
    let gh = Receiver::start().await;
    let f = start(&gh, "memory", &[("status", "  action: status")]).await;
    assert_path_attacks_refused(&f, "status", &[], PATH_ATTACKS).await;
    let sent: Vec<String> = gh.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// Comments take the same path checks; a deployment id that is no
/// number is refused likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_and_deployment_paths_are_checked_too() {
    let gh = Receiver::start().await;
    let comments = start(&gh, "memory", &[("summary", "  action: comment")]).await;
    let answer = comments
        .delivery(&pipelinerun_with(
            "comment",
            &[("relay.tekton.dev/url-org", "../../../../admin/hooks?")],
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let deployments = start(&gh, "memory", &[("deploy", "  action: deployment")]).await;
    for (i, id) in ["../../../../user/repos#", "", "12/../../x"]
        .iter()
        .enumerate()
    {
        let ev = pipelinerun_with(
            &format!("deploy-{i}"),
            &[("relay.tekton.dev/github-deployment-id", id)],
        );
        let answer = deployments.delivery(&ev).await;
        assert_eq!(answer["outcome"], "dead_lettered", "{id:?}: {answer}");
    }
    assert!(gh.requests().is_empty(), "{:?}", gh.requests());
}

/// With `repositories`, an event naming a repository outside it is
/// refused before any request; one inside it is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_repositories() {
    let gh = Receiver::start().await;
    let secrets = Secrets::new();
    let token = secrets.line("token", "ghp_test_token");
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {token}, repositories: [\"acme/api-*\", \"other/widgets\"]}}",
        gh.url("/api/v3")
    );
    let cfg = config("gh", "github", &settings, &[("status", "  action: status")]);
    let f = Function::start(BIN, &cfg, secrets, &[]).await;

    // acme/widgets (the fixture's) is not listed.
    let answer = f.delivery(&pipelinerun_with("outside", &[])).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let entry = f.only_dead_letter();
    let message = entry["cause"]["message"].as_str().unwrap();
    assert!(
        message.contains("acme/widgets") && message.contains("repositories"),
        "{message}"
    );
    assert!(gh.requests().is_empty(), "{:?}", gh.requests());

    let answer = f
        .delivery(&pipelinerun_with(
            "inside",
            &[("relay.tekton.dev/url-repository", "api-gateway")],
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = gh.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        format!("/api/v3/repos/acme/api-gateway/statuses/{SHA}")
    );

    let stderr = refused(
        BIN,
        &provider(
            "gh",
            "github",
            &format!(
                "{{baseURL: \"{}\", tokenFile: /t, repositories: [acme]}}",
                gh.url("/")
            ),
        ),
    );
    assert!(
        stderr.contains("repositories") && stderr.contains("owner/repository"),
        "{stderr}"
    );
}

/// A clone URL's token in the git URL param and in the run's link reaches
/// no request GitHub gets (a status's `target_url`, a check run's
/// `details_url`, a comment), nor a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_url_credentials_reach_no_request() {
    const CLONE_TOKEN: &str = "ghs_cl0neT0kenS3cret";
    let gh = Receiver::start().await;
    let repo = "/api/v3/repos/acme/widgets";
    user_is_relay_bot(&gh);
    gh.reply("GET", &format!("{repo}/issues/47/comments"), 200, json!([]));
    gh.reply(
        "POST",
        &format!("{repo}/issues/47/comments"),
        201,
        json!({"id": 9001}),
    );
    gh.reply(
        "POST",
        &format!("{repo}/check-runs"),
        201,
        json!({"id": 55}),
    );
    let f = start(
        &gh,
        "memory",
        &[
            ("status", "  action: status"),
            ("checks", "  action: checkRun"),
            ("summary", "  action: comment"),
        ],
    )
    .await;
    let with_token = |host_path: &str| format!("https://x-access-token:{CLONE_TOKEN}@{host_path}");
    let mut ev = pipelinerun_with(
        "credentials",
        &[(
            "pipelinesascode.tekton.dev/log-url",
            &with_token("tekton.acme.dev/#/x"),
        )],
    );
    let run = &mut ev.body["pipelineRun"];
    let annotations = run["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.remove("pipelinesascode.tekton.dev/repo-url");
    run["spec"]["params"][0] =
        json!({"name": "repo-url", "value": with_token("github.com/acme/widgets")});
    let answer = f.send(&ev).await;
    for d in answer["deliveries"].as_array().unwrap() {
        assert_eq!(d["outcome"], "delivered", "{answer}");
    }
    let sent = gh.requests();
    assert!(sent.len() >= 3, "{sent:?}");
    for r in &sent {
        let seen = format!(
            "{} {}?{} {:?} {}",
            r.method,
            r.path,
            r.query,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        assert!(!seen.contains(CLONE_TOKEN), "{seen}");
    }
    f.assert_secrets_absent(&[CLONE_TOKEN], &answer);
}

// Was `tests/openapi.rs`.
mod openapi {
//! Every request the GitHub function makes, checked against GitHub's
//! official OpenAPI description (npm `@octokit/openapi`, installed by
//! `scripts/test`, which exports its path as `RELAY_GITHUB_OPENAPI`) by
//! `tests/tools/validate-github-requests`: the operation exists, its path
//! and query parameters, the headers GitHub needs, the JSON body against
//! the operation's schema. Both Tekton fixture runs go through every action
//! (statuses per run and per task, check runs, PR comments, deployment
//! statuses), with and without a dashboard URL, and as a GitHub App.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use relay_tests::expect::{Outgoing, outgoing};
use relay_tests::fixtures::Scenario;
use relay_tests::process::FunctionProcess;
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

const BIN: relay_tests::process::Binary =
    relay_tests::process::Binary::function(env!("CARGO_BIN_EXE_relay"), "github");
const REPO: &str = "/api/v3/repos/acme/widgets";
const DEPLOYMENT: &str = "1234";

/// The operations the function uses, each of which must be seen.
const OPERATIONS: [&str; 11] = [
    "repos/create-commit-status",
    "checks/create",
    "checks/update",
    "issues/list-comments",
    "issues/create-comment",
    "issues/update-comment",
    "repos/create-deployment-status",
    "apps/get-repo-installation",
    "apps/create-installation-access-token",
    "users/get-authenticated",
    "apps/get-authenticated",
];

/// GitHub's OpenAPI description, as `scripts/test` installs it.
fn spec() -> PathBuf {
    let Some(spec) = std::env::var_os("RELAY_GITHUB_OPENAPI") else {
        panic!(
            "RELAY_GITHUB_OPENAPI is not set: run scripts/test, which installs \
             @octokit/openapi and points RELAY_GITHUB_OPENAPI at its api.github.com.json"
        );
    };
    let spec = PathBuf::from(spec);
    assert!(
        spec.is_file(),
        "RELAY_GITHUB_OPENAPI={} is no file: run scripts/test to install @octokit/openapi",
        spec.display()
    );
    spec
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv `scripts/test` keeps (with jsonschema), else `python3`.
fn python() -> PathBuf {
    let venv = workspace().join("target/test-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A recorded request as the validator reads it.
fn as_json(r: &Recorded) -> Value {
    let mut headers = serde_json::Map::new();
    for name in r.headers.keys() {
        let values: Vec<&str> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        headers.insert(name.as_str().into(), values.join(", ").into());
    }
    json!({
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&r.body),
    })
}

/// Runs the validator on `requests`: (passed, its report).
fn validate(requests: &[Value]) -> (bool, String) {
    let spec = spec();
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("requests.json");
    std::fs::write(&file, serde_json::to_vec_pretty(requests).unwrap()).unwrap();
    let out = std::process::Command::new(python())
        .arg(workspace().join("tests/tools/validate-github-requests"))
        .arg(&spec)
        .arg(&file)
        .args(["--prefix", "/api/v3"])
        .output()
        .expect("python runs the validator");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "the validator did not run: {report}"
    );
    (out.status.success(), report)
}

fn token_config(gh: &Receiver, token: &Path) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: memory\n  deadLetter: file://$DIR/dl.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gh}}\nspec:\n  type: github\n  github: {{baseURL: \"{}\", tokenFile: {}}}\n{}",
        gh.url("/api/v3"),
        token.display(),
        every_action()
    )
}

fn app_config(gh: &Receiver, key: &Path) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: memory\n  deadLetter: file://$DIR/dl.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gh}}\nspec:\n  type: github\n  github:\n    baseURL: \"{}\"\n    app: {{appId: 4321, privateKeyFile: {}}}\n{}",
        gh.url("/api/v3"),
        key.display(),
        every_action()
    )
}

fn notification(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: gh}}\n{spec}\n"
    )
}

fn every_action() -> String {
    [
        notification("status", "  action: status"),
        notification(
            "per-task",
            "  action: status\n  params: {context: ci, perTask: true}",
        ),
        notification("checks", "  action: checkRun"),
        notification("summary", "  action: comment"),
        notification("deploy", "  action: deployment"),
    ]
    .concat()
}

/// What the mock GitHub answers: comment and check-run ids, an App
/// installation and its tokens, who the token and the App are
/// (everything else: an empty 200). Pull request 52 holds a comment with
/// the summary's marker by someone else, so the relay asks who it is.
fn github_replies(gh: &Receiver) {
    for (pr, id) in [(47, 9001), (52, 9002)] {
        let listed = match pr {
            52 => json!([{
                "id": 1,
                "body": "<!-- tekton-relay:summary:fa7f0eab-4c4f-4b06-8732-2e25c215a82a -->",
                "user": {"login": "mallory", "id": 66, "type": "User"},
            }]),
            _ => json!([]),
        };
        gh.reply("GET", &format!("{REPO}/issues/{pr}/comments"), 200, listed);
        gh.reply(
            "POST",
            &format!("{REPO}/issues/{pr}/comments"),
            201,
            json!({"id": id}),
        );
        gh.reply(
            "PATCH",
            &format!("{REPO}/issues/comments/{id}"),
            200,
            json!({"id": id}),
        );
    }
    gh.reply(
        "POST",
        &format!("{REPO}/check-runs"),
        201,
        json!({"id": 55}),
    );
    gh.reply(
        "PATCH",
        &format!("{REPO}/check-runs/55"),
        200,
        json!({"id": 55}),
    );
    gh.reply(
        "POST",
        &format!("{REPO}/deployments/{DEPLOYMENT}/statuses"),
        201,
        json!({"id": 1}),
    );
    gh.reply(
        "GET",
        &format!("{REPO}/installation"),
        200,
        json!({"id": 77}),
    );
    gh.reply(
        "GET",
        "/api/v3/user",
        200,
        json!({"login": "relay-bot", "id": 1001, "type": "User"}),
    );
    gh.reply(
        "GET",
        "/api/v3/app",
        200,
        json!({"id": 4321, "slug": "tekton-relay", "name": "Tekton Relay"}),
    );
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    gh.reply(
        "POST",
        "/api/v3/app/installations/77/access_tokens",
        201,
        json!({"token": "ghs_installation_1", "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    );
}

/// A scenario's events with the deployment annotation on the PipelineRun,
/// and, unless `with_url`, without the dashboard URL (a plain Tekton run).
fn events(name: &str, with_url: bool) -> Vec<Outgoing> {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join(name));
    outgoing(&sc)
        .into_iter()
        .map(|e| {
            let Outgoing::File(mut f) = e else {
                panic!("{name}: expected binary-mode request files");
            };
            for kind in ["pipelineRun", "taskRun"] {
                let Some(a) = f.body[kind]["metadata"]["annotations"].as_object_mut() else {
                    continue;
                };
                if kind == "pipelineRun" {
                    a.insert(
                        "relay.tekton.dev/github-deployment-id".into(),
                        DEPLOYMENT.into(),
                    );
                }
                if !with_url {
                    a.remove("pipelinesascode.tekton.dev/log-url");
                    a.remove("relay.tekton.dev/url");
                }
            }
            Outgoing::File(f)
        })
        .collect()
}

/// Sends `events` to a function, each answered 200 and nothing dead-lettered.
async fn run(config: &str, events: &[Outgoing]) {
    let (f, base) = FunctionProcess::start_http(BIN, config, &[]).await;
    let client = reqwest::Client::new();
    for e in events {
        let (status, body) = e.send(&client, &format!("{base}/")).await;
        assert_eq!(status, 200, "{}: {body}", e.file_name());
    }
    let dead = std::fs::read_to_string(f.dir.path().join("dl.jsonl")).unwrap_or_default();
    assert!(dead.trim().is_empty(), "dead-lettered: {dead}");
}

/// An RSA key as GitHub issues App keys (PKCS#1 PEM).
fn rsa_key(dir: &Path) -> PathBuf {
    let key = dir.join("app.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_matches_the_github_openapi_description() {
    spec();
    let gh = Receiver::start().await;
    github_replies(&gh);
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("token");
    std::fs::write(&token, "ghp_test_token\n").unwrap();

    // A token: both runs with a dashboard URL, then the success run without one.
    let mut both = events("tekton-pipelinerun-success", true);
    both.extend(events("tekton-pipelinerun-failure", true));
    run(&token_config(&gh, &token), &both).await;
    run(
        &token_config(&gh, &token),
        &events("tekton-pipelinerun-success", false),
    )
    .await;
    // A GitHub App: its installation looked up, a token minted.
    let key = rsa_key(d.path());
    run(
        &app_config(&gh, &key),
        &events("tekton-pipelinerun-failure", true),
    )
    .await;

    // Check runs and deployment statuses both with and without a dashboard URL.
    for (path, url) in [
        (format!("{REPO}/check-runs"), "details_url"),
        (
            format!("{REPO}/deployments/{DEPLOYMENT}/statuses"),
            "log_url",
        ),
    ] {
        let bodies: Vec<Value> = gh
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(&path))
            .map(Recorded::json)
            .collect();
        assert!(bodies.iter().any(|b| b[url].is_string()), "{path}");
        assert!(bodies.iter().any(|b| b.get(url).is_none()), "{path}");
    }

    let requests: Vec<Value> = gh.requests().iter().map(as_json).collect();
    assert!(!requests.is_empty());
    let (ok, report) = validate(&requests);
    assert!(
        ok,
        "requests GitHub's OpenAPI description refuses:\n{report}"
    );
    let seen: BTreeSet<&str> = report
        .lines()
        .filter(|l| l.starts_with("OK "))
        .filter_map(|l| l.rsplit_once(" (")?.1.strip_suffix(')'))
        .collect();
    for op in OPERATIONS {
        assert!(seen.contains(op), "no {op} request: {seen:?}\n{report}");
    }
    assert_eq!(
        report.lines().filter(|l| l.starts_with("OK ")).count(),
        requests.len(),
        "{report}"
    );
}

/// The validator fails what GitHub would refuse: a commit status state and
/// a check-run conclusion GitHub does not know, a misspelt field, an
/// integer parameter that is not one, a token where a JWT is due.
#[test]
fn the_validator_fails_requests_github_would_refuse() {
    let headers = json!({
        "authorization": "Bearer ghp_test_token",
        "accept": "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
        "content-type": "application/json",
    });
    let req = |method: &str, path: &str, query: &str, body: Value| {
        json!({
            "method": method, "path": path, "query": query, "headers": headers,
            "body": if body.is_null() { String::new() } else { body.to_string() },
        })
    };
    let status = format!("{REPO}/statuses/0c5c7fd0a6a3a4506513270e269e0d37f2a74de4");
    let good = req(
        "POST",
        &status,
        "",
        json!({"state": "success", "target_url": null, "description": "ok", "context": "ci"}),
    );
    let (ok, report) = validate(std::slice::from_ref(&good));
    assert!(ok, "{report}");
    assert!(
        report.starts_with(&format!("OK POST {status} (repos/create-commit-status)")),
        "{report}"
    );

    let bad = [
        req(
            "POST",
            &status,
            "",
            json!({"state": "succeeded", "context": "ci"}),
        ),
        req(
            "PATCH",
            &format!("{REPO}/check-runs/55"),
            "",
            json!({"status": "completed", "conclusion": "passed", "output": {"title": "t", "summary": "s"}}),
        ),
        req(
            "POST",
            &format!("{REPO}/check-runs"),
            "",
            json!({"name": "ci", "head_sha": "abc", "detail_url": "https://ci"}),
        ),
        req(
            "GET",
            &format!("{REPO}/issues/47/comments"),
            "per_page=all",
            Value::Null,
        ),
        req(
            "POST",
            "/api/v3/app/installations/77/access_tokens",
            "",
            Value::Null,
        ),
        req("PUT", &status, "", json!({"state": "success"})),
    ];
    for b in &bad {
        let (ok, report) = validate(std::slice::from_ref(b));
        assert!(!ok, "passed: {b}\n{report}");
        assert!(report.starts_with("FAIL "), "{report}");
    }
    let (ok, report) = validate(&bad);
    assert!(!ok);
    for reason in [
        "'succeeded' is not one of",
        "'passed' is not one of",
        "body/detail_url: not a property GitHub knows",
        "'per_page'='all'",
        "must be called with the GitHub App's JWT",
        "takes no PUT",
    ] {
        assert!(report.contains(reason), "{reason}: {report}");
    }
}
}
