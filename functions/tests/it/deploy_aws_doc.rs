//! docs/deploy-aws.md, command by command, without AWS: every line of its
//! shell blocks is one this test knows how to check, and each refers only
//! to what exists. The build commands name the profile, features and
//! artifact folders the Terraform module reads; the config it stores in SSM
//! and S3 (moto) is what the `RELAY_CONFIG` values of its table name, and a
//! function starts from each; the `relay dlq` commands run against a queue
//! holding a dead letter and an invocation record, onto the bus the module
//! creates.

use std::path::{Path, PathBuf};
use std::process::Command;

use relay_core::deadletter::{Cause, CauseKind, DeadLetterEntry, DeadLetterSink};
use relay_core::remote_config::Location;
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::{Binary, FunctionProcess};
use relay_tests::servers::MotoServer;
use relay_tests::shell::{commands, words};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The code spans of the doc that are remote config URLs.
fn remote_configs(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("ssm://") || s.starts_with("s3://"))
        // Not a scheme alone (`s3://`), nor an elided one (`ssm://…`).
        .filter(|s| !s.contains('…') && !s.ends_with("://"))
        .map(str::to_string)
        .collect()
}

fn value_of<'a>(args: &'a [&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .copied()
}

/// `relay <args>` with `env`: whether it succeeded, and its stdout as JSON.
fn relay(args: &[&str], env: &[(String, String)]) -> (bool, Value) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RELAY_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "relay {args:?}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

/// The queue as a deployment fills it: a dead letter of `commit-status`
/// and an invocation record of the github function.
async fn fill(moto: &MotoServer, queue: &str) -> String {
    let envelope = RequestFile::load(&dir().join("wrappers/aws-eventbridge-envelope.json")).body;
    let entry = DeadLetterEntry {
        id: "7d9f0c52-2f55-4a57-9a38-0e0c1b1f6a11".into(),
        failed_at: "2024-05-16T00:49:01.000Z".into(),
        notification: "commit-status".into(),
        provider: "github".into(),
        provider_type: "github".into(),
        cause: Cause {
            kind: CauseKind::Permanent,
            status: Some(422),
            message: "answered 422".into(),
        },
        attempts: 1,
        replays: 0,
        event: envelope["detail"].clone(),
        truncated: None,
        unknown_destination: false,
    };
    let sink = relay_core::deadletter::sqs::SqsSink::from_conf(&moto.sdk_config(), queue);
    sink.put(&entry).await.unwrap();
    let record = json!({
        "version": "1.0", "timestamp": "2024-05-16T00:52:47.333Z",
        "requestContext": {"requestId": "8ea123e4-1db7-4aca-ad10-d9ca1234c1fd",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:tekton-relay-github:$LATEST",
            "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": envelope,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "RetryableDeliveryFailure", "errorMessage": "retryable delivery failure: commit-status: answered 502"}
    });
    aws_sdk_sqs::Client::new(&moto.sdk_config())
        .send_message()
        .queue_url(queue)
        .message_body(record.to_string())
        .send()
        .await
        .unwrap();
    entry.id
}

/// A function started with `RELAY_CONFIG=config` serves (its config was
/// found and valid).
async fn starts_from(moto: &MotoServer, config: &str) {
    let mut env = moto.process_env();
    env.push(("RELAY_CONFIG".into(), config.into()));
    // As the module overrides spec.store (here no DynamoDB table is needed).
    env.push(("RELAY_STORE".into(), "memory".into()));
    // It answers on /healthz only once its config was read and compiled.
    let _serving =
        FunctionProcess::start_http(Binary::function(BIN, "github"), "kind: [not read\n", &env)
            .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_aws_guide_is_checked() {
    let guide = read("docs/deploy-aws.md");
    let module = read("infra/modules/relay/main.tf");
    let example = read("infra/examples/basic/main.tf");
    let workspace = read("Cargo.toml");
    let functions = read("functions/Cargo.toml");
    let moto = MotoServer::start();
    let env = moto.process_env();
    let mut cwd = root();
    let mut queue: Option<String> = None;
    let mut entry_id: Option<String> = None;
    let mut stored: Vec<Location> = Vec::new();
    let mut lambda_dirs = Vec::new();
    let example_config = read("infra/examples/basic/relay.yaml");
    let config_events = read("knative/tekton/config-events.yaml");
    // The shell's variables the guide sets or assumes.
    let mut vars: Vec<(String, String)> = vec![
        ("$(openssl rand -hex 32)".into(), "0f".repeat(32)),
        ("$GITHUB_TOKEN".into(), "ghp_test_0123456789".into()),
        ("$NEW_GITHUB_TOKEN".into(), "ghp_test_rotated_9876".into()),
        ("$SLACK_BOT_TOKEN".into(), "xoxb-test-0123".into()),
    ];
    let expand = |text: &str, vars: &[(String, String)]| {
        vars.iter()
            .fold(text.to_string(), |t, (k, v)| t.replace(k.as_str(), v))
    };
    let mut ingress: Option<(FunctionProcess, String)> = None;
    let mut sink_checked = false;
    let mut checked = 0;
    for command in commands(&guide) {
        let what = format!("docs/deploy-aws.md: {command}");
        if let Some(name) = command
            .strip_prefix("TOKEN=$(aws ssm get-parameter --name ")
            .and_then(|r| {
                r.strip_suffix(" --with-decryption --query Parameter.Value --output text)")
            })
        {
            // The ingress token the guide stored: read back as the CLI would.
            let value = moto
                .ssm_value(name)
                .await
                .unwrap_or_else(|| panic!("{what}: not stored first"));
            assert!(
                example_config.contains(&format!("bearerTokenFile: ssm://{}", &name[1..])),
                "{what}: the example's ingress token"
            );
            vars.push(("$TOKEN".into(), value));
            checked += 1;
            continue;
        }
        if command == "URL=$(terraform output -raw ingress_url)" {
            assert!(example.contains("output \"ingress_url\""), "{what}");
            // The ingress of the example's config, over HTTP, onto the bus.
            let eb = aws_sdk_eventbridge::Client::new(&moto.sdk_config());
            let _ = eb.create_event_bus().name("tekton-relay").send().await;
            let mut env = moto.process_env();
            env.push(("RELAY_EVENT_BUS".into(), "tekton-relay".into()));
            let (f, base) = FunctionProcess::start_http(
                Binary::function(BIN, "ingress"),
                &example_config,
                &env,
            )
            .await;
            // As a Function URL is named: https, the host, a slash.
            vars.push((
                "${URL#https://}".into(),
                format!("{}/", base.trim_start_matches("http://")),
            ));
            ingress = Some((f, base));
            checked += 1;
            continue;
        }
        if let Some(output) = command
            .strip_prefix("QUEUE=$(terraform output -raw ")
            .and_then(|r| r.strip_suffix(')'))
        {
            // An output of the example, the module's queue.
            assert!(
                example.contains(&format!("output \"{output}\""))
                    && module.contains("aws_sqs_queue.dead_letters.url"),
                "{what}"
            );
            let url = moto.sqs_queue("tekton-relay-dead-letters").await;
            entry_id = Some(fill(&moto, &url).await);
            queue = Some(url);
            checked += 1;
            continue;
        }
        let w = words(&command);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["pip", "install", "cargo-lambda"] => {}
            ["scripts/lambda", args @ ..] => {
                // The one build command: its flags exist, and it writes the
                // two artifacts the module deploys.
                let help = Command::new(root().join("scripts/lambda"))
                    .arg("--help")
                    .output()
                    .unwrap();
                let help = String::from_utf8_lossy(&help.stdout).into_owned();
                for flag in args.iter().filter(|a| a.starts_with("--")) {
                    assert!(help.contains(flag), "{what}: no {flag}");
                }
                let script = read("scripts/lambda");
                for feature in ["providers", "ingress"] {
                    assert!(
                        module.contains(&format!(
                            "${{var.artifacts_dir}}/{feature}/relay/bootstrap.zip"
                        )),
                        "{what}"
                    );
                    assert!(functions.contains(&format!("\n{feature} = [")), "{what}");
                    lambda_dirs.push(feature.to_string());
                }
                assert!(
                    script.contains("for artifact in providers ingress"),
                    "{what}"
                );
                assert!(script.contains("--no-default-features --features \"$artifact\""));
                assert!(workspace.contains("[profile.lambda]"), "{what}");
            }
            ["cd", to] => {
                cwd = root().join(to);
                assert!(cwd.join("main.tf").exists(), "{what}");
                assert!(
                    example
                        .contains("artifacts_dir      = \"${path.root}/../../../target/lambda\""),
                    "{what}"
                );
            }
            ["terraform", "init" | "apply"] => {
                assert!(cwd.join("main.tf").exists(), "{what}");
            }
            [
                "aws",
                "ssm",
                "put-parameter",
                "--name",
                name,
                "--type",
                "SecureString",
                "--value",
                value,
                rest @ ..,
            ] if *value != "file://relay.yaml" => {
                // A credential the example's config names, and lets its
                // function read.
                let reference = format!("ssm://{}", name.trim_start_matches('/'));
                assert!(example_config.contains(&reference), "{what}");
                assert!(example.contains(&format!("\"{reference}\"")), "{what}");
                assert!(matches!(rest, [] | ["--overwrite"]), "{what}");
                let value = expand(value, &vars);
                assert!(!value.contains('$'), "{what}: {value}");
                moto.ssm_parameter(name, &value).await;
            }
            [
                "aws",
                "secretsmanager",
                "create-secret",
                "--name",
                name,
                "--secret-string",
                value,
            ] => {
                let json: Value = serde_json::from_str(&expand(value, &vars))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                for (key, _) in json.as_object().unwrap() {
                    let reference = format!("secretsmanager://{name}#{key}");
                    assert!(example_config.contains(&reference), "{what}");
                    assert!(example.contains(&format!("\"{reference}\"")), "{what}");
                }
                moto.secret(name, &json.to_string()).await;
            }
            [
                "kubectl",
                "patch",
                "configmap",
                cm,
                "-n",
                namespace,
                "--type",
                "merge",
                "-p",
                patch,
            ] => {
                // Tekton's ConfigMap, as knative/tekton names it.
                assert!(config_events.contains(&format!("name: {cm}")), "{what}");
                assert!(
                    config_events.contains(&format!("namespace: {namespace}")),
                    "{what}"
                );
                let patch: Value = serde_json::from_str(&expand(patch, &vars))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(patch["data"]["formats"], "tektonv1", "{what}");
                let sink = patch["data"]["sink"].as_str().unwrap();
                assert!(sink.starts_with("https://tekton:"), "{what}");
                // The sink as Tekton uses it (here over HTTP): the user
                // info becomes Basic credentials, the event goes on the bus.
                let sink = sink.replacen("https://", "http://", 1);
                let ev = RequestFile::load(
                    &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
                );
                let client = reqwest::Client::new();
                let post = |url: String| {
                    let mut req = client.post(url).body(ev.body_bytes());
                    for (k, v) in ev.send_headers() {
                        req = req.header(k, v);
                    }
                    req.send()
                };
                let r = post(sink.clone()).await.unwrap();
                let (status, body) = (r.status(), r.text().await.unwrap());
                assert_eq!(status, 200, "{what}: {body}");
                assert!(body.contains("\"forwarded\""), "{what}: {body}");
                let wrong = sink.replacen(":0f", ":1f", 1);
                assert_eq!(post(wrong).await.unwrap().status(), 401, "{what}");
                sink_checked = true;
            }
            ["aws", "logs", "tail", group, "--since", _] => {
                // A log group the module creates: /aws/lambda/<name>-<function>.
                assert!(
                    module.contains("name              = \"/aws/lambda/${var.name}-${each.key}\""),
                    "{what}"
                );
                let function = group
                    .strip_prefix("/aws/lambda/tekton-relay-")
                    .unwrap_or_else(|| panic!("{what}"));
                assert!(
                    function == "ingress" || example.contains(&format!("\"{function}\"")),
                    "{what}: not a function of the example"
                );
            }
            ["relay", "validate", file] => {
                let out = Command::new(BIN)
                    .args(["validate", file])
                    .current_dir(&cwd)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{what}: {out:?}");
            }
            [
                "aws",
                "ssm",
                "put-parameter",
                "--name",
                name,
                "--type",
                "SecureString",
                "--value",
                "file://relay.yaml",
                "--overwrite",
            ] => {
                let text = std::fs::read_to_string(cwd.join("relay.yaml")).unwrap();
                moto.ssm_parameter(name, &text).await;
                stored.push(Location::Ssm {
                    name: name.to_string(),
                });
            }
            ["aws", "s3", "cp", "relay.yaml", to] => {
                let Ok(Some(Location::S3 { bucket, key })) = Location::parse(to) else {
                    panic!("{what}");
                };
                let text = std::fs::read_to_string(cwd.join("relay.yaml")).unwrap();
                moto.put_object(&bucket, &key, &text).await;
                stored.push(Location::S3 { bucket, key });
            }
            ["relay", "dlq", action @ ("list" | "replay"), args @ ..] => {
                let q = queue.clone().expect("the queue named first");
                let args: Vec<String> = args
                    .iter()
                    .map(|a| {
                        a.replace("$QUEUE", &q)
                            .replace("$ID", entry_id.as_deref().unwrap())
                    })
                    .collect();
                if let Some(bus) = value_of(&w, "--bus") {
                    // The bus the module makes: named after the deployment.
                    assert!(example.contains(&format!("name               = \"{bus}\"")));
                    assert!(module.contains("name = var.name\n  tags = var.tags"));
                    let eb = aws_sdk_eventbridge::Client::new(&moto.sdk_config());
                    let _ = eb.create_event_bus().name(bus).send().await;
                }
                let mut all = vec!["dlq", action];
                all.extend(args.iter().map(String::as_str));
                let (ok, out) = relay(&all, &env);
                assert!(ok, "{what}: {out:#}");
                if *action == "list" {
                    assert!(out["total"].as_u64().unwrap() >= 1, "{what}: {out:#}");
                } else {
                    assert_eq!(
                        (&out["replayed"], &out["succeeded"]),
                        (&json!(1), &json!(1)),
                        "{what}: {out:#}"
                    );
                }
            }
            _ => panic!("{what}: a command this test does not know; teach it"),
        }
        checked += 1;
    }
    assert_eq!(lambda_dirs, ["providers", "ingress"]);
    assert!(sink_checked, "Tekton's sink");
    drop(ingress);
    assert!(checked >= 21, "only {checked} commands");
    let (_, left) = relay(&["dlq", "list", "--sqs", queue.as_deref().unwrap()], &env);
    assert_eq!(left["total"], 0, "every failure replayed: {left:#}");

    // The table's RELAY_CONFIG values: every one parses; those the
    // commands stored a config at start a function.
    let configs = remote_configs(&guide);
    assert!(configs.len() >= 4, "{configs:?}");
    let mut started = 0;
    for c in &configs {
        let location = Location::parse(c)
            .unwrap_or_else(|e| panic!("{c}: {e}"))
            .unwrap();
        if stored.contains(&location) {
            starts_from(&moto, c).await;
            started += 1;
        }
    }
    assert_eq!(started, 3, "ssm://…, ssm:///… and s3://… of the table");
}
