//! Secret rotation without restart, through the real webhook function and a
//! real HTTP server standing in for both the token endpoint and the webhook
//! target: files rotated between events apply to the next request; OAuth2
//! tokens are fetched once, refreshed when due with the current client
//! secret or refresh token, and dropped after a 401.

use relay::webhook::{SIGNATURE_HEADER, signature};
use relay_tests::expect::{Outgoing, outgoing};
use relay_tests::fixtures::Scenario;
use relay_tests::function::{Function, Secrets, config};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook");

/// The events of a whole run, each delivered by the webhook.
fn events() -> Vec<Outgoing> {
    outgoing(&Scenario::load(
        &relay_tests::fixtures::dir().join("tekton-pipelinerun-success"),
    ))
}

/// A webhook function posting to `rx`'s `/hook` with `settings` lines
/// (after `url:`), its secret files from `secrets`.
async fn start(rx: &Receiver, settings: &str, secrets: Secrets) -> Function {
    let settings = format!("url: \"{}\"\n{settings}", rx.url("/hook"));
    let cfg = config("hook", "webhook", &settings, &[("hook", "")]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

/// Sends `ev`: the function's answer, and the webhook requests it made.
async fn send(f: &Function, rx: &Receiver, ev: &Outgoing) -> (Value, Vec<Recorded>) {
    let before = rx.requests_on("/hook").len();
    let (status, body) = ev.send(&f.client, &f.url()).await;
    assert_eq!(status, 200, "{}: {body}", ev.file_name());
    (body, rx.requests_on("/hook")[before..].to_vec())
}

/// Sends `ev`, which must be delivered with exactly one webhook request.
async fn delivered(f: &Function, rx: &Receiver, ev: &Outgoing) -> Recorded {
    let (body, hooks) = send(f, rx, ev).await;
    assert_eq!(body["outcome"], "delivered", "{body}\n{}", f.stderr());
    assert_eq!(hooks.len(), 1, "{body}");
    hooks.into_iter().next().unwrap()
}

fn form(r: &Recorded) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(&r.body).into_owned().collect()
}

fn basic(user: &str, password: &str) -> String {
    relay_core::oauth2::basic(user, password)
}

fn token(rx: &Receiver, access: &str, expires_in: u64, refresh: Option<&str>) {
    let mut answer =
        json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in});
    if let Some(r) = refresh {
        answer["refresh_token"] = r.into();
    }
    rx.reply("POST", "/token", 200, answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_and_hmac_secret_apply_to_the_next_event() {
    let rx = Receiver::start().await;
    let secrets = Secrets::new();
    let token = secrets.line("token", "bearer-one");
    let hmac = secrets.line("hmac", "hmac-one");
    let f = start(
        &rx,
        &format!("tokenFile: {token}\nhmacSecretFile: {hmac}"),
        secrets,
    )
    .await;
    let evs = events();
    let first = delivered(&f, &rx, &evs[0]).await;
    assert_eq!(first.headers["authorization"], "Bearer bearer-one");
    assert_eq!(
        first.headers[SIGNATURE_HEADER],
        signature(b"hmac-one", &first.body).as_str()
    );
    // Kubernetes swaps the Secret's files; the process keeps running.
    f.secrets.line("token", "bearer-two");
    f.secrets.line("hmac", "hmac-two");
    let second = delivered(&f, &rx, &evs[1]).await;
    assert_eq!(second.headers["authorization"], "Bearer bearer-two");
    assert_eq!(
        second.headers[SIGNATURE_HEADER],
        signature(b"hmac-two", &second.body).as_str()
    );
    f.assert_secrets_absent(
        &["bearer-one", "bearer-two", "hmac-one", "hmac-two"],
        &json!({}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_are_fetched_once_refreshed_when_due_with_the_rotated_secret() {
    let rx = Receiver::start().await;
    let secrets = Secrets::new();
    let secret = secrets.line("client-secret", "cs-one");
    let f = start(
        &rx,
        &format!(
            "oauth2: {{tokenURL: \"{}\", clientID: relay-hook, clientSecretFile: {secret}, scopes: [hooks.write]}}",
            rx.url("/token")
        ),
        secrets,
    )
    .await;
    let evs = events();
    // A token with no lifetime left is due at its next use.
    token(&rx, "at-short", 0, None);
    let hook = delivered(&f, &rx, &evs[0]).await;
    assert_eq!(hook.headers["authorization"], "Bearer at-short");
    let fetches = rx.requests_on("/token");
    assert_eq!(fetches.len(), 1);
    assert_eq!(
        fetches[0].headers["authorization"],
        basic("relay-hook", "cs-one")
    );
    assert_eq!(
        form(&fetches[0]),
        [
            ("grant_type", "client_credentials"),
            ("scope", "hooks.write")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
    );

    // The client secret rotates; the next refresh uses it, and the new
    // token, good for an hour, serves every later event.
    f.secrets.line("client-secret", "cs-two");
    token(&rx, "at-long", 3600, None);
    for ev in &evs[1..4] {
        let hook = delivered(&f, &rx, ev).await;
        assert_eq!(hook.headers["authorization"], "Bearer at-long");
    }
    let fetches = rx.requests_on("/token");
    assert_eq!(fetches.len(), 2, "one refresh for three events");
    assert_eq!(
        fetches[1].headers["authorization"],
        basic("relay-hook", "cs-two")
    );
    f.assert_secrets_absent(&["cs-one", "cs-two", "at-short", "at-long"], &json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_exchanged_and_the_servers_rotated_one_used_next() {
    let rx = Receiver::start().await;
    let secrets = Secrets::new();
    let secret = secrets.line("client-secret", "cs-rt");
    let refresh = secrets.line("refresh-token", "rt-file-1");
    let f = start(
        &rx,
        &format!(
            "oauth2:\n  tokenURL: \"{}\"\n  clientId: relay-hook\n  clientSecretFile: {secret}\n  refreshTokenFile: {refresh}\n  clientAuth: body",
            rx.url("/token")
        ),
        secrets,
    )
    .await;
    let evs = events();
    let presented = |i: usize| form(&rx.requests_on("/token")[i]);

    // The file's refresh token is exchanged; the server rotates it.
    token(&rx, "at-1", 0, Some("rt-server-2"));
    let hook = delivered(&f, &rx, &evs[0]).await;
    assert_eq!(hook.headers["authorization"], "Bearer at-1");
    let first = presented(0);
    assert_eq!(first["grant_type"], "refresh_token");
    assert_eq!(first["refresh_token"], "rt-file-1");
    assert_eq!(first["client_id"], "relay-hook");
    assert_eq!(first["client_secret"], "cs-rt");

    // The next refresh presents the server's new refresh token, not the file's.
    token(&rx, "at-2", 0, Some("rt-server-3"));
    let hook = delivered(&f, &rx, &evs[1]).await;
    assert_eq!(hook.headers["authorization"], "Bearer at-2");
    assert_eq!(presented(1)["refresh_token"], "rt-server-2");

    // An operator writes a new refresh token to the file: it wins.
    f.secrets.line("refresh-token", "rt-file-4");
    token(&rx, "at-3", 3600, None);
    let hook = delivered(&f, &rx, &evs[2]).await;
    assert_eq!(hook.headers["authorization"], "Bearer at-3");
    assert_eq!(presented(2)["refresh_token"], "rt-file-4");
    assert_eq!(rx.requests_on("/token").len(), 3);
    f.assert_secrets_absent(
        &[
            "cs-rt",
            "rt-file-1",
            "rt-server-2",
            "rt-server-3",
            "rt-file-4",
            "at-1",
            "at-2",
            "at-3",
        ],
        &json!({}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_drops_the_token_and_the_next_attempt_fetches_a_new_one() {
    let rx = Receiver::start().await;
    let secrets = Secrets::new();
    let secret = secrets.line("client-secret", "cs-401");
    let f = start(
        &rx,
        &format!(
            "oauth2: {{tokenURL: \"{}\", clientId: relay-hook, clientSecretFile: {secret}}}",
            rx.url("/token")
        ),
        secrets,
    )
    .await;
    let evs = events();
    token(&rx, "at-revoked", 3600, None);
    let hook = delivered(&f, &rx, &evs[0]).await;
    assert_eq!(hook.headers["authorization"], "Bearer at-revoked");

    // The target revokes the token: one 401, then a fresh token succeeds.
    token(&rx, "at-fresh", 3600, None);
    rx.script("/hook", &[(401, None)]);
    let (body, hooks) = send(&f, &rx, &evs[1]).await;
    assert_eq!(body["outcome"], "delivered", "{body}");
    let auth: Vec<_> = hooks
        .iter()
        .map(|h| h.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer at-revoked", "Bearer at-fresh"]);
    assert_eq!(rx.requests_on("/token").len(), 2);

    // A target that refuses every token: one retry with a fresh token, then
    // a dead letter that holds no secret.
    token(&rx, "at-refused", 3600, None);
    rx.always("/hook", Some((401, None)));
    let (body, hooks) = send(&f, &rx, &evs[2]).await;
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    assert_eq!(hooks.len(), 2);
    assert_eq!(rx.requests_on("/token").len(), 3);
    let entry = f.only_permanent_dead_letter("webhook", 401);
    assert_eq!(entry["provider_type"], "webhook");
    f.assert_secrets_absent(&["cs-401", "at-revoked", "at-fresh", "at-refused"], &body);
}
