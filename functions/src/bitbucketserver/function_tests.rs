//! The Bitbucket Server function against a mock Bitbucket Data Center (a
//! real HTTP server answering 204 like the real one): build statuses
//! (method, path under a context path, auth, body; not re-posted), failed
//! and cancelled runs, escaping of user-controlled names, and a 401
//! dead-lettered without the secret.

use relay_tests::attack::{PATH_ATTACKS, assert_path_attacks_refused, pipelinerun_with};
use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::function::{Function, Secrets, config, example, fixture};
use relay_tests::receiver::{Receiver, Recorded};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "bitbucketserver");
const SUCCESS_SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const FAILURE_SHA: &str = "7a86f7a243c71b9abd87a86557b6fb7ebfeaa155";
const CANCELLED_SHA: &str = "f21201e4eaa3556c35b7e44863087e5244c6b895";
const TOKEN: &str = "bbs-http-access-token-test";

async fn start(bbs: &Receiver, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {token}}}",
        bbs.url("/bitbucket/")
    );
    let cfg = config("bbs", "bitbucketserver", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// The build-status path, answered 204 No Content as Bitbucket does.
fn statuses(bbs: &Receiver, sha: &str) -> String {
    let path = format!("/bitbucket/rest/build-status/1.0/commits/{sha}");
    bbs.always(&path, Some((204, None)));
    path
}

fn field(rs: &[Recorded], name: &str) -> Vec<String> {
    rs.iter()
        .map(|r| r.json()[name].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_statuses_for_a_successful_run() {
    let bbs = Receiver::start().await;
    let path = statuses(&bbs, SUCCESS_SHA);
    let f = start(&bbs, &[("status", "  action: status")]).await;
    f.scenario("tekton-pipelinerun-success").await;
    let sent = bbs.requests_on(&path);
    assert_eq!(bbs.requests().len(), sent.len(), "nothing else is called");
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_eq!(r.status, 204);
        assert_eq!(
            r.headers["authorization"],
            format!("Bearer {TOKEN}").as_str()
        );
        assert_eq!(r.headers["content-type"], "application/json");
        let b = r.json();
        assert_eq!(b["key"], "tekton/build-and-test");
        assert_eq!(b["name"], "tekton/build-and-test");
        assert_eq!(
            b["url"],
            "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr"
        );
    }
    // Five PipelineRun events, three distinct statuses: not re-posted.
    assert_eq!(
        field(&sent, "state"),
        ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]
    );
    assert_eq!(
        field(&sent, "description"),
        ["Started", "Running", "Succeeded"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_runs_are_failed() {
    let bbs = Receiver::start().await;
    let failed = statuses(&bbs, FAILURE_SHA);
    let cancelled = statuses(&bbs, CANCELLED_SHA);
    let f = start(&bbs, &[("status", "  params: {context: ci}")]).await;
    f.scenario("tekton-pipelinerun-failure").await;
    f.scenario("tekton-cancelled").await;

    let failed = bbs.requests_on(&failed);
    assert_eq!(
        field(&failed, "state"),
        ["INPROGRESS", "INPROGRESS", "FAILED"]
    );
    assert_eq!(field(&failed, "description")[2], "Failed");
    let cancelled = bbs.requests_on(&cancelled);
    assert_eq!(
        field(&cancelled, "state"),
        ["INPROGRESS", "INPROGRESS", "FAILED"]
    );
    assert_eq!(field(&cancelled, "description")[2], "Cancelled");
    for r in failed.iter().chain(&cancelled) {
        assert_eq!(
            (r.json()["key"].as_str(), r.json()["name"].as_str()),
            (Some("ci"), Some("ci"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let bbs = Receiver::start().await;
    let path = statuses(&bbs, "280f005d84949aabf044c0326655b9f00aadacf0");
    let f = start(&bbs, &[("status", "  action: status")]).await;
    let file = fixture("bad-input/008-markup-injection.json");
    let (status, body) = f.send_raw(&file).await;
    assert_eq!(status, 200, "{body}");
    let sent = bbs.requests_on(&path);
    assert_eq!(field(&sent, "state"), ["FAILED"]);
    let text = String::from_utf8_lossy(&sent[0].body).to_string();
    assert!(text.contains("pipelineruns/%3Cscript%3E"), "{text}");
    for bad in [
        "<script>",
        "*bold*",
        "@channel",
        "<!here>",
        "](https://evil",
    ] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_dead_lettered_without_the_secret() {
    let bbs = Receiver::start().await;
    let path = format!("/bitbucket/rest/build-status/1.0/commits/{SUCCESS_SHA}");
    bbs.always(&path, Some((401, None)));
    let f = start(&bbs, &[("status", "  action: status")]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0].send(&f.client, &f.url()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("dead_lettered")),
        "{body}"
    );
    let sent = bbs.requests_on(&path);
    assert_eq!(sent.len(), 1, "a 401 is not retried");
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );
    let dead = f.dead_letter_text();
    assert!(dead.contains("401"), "{dead}");
    f.assert_secrets_absent(&[TOKEN], &body);
}

/// What `relay validate` says of a config, with this provider registered.
fn validate(text: &str) -> Result<(), String> {
    let registry = relay_core::provider::Registry::new()
        .with(relay::bitbucketserver::BitbucketServerFactory)
        .serving_only(relay::bitbucketserver::TYPE);
    relay_tests::function::validate(text, &registry)
}

#[test]
fn the_example_validates_and_a_missing_base_url_does_not() {
    let example = example("bitbucketserver");
    validate(&example).unwrap();
    let err =
        validate(&example.replace("    baseURL: https://bitbucket.example.com\n", "")).unwrap_err();
    assert!(
        err.starts_with("Provider/bitbucket-dc: spec.bitbucketserver: missing field `baseURL`"),
        "{err}"
    );
    let err = validate(&example.replace("  params:", "  action: comment\n  params:")).unwrap_err();
    assert!(
        err.contains(
            "Notification/build-status: spec.action: unknown action \"comment\", expected status"
        ),
        "{err}"
    );
}

/// A commit of `../../../../../user/repos#` would have taken the token
/// anywhere on the server: it is refused, dead-lettered, and nothing is
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cannot_steer_the_token_to_another_api() {
    let bbs = Receiver::start().await;
    let f = start(&bbs, &[("status", "  action: status")]).await;
    let attacks = [
        ("relay.tekton.dev/sha", "../../../../../user/repos#"),
        (
            "relay.tekton.dev/sha",
            "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4/../../../x",
        ),
        ("relay.tekton.dev/sha", "0c5c7fd0"),
    ];
    assert_path_attacks_refused(&f, "status", &[], &attacks).await;
    let sent: Vec<String> = bbs.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// With `repositories`, the event's repository must be listed (and well
/// formed): every path attack is refused, another project too, before any
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_repositories() {
    let bbs = Receiver::start().await;
    let path = statuses(&bbs, SUCCESS_SHA);
    let secrets = Secrets::new();
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {}, repositories: [\"ACME/*\"]}}",
        bbs.url("/bitbucket"),
        secrets.line("token", TOKEN)
    );
    let cfg = config(
        "bbs",
        "bitbucketserver",
        &settings,
        &[("status", "  action: status")],
    );
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    assert_path_attacks_refused(&f, "status", &[], PATH_ATTACKS).await;
    let answer = f
        .delivery(&pipelinerun_with(
            "other-project",
            &[("relay.tekton.dev/url-org", "OPS")],
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert!(bbs.requests().is_empty(), "{:?}", bbs.requests());
    let answer = f.delivery(&pipelinerun_with("listed", &[])).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(bbs.requests_on(&path).len(), 1);
}
