//! docs/deploy-knative.md, step by step, without a cluster: every YAML
//! block renders, every command is one this test knows how to check, and
//! each refers only to what exists — the kustomization it applies renders
//! and validates, the Secrets it creates are the ones the manifests mount,
//! the labels, containers, volumes and URLs it names are in the rendered
//! manifests, the `relay` commands run, the script takes the flags shown.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use relay_tests::shell::{commands, words};
use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The fenced blocks of `lang` in `text`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(l)) if l.trim() == lang => current = Some(String::new()),
            (Some(b), Some(_)) => {
                out.push(std::mem::take(b));
                current = None;
            }
            (Some(b), None) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn docs_of(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl on PATH: it renders the kustomizations");
    assert!(
        out.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of option `name` (`-n x`, `--name=x`, `--name x`).
fn option<'a>(w: &'a [String], names: &[&str]) -> Option<&'a str> {
    w.iter().enumerate().find_map(|(i, a)| {
        names.iter().find_map(|n| {
            if a == n {
                w.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix(&format!("{n}="))
            }
        })
    })
}

/// Every Secret the rendered manifests use, with the keys they read where
/// they say (secretKeyRef); a volume reads any key.
fn secrets_used(docs: &[Value]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(String, Option<String>)>) {
        match v {
            Value::Object(m) => {
                if let Some(name) = m.get("secretName").and_then(Value::as_str) {
                    out.push((name.to_string(), None));
                }
                if let Some(r) = m.get("secretKeyRef") {
                    out.push((
                        r["name"].as_str().unwrap().to_string(),
                        r["key"].as_str().map(str::to_string),
                    ));
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    docs.iter().for_each(|d| walk(d, &mut out));
    out
}

#[test]
fn every_step_of_the_knative_guide_refers_to_what_exists() {
    let guide = std::fs::read_to_string(root().join("docs/deploy-knative.md")).unwrap();

    // The user's kustomization (`deploy/`), beside a checkout: rendered,
    // validated, every function on the registry's image.
    let yaml = blocks(&guide, "yaml");
    let deploy = yaml
        .iter()
        .find(|b| b.starts_with("# deploy/kustomization.yaml"))
        .expect("the guide shows deploy/kustomization.yaml");
    let checkout = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("knative"), checkout.path().join("knative")).unwrap();
    std::fs::create_dir(checkout.path().join("deploy")).unwrap();
    std::fs::write(checkout.path().join("deploy/kustomization.yaml"), deploy).unwrap();
    let rendered = kustomize(&checkout.path().join("deploy"));
    let docs = docs_of(&rendered);
    let mut images = BTreeSet::new();
    for d in docs
        .iter()
        .filter(|d| d["apiVersion"] == "serving.knative.dev/v1")
    {
        images.insert(
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        images.into_iter().collect::<Vec<_>>(),
        ["registry.example.com/tekton/relay:0.1.0"]
    );
    let namespace = "tekton-relay";
    let secrets = secrets_used(&docs);

    let mut checked = 0;
    let mut jwks_file: Option<String> = None;
    for command in commands(&guide) {
        let command = command.as_str();
        let w = words(command);
        let what = format!("docs/deploy-knative.md: {command}");
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["scripts/images", flags @ ..] => {
                let help = Command::new(root().join("scripts/images"))
                    .arg("--help")
                    .output()
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(help.status.success(), "{what}");
                let help = String::from_utf8_lossy(&help.stdout).into_owned()
                    + &String::from_utf8_lossy(&help.stderr);
                for f in flags.iter().filter(|f| f.starts_with("--")) {
                    assert!(help.contains(*f), "{what}: scripts/images has no {f}");
                }
            }
            ["relay", "validate", files @ ..] => {
                let out = Command::new(BIN)
                    .arg("validate")
                    .args(files)
                    .current_dir(root())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{what}");
            }
            [
                "relay",
                "manifests",
                "knative",
                "--config",
                config,
                ">",
                target,
            ] => {
                let out = Command::new(BIN)
                    .args(["manifests", "knative", "--config", config])
                    .current_dir(root())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{what}");
                assert_eq!(
                    std::fs::read(root().join(target)).unwrap(),
                    out.stdout,
                    "{what}: {target} is not what the command writes"
                );
            }
            ["kubectl", "create", "namespace", ns] => assert_eq!(*ns, namespace),
            ["kubectl", "get", "--raw", "/openid/v1/jwks", ">", file] => {
                jwks_file = Some(file.to_string());
            }
            ["kubectl", "-n", ns, "create", "configmap", name, from] => {
                // The issuer's keys, for the OIDC component: the
                // file just fetched, under the name the component
                // mounts and the key its setting reads.
                assert_eq!(*ns, namespace, "{what}");
                let oidc = std::fs::read_to_string(
                    root().join("knative/components/oidc/kustomization.yaml"),
                )
                .unwrap();
                let file = jwks_file.as_deref().expect("the keys fetched first");
                assert_eq!(*from, format!("--from-file={file}"), "{what}");
                assert!(oidc.contains(&format!("name: {name}")), "{what}");
                assert!(oidc.contains(&format!("/etc/relay-oidc/{file}")), "{what}");
            }
            [
                "kubectl",
                "-n",
                ns,
                "create",
                "secret",
                "generic",
                name,
                rest @ ..,
            ] => {
                assert_eq!(*ns, namespace, "{what}");
                let key = rest
                    .iter()
                    .find_map(|a| {
                        a.strip_prefix("--from-literal=")
                            .or_else(|| a.strip_prefix("--from-file="))
                    })
                    .and_then(|kv| kv.split_once('='))
                    .map(|(k, _)| k.to_string())
                    .unwrap_or_else(|| panic!("{what}: no key"));
                // A provider's Secret (relay-<function>) is mounted
                // whole by its function; the others by the base.
                let provider = name
                    .strip_prefix("relay-")
                    .is_some_and(|p| relay::PROVIDERS.iter().any(|r| r.name == p));
                assert!(
                    provider
                        || secrets
                            .iter()
                            .any(|(n, k)| { n == name && k.as_ref().is_none_or(|k| *k == key) }),
                    "{what}: no manifest reads Secret {name} key {key}"
                );
            }
            ["kubectl", "apply" | "delete", "-k", dir] => {
                assert_eq!(dir.trim_end_matches('/'), "deploy", "{what}");
            }
            ["kubectl", "apply", "-f", file] => {
                assert!(root().join(file).is_file(), "{what}");
            }
            ["kubectl", "-n", ns, "get", kinds] => {
                assert_eq!(*ns, namespace, "{what}");
                for kind in kinds.split(',') {
                    let k = match kind {
                        "ksvc" => "Service",
                        "trigger" => "Trigger",
                        "broker" => "Broker",
                        other => panic!("{what}: unknown kind {other}"),
                    };
                    assert!(docs.iter().any(|d| d["kind"] == k), "{what}");
                }
            }
            ["kubectl", "-n", ns, "logs", ..] => {
                assert_eq!(*ns, namespace, "{what}");
                let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
                let (k, v) = option(&w, &["-l"]).unwrap().split_once('=').unwrap();
                let container = option(&w, &["-c"]).unwrap();
                assert!(
                    docs.iter().any(|d| {
                        let t = &d["spec"]["template"];
                        t["metadata"]["labels"][k] == v
                            && t["spec"]["containers"][0]["name"] == container
                    }),
                    "{what}: no pod labelled {k}={v} with container {container}"
                );
            }
            ["kubectl", "-n", ns, "delete", "pvc", pvc] => {
                assert_eq!(*ns, namespace, "{what}");
                // <claim template>-<StatefulSet>-<ordinal>
                let set = docs
                    .iter()
                    .find(|d| d["kind"] == "StatefulSet")
                    .expect("a StatefulSet");
                let claim = set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
                    .as_str()
                    .unwrap();
                let name = set["metadata"]["name"].as_str().unwrap();
                assert_eq!(*pvc, format!("{claim}-{name}-0"), "{what}");
            }
            ["kubectl", "-n", ns, "run", _, ..] => {
                assert_eq!(*ns, namespace, "{what}");
                let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
                let pod: Value =
                    serde_json::from_str(option(&w, &["--overrides"]).expect("--overrides"))
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                let secret = pod["spec"]["volumes"][0]["secret"]["secretName"]
                    .as_str()
                    .unwrap();
                assert!(secrets.iter().any(|(n, _)| n == secret), "{what}");
                let script = pod["spec"]["containers"][0]["command"][2].as_str().unwrap();
                // The dead-letter API of relay-dlq, with the key the
                // function reads its token from (config/dlq.yaml).
                assert!(
                    script.contains(&format!(
                        "http://relay-dlq.{namespace}.svc.cluster.local/api/v1/dlq"
                    )),
                    "{what}"
                );
                let dlq =
                    std::fs::read_to_string(root().join("knative/base/config/dlq.yaml")).unwrap();
                assert!(
                    dlq.contains("/var/run/secrets/relay/dlq/api-token")
                        && script.contains("/token/api-token"),
                    "{what}"
                );
                // A Pod Kubernetes accepts.
                let mut full = pod.clone();
                full["kind"] = "Pod".into();
                full["metadata"] = serde_json::json!({"name": "dlq-list"});
                let dir = tempfile::tempdir().unwrap();
                let f = dir.path().join("pod.yaml");
                std::fs::write(&f, full.to_string()).unwrap();
                let out = Command::new("kubernetes-validate")
                    .args(["--strict", "--kubernetes-version", "1.30.0"])
                    .arg(&f)
                    .output()
                    .expect("kubernetes-validate on PATH");
                assert!(
                    out.status.success(),
                    "{what}: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            _ => panic!("{what}: a command this test does not check"),
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} commands checked");
}
