//! The config from SSM Parameter Store and from S3 (moto), as a function
//! reads it: at start (a cold start on Lambda), then again once its TTL has
//! passed. A new version's Notifications are used, an invalid version keeps
//! the old config and the log says why, a missing parameter or object stops
//! the start naming it. The file `RELAY_CONFIG` would otherwise name holds
//! YAML that does not parse: a function that read it would not start.

use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, dir, fresh_pipelinerun};
use relay_tests::function::{notification, provider};
use relay_tests::lambda_api::RuntimeApi;
use relay_tests::process::{Binary, FunctionProcess, send};
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use serde_json::Value;

const WEBHOOK: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook");
const NOT_READ: &str = "kind: [this file is not the config\n";
const PARAMETER: &str = "/tekton-relay/relay.yaml";

/// One webhook Notification posting to `path` of `rx`.
fn hook(rx: &Receiver, path: &str) -> String {
    provider("hook", "webhook", &format!("{{url: \"{}\"}}", rx.url(path)))
        + &notification("hook", "hook", "")
}

/// A config every function refuses: its Notification names no Provider.
fn invalid(rx: &Receiver) -> String {
    hook(rx, "/never") + &notification("orphan", "nope", "")
}

/// The EventBridge fixture as another change of another run.
fn envelope(tag: &str) -> Value {
    let mut e = RequestFile::load(&dir().join("wrappers/aws-eventbridge-envelope.json")).body;
    e["detail"]["id"] = format!("remote-{tag}").into();
    e["detail"]["data"]["pipelineRun"]["metadata"]["uid"] = format!("uid-remote-{tag}").into();
    e
}

fn env_of(moto: &MotoServer, config: &str) -> Vec<(String, String)> {
    let mut env = moto.process_env();
    env.push(("RELAY_CONFIG".into(), config.into()));
    env.push(("RELAY_CONFIG_TTL_SECONDS".into(), "1".into()));
    env
}

/// Invokes the function with new events (a pause between them, up to a
/// deadline) until `done`; how many it took.
async fn invoke_until(
    api: &RuntimeApi,
    f: &FunctionProcess,
    tag: &str,
    done: impl Fn() -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within 30 s:\n{}",
            f.stderr()
        );
        n += 1;
        let r = api.invoke(envelope(&format!("{tag}-{n}"))).await;
        let r = r.unwrap_or_else(|e| panic!("{e}\n{}", f.stderr()));
        assert_eq!(r["outcome"], "delivered", "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_config_comes_from_ssm_and_is_checked_every_ttl() {
    let moto = MotoServer::start();
    let rx = Receiver::start().await;
    moto.ssm_parameter(PARAMETER, &hook(&rx, "/first")).await;
    let api = RuntimeApi::start().await;
    let mut env = api.env("tekton-relay-webhook");
    env.extend(env_of(&moto, "ssm://tekton-relay/relay.yaml"));
    let f = FunctionProcess::start(WEBHOOK, NOT_READ, &env);

    let r = api.invoke(envelope("start")).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{}", f.stderr()));
    assert_eq!(r["outcome"], "delivered", "{r}");
    assert_eq!(rx.accepted_on("/first").len(), 1);

    // A new version: once the TTL has passed, an invocation reads it
    // before its event, and from then on every event goes to /second.
    moto.ssm_parameter(PARAMETER, &hook(&rx, "/second")).await;
    let n = invoke_until(&api, &f, "new", || !rx.accepted_on("/second").is_empty()).await;
    assert_eq!(
        rx.accepted_on("/first").len() + rx.accepted_on("/second").len(),
        n + 1
    );
    assert!(f.stderr().contains("config reloaded"), "{}", f.stderr());
    let before = rx.accepted_on("/first").len();

    // An invalid version: rejected, said why, and the config before it stays.
    moto.ssm_parameter(PARAMETER, &invalid(&rx)).await;
    let rejected = || f.stderr().contains("config reload rejected");
    let m = invoke_until(&api, &f, "invalid", rejected).await;
    let log = f.stderr();
    assert!(
        log.contains("no Provider named") && log.contains("nope"),
        "{log}"
    );
    assert!(
        log.contains("SSM parameter /tekton-relay/relay.yaml"),
        "{log}"
    );
    let r = api.invoke(envelope("still-second")).await.unwrap();
    assert_eq!(r["outcome"], "delivered", "{r}");
    assert_eq!(rx.accepted_on("/first").len(), before);
    assert!(rx.accepted_on("/never").is_empty());
    assert_eq!(
        rx.accepted_on("/second").len(),
        1 + n + m + 1 - before,
        "every event since the new version went to /second"
    );
}

/// A check reads a version once: the same version again is no change (so
/// an invalid one is rejected and logged once, not every TTL), a new one is.
#[cfg(feature = "config-s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_is_read_once() {
    use relay_core::remote_config::{Fetched, Location, RemoteConfig};
    let moto = MotoServer::start();
    moto.ssm_parameter(PARAMETER, "v1").await;
    moto.put_object("relay-config", "relay.yaml", "v1").await;
    for url in [
        "ssm://tekton-relay/relay.yaml",
        "s3://relay-config/relay.yaml",
    ] {
        let location = Location::parse(url).unwrap().unwrap();
        let remote = RemoteConfig::from_conf(&moto.sdk_config(), location).unwrap();
        assert_eq!(
            remote.fetch().await,
            Ok(Fetched::Changed("v1".into())),
            "{url}"
        );
        assert_eq!(remote.fetch().await, Ok(Fetched::Unchanged), "{url}");
        if url.starts_with("ssm") {
            moto.ssm_parameter(PARAMETER, "v2").await;
        } else {
            moto.put_object("relay-config", "relay.yaml", "v2").await;
        }
        assert_eq!(
            remote.fetch().await,
            Ok(Fetched::Changed("v2".into())),
            "{url}"
        );
        assert_eq!(remote.fetch().await, Ok(Fetched::Unchanged), "{url}");
    }
}

#[cfg(feature = "config-s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_http_mode_the_config_comes_from_s3_and_is_checked_every_ttl() {
    let moto = MotoServer::start();
    let rx = Receiver::start().await;
    moto.put_object("relay-config", "tekton/relay.yaml", &hook(&rx, "/first"))
        .await;
    let env = env_of(&moto, "s3://relay-config/tekton/relay.yaml");
    let (f, base) = FunctionProcess::start_http(WEBHOOK, NOT_READ, &env).await;
    let client = reqwest::Client::new();

    let (status, body) = send(&client, &base, &fresh_pipelinerun("s3-start")).await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &Value::from("delivered")),
        "{body}"
    );
    assert_eq!(rx.accepted_on("/first").len(), 1);

    // The background check finds the new object within the TTL.
    moto.put_object("relay-config", "tekton/relay.yaml", &hook(&rx, "/second"))
        .await;
    f.wait_for_log("config reloaded").await;
    let (status, _) = send(&client, &base, &fresh_pipelinerun("s3-new")).await;
    assert_eq!(status, 200);
    assert_eq!(rx.accepted_on("/second").len(), 1);
    assert_eq!(rx.accepted_on("/first").len(), 1);

    moto.put_object("relay-config", "tekton/relay.yaml", &invalid(&rx))
        .await;
    f.wait_for_log("config reload rejected").await;
    let log = f.stderr();
    assert!(
        log.contains("no Provider named") && log.contains("nope"),
        "{log}"
    );
    assert!(
        log.contains("S3 object s3://relay-config/tekton/relay.yaml"),
        "{log}"
    );
    let (status, _) = send(&client, &base, &fresh_pipelinerun("s3-kept")).await;
    assert_eq!(status, 200);
    assert_eq!(
        rx.accepted_on("/second").len(),
        2,
        "the config before stays"
    );
    assert!(rx.accepted_on("/never").is_empty());
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("relay_config_reloads_total{result=\"applied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("relay_config_reloads_total{result=\"rejected\"} 1"),
        "{text}"
    );
}

/// A parameter, bucket or key that is not there stops the start, and the
/// error names it.
#[cfg(feature = "config-s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_parameter_or_object_stops_the_start_naming_it() {
    let moto = MotoServer::start();
    moto.put_object("relay-config", "tekton/relay.yaml", "")
        .await;
    for (config, names, why) in [
        (
            "ssm://tekton-relay/missing.yaml",
            "SSM parameter /tekton-relay/missing.yaml",
            "no such parameter",
        ),
        (
            "s3://relay-config/tekton/missing.yaml",
            "S3 object s3://relay-config/tekton/missing.yaml",
            "no such key",
        ),
        (
            "s3://no-such-bucket/relay.yaml",
            "S3 object s3://no-such-bucket/relay.yaml",
            "no such bucket",
        ),
    ] {
        let mut f = FunctionProcess::start(WEBHOOK, NOT_READ, &env_of(&moto, config));
        let status = f.wait_exit(Duration::from_secs(30)).await;
        let log = f.stderr();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{config}: {status:?}\n{log}"
        );
        assert!(log.contains(names) && log.contains(why), "{config}:\n{log}");
    }
}
