//! The AWS secret sources (`ssm://…`, `secretsmanager://…`) against a real
//! moto server: a value is cached for its TTL and fetched again after it,
//! so a rotation applies within the TTL; the last value serves through an
//! outage for ten TTLs, not through a deletion; a failure is held a
//! moment; errors name the reference and AWS's code, never a value. The
//! clock is stepped (`read_at`), so no test waits a TTL out; the process
//! tests (functions/tests/it/aws_secrets.rs) use real time.

use std::time::{Duration, Instant};

use relay_core::secret::{AwsSecrets, SecretSource};
use relay_tests::servers::MotoServer;

const TTL: Duration = Duration::from_secs(60);
/// Less than a millisecond before a deadline.
const JUST: Duration = Duration::from_millis(1);

/// The sources over `moto`, without retries (a failure is seen at once).
fn sources(moto: &MotoServer) -> AwsSecrets {
    let conf = moto
        .sdk_config()
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    AwsSecrets::new(conf, TTL)
}

fn source(text: &str) -> SecretSource {
    SecretSource::parse(text).unwrap()
}

#[tokio::test]
async fn a_value_is_cached_for_its_ttl_and_a_rotation_applies_after_it() {
    let moto = MotoServer::start();
    moto.ssm_parameter("/tekton-relay/github/token", "tok-one\n")
        .await;
    moto.ssm_parameter("flat-token", "flat-one").await;
    moto.secret(
        "tekton-relay/slack",
        r#"{"botToken": "xoxb-one", "signingSecret": "sig-one"}"#,
    )
    .await;
    moto.secret("tekton-relay/ingress", "inbound-one").await;
    let aws = sources(&moto);
    let token = source("ssm://tekton-relay/github/token");
    let flat = source("ssm://flat-token");
    let bot = source("secretsmanager://tekton-relay/slack#botToken");
    let signing = source("secretsmanager://tekton-relay/slack#signingSecret");
    let inbound = source("secretsmanager://tekton-relay/ingress");
    let t0 = Instant::now();
    let read = |s: &SecretSource, at: Instant| {
        let aws = &aws;
        let s = s.clone();
        async move { aws.read_at(&s, at).await.unwrap() }
    };
    // The trailing newline is dropped, as from a file.
    assert_eq!(read(&token, t0).await, "tok-one");
    assert_eq!(read(&flat, t0).await, "flat-one");
    assert_eq!(read(&bot, t0).await, "xoxb-one");
    assert_eq!(read(&signing, t0).await, "sig-one");
    assert_eq!(read(&inbound, t0).await, "inbound-one");
    // The leading slash may be written: the same parameter, the same entry.
    assert_eq!(
        read(&source("ssm:///tekton-relay/github/token"), t0).await,
        "tok-one"
    );

    moto.ssm_parameter("/tekton-relay/github/token", "tok-two")
        .await;
    moto.ssm_parameter("flat-token", "flat-two").await;
    moto.secret(
        "tekton-relay/slack",
        r#"{"botToken": "xoxb-two", "signingSecret": "sig-two"}"#,
    )
    .await;
    moto.secret("tekton-relay/ingress", "inbound-two").await;
    // Within the TTL the cached values (a broken cache fetches anew).
    let within = t0 + TTL - JUST;
    for (s, old) in [
        (&token, "tok-one"),
        (&flat, "flat-one"),
        (&bot, "xoxb-one"),
        (&signing, "sig-one"),
        (&inbound, "inbound-one"),
    ] {
        assert_eq!(read(s, within).await, old, "{s}");
    }
    // At the TTL, each is fetched again: the rotated values.
    let after = t0 + TTL;
    for (s, new) in [
        (&token, "tok-two"),
        (&flat, "flat-two"),
        (&bot, "xoxb-two"),
        (&signing, "sig-two"),
        (&inbound, "inbound-two"),
    ] {
        assert_eq!(read(s, after).await, new, "{s}");
    }
}

#[tokio::test]
async fn what_cannot_be_read_is_an_error_naming_it_without_any_value() {
    let moto = MotoServer::start();
    moto.secret("relay/plain", "plain-s3cr3t").await;
    moto.secret("relay/json", r#"{"token": "json-s3cr3t", "n": 1}"#)
        .await;
    moto.ssm_parameter("/relay/blank", "\n").await;
    let aws = sources(&moto);
    let now = Instant::now();
    for (text, want) in [
        ("ssm://relay/missing", "ParameterNotFound"),
        ("ssm://relay/blank", "the parameter is empty"),
        (
            "secretsmanager://relay/missing",
            "ResourceNotFoundException",
        ),
        ("secretsmanager://relay/json#other", "has no key \"other\""),
        (
            "secretsmanager://relay/json#n",
            "key \"n\" does not hold a string",
        ),
        (
            "secretsmanager://relay/plain#token",
            "needs a secret holding a JSON object",
        ),
    ] {
        let err = aws.read_at(&source(text), now).await.unwrap_err();
        assert!(!err.transient, "{text}: {err}");
        let err = err.to_string();
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains("s3cr3t"), "{text}: {err}");
    }
}

#[tokio::test]
async fn the_last_value_serves_through_an_outage_for_ten_ttls_not_through_a_deletion() {
    let moto = MotoServer::start();
    moto.ssm_parameter("/relay/deleted", "gone-one").await;
    moto.ssm_parameter("/relay/kept", "kept-one").await;
    let aws = sources(&moto);
    let deleted = source("ssm://relay/deleted");
    let kept = source("ssm://relay/kept");
    let t0 = Instant::now();
    assert_eq!(aws.read_at(&deleted, t0).await.unwrap(), "gone-one");
    assert_eq!(aws.read_at(&kept, t0).await.unwrap(), "kept-one");

    // A deleted parameter is an answer, not an outage: the error at once.
    moto.delete_ssm_parameter("/relay/deleted").await;
    let t1 = t0 + TTL;
    let err = aws.read_at(&deleted, t1).await.unwrap_err();
    assert!(
        !err.transient && err.reason.contains("ParameterNotFound"),
        "{err}"
    );
    // The failure is held a moment (no call to AWS per request), then
    // tried again.
    moto.ssm_parameter("/relay/deleted", "gone-two").await;
    let hold = relay_core::secret::FAILURE_HOLD;
    let err = aws.read_at(&deleted, t1 + hold - JUST).await.unwrap_err();
    assert!(err.reason.contains("ParameterNotFound"), "{err}");
    assert_eq!(aws.read_at(&deleted, t1 + hold).await.unwrap(), "gone-two");

    // AWS out of reach: the last value, while younger than ten TTLs; a
    // value dropped for an answer such as "not found" is not served.
    moto.ssm_parameter("/relay/dropped", "dropped-one").await;
    let dropped = source("ssm://relay/dropped");
    assert_eq!(aws.read_at(&dropped, t0).await.unwrap(), "dropped-one");
    moto.delete_ssm_parameter("/relay/dropped").await;
    assert!(aws.read_at(&dropped, t1).await.is_err());
    drop(moto);
    let err = aws.read_at(&dropped, t1 + hold).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert_eq!(aws.read_at(&kept, t0 + TTL).await.unwrap(), "kept-one");
    assert_eq!(
        aws.read_at(&kept, t0 + TTL * 10 - JUST).await.unwrap(),
        "kept-one"
    );
    let err = aws.read_at(&kept, t0 + TTL * 10).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert!(
        err.reason
            .starts_with("cannot reach AWS: dispatch failure: ")
            && err.reason.ends_with("Connection refused (os error 111)"),
        "{err}"
    );
    assert!(!err.reason.contains("kept-one"), "{err}");
}
