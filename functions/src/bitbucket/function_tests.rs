//! The Bitbucket Cloud function against a mock Bitbucket (a real HTTP
//! server): build statuses (method, path, auth, body; not re-posted), one
//! pull request comment per run found on any page or created once and
//! updated in place, escaping of user-controlled names, and a 401
//! dead-lettered without the secret.

use relay_tests::attack::{PATH_ATTACKS, assert_path_attacks_refused, pipelinerun_with};
use relay_tests::expect::outgoing;
use relay_tests::fixtures::Scenario;
use relay_tests::function::{Function, Secrets, config, example, fixture};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "bitbucket");
const REPO: &str = "/2.0/repositories/acme/widgets";
const SUCCESS_SHA: &str = "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4";
const FAILURE_SHA: &str = "7a86f7a243c71b9abd87a86557b6fb7ebfeaa155";
const CANCELLED_SHA: &str = "f21201e4eaa3556c35b7e44863087e5244c6b895";
const PASSWORD: &str = "app-pw-test";
/// `ci-bot:app-pw-test` in base64.
const BASIC: &str = "Basic Y2ktYm90OmFwcC1wdy10ZXN0";
const TOKEN: &str = "bb-access-token-test";
const SUCCESS_MARKER: &str = "[//]: # (tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724)";

/// The account uuids Bitbucket shows: the relay's and someone else's.
const RELAY_UUID: &str = "{6a3e9e4e-0b7c-4f3a-9a53-1d2c3b4a5f60}";
const MALLORY_UUID: &str = "{d0d0cafe-0000-4000-8000-000000000066}";

/// Bitbucket's `GET /user` for the test credential: the relay's account.
fn user_is_relay_bot(bb: &Receiver) {
    bb.reply(
        "GET",
        "/2.0/user",
        200,
        json!({"type": "user", "uuid": RELAY_UUID, "display_name": "Relay Bot",
               "account_id": "557058:relay", "nickname": "relay-bot"}),
    );
}

/// A pull request comment as Bitbucket lists it, by the account `uuid`.
fn comment(id: u64, raw: &str, uuid: &str) -> Value {
    json!({"id": id, "type": "pullrequest_comment", "deleted": false,
           "content": {"raw": raw, "markup": "markdown"},
           "user": {"type": "user", "uuid": uuid, "display_name": "someone"}})
}

/// Credentials as the Provider's settings: an app password or a token.
enum Auth {
    AppPassword,
    Token,
    /// Client credentials against a token URL.
    OAuth2(String),
}

async fn start(bb: &Receiver, auth: Auth, notifications: &[(&str, &str)]) -> Function {
    let secrets = Secrets::new();
    let credentials = match auth {
        Auth::AppPassword => format!(
            "username: ci-bot, appPasswordFile: {}",
            secrets.line("app-password", PASSWORD)
        ),
        Auth::Token => format!("tokenFile: {}", secrets.line("token", TOKEN)),
        Auth::OAuth2(url) => format!(
            "oauth2: {{tokenURL: \"{url}\", clientId: consumer-key, clientSecretFile: {}}}",
            secrets.line("consumer-secret", "consumer-s3cret")
        ),
    };
    let settings = format!("{{baseURL: \"{}\", {credentials}}}", bb.url("/2.0"));
    let cfg = config("bb", "bitbucket", &settings, notifications);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn statuses_path(sha: &str) -> String {
    format!("{REPO}/commit/{sha}/statuses/build")
}

fn comments_path(pr: u64) -> String {
    format!("{REPO}/pullrequests/{pr}/comments")
}

fn field(rs: &[Recorded], name: &str) -> Vec<String> {
    rs.iter()
        .map(|r| r.json()[name].as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_headers(r: &Recorded, authorization: &str) {
    assert_eq!(
        r.headers["authorization"], authorization,
        "{} {}",
        r.method, r.path
    );
    assert_eq!(r.headers["accept"], "application/json");
    if r.method != "GET" {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_statuses_with_an_app_password() {
    let bb = Receiver::start().await;
    let f = start(&bb, Auth::AppPassword, &[("status", "  action: status")]).await;
    f.scenario("tekton-pipelinerun-success").await;
    let sent = bb.requests_on(&statuses_path(SUCCESS_SHA));
    assert_eq!(bb.requests().len(), sent.len(), "nothing else is called");
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_headers(r, BASIC);
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
async fn failed_and_cancelled_runs_with_a_token() {
    let bb = Receiver::start().await;
    let long = "acme/widgets/tekton/build-and-test/pull-requests";
    let f = start(
        &bb,
        Auth::Token,
        &[
            ("status", "  action: status"),
            ("long", &format!("  params: {{context: {long}}}")),
        ],
    )
    .await;
    f.scenario("tekton-pipelinerun-failure").await;
    f.scenario("tekton-cancelled").await;

    let failed = bb.requests_on(&statuses_path(FAILURE_SHA));
    for r in &failed {
        assert_headers(r, &format!("Bearer {TOKEN}"));
    }
    let (default, _): (Vec<Recorded>, Vec<Recorded>) = failed
        .into_iter()
        .partition(|r| r.json()["name"] == "tekton/build-and-test");
    assert_eq!(
        field(&default, "state"),
        ["INPROGRESS", "INPROGRESS", "FAILED"]
    );
    assert_eq!(default[2].json()["description"], "Failed");

    let cancelled = bb.requests_on(&statuses_path(CANCELLED_SHA));
    let (default, long_ones): (Vec<Recorded>, Vec<Recorded>) = cancelled
        .into_iter()
        .partition(|r| r.json()["name"] == "tekton/build-and-test");
    assert_eq!(
        field(&default, "state"),
        ["INPROGRESS", "INPROGRESS", "STOPPED"]
    );
    assert_eq!(default[2].json()["description"], "Cancelled");
    // A context over 40 characters: the full name, a stable 40-character key.
    assert_eq!(long_ones.len(), 3);
    let keys = field(&long_ones, "key");
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(keys[0].chars().count(), 40);
    assert!(
        keys[0].starts_with("acme/widgets/tekton/build-an"),
        "{keys:?}"
    );
    assert!(long_ones.iter().all(|r| r.json()["name"] == long));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_is_created_once_then_updated() {
    let bb = Receiver::start().await;
    let comments = comments_path(47);
    bb.reply(
        "GET",
        &comments,
        200,
        json!({"values": [], "pagelen": 100, "page": 1}),
    );
    bb.reply("POST", &comments, 201, json!({"id": 31}));
    bb.reply("PUT", &format!("{comments}/31"), 200, json!({"id": 31}));
    let f = start(&bb, Auth::AppPassword, &[("summary", "  action: comment")]).await;
    f.scenario("tekton-pipelinerun-success").await;

    let all = bb.requests();
    assert!(
        all.iter()
            .all(|r| r.path == comments || r.path == format!("{comments}/31")),
        "{:?}",
        all.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for r in &all {
        assert_headers(r, BASIC);
    }
    let lists: Vec<&Recorded> = all.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(lists.len(), 1, "searched once, before creating");
    assert_eq!(lists[0].query, "pagelen=100&page=1");
    let created: Vec<&Recorded> = all.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(created.len(), 1, "one comment per run");
    let updates = bb.requests_on(&format!("{comments}/31"));
    assert!(!updates.is_empty());
    assert!(updates.iter().all(|r| r.method == "PUT"));
    let raw = updates.last().unwrap().json()["content"]["raw"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(raw.starts_with(&format!("{SUCCESS_MARKER}\n\n")), "{raw}");
    assert!(raw.contains("✅ build\\-and\\-test: succeeded"), "{raw}");
    assert_eq!(raw.matches("✅ succeeded").count(), 3, "{raw}");
    assert!(
        created[0].json()["content"]["raw"]
            .as_str()
            .unwrap()
            .starts_with(SUCCESS_MARKER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_on_a_later_page_is_adopted() {
    let bb = Receiver::start().await;
    user_is_relay_bot(&bb);
    let comments = comments_path(47);
    let page1: Vec<Value> = (0..100).map(|i| comment(i, "lgtm", MALLORY_UUID)).collect();
    bb.reply(
        "GET",
        &format!("{comments}?pagelen=100&page=1"),
        200,
        json!({"values": page1, "next": bb.url(&format!("{comments}?pagelen=100&page=2"))}),
    );
    bb.reply(
        "GET",
        &format!("{comments}?pagelen=100&page=2"),
        200,
        json!({"values": [
            comment(87, "<!-- tekton-relay:summary:6cad4a26-8d11-4ece-9738-f7d93d9c1724 -->", RELAY_UUID),
            comment(88, &format!("{SUCCESS_MARKER}\n\nold"), RELAY_UUID),
        ]}),
    );
    bb.reply("PUT", &format!("{comments}/88"), 200, json!({"id": 88}));
    let f = start(&bb, Auth::Token, &[("summary", "  action: comment")]).await;
    f.scenario("tekton-pipelinerun-success").await;

    assert!(
        bb.requests().iter().all(|r| r.method != "POST"),
        "never created a second comment"
    );
    let queries: Vec<String> = bb
        .requests_on(&comments)
        .into_iter()
        .map(|r| r.query)
        .collect();
    assert_eq!(queries, ["pagelen=100&page=1", "pagelen=100&page=2"]);
    let updates = bb.requests_on(&format!("{comments}/88"));
    assert!(!updates.is_empty());
    for r in &updates {
        assert_eq!(r.method, "PUT");
        assert_headers(r, &format!("Bearer {TOKEN}"));
    }
    let raw = updates.last().unwrap().json()["content"]["raw"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        raw.starts_with(SUCCESS_MARKER) && !raw.contains("old"),
        "{raw}"
    );
    assert_eq!(raw.matches("✅ succeeded").count(), 3, "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup() {
    let bb = Receiver::start().await;
    let comments = comments_path(67);
    bb.reply("GET", &comments, 200, json!({"values": []}));
    bb.reply("POST", &comments, 201, json!({"id": 5}));
    let f = start(
        &bb,
        Auth::Token,
        &[
            ("status", "  action: status"),
            ("summary", "  action: comment"),
        ],
    )
    .await;
    let file = fixture("bad-input/008-markup-injection.json");
    let (status, body) = f.send_raw(&file).await;
    assert_eq!(status, 200, "{body}");

    let status_posts = bb.requests_on(&statuses_path("280f005d84949aabf044c0326655b9f00aadacf0"));
    assert_eq!(field(&status_posts, "state"), ["FAILED"]);
    let created: Vec<Recorded> = bb
        .requests_on(&comments)
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(created.len(), 1);
    let raw = created[0].json()["content"]["raw"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        raw.contains("&lt;script&gt;"),
        "the name is shown, escaped: {raw}"
    );
    for r in status_posts.iter().chain(&created) {
        let text = String::from_utf8_lossy(&r.body).to_string();
        for bad in [
            "<script>",
            "*bold*",
            "@channel",
            "<!here>",
            "<@U0123456>",
            "](https://evil",
        ] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_dead_lettered_without_the_secret() {
    let bb = Receiver::start().await;
    let path = statuses_path(SUCCESS_SHA);
    bb.always(&path, Some((401, None)));
    let f = start(&bb, Auth::AppPassword, &[("status", "  action: status")]).await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let (status, body) = outgoing(&sc)[0].send(&f.client, &f.url()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("dead_lettered")),
        "{body}"
    );
    let sent = bb.requests_on(&path);
    assert_eq!(sent.len(), 1, "a 401 is not retried");
    assert_eq!(
        sent[0].headers["authorization"], BASIC,
        "the secret was used"
    );
    let dead = f.dead_letter_text();
    assert!(dead.contains("401"), "{dead}");
    f.assert_secrets_absent(&[PASSWORD, BASIC.trim_start_matches("Basic ")], &body);
}

/// What `relay validate` says of a config, with this provider registered.
fn validate(text: &str) -> Result<(), String> {
    let registry = relay_core::provider::Registry::new()
        .with(relay::bitbucket::BitbucketFactory)
        .serving_only(relay::bitbucket::TYPE);
    relay_tests::function::validate(text, &registry)
}

#[test]
fn the_example_validates_and_two_credentials_do_not() {
    let example = example("bitbucket");
    validate(&example).unwrap();
    let both = example.replace(
        "    username: ci-bot\n",
        "    username: ci-bot\n    tokenFile: /var/run/secrets/relay/bitbucket/token\n",
    );
    assert_ne!(both, example);
    let err = validate(&both).unwrap_err();
    assert!(
        err.starts_with("Provider/bitbucket: spec.bitbucket.tokenFile: give either tokenFile"),
        "{err}"
    );
    let err = validate(&example.replace("action: comment", "action: note")).unwrap_err();
    assert!(
        err.contains("Notification/pr-summary: spec.action: unknown action \"note\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_consumer_token_is_fetched_once_and_used() {
    let bb = Receiver::start().await;
    bb.reply(
        "POST",
        "/site/oauth2/access_token",
        200,
        json!({"access_token": "bb-oauth-1", "token_type": "bearer", "expires_in": 7200}),
    );
    let b = start(
        &bb,
        Auth::OAuth2(bb.url("/site/oauth2/access_token")),
        &[("status", "  action: status")],
    )
    .await;
    b.scenario("tekton-pipelinerun-success").await;
    let tokens = bb.requests_on("/site/oauth2/access_token");
    assert_eq!(tokens.len(), 1);
    // consumer-key:consumer-s3cret
    assert_eq!(
        tokens[0].headers["authorization"],
        "Basic Y29uc3VtZXIta2V5OmNvbnN1bWVyLXMzY3JldA=="
    );
    assert_eq!(
        std::str::from_utf8(&tokens[0].body).unwrap(),
        "grant_type=client_credentials"
    );
    let statuses = bb.requests_on(&statuses_path(SUCCESS_SHA));
    assert_eq!(statuses.len(), 3);
    for r in &statuses {
        assert_headers(r, "Bearer bb-oauth-1");
    }
}

/// A comment someone else posted with the relay's marker is not adopted:
/// it is never edited, and the relay posts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_comment_by_another_account_is_not_adopted() {
    let bb = Receiver::start().await;
    user_is_relay_bot(&bb);
    let comments = comments_path(47);
    bb.reply(
        "GET",
        &comments,
        200,
        json!({"values": [comment(66, &format!("{SUCCESS_MARKER}\n\nplease approve"), MALLORY_UUID)]}),
    );
    bb.reply(
        "POST",
        &comments,
        201,
        comment(9001, SUCCESS_MARKER, RELAY_UUID),
    );
    bb.reply("PUT", &format!("{comments}/9001"), 200, json!({"id": 9001}));
    let f = start(&bb, Auth::Token, &[("summary", "  action: comment")]).await;
    f.scenario("tekton-pipelinerun-success").await;
    assert!(
        bb.requests_on(&format!("{comments}/66")).is_empty(),
        "mallory's comment was edited"
    );
    let posted = bb
        .requests_on(&comments)
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posted, 1, "a comment of its own instead");
    assert!(!bb.requests_on(&format!("{comments}/9001")).is_empty());
    let me = bb.requests_on("/2.0/user");
    assert_eq!(me.len(), 1);
    assert_headers(&me[0], &format!("Bearer {TOKEN}"));
}

/// Event fields naming another API path are refused, dead-lettered, and
/// nothing at all is sent with the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fields_cannot_steer_the_token_to_another_api() {
    let bb = Receiver::start().await;
    let f = start(&bb, Auth::Token, &[("status", "  action: status")]).await;
    assert_path_attacks_refused(&f, "status", &[], PATH_ATTACKS).await;
    let sent: Vec<String> = bb.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.is_empty(), "requests were sent: {sent:?}");
}

/// With `repositories`, a repository outside it is refused before any
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositories_allowlist_refuses_other_repositories() {
    let bb = Receiver::start().await;
    let secrets = Secrets::new();
    let settings = format!(
        "{{baseURL: \"{}\", tokenFile: {}, repositories: [\"acme/api-*\"]}}",
        bb.url("/2.0"),
        secrets.line("token", TOKEN)
    );
    let cfg = config(
        "bb",
        "bitbucket",
        &settings,
        &[("status", "  action: status")],
    );
    let f = Function::start(BIN, &cfg, secrets, &[]).await;
    let answer = f.delivery(&pipelinerun_with("outside", &[])).await;
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert!(bb.requests().is_empty(), "{:?}", bb.requests());
    let answer = f
        .delivery(&pipelinerun_with(
            "inside",
            &[("relay.tekton.dev/url-repository", "api-gateway")],
        ))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let path = format!("/2.0/repositories/acme/api-gateway/commit/{SUCCESS_SHA}/statuses/build");
    assert_eq!(bb.requests_on(&path).len(), 1);
}
