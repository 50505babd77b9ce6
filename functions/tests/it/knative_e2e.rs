//! The Knative install, end to end, driven by its rendered manifests
//! (issue #15 item 5). A config of the user's (GitHub commit statuses for
//! PipelineRuns, Slack for failures) goes into a copy of `knative/base`;
//! `relay manifests knative` writes its functions; `kubectl kustomize`
//! renders the whole. Every Knative Service of the output then runs from
//! the image's root, as its Pod would (its env, args, volumes, user,
//! read-only root; `relay_tests::image`), two replicas of the GitHub
//! function behind one address; Valkey, with the password of its Secret,
//! keeps their state. The Broker stand-in (`relay_tests::broker`) reads the
//! rendered Broker and Triggers and delivers as Knative Eventing does. The
//! only liberty taken is the cluster's DNS: the manifests' cluster
//! addresses (Valkey, the subscribers `relay-dlq` replays to) are mapped to
//! where the test runs them, as kube-dns would map them.
//!
//! Tekton's fixture scenarios go through the ingress, each event sent as
//! Tekton re-sends (the same event again, concurrently, and with a new id).
//! Shown: every GitHub status and Slack message exactly once (the same as
//! one `relay serve` process gets from each event sent once); for every
//! event, the provider functions the Broker invoked are exactly those with
//! a Notification that wants it, none for an event nobody wants; a
//! permanent failure reaches `relay-dlq` with Knative's error attributes,
//! survives its restart, is listed by the API and replayed once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use relay_tests::balancer::Balancer;
use relay_tests::broker::{Broker, BrokerOptions, Manifests};
use relay_tests::fixtures::{RequestFile, Scenario};
use relay_tests::image::{Container, ContainerProcess, Image, Volume};
use relay_tests::process::RelayProcess;
use relay_tests::receiver::{Receiver, Recorded};
use relay_tests::servers::ValkeyServer;
use serde::Deserialize;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const NAMESPACE: &str = "tekton-relay";
const VALKEY_PASSWORD: &str = "valkey-password-0123456789abcdef";
const INGRESS_TOKEN: &str = "ingress-token-0123456789abcdefghij";
const DLQ_TOKEN: &str = "dlq-api-token-0123456789abcdefghij";
const GITHUB_TOKEN: &str = "ghp_e2e0123456789abcdefghijklmnopqrstu";
const SLACK_TOKEN: &str = "xoxb-e2e-0123456789-abcdefghijklmnop";
const SETTLE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The user's config: statuses for PipelineRuns, Slack for failures.
/// `secrets` is where the Secrets are mounted (the manifests' paths, or a
/// folder for the reference process).
fn user_config(store: &str, secrets: &str, github: &str, slack: &str) -> String {
    format!(
        r#"apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {{name: relay}}
spec:
  store: "{store}"
  deadLetter: respond
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {{name: gh}}
spec:
  type: github
  github: {{baseURL: "{github}/api/v3", tokenFile: {secrets}/github/token}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {{name: commit-status}}
spec:
  providerRef: {{name: gh}}
  action: status
  filter: {{kinds: [PipelineRun]}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {{name: chat}}
spec:
  type: slack
  slack: {{baseURL: "{slack}/api", tokenFile: {secrets}/slack/token, channel: C0123456789}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {{name: failures}}
spec:
  providerRef: {{name: chat}}
  filter: {{states: [failed]}}
"#
    )
}

/// A checkout with the user's config in knative/base, its functions
/// written by `relay manifests knative`, rendered by kubectl.
fn render(config: &str) -> String {
    let checkout = tempfile::tempdir().unwrap();
    let base = checkout.path().join("knative/base");
    copy_dir(&root().join("knative/base"), &base);
    std::fs::write(base.join("config/relay.yaml"), config).unwrap();
    let out = Command::new(BIN)
        .args([
            "manifests",
            "knative",
            "--config",
            "knative/base/config/relay.yaml",
        ])
        .current_dir(checkout.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(base.join("functions.yaml"), &out.stdout).unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("kubectl on PATH: it renders the manifests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The cluster's DNS for this test: each cluster address, where it runs here.
struct Dns(Vec<(String, String)>);

impl Dns {
    fn resolve(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (from, to) in &self.0 {
            t = t.replace(from, to);
        }
        t
    }
}

/// A Pod's container as the manifests say: env, args, `(mount path, volume)`.
type Pod = (Vec<(String, String)>, Vec<String>, Vec<(String, Volume)>);

/// One Knative Service of the rendered manifests, run as its Pods.
struct Service {
    name: String,
    replicas: Vec<ContainerProcess>,
    /// What its Pod spec says, to start it again.
    env: Vec<(String, String)>,
    args: Vec<String>,
    volumes: Vec<(String, Volume)>,
}

impl Service {
    fn url(&self) -> String {
        self.replicas[0].base.clone()
    }
}

/// Everything the rendered manifests declare, running.
struct Cluster {
    image: Image,
    services: BTreeMap<String, Service>,
    balancers: Vec<Balancer>,
}

impl Cluster {
    /// The Pod of `svc` (a rendered Knative Service) as a [`Container`]:
    /// its env (values mapped by `dns`; `extra` added, as a SinkBinding
    /// adds `K_SINK`), args, and volumes (ConfigMaps from the rendered
    /// manifests, Secrets from `secrets`); its security context must be
    /// what the image gives (user 65532, read-only root).
    fn pod(
        svc: &Value,
        all: &[Value],
        secrets: &HashMap<&str, Vec<(&str, &str)>>,
        dns: &Dns,
        extra: &[(String, String)],
        uid: u32,
    ) -> Pod {
        let spec = &svc["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let name = svc["metadata"]["name"].as_str().unwrap();
        assert_eq!(c["securityContext"]["runAsUser"], uid, "{name}");
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        let mut env: Vec<(String, String)> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let v = e["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: env {e} has no value"));
                (e["name"].as_str().unwrap().to_string(), dns.resolve(v))
            })
            .collect();
        for (k, v) in extra {
            env.retain(|(n, _)| n != k);
            env.push((k.clone(), v.clone()));
        }
        let args = c["args"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let mut volumes = Vec::new();
        for m in c["volumeMounts"].as_array().unwrap() {
            let vname = m["name"].as_str().unwrap();
            let v = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == vname)
                .unwrap();
            let volume = if let Some(cm) = v["configMap"]["name"].as_str() {
                let map = all
                    .iter()
                    .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm)
                    .unwrap_or_else(|| panic!("{name}: no ConfigMap {cm}"));
                let data: Vec<(String, String)> = map["data"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), dns.resolve(v.as_str().unwrap())))
                    .collect();
                let files: Vec<(&str, &str)> =
                    data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Volume::config_map(&files)
            } else {
                let secret = v["secret"]["secretName"].as_str().unwrap();
                match secrets.get(secret) {
                    Some(files) => Volume::secret(files),
                    None => {
                        assert_eq!(
                            v["secret"]["optional"], true,
                            "{name}: Secret {secret} is required and the test has none"
                        );
                        Volume::secret(&[])
                    }
                }
            };
            volumes.push((m["mountPath"].as_str().unwrap().to_string(), volume));
        }
        (env, args, volumes)
    }

    async fn start_replica(image: &Image, s: &Service) -> ContainerProcess {
        let env: Vec<(&str, &str)> = s
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let volumes: Vec<(&str, &Volume)> =
            s.volumes.iter().map(|(p, v)| (p.as_str(), v)).collect();
        image
            .start(Container {
                env: &env,
                args: &args,
                volumes: &volumes,
            })
            .await
    }

    /// Restarts every replica of `name` (a new Pod: same spec and volumes).
    async fn restart(&mut self, name: &str) {
        let s = self.services.get_mut(name).unwrap();
        let n = s.replicas.len();
        for r in &mut s.replicas {
            r.terminate();
        }
        s.replicas.clear();
        for _ in 0..n {
            let p = Cluster::start_replica(&self.image, s).await;
            s.replicas.push(p);
        }
    }
}

/// A request the fixtures describe, sent to the ingress with its token.
async fn send(client: &reqwest::Client, ingress: &str, f: &RequestFile) -> u16 {
    let mut req = client
        .post(format!("{ingress}/"))
        .bearer_auth(INGRESS_TOKEN)
        .body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The effects on a provider (what is not a read): the request line and
/// its body, counted.
fn effects(rx: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rx.requests().iter().filter(|r| r.method != "GET") {
        *out.entry(effect(r)).or_default() += 1;
    }
    out
}

fn effect(r: &Recorded) -> String {
    format!("{} {} {}", r.method, r.path, r.json())
}

/// The CloudEvent id, kind and state of a request file, as the relay
/// decodes it.
fn decoded(f: &RequestFile) -> Option<(String, String, String, bool)> {
    let mut headers = axum::http::HeaderMap::new();
    for (k, v) in f.send_headers() {
        headers.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let accepted = relay_core::ingress::parse_request(&headers, f.body_bytes().into())
        .and_then(relay_core::ingress::decode)
        .ok()?;
    match accepted {
        relay_core::ingress::Accepted::Run { event, .. } => Some((
            event.event_id.clone(),
            event.kind.clone(),
            event.state.to_string(),
            event.event_type.starts_with("io.fluxcd."),
        )),
        relay_core::ingress::Accepted::Ignored { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_install_delivers_each_effect_once_and_dead_letters_survive() {
    // The providers, and what one process makes of each event sent once.
    let github = Receiver::start().await;
    let slack = Receiver::start().await;
    slack.reply(
        "POST",
        "/api/chat.postMessage",
        200,
        json!({"ok": true, "channel": "C0123456789", "ts": "1700000000.000100"}),
    );
    let scenarios: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| s.name.starts_with("tekton-") || s.name == "flux-events")
        .collect();
    assert!(scenarios.len() >= 8, "{}", scenarios.len());
    let reference = reference_effects(&scenarios, &github, &slack).await;
    github.clear();
    slack.clear();

    // The install, rendered from the user's config.
    let valkey = ValkeyServer::start_with_password(VALKEY_PASSWORD);
    let dns = Dns(vec![(
        format!("valkey.{NAMESPACE}.svc:6379"),
        format!("127.0.0.1:{}", valkey.port),
    )]);
    let config = user_config(
        &format!(
            "valkey://valkey.{NAMESPACE}.svc:6379/0?prefix=relay:&passwordFile=/var/run/secrets/relay/valkey/password"
        ),
        "/var/run/secrets/relay",
        &github.url(""),
        &slack.url(""),
    );
    let rendered = render(&config);
    let all = docs(&rendered);
    let manifests = Manifests::parse(&rendered).unwrap();
    let secrets: HashMap<&str, Vec<(&str, &str)>> = HashMap::from([
        ("relay-valkey", vec![("password", VALKEY_PASSWORD)]),
        ("relay-ingress", vec![("token", INGRESS_TOKEN)]),
        ("relay-dlq", vec![("api-token", DLQ_TOKEN)]),
        ("relay-github", vec![("token", GITHUB_TOKEN)]),
        ("relay-slack", vec![("token", SLACK_TOKEN)]),
    ]);
    let image = Image::build(Path::new(BIN));
    let uid = image.config().uid_gid().0;
    let knative: Vec<&Value> = all
        .iter()
        .filter(|d| d["apiVersion"] == "serving.knative.dev/v1" && d["kind"] == "Service")
        .collect();
    let names: BTreeSet<&str> = knative
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "relay-dlq",
            "relay-github",
            "relay-ingress",
            "relay-router",
            "relay-slack"
        ]),
        "the functions the config uses, and no other"
    );

    // Start order: what others need first. The provider functions and the
    // router, then the dead-letter function (it replays to them), the
    // Broker (it delivers to them), the ingress (it sends to the Broker).
    let mut cluster = Cluster {
        image,
        services: BTreeMap::new(),
        balancers: Vec::new(),
    };
    let mut subscribers: HashMap<String, String> = HashMap::new();
    let order = [
        "relay-router",
        "relay-github",
        "relay-slack",
        "relay-dlq",
        "relay-ingress",
    ];
    let mut broker: Option<Broker> = None;
    for name in order {
        let svc = knative
            .iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap();
        let mut extra = Vec::new();
        if name == "relay-dlq" {
            // `*` is every function at its cluster address; here, where each runs.
            let subs: Vec<String> = subscribers
                .iter()
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("relay-")))
                .collect();
            extra.push(("RELAY_DLQ_SUBSCRIBERS".to_string(), subs.join(",")));
        }
        if name == "relay-ingress" {
            // The SinkBinding: K_SINK is the Broker.
            let b = Broker::start_with(
                &manifests,
                &subscribers,
                BrokerOptions {
                    backoff_scale: 0.2,
                    ..BrokerOptions::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(b.unready(), Vec::<(String, String)>::new());
            extra.push(("K_SINK".to_string(), b.url()));
            broker = Some(b);
        }
        let (env, args, volumes) = Cluster::pod(svc, &all, &secrets, &dns, &extra, uid);
        let mut s = Service {
            name: name.to_string(),
            replicas: Vec::new(),
            env,
            args,
            volumes,
        };
        let replicas = if name == "relay-github" { 2 } else { 1 };
        for _ in 0..replicas {
            let p = Cluster::start_replica(&cluster.image, &s).await;
            s.replicas.push(p);
        }
        let url = if replicas > 1 {
            let b = Balancer::start(s.replicas.iter().map(|r| r.base.clone()).collect()).await;
            let url = b.url.clone();
            cluster.balancers.push(b);
            url
        } else {
            s.url()
        };
        subscribers.insert(s.name.clone(), url);
        cluster.services.insert(s.name.clone(), s);
    }
    let broker = broker.unwrap();
    let ingress = cluster.services["relay-ingress"].url();
    let client = reqwest::Client::new();

    // Every scenario through the ingress, each event as Tekton re-sends it.
    let mut sent: Vec<RequestFile> = Vec::new();
    for sc in &scenarios {
        for f in &sc.files {
            let mut again = f.clone();
            again.headers.insert(
                "Ce-Id".into(),
                format!(
                    "{}-resent",
                    f.headers.get("Ce-Id").cloned().unwrap_or_default()
                ),
            );
            let answers =
                futures::future::join_all([send(&client, &ingress, f), send(&client, &ingress, f)])
                    .await;
            let resent = send(&client, &ingress, &again).await;
            for a in answers.into_iter().chain([resent]) {
                assert!(
                    a == 200 || a == 400,
                    "{}/{}: the ingress answered {a}",
                    sc.name,
                    f.file_name
                );
            }
            sent.push(f.clone());
            if f.headers.contains_key("Ce-Id") {
                sent.push(again);
            }
        }
    }
    broker.settled(SETTLE).await.unwrap();
    assert_eq!(broker.knative_panics(), Vec::<String>::new());

    // Every effect exactly once: as one process made of each event once.
    let got: BTreeMap<String, usize> = effects(&github)
        .into_iter()
        .chain(effects(&slack))
        .collect();
    let differ: Vec<String> = got
        .keys()
        .chain(reference.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| got.get(*k) != reference.get(*k))
        .map(|k| {
            format!(
                "{k}: {:?} here, {:?} from one process",
                got.get(k),
                reference.get(k)
            )
        })
        .collect();
    assert!(differ.is_empty(), "effects differ:\n{}", differ.join("\n"));
    assert!(reference.len() >= 20, "{}", reference.len());
    assert!(got.values().all(|n| *n == 1), "{got:#?}");
    assert!(got.keys().any(|k| k.contains("/statuses/")), "{got:#?}");
    assert!(
        got.keys().any(|k| k.contains("chat.postMessage")),
        "{got:#?}"
    );
    assert!(
        broker.dead_letters().is_empty(),
        "{:#?}",
        broker.dead_letters()
    );

    // Per event, the provider functions invoked are those with a
    // Notification that wants it: GitHub's for PipelineRuns (never for
    // Flux, which names no repository), Slack's for failures.
    let github_url = &subscribers["relay-github"];
    let mut nobody = 0;
    for f in &sent {
        let Some((id, kind, state, flux)) = decoded(f) else {
            continue;
        };
        let want_github = kind.eq_ignore_ascii_case("PipelineRun") && !flux;
        let want_slack = state == "failed";
        let invoked = broker.invocations(&id);
        let providers: BTreeSet<&str> = invoked
            .keys()
            .map(String::as_str)
            .filter(|s| *s == "relay-github" || *s == "relay-slack")
            .collect();
        let mut want = BTreeSet::new();
        if want_github {
            want.insert("relay-github");
        }
        if want_slack {
            want.insert("relay-slack");
        }
        assert!(
            invoked.get("relay-router").is_some_and(|n| *n >= 1),
            "{id}: the router sees every event"
        );
        assert_eq!(providers, want, "{id} ({kind} {state})");
        if want.is_empty() {
            nobody += 1;
        }
    }
    assert!(nobody > 0, "no event nobody wants was sent");
    eprintln!(
        "{} effects, each once; {} events checked for invocations, {nobody} wanted by nobody; {} Broker attempts",
        got.len(),
        sent.len(),
        broker.attempts().len()
    );

    // One event sent once: the Broker invokes each function that wants it
    // exactly once, and no other provider function.
    let single = |name: &str, id: &str| {
        let mut f = RequestFile::load(&relay_tests::fixtures::dir().join(name));
        f.headers.insert("Ce-Id".into(), id.into());
        f
    };
    for (f, want) in [
        (
            single(
                "tekton-pipelinerun-failure/012-pipelinerun-failed.json",
                "once-failed",
            ),
            vec!["relay-github", "relay-slack"],
        ),
        (
            single(
                "tekton-pipelinerun-success/017-pipelinerun-successful.json",
                "once-ok",
            ),
            vec!["relay-github"],
        ),
        (
            single(
                "tekton-pipelinerun-success/003-taskrun-fetch-source-started.json",
                "once-nobody",
            ),
            vec![],
        ),
    ] {
        assert_eq!(send(&client, &ingress, &f).await, 200);
        broker.settled(SETTLE).await.unwrap();
        let id = f.headers["Ce-Id"].clone();
        let mut invoked = broker.invocations(&id);
        assert_eq!(invoked.remove("relay-router"), Some(1), "{id}");
        let want: BTreeMap<String, u32> = want.iter().map(|n| (n.to_string(), 1)).collect();
        assert_eq!(invoked, want, "{id}");
    }

    // A permanent failure: GitHub refuses the first status of a new
    // commit (422).
    let sha = "feedfacefeedfacefeedfacefeedfacefeedface";
    let mut dead = relay_tests::fixtures::fresh_pipelinerun("e2e-dead-letter");
    dead.body = serde_json::from_str(
        &dead
            .body
            .to_string()
            .replace("0c5c7fd0a6a3a4506513270e269e0d37f2a74de4", sha),
    )
    .unwrap();
    let sha_path = format!("/api/v3/repos/acme/widgets/statuses/{sha}");
    github.script(&sha_path, &[(422, None)]);
    assert_eq!(send(&client, &ingress, &dead).await, 200);
    broker.settled(SETTLE).await.unwrap();
    let letters = broker.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].error_code.as_deref(), Some("422"));
    assert_eq!(letters[0].error_dest.as_deref(), Some(github_url.as_str()));

    // relay-dlq keeps it in Valkey: a new Pod lists it.
    cluster.restart("relay-dlq").await;
    let dlq = cluster.services["relay-dlq"].url();
    let list = dead_letters(&client, &dlq).await;
    assert_eq!(list["total"], 1, "{list}");
    let id = list["entries"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["entries"][0]["provider_type"], "github", "{list}");
    let before = github.accepted_on(&sha_path).len();
    for _ in 0..2 {
        let r = client
            .post(format!("{dlq}/api/v1/dlq/replay"))
            .bearer_auth(DLQ_TOKEN)
            .json(&json!({"ids": [id]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    assert_eq!(
        github.accepted_on(&sha_path).len(),
        before + 1,
        "replayed once"
    );
    let list = dead_letters(&client, &dlq).await;
    assert_eq!(list["total"], 0, "a replayed dead letter goes: {list}");
    drop(cluster);
}

/// The dead letters `relay-dlq` at `dlq` lists, with its API token.
async fn dead_letters(client: &reqwest::Client, dlq: &str) -> Value {
    client
        .get(format!("{dlq}/api/v1/dlq"))
        .bearer_auth(DLQ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What `relay serve` (one process, memory store) makes of each event of
/// `scenarios` sent once, in order: the effects to expect exactly once.
async fn reference_effects(
    scenarios: &[Scenario],
    github: &Receiver,
    slack: &Receiver,
) -> BTreeMap<String, usize> {
    let secrets = tempfile::tempdir().unwrap();
    for (name, token) in [("github", GITHUB_TOKEN), ("slack", SLACK_TOKEN)] {
        std::fs::create_dir(secrets.path().join(name)).unwrap();
        std::fs::write(secrets.path().join(name).join("token"), token).unwrap();
    }
    let config = user_config(
        "memory",
        secrets.path().to_str().unwrap(),
        &github.url(""),
        &slack.url(""),
    );
    let relay = RelayProcess::start(Path::new(BIN), &config).await;
    let client = reqwest::Client::new();
    for sc in scenarios {
        for f in &sc.files {
            let mut req = client.post(format!("{}/", relay.base)).body(f.body_bytes());
            for (k, v) in f.send_headers() {
                req = req.header(k, v);
            }
            let answer = req.send().await.unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            assert!(
                status == 200 || status == 400,
                "{}: {status} {text}",
                f.file_name
            );
        }
    }
    effects(github).into_iter().chain(effects(slack)).collect()
}
