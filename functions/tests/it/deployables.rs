//! The deployables, checked without a cluster or an AWS account: Knative
//! manifests against the real CRD schemas, the kustomizations built, the
//! Terraform parsed and scanned by checkov, and functions/, knative/ and
//! infra/ consistent with one another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use relay_tests::terraform::hcl;
use serde::Deserialize;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn shared_tools() -> PathBuf {
    relay_tests::fixtures::dir().join("../tools")
}

fn files(dir: &Path, ext: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| ext.iter().any(|e| x == *e)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The manifest files under knative/: every YAML file but the
/// kustomizations and the relay configs of knative/base/config/ (checked by
/// `relay validate`, validate::configs_of_the_knative_install_validate).
fn manifest_files() -> Vec<PathBuf> {
    let configs = root().join("knative/base/config");
    files(&root().join("knative"), &["yaml", "yml"])
        .into_iter()
        .filter(|f| !f.starts_with(&configs))
        .filter(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect()
}

/// Every YAML document under knative/, with the file it came from.
fn knative_docs() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for f in manifest_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde_yaml_ng::Value::deserialize(doc).unwrap();
            if !v.is_null() {
                out.push((f.clone(), serde_json::to_value(v).unwrap()));
            }
        }
    }
    out
}

fn python() -> &'static str {
    "python3"
}

/// API groups whose CRD schemas we do not have: the Tekton Triggers
/// examples under knative/examples (checked by the tekton-trigger tests).
const UNCHECKED_GROUPS: &[&str] = &["triggers.tekton.dev/"];

fn is_example(f: &Path) -> bool {
    f.starts_with(root().join("knative/examples"))
}

/// Checks `manifests` with the Knative CRD schemas (validate-manifests)
/// and every Kubernetes kind the tool has no schema for (the Valkey
/// StatefulSet and Service) with Kubernetes' own OpenAPI schemas
/// (kubernetes-validate, strict). Every document passes one of the two.
fn validate_manifests(manifests: &[PathBuf]) {
    let out = Command::new(python())
        .arg(shared_tools().join("validate-manifests"))
        .arg("--allow-unknown")
        .args(manifests)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unknown: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("UNKNOWN KIND"))
        .collect();
    assert!(
        stdout.lines().all(|l| l.ends_with(": OK")
            || l.ends_with("checked (core, light)")
            || l.contains("UNKNOWN KIND")),
        "{stdout}"
    );
    // The kinds validate-manifests does not know, each in a file of its own.
    let dir = tempfile::tempdir().unwrap();
    let mut core = Vec::new();
    for f in manifests {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value =
                serde_json::to_value(serde_yaml_ng::Value::deserialize(doc).unwrap()).unwrap();
            let api = v["apiVersion"].as_str().unwrap_or_default();
            let kind = v["kind"].as_str().unwrap_or_default();
            let known_core = matches!(
                (api, kind),
                ("v1", "Service") | ("apps/v1", "StatefulSet") | ("v1", "PersistentVolumeClaim")
            );
            if unknown
                .iter()
                .any(|l| l.contains(&format!(" {kind}/")) || l.contains(&format!("{api}/{kind}")))
                && known_core
            {
                let file = dir.path().join(format!("{}.yaml", core.len()));
                // JSON is YAML, and keeps "yes" a string for a YAML 1.1 reader.
                std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
                core.push(file);
            }
        }
    }
    assert_eq!(
        core.len(),
        unknown.len(),
        "kinds no schema checks:\n{}",
        unknown.join("\n")
    );
    if core.is_empty() {
        return;
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(&core)
        .output()
        .expect("kubernetes-validate on PATH (scripts/test installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && report.lines().filter(|l| l.starts_with("INFO")).count() == core.len(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_knative_manifest_passes_the_crd_schemas() {
    let manifests: Vec<PathBuf> = manifest_files()
        .into_iter()
        .filter(|f| !is_example(f))
        .collect();
    assert!(manifests.len() >= 8, "{manifests:?}");
    validate_manifests(&manifests);
}

/// kubectl, which renders the kustomizations (the machine's own; on a fresh
/// one scripts/test does not install it: the test says so and fails).
fn kubectl_kustomize(dir: &Path) -> String {
    let built = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect(
            "kubectl on PATH: it renders knative/base (https://kubernetes.io/docs/tasks/tools/)",
        );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    String::from_utf8(built.stdout).unwrap()
}

/// The examples: every Knative or core kind in them passes its schema; the
/// only kinds without one are Tekton Triggers'.
#[test]
fn knative_examples_pass_the_schemas_they_have() {
    let examples = files(&root().join("knative/examples"), &["yaml", "yml"]);
    assert!(!examples.is_empty(), "knative/examples is empty");
    let out = Command::new(python())
        .arg(shared_tools().join("validate-manifests"))
        .arg("--allow-unknown")
        .args(&examples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in stdout.lines() {
        if line.contains("UNKNOWN KIND") {
            assert!(
                UNCHECKED_GROUPS.iter().any(|g| line.contains(g)),
                "a kind with no schema outside Tekton Triggers: {line}"
            );
        } else {
            assert!(
                line.ends_with(": OK") || line.ends_with("checked (core, light)"),
                "{line}"
            );
        }
    }
}

/// `kubectl kustomize knative/base` renders, and what it renders
/// validates: every relay config is in the relay-config ConfigMap, and the
/// functions keep their state in the Valkey the base brings.
#[test]
fn the_base_kustomization_builds_and_its_output_validates() {
    let dir = root().join("knative/base");
    let kz: Value = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
            &std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    for r in kz["resources"].as_array().unwrap() {
        assert!(dir.join(r.as_str().unwrap()).exists(), "{r}");
    }
    let text = kubectl_kustomize(&dir);
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &text).unwrap();
    validate_manifests(&[tmp.path().to_path_buf()]);
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .collect();
    assert!(
        docs.iter()
            .all(|d| d["kind"] == "Namespace" || d["metadata"]["namespace"] == "tekton-relay")
    );
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "relay-config")
        .expect("the relay-config ConfigMap, by that name (no hash suffix)");
    for key in ["relay.yaml", "ingress.yaml", "dlq.yaml"] {
        let want = std::fs::read_to_string(dir.join("config").join(key)).unwrap();
        assert_eq!(cm["data"][key], want.as_str(), "{key}");
    }
    // No in-memory store, no pod-local dead letters: both on the Valkey
    // that the base runs, with its password from the Secret.
    let relay = cm["data"]["relay.yaml"].as_str().unwrap();
    assert!(relay.contains("store: \"valkey://valkey.tekton-relay.svc:6379/"));
    assert!(!relay.contains("store: memory"));
    let dlq = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "relay-dlq")
        .unwrap();
    let store = service_env(dlq, "RELAY_DLQ_STORE").unwrap();
    assert!(
        store.starts_with("valkey://valkey.tekton-relay.svc:6379/"),
        "{store}"
    );
    assert!(store.contains("passwordFile=/var/run/secrets/relay/valkey/password"));
    let valkey = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "valkey")
        .expect("the base runs Valkey");
    let vc = &valkey["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        vc["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "relay-valkey"
    );
    assert_eq!(
        valkey["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data",
        "Valkey keeps its data on a volume"
    );
    // The sample config delivers somewhere that exists: the log function.
    let functions: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Service" && d["apiVersion"] == "serving.knative.dev/v1")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        ["relay-dlq", "relay-ingress", "relay-log", "relay-router"]
    );
}

/// The env value `name` of a Knative Service's first container.
fn service_env<'a>(svc: &'a Value, name: &str) -> Option<&'a str> {
    svc["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// Secure by default (SECURITY.md "Who can reach what"): only the ingress is
/// reachable from outside the cluster, and it authenticates every request;
/// every Service that runs without inbound auth (RELAY_INSECURE_NO_AUTH) is
/// cluster-local; the dead-letter API has its own credential.
#[test]
fn only_the_authenticated_ingress_is_public() {
    let docs = knative_docs();
    let config_of = |svc: &Value| -> Value {
        let path = service_env(svc, "RELAY_CONFIG").expect("RELAY_CONFIG");
        let key = path
            .strip_prefix("/etc/relay/")
            .expect("mounted at /etc/relay");
        let text = std::fs::read_to_string(root().join("knative/base/config").join(key))
            .unwrap_or_else(|e| panic!("knative/base/config/{key}: {e}"));
        let first = serde_yaml_ng::Deserializer::from_str(&text).next().unwrap();
        serde_json::to_value(serde_yaml_ng::Value::deserialize(first).unwrap()).unwrap()
    };
    let mut seen = BTreeSet::new();
    for (file, svc) in &docs {
        if svc["kind"] != "Service"
            || svc["apiVersion"] != "serving.knative.dev/v1"
            || !file.to_string_lossy().contains("knative/base")
        {
            continue;
        }
        let name = svc["metadata"]["name"].as_str().unwrap();
        seen.insert(name.to_string());
        let local =
            svc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local";
        let insecure = service_env(svc, "RELAY_INSECURE_NO_AUTH") == Some("true");
        let config = config_of(svc);
        if name == "relay-ingress" {
            assert!(!insecure, "{name} must authenticate");
            assert!(
                config["spec"]["inboundAuth"].is_object(),
                "{name}: its config has no spec.inboundAuth"
            );
        } else {
            assert!(local, "{name} must be cluster-local");
        }
        if insecure {
            assert!(
                local,
                "{name} runs without auth, so it must be cluster-local"
            );
        }
        if name == "relay-dlq" {
            assert!(
                config["spec"]["apiAuth"].is_object(),
                "{name}: the dead-letter API needs spec.apiAuth"
            );
            assert!(
                config["spec"]["inboundAuth"].is_null()
                    || config["spec"]["inboundAuth"] != config["spec"]["apiAuth"],
                "{name}: senders and the API share a credential"
            );
        }
    }
    assert!(
        seen.contains("relay-ingress") && seen.contains("relay-dlq") && seen.len() > 2,
        "{seen:?}"
    );
}

#[test]
fn knative_services_follow_the_operating_rules() {
    for (file, doc) in knative_docs() {
        if doc["kind"] != "Service" || doc["apiVersion"] != "serving.knative.dev/v1" {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap();
        if name == "any" {
            continue; // a patch, not a Service
        }
        let what = format!("{}: {name}", file.display());
        let tmpl = &doc["spec"]["template"];
        assert_eq!(
            tmpl["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"], "0",
            "{what}: scale to zero"
        );
        let spec = &tmpl["spec"];
        assert!(spec["containerConcurrency"].as_u64().is_some(), "{what}");
        let c = &spec["containers"][0];
        assert!(
            c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
            "{what}"
        );
        assert!(
            c["readinessProbe"].is_object() && c["livenessProbe"].is_object(),
            "{what}"
        );
        assert_eq!(c["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], false,
            "{what}"
        );
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(
                m.get("subPath").is_none(),
                "{what}: subPath mounts never see rotated secrets"
            );
        }
        let secret_volumes = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v.get("secret").is_some())
            .count();
        assert!(secret_volumes >= 1, "{what}: secrets as volumes");
    }
}

#[test]
fn terraform_parses_and_passes_checkov_with_reasons_for_every_skip() {
    let tf = files(&root().join("infra"), &["tf"]);
    assert!(tf.len() >= 5, "{tf:?}");
    for f in &tf {
        hcl(f);
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines().filter(|l| l.contains("checkov:skip=")) {
            let rest = line.split("checkov:skip=").nth(1).unwrap();
            let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
            assert!(id.starts_with("CKV_") || id.starts_with("CKV2_"), "{line}");
            assert!(
                reason.trim().len() > 20,
                "{}: skip {id} needs a written reason",
                f.display()
            );
        }
    }
    let out = Command::new("checkov")
        .args(["-d"])
        .arg(root().join("infra"))
        .args([
            "--framework",
            "terraform",
            "--compact",
            "--quiet",
            "--skip-download",
            "-o",
            "json",
        ])
        .output()
        .expect("checkov on PATH (scripts/test installs it)");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let summary = &report["summary"];
    assert_eq!(
        summary["failed"],
        0,
        "{}",
        serde_json::to_string_pretty(&report["results"]["failed_checks"]).unwrap()
    );
    assert!(summary["passed"].as_u64().unwrap() > 50, "{summary}");
}

/// python-hcl2 wraps attribute values in a one-element list (in some versions).
fn attr(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.len() == 1 && a[0].is_array() => a[0].clone(),
        other => other.clone(),
    }
}

/// knative/base/functions.yaml is what `relay manifests knative` writes for
/// the base config, byte for byte (generated, never hand-copied); the
/// generator's output for every provider of the table passes the CRD
/// schemas, each Trigger taking exactly its function's route attribute; the
/// router takes every event once and never its own replies; and the
/// Terraform names only providers of the table.
#[test]
fn functions_manifests_and_terraform_agree() {
    let table: Vec<&str> = relay::PROVIDERS.iter().map(|r| r.name).collect();
    let providers: BTreeSet<String> = table.iter().map(|n| n.to_string()).collect();
    let generated = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args([
            "manifests",
            "knative",
            "--config",
            "knative/base/config/relay.yaml",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let on_disk = std::fs::read_to_string(root().join("knative/base/functions.yaml")).unwrap();
    assert_eq!(
        on_disk,
        String::from_utf8_lossy(&generated.stdout),
        "knative/base/functions.yaml is stale: relay manifests knative --config knative/base/config/relay.yaml > knative/base/functions.yaml"
    );

    // Every provider of the table, generated and checked against the schemas.
    let all = relay::manifests::knative(&table, "all.yaml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    std::fs::write(&file, &all).unwrap();
    validate_manifests(std::slice::from_ref(&file));
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&all)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(docs.len(), 2 * table.len());
    for (row, pair) in relay::PROVIDERS.iter().zip(docs.chunks(2)) {
        let (svc, trg) = (&pair[0], &pair[1]);
        let want = format!("relay-{}", row.name);
        assert_eq!(
            (name(svc).as_str(), name(trg).as_str()),
            (want.as_str(), want.as_str())
        );
        assert_eq!(service_env(svc, "RELAY_FUNCTION"), Some(row.name));
        assert_eq!(
            svc["spec"]["template"]["spec"]["containers"][0]["image"], "tekton-relay/relay",
            "{want}: every function runs the one image"
        );
        assert_eq!(
            trg["spec"]["filter"],
            json!({"attributes": {relay::router::route_attribute(row.name): "true"}}),
            "{want}: only events routed to it"
        );
        assert_eq!(trg["spec"]["subscriber"]["ref"]["name"], want.as_str());
    }

    let docs = knative_docs();
    let base = |f: &Path| f.to_string_lossy().contains("knative/base");
    let services: Vec<&Value> = docs
        .iter()
        .filter(|(f, d)| {
            base(f) && d["kind"] == "Service" && d["apiVersion"] == "serving.knative.dev/v1"
        })
        .map(|(_, d)| d)
        .collect();
    let router = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Trigger" && d["metadata"]["name"] == "relay-router")
        .map(|(_, d)| d)
        .expect("the router's Trigger");
    assert_eq!(
        router["spec"]["filters"][1],
        json!({"not": {"exact": {relay::router::ROUTED_ATTRIBUTE: "true"}}}),
        "the router's replies are not routed again"
    );
    let dead_letter_sink = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Broker")
        .map(|(_, d)| {
            d["spec"]["delivery"]["deadLetterSink"]["ref"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap();
    assert!(services.iter().any(|s| name(s) == dead_letter_sink));
    // The dead-letter function replays to every provider of the table.
    let dlq = services.iter().find(|s| name(s) == "relay-dlq").unwrap();
    assert_eq!(service_env(dlq, "RELAY_DLQ_SUBSCRIBERS"), Some("*"));

    // Terraform: the operator names the functions (no default list to keep
    // in step); every name the examples and docs use is in the table.
    let vars = hcl(&root().join("infra/modules/relay/variables.tf"));
    let var = vars["variable"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v.get("provider_functions"))
        .expect("variable provider_functions")
        .clone();
    assert!(
        var.get("default").is_none(),
        "provider_functions has no default list to drift from the table"
    );
    let example = hcl(&root().join("infra/examples/basic/main.tf"));
    let module = &example["module"][0]["relay"];
    let used: BTreeSet<String> =
        serde_json::from_value(attr(&module["provider_functions"])).unwrap();
    assert!(!used.is_empty());
    for u in &used {
        assert!(
            providers.contains(u),
            "infra/examples names {u}, not in the table"
        );
    }
    let main = std::fs::read_to_string(root().join("infra/modules/relay/main.tf")).unwrap();
    assert!(
        main.contains("RELAY_FUNCTION = each.key")
            && main.contains(r#"RELAY_FUNCTION     = "ingress""#),
        "every Lambda runs the one artifact as its function"
    );
    for needle in [
        r#"resource "aws_lambda_function" "provider""#,
        r#"resource "aws_cloudwatch_event_rule" "provider""#,
        r#"resource "aws_lambda_function" "ingress""#,
        r#"resource "aws_lambda_function_url" "ingress""#,
    ] {
        assert!(main.contains(needle), "infra/ lacks {needle}");
    }
}

/// Adding a provider touches four places: its module, its row (and
/// feature) in functions/Cargo.toml, its example, its doc page. Outside
/// those (docs/, examples/), only the one manifest list,
/// knative/base/functions.yaml, names a provider.
/// A name counts as a word of its own: `relay-gitea` names it,
/// `gitea.example.com` or `/bitbucket/` (a host, a path) do not.
#[test]
fn only_the_table_and_the_manifest_list_name_a_provider() {
    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let texts: Vec<(&str, String)> = listed
        .lines()
        .filter(|f| {
            let documentation =
                f.starts_with("docs/") || f.starts_with("examples/") || f.contains("/examples/");
            // The table, the manifest list, lock files; this test, which
            // names providers in its reasons below; and the end-to-end test
            // of the Knative install, whose user config is GitHub and Slack.
            let exempt = ["functions/Cargo.toml", "knative/base/functions.yaml"].contains(f)
                || f.ends_with("Cargo.lock")
                || f.ends_with("tests/it/deployables.rs")
                || f.ends_with("tests/it/knative_e2e.rs");
            !documentation && !exempt
        })
        .filter_map(|f| Some((f, std::fs::read_to_string(root().join(f)).ok()?)))
        .collect();
    // Named everywhere for reasons of their own: `webhook` and `log` are
    // the embedded default's providers and every test's; `cloudevents` is
    // also the protocol; `github` also the platform (its OpenAPI, github.com).
    let everywhere = ["webhook", "log", "cloudevents", "github"];
    // The event model reads which forge a repository URL belongs to.
    let forges = "shared/src/event/decode/scm.rs";
    let mut checked = 0;
    for row in relay::PROVIDERS {
        if everywhere.contains(&row.name) {
            continue;
        }
        checked += 1;
        let own = format!("functions/src/{}/", row.name.replace('-', "_"));
        let naming: Vec<&str> = texts
            .iter()
            .filter(|(f, _)| !f.starts_with(&own))
            .filter(|(f, _)| !(row.family == "git-host" && *f == forges))
            .filter(|(_, t)| names(t, row.name))
            .map(|(f, _)| *f)
            .collect();
        assert!(
            naming.is_empty(),
            "{} is named outside its module, the table and knative/base/functions.yaml: {naming:?}",
            row.name
        );
    }
    assert!(checked >= 15, "only {checked} providers checked");
}

/// Whether `text` has `name` as a word: not inside an identifier, a host
/// name (`name.example`) or a path (`/name`).
fn names(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let mut after = text[i + name.len()..].chars();
        let next = after.next();
        let inside = before.is_some_and(|c| word(c) || c == '.' || c == '/');
        let host = next == Some('.') && after.next().is_some_and(word);
        !inside && !next.is_some_and(word) && !host
    })
}

#[test]
fn a_provider_name_counts_as_a_word_not_as_a_host_or_path() {
    assert!(names("image: relay-gitea", "gitea"));
    assert!(names("`gitea` providers", "gitea"));
    assert!(!names("https://gitea.example.com", "gitea"));
    assert!(!names("/bitbucket/rest", "bitbucket"));
    assert!(!names("bitbucketserver", "bitbucket"));
    assert!(!names("relay_gitea::x", "gitea"));
}

/// The Terraform hands the functions the tracing and metrics settings under
/// the names the relay reads, export off by default.
#[test]
fn terraform_passes_tracing_and_metrics_settings_by_the_names_the_relay_reads() {
    let vars = hcl(&root().join("infra/modules/relay/variables.tf"));
    let default = |name: &str| {
        vars["variable"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v.get(name))
            .map(|v| match &v["default"] {
                // python-hcl2 wraps a scalar in a one-element list.
                Value::Array(a) if a.len() == 1 => a[0].clone(),
                other => other.clone(),
            })
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(default("otlp_endpoint"), "", "export is off by default");
    assert_eq!(default("metrics_namespace"), "TektonRelay");
    let module = hcl(&root().join("infra/modules/relay/main.tf"));
    let environment = module["locals"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l.get("environment"))
        .map(|v| attr(v).to_string())
        .expect("locals.environment");
    for (setting, variable) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "var.otlp_endpoint"),
        ("RELAY_METRICS_NAMESPACE", "var.metrics_namespace"),
    ] {
        assert!(
            environment.contains(setting) && environment.contains(variable),
            "{setting} = {variable} missing from {environment}"
        );
    }
    // The names are the ones the code reads.
    let otel = std::fs::read_to_string(root().join("shared/src/delivery/otel.rs")).unwrap();
    let emf = std::fs::read_to_string(root().join("shared/src/host/emf.rs")).unwrap();
    assert!(otel.contains("\"OTEL_EXPORTER_OTLP_ENDPOINT\""));
    assert!(emf.contains("\"RELAY_METRICS_NAMESPACE\""));
}

/// SECURITY.md names, for every attack, the tests that perform it: each
/// named test exists (a renamed or deleted test breaks the table here).
#[test]
fn every_test_security_md_names_exists() {
    let text = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    let start = text
        .find("## Attacks performed by the tests")
        .expect("SECURITY.md lists the attacks the tests perform");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut fns = BTreeSet::new();
    for dir in ["shared", "functions", "tests"] {
        for f in files(&root().join(dir), &["rs"]) {
            let src = std::fs::read_to_string(&f).unwrap();
            for line in src.lines() {
                let line = line.trim_start();
                let line = line.strip_prefix("async ").unwrap_or(line);
                if let Some(rest) = line.strip_prefix("fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    fns.insert(name);
                }
            }
        }
    }
    let mut named = 0;
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
    {
        let tests = row.rsplit('|').nth(1).unwrap_or("");
        for quoted in tests.split('`').skip(1).step_by(2) {
            // `path::name` or `name`; file paths and globs are not test names.
            let name = quoted.rsplit("::").next().unwrap();
            if name.contains(['/', '.', '*', ' ', '-']) || name.matches('_').count() < 3 {
                continue;
            }
            named += 1;
            assert!(
                fns.contains(name),
                "SECURITY.md names a test that does not exist: {name}"
            );
        }
    }
    assert!(named >= 30, "only {named} tests named");
}

/// knative/components/oidc: with Knative's OIDC sender identity, every
/// function the Broker calls (router, providers, relay-dlq) verifies the
/// Broker's token, and the Broker asks for one per subscriber and for the
/// dead-letter sink. Rendered with the base, validated, and the setting it
/// adds run: a function started with it refuses a request without a token
/// and a token of another namespace's service account, and takes the
/// Trigger's.
#[tokio::test]
async fn the_oidc_component_makes_broker_facing_functions_verify_the_brokers_token() {
    let checkout = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("knative"), checkout.path().join("knative")).unwrap();
    std::fs::create_dir(checkout.path().join("deploy")).unwrap();
    std::fs::write(
        checkout.path().join("deploy/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../knative/base]\ncomponents: [../knative/components/oidc]\n",
    )
    .unwrap();
    let text = kubectl_kustomize(&checkout.path().join("deploy"));
    let file = checkout.path().join("rendered.yaml");
    std::fs::write(&file, &text).unwrap();
    validate_manifests(std::slice::from_ref(&file));
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .collect();
    let mut setting = None;
    for d in docs
        .iter()
        .filter(|d| d["apiVersion"] == "serving.knative.dev/v1")
    {
        let name = d["metadata"]["name"].as_str().unwrap();
        let auth = service_env(d, "RELAY_INBOUND_AUTH");
        if name == "relay-ingress" {
            assert_eq!(auth, None, "the ingress keeps its own front-door auth");
            continue;
        }
        let auth = auth.unwrap_or_else(|| panic!("{name} does not verify the Broker's token"));
        let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["configMap"]["name"] == "relay-oidc-jwks"),
            "{name}"
        );
        setting = Some(auth.to_string());
    }
    for d in docs.iter().filter(|d| d["kind"] == "Trigger") {
        assert_eq!(d["spec"]["subscriber"]["audience"], "tekton-relay", "{d}");
    }
    let broker = docs.iter().find(|d| d["kind"] == "Broker").unwrap();
    assert_eq!(
        broker["spec"]["delivery"]["deadLetterSink"]["audience"],
        "tekton-relay"
    );

    // The setting, run: the JWKS holds one key; tokens are signed with it.
    let setting = setting.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let secret = b"the-cluster-issuer-key-0123456789abcdef";
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "oct", "kid": "issuer-1", "alg": "HS256", "k": k}]}).to_string(),
    )
    .unwrap();
    let setting = setting.replace("/etc/relay-oidc/jwks.json", jwks.to_str().unwrap());
    let config = "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {store: memory, deadLetter: respond}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: out}\nspec: {type: log}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: all}\nspec: {providerRef: {name: out}}\n";
    let (_f, base) = relay_tests::process::FunctionProcess::start_http(
        relay_tests::process::Binary::function(env!("CARGO_BIN_EXE_relay"), "log"),
        config,
        &[("RELAY_INBOUND_AUTH".into(), setting)],
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let token = |sub: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("issuer-1".into());
        jsonwebtoken::encode(
            &header,
            &json!({"aud": "tekton-relay", "iss": "https://kubernetes.default.svc.cluster.local",
                "sub": sub, "iat": now, "exp": now + 600}),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let client = reqwest::Client::new();
    let send = |bearer: Option<String>, id: &str| {
        let f = relay_tests::fixtures::fresh_pipelinerun(id);
        let mut req = client.post(format!("{base}/")).body(f.body_bytes());
        for (k, v) in f.send_headers() {
            req = req.header(k, v);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None, "oidc-none").await, 401);
    assert_eq!(
        send(
            Some(token("system:serviceaccount:ci:default")),
            "oidc-other"
        )
        .await,
        401
    );
    assert_eq!(
        send(
            Some(token("system:serviceaccount:tekton-relay:oidc-relay-log")),
            "oidc-broker"
        )
        .await,
        200
    );
}

/// Every resource of `kind` in `main`, as (name, attributes with
/// python-hcl2's one-element lists unwrapped).
fn resources(main: &Value, kind: &str) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    for r in main["resource"].as_array().unwrap() {
        if let Some(m) = r.get(kind).and_then(Value::as_object) {
            for (name, body) in m {
                let attrs = body
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), attr(v)))
                    .map(|(k, v)| match v {
                        Value::Array(a) if a.len() == 1 => (k, a[0].clone()),
                        v => (k, v),
                    })
                    .collect();
                out.push((name.clone(), attrs));
            }
        }
    }
    out
}

/// AWS's rule for a public Function URL (auth type NONE): the function's
/// resource policy must let anyone invoke it through the URL, with both
/// `lambda:InvokeFunctionUrl` (for auth type NONE) and, since October 2025,
/// `lambda:InvokeFunction` (invoked via the Function URL); without either,
/// every request is answered 403
/// (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). Checked
/// for every Function URL of the module, so the mistake cannot return; and
/// the provider that has `invoked_via_function_url` (6.29) is required.
#[test]
fn every_public_function_url_has_both_permissions_aws_requires() {
    let main = hcl(&root().join("infra/modules/relay/main.tf"));
    let urls = resources(&main, "aws_lambda_function_url");
    let permissions = resources(&main, "aws_lambda_permission");
    assert!(!urls.is_empty());
    for (name, url) in &urls {
        if url["authorization_type"] != "NONE" {
            continue;
        }
        let function = &url["function_name"];
        let grants = |action: &str, condition: (&str, Value)| {
            permissions.iter().any(|(_, p)| {
                p["function_name"] == *function
                    && p["action"] == action
                    && p["principal"] == "*"
                    && p.get(condition.0) == Some(&condition.1)
                    && !p.contains_key("source_arn")
            })
        };
        assert!(
            grants(
                "lambda:InvokeFunctionUrl",
                ("function_url_auth_type", json!("NONE"))
            ),
            "Function URL {name}: no lambda:InvokeFunctionUrl for principal * with function_url_auth_type NONE"
        );
        assert!(
            grants(
                "lambda:InvokeFunction",
                ("invoked_via_function_url", json!(true))
            ),
            "Function URL {name}: no lambda:InvokeFunction for principal * invoked via the Function URL"
        );
    }
    for f in [
        "infra/modules/relay/versions.tf",
        "infra/examples/basic/main.tf",
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        assert!(
            text.contains(r#"version = ">= 6.29""#),
            "{f}: aws provider 6.29 or later"
        );
    }
}

/// Only functions with work are invoked: each provider function's rule
/// matches the mark the ingress sets for it (`detail.relay<function>`:
/// `relay` and the letters and digits of its name, as
/// `relay::router::route_attribute` writes it) and nothing else; the
/// ingress really sets it (ingress::on_lambda_events_reach_eventbridge_intact_or_trimmed).
/// Reserved concurrency is optional (unset by default: accounts with a low
/// quota can apply), the functions can run in a VPC with the role to do it,
/// the dead-letter queue has an alarm, and the module is `terraform fmt`
/// clean where a terraform binary is installed.
#[test]
fn terraform_routes_by_the_ingress_mark_and_installs_anywhere() {
    let main_tf = std::fs::read_to_string(root().join("infra/modules/relay/main.tf")).unwrap();
    let main = hcl(&root().join("infra/modules/relay/main.tf"));
    let pattern = main["locals"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l.get("events_pattern"))
        .map(|v| attr(v).to_string())
        .expect("locals.events_pattern");
    assert!(
        pattern.contains(r#"'relay${replace(f, \"/[^a-z0-9]/\", \"\")}': ['true']"#),
        "{pattern}"
    );
    for row in relay::PROVIDERS {
        // What Terraform's replace(f, "/[^a-z0-9]/", "") makes of the name.
        let terraform: String = row
            .name
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .collect();
        assert_eq!(
            format!("relay{terraform}"),
            relay::router::route_attribute(row.name)
        );
    }
    let rules = resources(&main, "aws_cloudwatch_event_rule");
    assert_eq!(
        rules[0].1["event_pattern"], "${local.events_pattern[each.key]}",
        "each function's rule has its own pattern"
    );

    let vars = hcl(&root().join("infra/modules/relay/variables.tf"));
    let var = |name: &str| {
        vars["variable"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v.get(name))
            .cloned()
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    let reserved = attr(&var("reserved_concurrency")["default"]);
    assert!(
        reserved == Value::Null || reserved == json!([null]),
        "reserved concurrency is unset by default: {reserved}"
    );
    for v in [
        "vpc_subnet_ids",
        "vpc_security_group_ids",
        "alarm_topic_arn",
    ] {
        var(v);
    }
    assert!(main_tf.contains("dynamic \"vpc_config\""));
    assert!(main_tf.contains("AWSLambdaVPCAccessExecutionRole"));
    let alarms = resources(&main, "aws_cloudwatch_metric_alarm");
    let (_, alarm) = alarms
        .iter()
        .find(|(n, _)| n == "dead_letters")
        .expect("an alarm on the dead-letter queue");
    assert_eq!(alarm["metric_name"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(alarm["namespace"], "AWS/SQS");
    // Each failed invocation reaches the queue once: by the on-failure
    // destination, not also by a DeadLetterConfig.
    assert!(
        !main_tf.contains("dead_letter_config"),
        "a failure would be on the dead-letter queue twice"
    );
    let invoke = resources(&main, "aws_lambda_function_event_invoke_config");
    let on_failure = &invoke[0].1["destination_config"]["on_failure"];
    assert!(
        on_failure
            .to_string()
            .contains("${aws_sqs_queue.dead_letters.arn}"),
        "{on_failure}"
    );
    assert!(
        !main_tf.contains("ingress_token_ssm_parameter"),
        "no variable that nothing uses"
    );

    if let Ok(out) = Command::new("terraform")
        .args(["fmt", "-check", "-recursive"])
        .arg(root().join("infra"))
        .output()
    {
        assert!(
            out.status.success(),
            "terraform fmt would change: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Every `ssm://` or `secretsmanager://` reference in `v` (a Provider's
/// settings, an inboundAuth).
fn secret_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.starts_with("ssm://") || s.starts_with("secretsmanager://") => {
            out.insert(s.clone());
        }
        Value::Object(m) => m.values().for_each(|x| secret_refs(x, out)),
        Value::Array(a) => a.iter().for_each(|x| secret_refs(x, out)),
        _ => {}
    }
}

/// The example install: the config it publishes validates, and each
/// function is granted exactly the secrets its Providers (the ingress: its
/// inboundAuth) name in that config — no function can read another's; the
/// module turns each reference into the ARN IAM needs, and the functions
/// read the published config.
#[test]
fn each_function_may_read_exactly_the_secrets_its_config_names() {
    let dir = root().join("infra/examples/basic");
    let text = std::fs::read_to_string(dir.join("relay.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .collect();
    let mut named: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for d in &docs {
        match d["kind"].as_str().unwrap() {
            "Provider" => {
                let t = d["spec"]["type"].as_str().unwrap().to_string();
                secret_refs(&d["spec"], named.entry(t).or_default());
            }
            "RelayConfig" => {
                secret_refs(
                    &d["spec"]["inboundAuth"],
                    named.entry("ingress".into()).or_default(),
                );
            }
            _ => {}
        }
    }
    named.retain(|_, refs| !refs.is_empty());
    assert!(named.len() >= 3, "{named:?}");

    let example = hcl(&dir.join("main.tf"));
    let module = &example["module"][0]["relay"];
    let secrets = match attr(&module["secrets"]) {
        Value::Array(a) if a.len() == 1 => a[0].clone(),
        other => other,
    };
    let granted: std::collections::BTreeMap<String, BTreeSet<String>> =
        serde_json::from_value(secrets).unwrap();
    assert_eq!(
        granted, named,
        "secrets granted differ from those the config names"
    );
    assert_eq!(module["config_file"], json!(["${path.root}/relay.yaml"]));

    let main = std::fs::read_to_string(root().join("infra/modules/relay/main.tf")).unwrap();
    for needle in [
        // ssm://a/b is the parameter /a/b; a secret's name gets AWS's suffix.
        r#"format("${local.arn_prefix}:parameter/%s", "ssm", trimprefix(trimprefix(r, "ssm://"), "/"))"#,
        r##"format("${local.arn_prefix}:secret:%s-??????", "secretsmanager", split("#", trimprefix(r, "secretsmanager://"))[0])"##,
        r#"RELAY_CONFIG            = "ssm://${trimprefix(local.config_parameter, "/")}""#,
        r#"resource "aws_ssm_parameter" "config""#,
        r#"resources = concat(local.secret_arns[each.key].ssm, local.secret_arns[each.key].ssm_arns)"#,
        r#"resources = local.secret_arns[each.key].secretsmanager"#,
    ] {
        assert!(
            main.contains(needle),
            "infra/modules/relay/main.tf lacks {needle}"
        );
    }
}

/// One build command for the Lambda artifacts, `scripts/lambda`, named the
/// same way by the docs, the example and the module; no config or secret
/// packaged into a zip any more; the flags shown exist; the artifacts it
/// writes are the ones the module deploys.
#[test]
fn one_lambda_build_command_everywhere() {
    let help = Command::new(root().join("scripts/lambda"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for f in [
        "docs/deploy-aws.md",
        "infra/examples/basic/main.tf",
        "infra/modules/relay/variables.tf",
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        assert!(
            text.contains("scripts/lambda"),
            "{f} does not name scripts/lambda"
        );
        assert!(
            !text.contains("--include"),
            "{f} still packages files into the zip"
        );
        for line in text.lines().filter(|l| l.contains("scripts/lambda")) {
            for flag in line.split_whitespace().filter(|w| w.starts_with("--")) {
                let flag = flag.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
                assert!(help.contains(flag), "{f}: scripts/lambda has no {flag}");
            }
        }
    }
    let script = std::fs::read_to_string(root().join("scripts/lambda")).unwrap();
    let main = std::fs::read_to_string(root().join("infra/modules/relay/main.tf")).unwrap();
    for artifact in ["providers", "ingress"] {
        assert!(
            main.contains(&format!(
                "${{var.artifacts_dir}}/{artifact}/relay/bootstrap.zip"
            )),
            "{artifact}"
        );
    }
    assert!(script.contains(r#"--lambda-dir "$out/$artifact""#));
    assert!(script.contains("for artifact in providers ingress"));
}
