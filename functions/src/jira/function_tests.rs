//! The Jira function against a mock Jira (a real HTTP server): ADF comments
//! on the issue named by the run's annotation or branch (method, path, auth,
//! body), transitions looked up by name then posted, the Notification's
//! template, escaping of user-controlled names, runs without a key
//! filtered, a 401 dead-lettered without the token, and config errors
//! reported with their paths by the binary itself.

use relay_tests::fixtures::{RequestFile, Scenario};
use relay_tests::function::{
    Function, Secrets, config, document, example, fixture, notification, provider, refused,
    validate,
};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "jira");
const EMAIL: &str = "ci-bot@acme.dev";
const API_TOKEN: &str = "ATATT3xJira-5ecret-api-token-0123";
/// base64("ci-bot@acme.dev:ATATT3xJira-5ecret-api-token-0123")
const BASIC: &str = "Basic Y2ktYm90QGFjbWUuZGV2OkFUQVRUM3hKaXJhLTVlY3JldC1hcGktdG9rZW4tMDEyMw==";
const PAT: &str = "NjQ5-dc-personal-access-token";
const ISSUE: &str = "/rest/api/3/issue/PAY-123";
const ANNOTATION: &str = "relay.tekton.dev/jira-issue";
const RUN_URL: &str = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr";

enum Auth {
    ApiToken,
    Pat,
    /// Given in `extra`.
    OAuth2,
}

/// A function with one Provider (`extra` settings lines appended, not
/// indented) and `notifications` (`name`, spec lines).
async fn start(
    jira: &Receiver,
    auth: Auth,
    extra: &str,
    notifications: &[(&str, &str)],
) -> Function {
    let secrets = Secrets::new();
    let secret = match auth {
        Auth::ApiToken => API_TOKEN,
        Auth::Pat | Auth::OAuth2 => PAT,
    };
    let token = secrets.line("token", secret);
    let credentials = match auth {
        // The mock's host is not Atlassian's: Cloud is said explicitly.
        Auth::ApiToken => format!("email: {EMAIL}\napiTokenFile: {token}\napiVersion: 3"),
        // Data Center: API v2 by default on a host of one's own.
        Auth::Pat => format!("tokenFile: {token}"),
        Auth::OAuth2 => "apiVersion: 3".to_string(),
    };
    let settings = format!("baseURL: \"{}\"\n{credentials}\n{extra}", jira.url("/"));
    let cfg = config("jira", "jira", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// `f` with annotations set on its run (a PipelineRun or TaskRun).
fn annotated(mut f: RequestFile, annotations: &[(&str, &str)]) -> RequestFile {
    let run = ["pipelineRun", "taskRun"]
        .into_iter()
        .find(|k| f.body.get(*k).is_some())
        .unwrap();
    for (k, v) in annotations {
        f.body[run]["metadata"]["annotations"][*k] = (*v).into();
    }
    f
}

fn succeeded() -> RequestFile {
    fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json")
}

fn assert_jira_headers(r: &Recorded, auth: &str) {
    assert_eq!(r.headers["authorization"], auth);
    assert_eq!(r.headers["accept"], "application/json");
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

/// Every node of an ADF document, depth first.
fn nodes(v: &Value) -> Vec<&Value> {
    let mut out = vec![v];
    for c in v["content"].as_array().into_iter().flatten() {
        out.extend(nodes(c));
    }
    out
}

/// The text of a paragraph (its text nodes, hard breaks as newlines).
fn paragraph_text(p: &Value) -> String {
    p["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap_or("\n").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_comments_on_the_annotated_issue_in_adf() {
    let jira = Receiver::start().await;
    jira.reply(
        "POST",
        &format!("{ISSUE}/comment"),
        201,
        json!({"id": "10001"}),
    );
    let relay = start(&jira, Auth::ApiToken, "", &[("comments", "")]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let mut details = Vec::new();
    for f in &sc.files {
        let d = relay
            .delivery(&annotated(f.clone(), &[(ANNOTATION, "PAY-123")]))
            .await;
        details.push((d["outcome"].clone(), d["detail"].clone()));
    }
    // Tasks are left to their PipelineRun; only the finished run comments.
    assert_eq!(
        details[2],
        (
            json!("filtered"),
            json!(
                "a task of PipelineRun build-and-test-vjcdr: its PipelineRun's events update the issue"
            )
        )
    );
    assert_eq!(
        details[0],
        (json!("delivered"), json!("no comment when started"))
    );
    assert_eq!(
        details.last().unwrap(),
        &(json!("delivered"), json!("comment on PAY-123"))
    );

    let sent = jira.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = &sent[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/rest/api/3/issue/PAY-123/comment")
    );
    assert_jira_headers(r, BASIC);
    let body = r.json()["body"].clone();
    assert_eq!(body["type"], "doc");
    assert_eq!(body["version"], 1);
    let head = &body["content"][0];
    assert_eq!(
        paragraph_text(head),
        "✅ PipelineRun build-and-test-vjcdr succeeded"
    );
    assert_eq!(
        head["content"][1]["marks"],
        json!([{"type": "strong"}, {"type": "link", "attrs": {"href": RUN_URL}}])
    );
    let facts = paragraph_text(&body["content"][1]);
    assert!(
        facts.starts_with(
            "Pipeline: build-and-test\nNamespace: ci\nRepository: acme/widgets\nBranch: main\n"
        ),
        "{facts}"
    );
    assert!(
        facts.contains("Pull request: #47") && facts.contains("Duration: 3m 20s"),
        "{facts}"
    );
    let repo = nodes(&body)
        .into_iter()
        .find(|n| n["text"] == "acme/widgets")
        .unwrap()
        .clone();
    assert_eq!(
        repo["marks"][0]["attrs"]["href"],
        "https://github.com/acme/widgets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_comes_from_the_branch_within_the_projects() {
    let jira = Receiver::start().await;
    jira.reply(
        "POST",
        "/rest/api/3/issue/PAY-77/comment",
        201,
        json!({"id": "1"}),
    );
    let relay = start(
        &jira,
        Auth::ApiToken,
        "projects: [PAY, OPS]",
        &[("comments", "")],
    )
    .await;
    let branch = "pipelinesascode.tekton.dev/source-branch";

    let d = relay
        .delivery(&annotated(
            succeeded(),
            &[(branch, "feature/PAY-77-pagination")],
        ))
        .await;
    assert_eq!(d["detail"], "comment on PAY-77", "{d}");

    // A key of another project, and no key at all: filtered, nothing sent.
    for (value, why) in [
        (
            "feature/WEB-5-pagination",
            "no relay.tekton.dev/jira-issue annotation and no issue key of projects [\"PAY\", \"OPS\"] in the branch",
        ),
        (
            "feature/pagination",
            "no relay.tekton.dev/jira-issue annotation and no issue key of projects [\"PAY\", \"OPS\"] in the branch",
        ),
    ] {
        let mut f = annotated(succeeded(), &[(branch, value)]);
        f.headers
            .insert("Ce-Id".into(), format!("other-branch-{value}"));
        let d = relay.delivery(&f).await;
        assert_eq!(
            (d["outcome"].as_str(), d["detail"].as_str()),
            (Some("filtered"), Some(why)),
            "{d}"
        );
    }
    assert_eq!(jira.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// On Data Center (API v2, a personal access token): the comment in wiki
/// markup, then the transition.
async fn a_transition_is_found_by_name_then_posted() {
    let jira = Receiver::start().await;
    let issue = "/rest/api/2/issue/PAY-123";
    let transitions = format!("{issue}/transitions");
    let comment = format!("{issue}/comment");
    jira.reply("POST", &comment, 201, json!({"id": "10001"}));
    jira.reply(
        "GET",
        &transitions,
        200,
        json!({"expand": "transitions", "transitions": [
            {"id": "11", "name": "Start work", "to": {"name": "In Progress"}},
            {"id": "31", "name": "Done", "to": {"name": "Done"}}
        ]}),
    );
    jira.reply("POST", &transitions, 204, Value::Null);
    let relay = start(
        &jira,
        Auth::Pat,
        "",
        &[(
            "workflow",
            "  action: comment+transition\n  params:\n    transitions: {started: in progress, succeeded: DONE}",
        )],
    )
    .await;
    let started = annotated(
        fixture("tekton-pipelinerun-success/001-pipelinerun-started.json"),
        &[(ANNOTATION, "PAY-123")],
    );
    let d = relay.delivery(&started).await;
    // The transition is matched by the status it leads to, too.
    assert_eq!(
        d["detail"], "no comment when started; PAY-123 transitioned by \"Start work\"",
        "{d}"
    );
    let d = relay
        .delivery(&annotated(succeeded(), &[(ANNOTATION, "PAY-123")]))
        .await;
    assert_eq!(
        d["detail"], "comment on PAY-123; PAY-123 transitioned by \"Done\"",
        "{d}"
    );

    let sent: Vec<(String, String)> = jira
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let want = [
        ("GET", transitions.as_str()),
        ("POST", transitions.as_str()),
        ("POST", comment.as_str()),
        ("GET", transitions.as_str()),
        ("POST", transitions.as_str()),
    ];
    assert_eq!(sent, want.map(|(m, p)| (m.to_string(), p.to_string())));
    let posted: Vec<Value> = jira
        .requests_on(&transitions)
        .iter()
        .inspect(|r| assert_jira_headers(r, &format!("Bearer {PAT}")))
        .filter(|r| r.method == "POST")
        .map(Recorded::json)
        .collect();
    assert_eq!(
        posted,
        [
            json!({"transition": {"id": "11"}}),
            json!({"transition": {"id": "31"}})
        ]
    );
    let posted = jira.requests_on(&comment);
    assert_jira_headers(&posted[0], &format!("Bearer {PAT}"));
    let body = posted[0].json()["body"].as_str().unwrap().to_string();
    assert!(
        body.starts_with(&format!(
            "*[PipelineRun build\\-and\\-test\\-vjcdr|{RUN_URL}]* succeeded\n*Pipeline:* build\\-and\\-test\n*Namespace:* ci\n*Repository:* [acme/widgets|https://github.com/acme/widgets]\n"
        )),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_transition_is_permanent_and_names_the_available_ones() {
    let jira = Receiver::start().await;
    let transitions = format!("{ISSUE}/transitions");
    jira.reply("GET", &transitions, 200, json!({"transitions": [{"id": "11", "name": "Start work"}, {"id": "21", "name": "Reject"}]}));
    jira.reply(
        "GET",
        ISSUE,
        200,
        json!({"key": "PAY-123", "fields": {"status": {"name": "Backlog"}}}),
    );
    let relay = start(
        &jira,
        Auth::ApiToken,
        "",
        &[(
            "workflow",
            "  action: transition\n  params: {transitions: {succeeded: Done}}",
        )],
    )
    .await;
    let d = relay
        .delivery(&annotated(succeeded(), &[(ANNOTATION, "PAY-123")]))
        .await;
    assert_eq!(d["outcome"], "dead_lettered", "{d}");
    let issue = jira.requests_on(ISSUE);
    assert_eq!(issue.len(), 1);
    assert_eq!(issue[0].query, "fields=status");
    assert!(
        jira.requests().iter().all(|r| r.method == "GET"),
        "nothing posted"
    );
    let dead = relay.dead_letter_text();
    assert!(
        dead.contains(r#"issue PAY-123 (status \"Backlog\") has no transition \"Done\"; available: [\"Start work\", \"Reject\"]"#),
        "{dead}"
    );

    // In the target status already (a replay): nothing to do, no error.
    jira.reply(
        "GET",
        ISSUE,
        200,
        json!({"key": "PAY-123", "fields": {"status": {"name": "done"}}}),
    );
    let mut again = annotated(succeeded(), &[(ANNOTATION, "PAY-123")]);
    again.headers.insert("Ce-Id".into(), "replayed".into());
    let d = relay.delivery(&again).await;
    assert_eq!(
        (d["outcome"].as_str(), d["detail"].as_str()),
        (Some("delivered"), Some("PAY-123 already \"done\"")),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_template_is_the_comment() {
    let jira = Receiver::start().await;
    let relay = start(
        &jira,
        Auth::ApiToken,
        "",
        &[(
            "comments",
            "  template: |\n    Build {{ event.name }} {{ event.state }} on {{ event.scm.branch }}\n    commit {{ event.scm.sha[:7] }}\n\n    Deploy when green.",
        )],
    )
    .await;
    let d = relay
        .delivery(&annotated(succeeded(), &[(ANNOTATION, "PAY-123")]))
        .await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let sent = jira.requests_on(&format!("{ISSUE}/comment"));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json()["body"],
        json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Build build-and-test-vjcdr succeeded on main"},
                {"type": "hardBreak"},
                {"type": "text", "text": "commit 0c5c7fd"}
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Deploy when green."}]}
        ]})
    );
}

/// The run name, condition message and log link of this event carry HTML,
/// markdown, links and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup_or_mentions() {
    let jira = Receiver::start().await;
    let relay = start(&jira, Auth::ApiToken, "", &[("comments", "")]).await;
    let f = annotated(
        fixture("bad-input/008-markup-injection.json"),
        &[(ANNOTATION, "PAY-123")],
    );
    let d = relay.delivery(&f).await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let sent = jira.requests_on(&format!("{ISSUE}/comment"));
    assert_eq!(sent.len(), 1);
    let body = sent[0].json()["body"].clone();
    let all = nodes(&body);
    let kinds: std::collections::BTreeSet<&str> =
        all.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["doc", "hardBreak", "paragraph", "text"].into(),
        "no mention, card or markup node"
    );
    for n in &all {
        let text = n["text"].as_str().unwrap_or("");
        for bad in ["@channel", "@here", "<@U0123456>"] {
            assert!(!text.contains(bad), "{bad} in {text:?}");
        }
        for m in n["marks"].as_array().into_iter().flatten() {
            let href = m["attrs"]["href"].as_str().unwrap_or("");
            assert!(
                href.is_empty()
                    || href.starts_with("https://tekton.acme.dev/")
                    || href == "https://github.com/acme/widgets",
                "link to {href}"
            );
            assert!(!href.contains('<') && !href.contains('*'), "{href}");
        }
    }
    // The name is shown as written (text, never markup), linked to the run
    // by an encoded URL; the message's markdown link is plain text.
    let head = &body["content"][0]["content"][1];
    assert_eq!(head["text"], "PipelineRun <script>alert(1)</script>*bold*");
    assert_eq!(
        head["marks"][1]["attrs"]["href"],
        "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A"
    );
    let message = paragraph_text(body["content"].as_array().unwrap().last().unwrap());
    assert_eq!(
        message,
        "@\u{2060}channel <!here> tests failed, see [logs](https://evil.example.com/phish) `rm -rf /` _now_"
    );
}

/// The same event on Data Center: wiki markup, every markup character of
/// the names and message escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiki_markup_is_escaped_on_data_center() {
    let jira = Receiver::start().await;
    let relay = start(&jira, Auth::Pat, "", &[("comments", "")]).await;
    let f = annotated(
        fixture("bad-input/008-markup-injection.json"),
        &[(ANNOTATION, "PAY-123")],
    );
    let d = relay.delivery(&f).await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let sent = jira.requests_on("/rest/api/2/issue/PAY-123/comment");
    assert_eq!(sent.len(), 1);
    let body = sent[0].json()["body"].as_str().unwrap().to_string();
    assert!(
        body.starts_with(
            "*[PipelineRun <script>alert(1)</script>\\*bold\\*|https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A]* failed\n"
        ),
        "{body}"
    );
    assert!(
        body.ends_with(
            "\n\n@\u{2060}channel <\\!here> tests failed, see \\[logs\\](https://evil.example.com/phish) `rm \\-rf /` \\_now\\_"
        ),
        "{body}"
    );
    for bad in ["@channel", "[~", "[logs]", "*bold*"] {
        assert!(!body.contains(bad), "{bad} in {body}");
    }
    // Only our two links: the run and the repository.
    assert_eq!(body.matches('|').count(), 2, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_service_account_token_is_fetched_once_and_used() {
    let jira = Receiver::start().await;
    jira.reply(
        "POST",
        "/oauth/token",
        200,
        json!({"access_token": "jira-oauth-1", "token_type": "Bearer", "expires_in": 3600}),
    );
    jira.reply("POST", &format!("{ISSUE}/comment"), 201, json!({"id": "1"}));
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("client-secret");
    std::fs::write(&secret, "svc-5ecret\n").unwrap();
    let extra = format!(
        "oauth2:\n  tokenURL: \"{}\"\n  clientId: svc-client\n  clientSecretFile: {}\n  clientAuth: body\n",
        jira.url("/oauth/token"),
        secret.display()
    );
    // The OAuth2 credential instead of the email and API token.
    let cfg_relay = start(&jira, Auth::OAuth2, &extra, &[("comments", "")]).await;
    for id in ["first", "second"] {
        let mut f = annotated(succeeded(), &[(ANNOTATION, "PAY-123")]);
        f.headers.insert("Ce-Id".into(), id.into());
        f.body["pipelineRun"]["metadata"]["uid"] = format!("uid-{id}").into();
        let d = cfg_relay.delivery(&f).await;
        assert_eq!(d["outcome"], "delivered", "{d}");
    }
    let tokens = jira.requests_on("/oauth/token");
    assert_eq!(tokens.len(), 1, "the token is cached");
    assert_eq!(
        std::str::from_utf8(&tokens[0].body).unwrap(),
        "grant_type=client_credentials&client_id=svc-client&client_secret=svc-5ecret"
    );
    let comments = jira.requests_on(&format!("{ISSUE}/comment"));
    assert_eq!(comments.len(), 2);
    for r in &comments {
        assert_jira_headers(r, "Bearer jira-oauth-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_dead_lettered_without_the_token() {
    let jira = Receiver::start().await;
    let comment = format!("{ISSUE}/comment");
    jira.reply(
        "POST",
        &comment,
        401,
        json!({"errorMessages": ["You are not authenticated."]}),
    );
    let relay = start(&jira, Auth::ApiToken, "", &[("comments", "")]).await;
    let d = relay
        .delivery(&annotated(succeeded(), &[(ANNOTATION, "PAY-123")]))
        .await;
    assert_eq!(d["outcome"], "dead_lettered", "{d}");
    let sent = jira.requests_on(&comment);
    assert_eq!(sent.len(), 1, "a 401 is not retried");
    assert_eq!(
        sent[0].headers["authorization"], BASIC,
        "the secret was used"
    );
    let dead = relay.dead_letter_text();
    let entry: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(entry["provider_type"], "jira");
    assert_eq!(entry["cause"]["kind"], "permanent");
    assert_eq!(entry["cause"]["status"], 401);
    relay.assert_secrets_absent(&[API_TOKEN, BASIC.trim_start_matches("Basic ")], &d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_issue_is_permanent() {
    let jira = Receiver::start().await;
    let comment = "/rest/api/3/issue/OPS-404/comment";
    jira.reply(
        "POST",
        comment,
        404,
        json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."]}),
    );
    let relay = start(&jira, Auth::ApiToken, "", &[("comments", "")]).await;
    let d = relay
        .delivery(&annotated(succeeded(), &[(ANNOTATION, "OPS-404")]))
        .await;
    assert_eq!(d["outcome"], "dead_lettered", "{d}");
    assert_eq!(jira.requests_on(comment).len(), 1);
    assert!(relay.dead_letter_text().contains("Issue does not exist"));
}

/// The binary refuses a bad config at start, naming every error's path.
#[test]
fn config_errors_are_reported_with_their_paths() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider(
            "jira",
            "jira",
            "baseURL: https://acme.atlassian.net/rest/api/3\nemail: ci@acme.dev\nprojects: [PAY, ops]",
        )
        + &notification(
            "workflow",
            "jira",
            "  action: transition\n  params: {transitions: {finished: Done}}",
        );
    let stderr = refused(BIN, &cfg);
    for want in [
        "Provider/jira: spec.jira.baseURL: give the site root",
        "Provider/jira: spec.jira.projects[1]: \"ops\" is not a project key",
        "Provider/jira: spec.jira.apiTokenFile: required with email",
    ] {
        assert!(stderr.contains(want), "{want} not in {stderr}");
    }
}

#[test]
fn notification_errors_are_reported_with_their_paths() {
    let example = example("jira");
    let registry = relay_core::provider::Registry::new()
        .with(relay::jira::JiraFactory)
        .serving_only(relay::jira::TYPE);
    let check = |text: &str| validate(text, &registry);
    check(&example).unwrap();
    let broken = example.replace("succeeded: Done", "success: Done");
    assert_ne!(broken, example);
    let err = check(&broken).unwrap_err();
    assert!(
        err.contains("spec.params.transitions.success: unknown state"),
        "{err}"
    );
}
