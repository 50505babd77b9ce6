//! The deployables, checked without a cluster or an AWS account: Knative
//! manifests against the real CRD schemas, the kustomizations built, the
//! Terraform parsed and scanned by checkov, and functions/, knative/ and
//! infra/ consistent with one another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

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

/// Every YAML document under knative/, with the file it came from.
fn knative_docs() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for f in files(&root().join("knative"), &["yaml", "yml"]) {
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

#[test]
fn every_knative_manifest_passes_the_crd_schemas() {
    let manifests: Vec<PathBuf> = files(&root().join("knative"), &["yaml", "yml"])
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .filter(|f| !is_example(f))
        .collect();
    assert!(manifests.len() >= 8, "{manifests:?}");
    let out = Command::new(python())
        .arg(shared_tools().join("validate-manifests"))
        .args(&manifests)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().count() >= 10);
    assert!(
        stdout
            .lines()
            .all(|l| l.ends_with(": OK") || l.ends_with("checked (core, light)")),
        "{stdout}"
    );
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

#[test]
fn kustomizations_build_and_their_output_validates() {
    let kustomizations = ["knative/base", "knative/overlays/valkey"];
    let has_kubectl = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    for k in kustomizations {
        let dir = root().join(k);
        // Every resource and patch a kustomization names exists.
        let kz: Value = serde_json::to_value(
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
                &std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        for r in kz["resources"].as_array().unwrap() {
            assert!(dir.join(r.as_str().unwrap()).exists(), "{k}: {r}");
        }
        for p in kz["patches"].as_array().into_iter().flatten() {
            assert!(dir.join(p["path"].as_str().unwrap()).exists(), "{k}: {p}");
        }
        if !has_kubectl {
            eprintln!("kubectl not found: {k} checked for its files only");
            continue;
        }
        let built = Command::new("kubectl")
            .args(["kustomize"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &built.stdout).unwrap();
        let out = Command::new(python())
            .arg(shared_tools().join("validate-manifests"))
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{k}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&built.stdout);
        assert!(text.contains("namespace: tekton-relay"));
        if k.ends_with("valkey") {
            assert!(text.contains("store: \"valkey://"));
            assert!(
                !text.contains("max-scale: \"1\""),
                "the overlay scales every function out"
            );
        }
    }
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
    let configmap = docs
        .iter()
        .find(|(f, d)| d["kind"] == "ConfigMap" && f.ends_with("knative/base/configmap.yaml"))
        .map(|(_, d)| d.clone())
        .expect("knative/base/configmap.yaml");
    let config_of = |svc: &Value| -> Value {
        let path = service_env(svc, "RELAY_CONFIG").expect("RELAY_CONFIG");
        let key = path
            .strip_prefix("/etc/relay/")
            .expect("mounted at /etc/relay");
        let text = configmap["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}"));
        let first = serde_yaml_ng::Deserializer::from_str(text).next().unwrap();
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

fn hcl(file: &Path) -> Value {
    let out = Command::new(python())
        .args([
            "-c",
            "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-hcl2 cannot parse {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
            assert!(id.starts_with("CKV_"), "{line}");
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

/// Function roles: provider functions get a Service, Trigger, Lambda and rule.
const SPECIAL: &[&str] = &["relay", "ingress", "dlq"];

#[test]
fn functions_manifests_and_terraform_agree() {
    let functions: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| root().join("functions").join(n).join("Cargo.toml").exists())
        .collect();
    let providers: BTreeSet<String> = functions
        .iter()
        .filter(|f| !SPECIAL.contains(&f.as_str()))
        .cloned()
        .collect();
    assert!(providers.contains("webhook"));

    let docs = knative_docs();
    let named = |kind: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|(f, d)| d["kind"] == kind && !f.to_string_lossy().contains("overlays"))
            .filter(|(_, d)| d["apiVersion"] == "serving.knative.dev/v1")
            .map(|(_, d)| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let services = named("Service");
    let triggers: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Trigger" && d["apiVersion"] == "eventing.knative.dev/v1")
        .map(|(_, d)| {
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                d["spec"]["subscriber"]["ref"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    for p in &providers {
        let svc = format!("relay-{p}");
        assert!(
            services.contains(&svc),
            "functions/{p} has no Knative Service"
        );
        assert!(
            triggers.contains(&(svc.clone(), svc.clone())),
            "functions/{p} has no Trigger"
        );
    }
    for f in ["ingress", "dlq"] {
        if functions.contains(f) {
            assert!(
                services.contains(&format!("relay-{f}")),
                "functions/{f} has no Knative Service"
            );
        }
    }
    for s in &services {
        let f = s
            .strip_prefix("relay-")
            .unwrap_or_else(|| panic!("Service {s} is not relay-<function>"));
        assert!(
            functions.contains(f),
            "Knative Service {s} names no function"
        );
    }
    for (t, sub) in &triggers {
        assert!(
            services.contains(sub),
            "Trigger {t} subscribes a Service that does not exist"
        );
    }
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
    assert!(services.contains(&dead_letter_sink));

    // Terraform: one Lambda and one rule per provider function (for_each over
    // provider_functions), plus the ingress Lambda.
    let vars = hcl(&root().join("infra/modules/relay/variables.tf"));
    let listed: BTreeSet<String> = vars["variable"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v.get("provider_functions"))
        .map(|v| serde_json::from_value(attr(&v["default"])).unwrap())
        .unwrap();
    assert_eq!(
        listed, providers,
        "infra/ provider_functions must list exactly functions/<provider>"
    );
    let example = hcl(&root().join("infra/examples/basic/main.tf"));
    let module = &example["module"][0]["relay"];
    let used: BTreeSet<String> =
        serde_json::from_value(attr(&module["provider_functions"])).unwrap();
    assert_eq!(
        used, providers,
        "the example deploys every provider function"
    );
    // Flux events reach the same functions on both platforms: every
    // provider but the git hosts, which need a repository Flux does not name.
    let no_flux_knative: BTreeSet<String> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Trigger" && d["apiVersion"] == "eventing.knative.dev/v1")
        .filter(|(_, d)| !d["spec"].to_string().contains("io.fluxcd."))
        .map(|(_, d)| {
            let name = d["metadata"]["name"].as_str().unwrap();
            name.strip_prefix("relay-").unwrap_or(name).to_string()
        })
        .collect();
    let module = hcl(&root().join("infra/modules/relay/main.tf"));
    let locals = module["locals"].as_array().unwrap();
    let git_hosts: BTreeSet<String> = locals
        .iter()
        .find_map(|l| l.get("git_hosts"))
        .map(|v| serde_json::from_value(attr(v)).unwrap())
        .expect("infra/ names the git hosts that take no Flux events");
    assert_eq!(
        no_flux_knative, git_hosts,
        "Knative Triggers without io.fluxcd. and infra/ git_hosts differ"
    );
    let main = std::fs::read_to_string(root().join("infra/modules/relay/main.tf")).unwrap();
    for needle in [
        r#"resource "aws_lambda_function" "provider""#,
        r#"resource "aws_cloudwatch_event_rule" "provider""#,
        r#"resource "aws_lambda_function" "ingress""#,
        r#"resource "aws_lambda_function_url" "ingress""#,
    ] {
        assert!(main.contains(needle), "infra/ lacks {needle}");
    }
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
