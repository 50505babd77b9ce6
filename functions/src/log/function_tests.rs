//! The log function printing hostile events: what a run's author writes
//! (its name, a sha, a Flux revision) can neither forge a log line, nor
//! colour the terminal, nor drop the connection by splitting a character.

use relay_tests::attack::pipelinerun_with;
use relay_tests::function::{Function, Secrets, config, fixture};
use serde_json::Value;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "log");

/// A forged JSON log line and an ANSI colour in a run name.
const FORGED_NAME: &str =
    "build\n{\"level\":\"ERROR\",\"msg\":\"disk full, delete /data\"}\u{1b}[31m\u{202e}red\r";

async fn start(notifications: &[(&str, &str)]) -> Function {
    let cfg = config("stdout", "log", "{}", notifications);
    Function::start(BIN, &cfg, Secrets::new(), &[]).await
}

/// Every line the function printed.
fn printed(f: &Function) -> Vec<String> {
    f.f.stdout().lines().map(str::to_string).collect()
}

fn assert_inert(line: &str) {
    assert!(
        !line
            .chars()
            .any(|c| c.is_control() || relay_core::escape::is_format(c) || c == '\u{2028}'),
        "a raw control or formatting character in {line:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_name_cannot_forge_log_lines_or_colour_the_terminal() {
    let f = start(&[
        ("plain", ""),
        (
            "templated",
            "  template: \"run {{ event.name }} is {{ event.state }}\"",
        ),
    ])
    .await;
    let mut ev = pipelinerun_with("forged", &[]);
    ev.body["pipelineRun"]["metadata"]["name"] = Value::String(FORGED_NAME.into());
    let answer = f.send(&ev).await;
    for d in answer["deliveries"].as_array().unwrap() {
        assert_eq!(d["outcome"], "delivered", "{answer}");
    }
    let lines = printed(&f);
    assert_eq!(lines.len(), 2, "one line per Notification: {lines:?}");
    for line in &lines {
        assert_inert(line);
        assert!(!line.starts_with('{'), "{line}");
        // Shown, escaped.
        assert!(
            line.contains(r#"build\n{"level":"ERROR""#) && line.contains(r"\u{1b}[31m"),
            "{line}"
        );
    }
    assert!(
        lines[0].starts_with("[plain] PipelineRun ci/build\\n"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("run build\\n"), "{}", lines[1]);
    assert!(lines[1].ends_with(" is succeeded"), "{}", lines[1]);
}

/// A sha was cut at byte 12: `€` across that byte dropped the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha_or_flux_revision_with_a_multibyte_character_is_printed() {
    let f = start(&[("plain", "")]).await;
    // `€` spans bytes 11 to 13: the 12-byte cut fell inside it.
    let sha = "0123456789a€€€";
    let answer = f
        .delivery(&pipelinerun_with("euro", &[("relay.tekton.dev/sha", sha)]))
        .await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let mut flux = fixture("flux-events/001-flux-gitrepository-widgets-info.json");
    flux.body["metadata"]["revision"] = Value::String(format!("main@sha1:{sha}"));
    let answer = f.delivery(&flux).await;
    assert_eq!(answer["outcome"], "delivered", "{answer}");

    let lines = printed(&f);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(line.contains(" sha=0123456789a€ "), "{line}");
        assert_inert(line);
    }
}

const CLONE_TOKEN: &str = "ghs_cl0neT0kenS3cret";

/// A clone URL's token (`https://x-access-token:…@github.com/…`) in the
/// git URL param, in the run's link annotation and in a failed clone's
/// condition message reaches no template, log line, answer or dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_url_credentials_reach_no_template_log_or_dead_letter() {
    let f = start(&[
        (
            "print",
            "  template: \"{{ event.scm.url }} {{ event.scm.repo }} {{ event.url }} {{ event.annotations | tojson }} {{ event.message }}\"",
        ),
        (
            "fails",
            "  template: \"{% if event.name == 'with-credentials' %}{{ nosuchfn() }}{% endif %}x\"",
        ),
    ])
    .await;
    let with_token = |host_path: &str| format!("https://x-access-token:{CLONE_TOKEN}@{host_path}");
    let mut ev = pipelinerun_with(
        "credentials",
        &[("relay.tekton.dev/url", &with_token("tekton.acme.dev/#/x"))],
    );
    let run = &mut ev.body["pipelineRun"];
    run["metadata"]["name"] = "with-credentials".into();
    let annotations = run["metadata"]["annotations"].as_object_mut().unwrap();
    // The param is the only repository URL; the link is the relay's own annotation.
    annotations.remove("pipelinesascode.tekton.dev/repo-url");
    annotations.remove("pipelinesascode.tekton.dev/log-url");
    run["spec"]["params"][0] = serde_json::json!({
        "name": "repo-url", "value": with_token("github.com/acme/widgets"),
    });
    run["status"]["conditions"][0]["message"] = format!(
        "fatal: unable to access '{}/': The requested URL returned error: 403",
        with_token("github.com/acme/widgets")
    )
    .into();

    let answer = f.send(&ev).await;
    let outcomes: Vec<&str> = answer["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "dead_lettered"], "{answer}");
    let printed = f.f.stdout();
    assert!(
        printed.contains("https://github.com/acme/widgets github.com/acme/widgets "),
        "{printed}"
    );
    assert!(
        printed.contains("unable to access 'https://github.com/acme/widgets/'"),
        "{printed}"
    );
    assert!(!printed.contains(CLONE_TOKEN), "{printed}");
    assert_eq!(f.dead_letters().len(), 1);
    f.assert_secrets_absent(&[CLONE_TOKEN], &answer);
}
