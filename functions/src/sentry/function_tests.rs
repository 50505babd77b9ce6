//! The Sentry function against a mock Releases API (a real HTTP server): a
//! succeeded PipelineRun records a deploy of its commit's release; a release
//! Sentry does not know (404) is created first; the version template and
//! the name template; user text bounded and inert, names escaped in the
//! path; a 401 dead-lettered without the token; config errors with paths.

use relay_tests::function::{
    Function, Secrets, assert_absent, config, document, fixture, notification, provider, refused,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "sentry");
const TOKEN: &str = "sntrys_5ecret-t0ken-0123456789abcdef";
const SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const RELEASES: &str = "/api/0/organizations/acme/releases/";
const RUN: &str = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr";

fn deploys(version: &str) -> String {
    format!("{RELEASES}{version}/deploys/")
}

/// A function whose Provider (organization `acme`, project `widgets`) has
/// `settings` too, serving one Notification `deploys` with `spec`.
async fn start(sentry: &Receiver, settings: &str, spec: &str) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let settings = format!(
        "{{baseURL: \"{}\", authTokenFile: {token}, organization: acme, projects: [widgets]{settings}}}",
        sentry.url("")
    );
    let cfg = config("sentry", "sentry", &settings, &[("deploys", spec)]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn assert_sentry_request(r: &Recorded) -> Value {
    assert_eq!(r.method, "POST");
    assert_eq!(r.query, "");
    assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["accept"], "application/json");
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_run_records_a_deploy_of_its_commit() {
    let sentry = Receiver::start().await;
    sentry.reply(
        "POST",
        &deploys(SHA),
        201,
        json!({"id": "1234", "environment": "production"}),
    );
    let relay = start(&sentry, ", environment: production", "  filter: {}").await;
    relay.scenario("tekton-pipelinerun-success").await;
    relay.scenario("tekton-pipelinerun-failure").await;

    // Only the succeeded PipelineRun records anything.
    let sent = sentry.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, deploys(SHA));
    assert_eq!(
        assert_sentry_request(&sent[0]),
        json!({
            "environment": "production",
            "name": "build-and-test-vjcdr",
            "url": RUN,
            "dateStarted": "2024-05-14T10:54:13Z",
            "dateFinished": "2024-05-14T10:57:33Z",
            "projects": ["widgets"],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_release_is_created_then_deployed() {
    let sentry = Receiver::start().await;
    sentry.script(&deploys(SHA), &[(404, None)]);
    sentry.reply("POST", RELEASES, 201, json!({"version": SHA}));
    let relay = start(&sentry, "", "  params: {environment: staging}").await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(
        answer["deliveries"][0]["detail"],
        format!("created release {SHA}; deploy of release {SHA} to staging")
    );
    let sent = sentry.requests();
    let calls: Vec<(&str, u16)> = sent.iter().map(|r| (r.path.as_str(), r.status)).collect();
    let d = deploys(SHA);
    assert_eq!(
        calls,
        [(d.as_str(), 404), (RELEASES, 201), (d.as_str(), 200)]
    );
    assert_eq!(
        assert_sentry_request(&sent[1]),
        json!({"version": SHA, "projects": ["widgets"], "ref": SHA})
    );
    assert_eq!(assert_sentry_request(&sent[2])["environment"], "staging");
    assert_eq!(sent[0].body, sent[2].body);
}

/// A version template (its `@` and `+` encoded in the path) and a name
/// template: the deploy's name is the template's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_and_name_come_from_templates() {
    let sentry = Receiver::start().await;
    let relay = start(
        &sentry,
        ", environment: production, version: \"widgets@1.0+{{ event.scm.sha[:7] }}\"",
        "  template: \"{{ event.pipeline }} #{{ event.scm.pull_request }} by {{ notification }}\"",
    )
    .await;
    relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    let sent = sentry.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, deploys("widgets%401.0%2B0c5c7fd"));
    let b = assert_sentry_request(&sent[0]);
    assert_eq!(b["name"], "build-and-test #47 by deploys");
}

/// The markup-injection run, succeeded: its name (the deploy's) carries
/// HTML, markdown and a mention-like `@`; a version template built from it
/// would hold a `/`, which is refused rather than sent as a path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_bounded_inert_and_kept_out_of_the_path() {
    let sentry = Receiver::start().await;
    let relay = start(&sentry, ", environment: production", "  filter: {}").await;
    let failed = fixture("bad-input/008-markup-injection.json");
    let answer = relay.send(&failed).await;
    assert_eq!(answer["deliveries"][0]["outcome"], "filtered", "{answer}");
    assert!(sentry.requests().is_empty());

    let mut ok = failed.clone();
    ok.headers.insert(
        "Ce-Type".into(),
        "dev.tekton.event.pipelinerun.successful.v1".into(),
    );
    ok.headers
        .insert("Ce-Id".into(), "markup-injection-succeeded".into());
    let name = format!(
        "@channel<!here>{}",
        "<script>alert(1)</script>*bold*".repeat(3)
    );
    ok.body["pipelineRun"]["metadata"]["name"] = name.clone().into();
    ok.body["pipelineRun"]["status"]["conditions"] = json!([{"type": "Succeeded",
        "status": "True", "reason": "Succeeded", "message": "Tasks Completed: 3"}]);
    let answer = relay.send(&ok).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let sent = sentry.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        deploys("280f005d84949aabf044c0326655b9f00aadacf0")
    );
    let b = assert_sentry_request(&sent[0]);
    let shown = b["name"].as_str().unwrap();
    assert_eq!(shown.chars().count(), 64);
    for bad in ["@channel", "<!here>"] {
        assert!(!shown.contains(bad), "{bad} in {shown}");
    }
    assert!(
        shown
            .replace('\u{2060}', "")
            .starts_with("@channel<!here><script>alert(1)")
    );
    // The link (the run's log URL) was percent-encoded by the engine.
    assert_eq!(
        b["url"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );

    // A version from the name would hold `</script>`'s slash: refused.
    let relay = start(
        &sentry,
        ", environment: production, version: \"{{ event.name }}\"",
        "  filter: {}",
    )
    .await;
    let mut again = ok.clone();
    again
        .headers
        .insert("Ce-Id".into(), "markup-injection-version".into());
    let answer = relay.send(&again).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let entry = relay.only_dead_letter();
    assert!(
        entry["cause"]["message"]
            .as_str()
            .unwrap()
            .contains("holds a slash"),
        "{entry}"
    );
    assert_eq!(sentry.requests().len(), 1, "nothing more was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_dead_lettered_without_the_token() {
    let sentry = Receiver::start().await;
    sentry.reply(
        "POST",
        &deploys(SHA),
        401,
        json!({"detail": "Invalid token"}),
    );
    let relay = start(&sentry, ", environment: production", "  filter: {}").await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert_eq!(
        sentry.requests().len(),
        1,
        "permanent, and not a 404: no release created"
    );

    let entry = relay.only_permanent_dead_letter("sentry", 401);
    assert_eq!(entry["notification"], "deploys");
    assert_absent(
        &[TOKEN],
        &[
            ("dead letter", &relay.dead_letter_text()),
            ("log", &relay.stderr()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_deploy_is_retried() {
    let sentry = Receiver::start().await;
    sentry.script(&deploys(SHA), &[(429, Some(0)), (503, None)]);
    let relay = start(&sentry, ", environment: production", "  filter: {}").await;
    let answer = relay
        .send(&fixture(
            "tekton-pipelinerun-success/017-pipelinerun-successful.json",
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let statuses: Vec<u16> = sentry.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200]);
}

#[test]
fn config_errors_name_their_path() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider(
            "sentry",
            "sentry",
            "{authTokenFile: /t, organization: acme, environment: prod/eu}",
        )
        + &notification("deploys", "sentry", "  params: {environmnt: x}");
    let err = refused(BIN, &cfg);
    assert!(err.contains("spec.sentry.environment"), "{err}");
    assert!(err.contains("no `/`"), "{err}");
}
