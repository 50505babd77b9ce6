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

const BIN: &str = env!("CARGO_BIN_EXE_relay-github");
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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    let (f, base) = FunctionProcess::start_http(Path::new(BIN), config, &[]).await;
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
