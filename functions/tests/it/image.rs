//! The container image (Containerfile, scripts/images) around this build's
//! binary, run as Kubernetes runs it (relay_tests::image): from its own
//! read-only root, as 65532 without privileges, its config from a ConfigMap
//! volume and its credentials from Secret volumes in the kubelet's layout.
//! The ingress, the dead-letter function and provider functions start from
//! the image's entry point and deliver; a rotated Secret and an updated
//! ConfigMap (the `..data` swap) reach the running function; nothing can be
//! written outside a writable volume. `RELAY_IMAGE_BINARY=<path>` runs
//! them on the image around another build (the static musl release binary
//! of scripts/images, say).

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun, knative_dead_letter};
use relay_tests::image::{Container, ContainerProcess, Image, Volume};
use relay_tests::metrics::{sample, scrape};
use relay_tests::process::send;
use relay_tests::receiver::Receiver;
use serde_json::Value;

const INGRESS_TOKEN: &str = "ingress-token-0123456789abcdefghijklmnop";
const ROTATED_TOKEN: &str = "ingress-token-rotated-9876543210zyxwvuts";
const WEBHOOK_TOKEN: &str = "webhook-token-0123456789abcdefghijklmnop";
const WEBHOOK_ROTATED: &str = "webhook-token-rotated-9876543210zyxwvut";
const API_TOKEN: &str = "dlq-api-token-0123456789abcdefghijklmnop";

/// The image around this build's `relay` (built once, then cached), or
/// around `$RELAY_IMAGE_BINARY` (the static release build, say).
fn image() -> Image {
    match std::env::var_os("RELAY_IMAGE_BINARY") {
        Some(b) => Image::build(Path::new(&b)),
        None => Image::build(Path::new(env!("CARGO_BIN_EXE_relay"))),
    }
}

/// A RelayConfig `name` with `spec` lines (indented by two).
fn relay_config(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

/// `GET {base}{path}`: the status.
async fn get(base: &str, path: &str) -> u16 {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `f` with `Authorization: Bearer <token>`.
fn bearer(mut f: RequestFile, token: &str) -> RequestFile {
    f.headers
        .insert("authorization".into(), format!("Bearer {token}"));
    f
}

/// Polls (with a deadline) until `ok` holds, else fails saying `what`.
async fn eventually(c: &ContainerProcess, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; stderr:\n{}",
            c.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `uid:gid` of the image, the architecture of this machine, the labels.
#[test]
fn the_image_runs_the_relay_as_nonroot_with_its_entry_point_and_labels() {
    let image = image();
    let c = image.config();
    assert_eq!(c.user, "65532:65532");
    assert_eq!(c.uid_gid(), (65532, 65532));
    assert_eq!(c.entrypoint, ["/relay"]);
    assert!(
        c.cmd.is_empty(),
        "no CMD: RELAY_FUNCTION names the function"
    );
    assert_eq!(c.env_var("PORT"), Some("8080"));
    assert_eq!(c.env_var("RELAY_CONFIG"), Some("/etc/relay/relay.yaml"));
    assert_eq!(c.exposed_ports, ["8080/tcp"]);
    assert_eq!(c.os, "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(c.architecture, arch);
    assert_eq!(
        c.labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    ] {
        let v = c.labels.get(label).map(String::as_str).unwrap_or_default();
        assert!(!v.is_empty() && v != "unknown", "{label}: {v:?}");
    }
}

/// The root holds the binary, the CA bundle, passwd and group, and (for a
/// dynamically linked binary such as this debug build) its shared
/// libraries: no shell, no package manager, nothing else that runs.
#[test]
fn the_image_holds_the_binary_and_no_shell_or_package_manager() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let image = image();
    let root = image.root();
    let files = image.files();
    let fixed = [
        "/relay",
        "/etc/passwd",
        "/etc/group",
        "/etc/ssl/certs/ca-certificates.crt",
    ];
    for f in fixed {
        assert!(files.iter().any(|p| p == f), "{f} missing: {files:?}");
    }
    let is_library = |p: &str| {
        let name = p.rsplit('/').next().unwrap();
        (p.starts_with("/lib") || p.starts_with("/usr/lib")) && name.contains(".so")
    };
    for p in &files {
        let md = std::fs::symlink_metadata(root.join(&p[1..])).unwrap();
        if md.is_dir() {
            continue;
        }
        assert!(
            fixed.contains(&p.as_str()) || is_library(p),
            "{p} has no business in the image: {files:?}"
        );
        let name = p.rsplit('/').next().unwrap();
        for tool in [
            "sh", "bash", "dash", "ash", "busybox", "apt", "apt-get", "dpkg", "apk", "yum", "dnf",
            "microdnf", "rpm", "pip",
        ] {
            assert_ne!(name, tool, "{p}");
        }
        // Owned by root, so the user the image runs as cannot change it.
        assert_eq!((md.uid(), md.gid()), (0, 0), "{p}");
        assert_eq!(
            md.permissions().mode() & 0o022,
            0,
            "{p} is writable by others"
        );
    }
    for absent in [
        "/bin",
        "/usr/bin",
        "/sbin",
        "/var/lib/dpkg",
        "/etc/apt",
        "/tmp",
    ] {
        assert!(!root.join(&absent[1..]).exists(), "{absent} in the image");
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");
    // The AWS SDK's HTTPS client trusts the system roots (rustls-native-certs).
    assert_eq!(
        std::fs::read(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap(),
    );
}

/// With no RELAY_FUNCTION and no arguments the entry point says what it
/// needs and exits 2 (a crash loop that explains itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_no_function_the_image_exits_2_saying_what_it_needs() {
    let image = image();
    let mut c = image.launch(Container::default());
    let status = c.wait_exit(Duration::from_secs(30)).await.expect("exits");
    assert_eq!(status.code(), Some(2), "{}", c.stderr());
    assert!(c.stderr().contains("$RELAY_FUNCTION"), "{}", c.stderr());
}

/// The ingress as the Knative manifests run it: its settings from a
/// ConfigMap, its token from a Secret; an event with the token goes to
/// K_SINK, one without is refused; a rotated token (the kubelet's `..data`
/// swap) applies to the next request, the old one no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_forwards_to_k_sink_and_takes_a_rotated_token() {
    let image = image();
    let rx = Receiver::start().await;
    let config = Volume::config_map(&[(
        "ingress.yaml",
        &relay_config(
            "ingress",
            "  inboundAuth: {bearerTokenFile: /var/run/secrets/relay/ingress/token}",
        ),
    )]);
    let secret = Volume::secret(&[("token", &format!("{INGRESS_TOKEN}\n"))]);
    let sink = rx.url("/broker");
    let c = image
        .start(Container {
            env: &[
                ("RELAY_FUNCTION", "ingress"),
                ("RELAY_CONFIG", "/etc/relay/ingress.yaml"),
                ("K_SINK", &sink),
            ],
            volumes: &[
                ("/etc/relay", &config),
                ("/var/run/secrets/relay/ingress", &secret),
            ],
            ..Container::default()
        })
        .await;
    assert_eq!(get(&c.base, "/readyz").await, 200, "{}", c.stderr());
    let client = reqwest::Client::new();
    let url = format!("{}/", c.base);

    let (status, body) = send(&client, &url, &fresh_pipelinerun("image-ingress-0")).await;
    assert_eq!(status, 401, "{body}");
    let ev = bearer(fresh_pipelinerun("image-ingress-1"), INGRESS_TOKEN);
    let (status, body) = send(&client, &url, &ev).await;
    assert_eq!(status, 200, "{body}\n{}", c.stderr());
    let got = rx.accepted_on("/broker");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["ce-id"], "image-ingress-1");
    assert_eq!(got[0].body.as_ref(), ev.body_bytes().as_slice());

    secret.update(&[("token", &format!("{ROTATED_TOKEN}\n"))]);
    let old = bearer(fresh_pipelinerun("image-ingress-2"), INGRESS_TOKEN);
    assert_eq!(send(&client, &url, &old).await.0, 401);
    let new = bearer(fresh_pipelinerun("image-ingress-3"), ROTATED_TOKEN);
    let (status, body) = send(&client, &url, &new).await;
    assert_eq!(status, 200, "{body}\n{}", c.stderr());
    let ids: Vec<_> = rx
        .accepted_on("/broker")
        .iter()
        .map(|r| r.headers["ce-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["image-ingress-1", "image-ingress-3"]);
}

/// A provider function as the Knative manifests run it (RELAY_FUNCTION,
/// the shared relay.yaml ConfigMap, its Secret, no inbound auth inside the
/// cluster): it delivers with the Secret's token; a rotated token and an
/// updated ConfigMap (a new webhook URL) reach it while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_function_delivers_and_follows_its_secret_and_configmap() {
    let image = image();
    let rx = Receiver::start().await;
    let relay_yaml = |path: &str| {
        relay_config("relay", "  store: memory\n  deadLetter: respond")
            + &format!(
                "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook:\n    url: \"{}\"\n    tokenFile: /var/run/secrets/relay/webhook/token\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: everything}}\nspec:\n  providerRef: {{name: hook}}\n",
                rx.url(path)
            )
    };
    let config = Volume::config_map(&[("relay.yaml", &relay_yaml("/hook"))]);
    let secret = Volume::secret(&[("token", &format!("{WEBHOOK_TOKEN}\n"))]);
    let c = image
        .start(Container {
            env: &[
                ("RELAY_FUNCTION", "webhook"),
                ("RELAY_INSECURE_NO_AUTH", "true"),
            ],
            volumes: &[
                ("/etc/relay", &config),
                ("/var/run/secrets/relay/webhook", &secret),
            ],
            ..Container::default()
        })
        .await;
    assert_eq!(get(&c.base, "/readyz").await, 200, "{}", c.stderr());
    let client = reqwest::Client::new();
    let url = format!("{}/", c.base);
    let deliver = async |id: &str| -> Value {
        let (status, body) = send(&client, &url, &fresh_pipelinerun(id)).await;
        assert_eq!(status, 200, "{body}\n{}", c.stderr());
        assert_eq!(body["deliveries"][0]["outcome"], "delivered", "{body}");
        body
    };

    deliver("image-hook-1").await;
    let hooks = rx.requests_on("/hook");
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0].headers["authorization"],
        format!("Bearer {WEBHOOK_TOKEN}").as_str()
    );

    secret.update(&[("token", &format!("{WEBHOOK_ROTATED}\n"))]);
    deliver("image-hook-2").await;
    let hooks = rx.requests_on("/hook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[1].headers["authorization"],
        format!("Bearer {WEBHOOK_ROTATED}").as_str()
    );

    // The ConfigMap changes: the function reloads it (it polls the file).
    let applied = r#"relay_config_reloads_total{result="applied"}"#;
    let before = sample(&scrape(&c.base).await, applied);
    config.update(&[("relay.yaml", &relay_yaml("/hook-moved"))]);
    eventually(&c, "the reload of the updated ConfigMap", async || {
        sample(&scrape(&c.base).await, applied) > before
    })
    .await;
    deliver("image-hook-3").await;
    assert_eq!(rx.requests_on("/hook").len(), 2);
    let moved = rx.requests_on("/hook-moved");
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].headers["authorization"],
        format!("Bearer {WEBHOOK_ROTATED}").as_str()
    );
}

/// The log function (named by arguments this time, `function log`) runs as
/// 65532 with no capability, no supplementary group but its own and
/// no_new_privs; its root is read-only even to the host's root; it logs
/// the event, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_function_runs_unprivileged_on_a_read_only_root() {
    let image = image();
    let config = Volume::config_map(&[(
        "relay.yaml",
        &(relay_config("relay", "  deadLetter: respond")
            + "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: stdout}\nspec:\n  type: log\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: log-everything}\nspec:\n  providerRef: {name: stdout}\n"),
    )]);
    let mut c = image
        .start(Container {
            env: &[("RELAY_INSECURE_NO_AUTH", "true")],
            args: &["function", "log"],
            volumes: &[("/etc/relay", &config)],
        })
        .await;
    assert_eq!(get(&c.base, "/readyz").await, 200);

    let status = c.proc_status();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid"), "65532 65532 65532 65532");
    assert_eq!(field("Gid"), "65532 65532 65532 65532");
    assert_eq!(field("Groups"), "65532");
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapPrm"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");

    // The root it sees: the image, read-only (even the host's root cannot
    // write there), the config where the ConfigMap is mounted.
    let root = c.proc_root();
    assert!(root.join("relay").is_file());
    assert!(!root.join("bin/sh").exists());
    let err = std::fs::write(root.join("probe"), b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyFilesystem, "{err}");
    let err = std::fs::write(root.join("etc/relay/relay.yaml"), b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyFilesystem, "{err}");
    assert!(
        std::fs::read_to_string(root.join("etc/relay/relay.yaml"))
            .unwrap()
            .contains("log-everything")
    );

    let client = reqwest::Client::new();
    let ev = fresh_pipelinerun("image-log-1");
    let (status, body) = send(&client, &format!("{}/", c.base), &ev).await;
    assert_eq!(status, 200, "{body}\n{}", c.stderr());
    assert_eq!(body["deliveries"][0]["outcome"], "delivered", "{body}");
    assert!(
        c.stdout().contains("[log-everything] PipelineRun"),
        "{}",
        c.stdout()
    );
    let exit = c.terminate();
    assert!(exit.success(), "{exit}: {}", c.stderr());
}

/// The dead-letter function keeps dead letters in a writable volume (an
/// emptyDir) and lists them; pointed at a path on the image's root, as the
/// Knative manifest's `/tmp/relay-dlq` is without a volume there, it cannot
/// start: the root is read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_keeps_dead_letters_in_its_volume_and_cannot_write_the_root() {
    let image = image();
    let config = Volume::config_map(&[(
        "dlq.yaml",
        &relay_config(
            "dlq",
            "  apiAuth: {bearerTokenFile: /var/run/secrets/relay/dlq/api-token}",
        ),
    )]);
    let secret = Volume::secret(&[("api-token", API_TOKEN)]);
    let store = Volume::empty_dir();
    let env = [
        ("RELAY_FUNCTION", "dlq"),
        ("RELAY_CONFIG", "/etc/relay/dlq.yaml"),
        ("RELAY_INSECURE_NO_AUTH", "true"),
        (
            "RELAY_DLQ_STORE",
            "file:///tmp/relay-dlq/dead-letters.jsonl",
        ),
    ];
    let c = image
        .start(Container {
            env: &env,
            volumes: &[
                ("/etc/relay", &config),
                ("/var/run/secrets/relay/dlq", &secret),
                ("/tmp/relay-dlq", &store),
            ],
            ..Container::default()
        })
        .await;
    assert_eq!(get(&c.base, "/readyz").await, 200);
    let client = reqwest::Client::new();
    // The Broker's dead-letter delivery (its credential is not checked here:
    // RELAY_INSECURE_NO_AUTH, as in the manifest).
    let f = knative_dead_letter("http://relay-webhook.tekton-relay.svc.cluster.local", "-");
    let (status, body) = send(&client, &format!("{}/", c.base), &f).await;
    assert_eq!(status, 202, "{body}\n{}", c.stderr());
    let list: Value = client
        .get(format!("{}/api/v1/dlq", c.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        list["entries"][0]["event"]["id"],
        "83db6e3a-f635-4250-9f8f-f2ca3cd16876"
    );
    // Written by the container's user, in the volume.
    {
        use std::os::unix::fs::MetadataExt;
        let kept = store.dir().join("dead-letters.jsonl");
        let md = std::fs::metadata(&kept)
            .unwrap_or_else(|e| panic!("{}: {e}; {:?}", kept.display(), store.dir()));
        assert_eq!(md.uid(), 65532);
        assert!(
            std::fs::read_to_string(&kept)
                .unwrap()
                .contains("83db6e3a-f635-4250-9f8f-f2ca3cd16876")
        );
    }
    drop(c);

    // The same without the volume: nowhere to write.
    let mut c = image.launch(Container {
        env: &env,
        volumes: &[
            ("/etc/relay", &config),
            ("/var/run/secrets/relay/dlq", &secret),
        ],
        ..Container::default()
    });
    let status = c
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the dlq function exits");
    assert!(!status.success());
    assert!(
        c.stderr().contains("/tmp/relay-dlq") && c.stderr().contains("Read-only file system"),
        "{}",
        c.stderr()
    );
}

/// scripts/images refuses what it cannot do, saying why, before building
/// anything.
#[test]
fn scripts_images_refuses_impossible_requests_with_a_reason() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/images");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&script)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for option in ["--arch amd64|arm64|all", "--binary PATH", "--push REGISTRY"] {
        assert!(stdout.contains(option), "{stdout}");
    }
    let bin = env!("CARGO_BIN_EXE_relay");
    let other = match std::env::consts::ARCH {
        "aarch64" => "amd64",
        _ => "arm64",
    };
    for (args, says) in [
        (
            vec!["--arch", "sparc"],
            "--arch must be amd64, arm64 or all",
        ),
        (vec!["--frobnicate"], "unknown argument: --frobnicate"),
        (
            vec!["--push", "registry.example", "--arch", "amd64"],
            "--push builds both architectures",
        ),
        (
            vec!["--binary", bin, "--arch", "all"],
            "one architecture only",
        ),
        (
            vec!["--binary", bin, "--push", "registry.example"],
            "one architecture only",
        ),
        (
            vec!["--binary", "/nonexistent/relay"],
            "not an executable file",
        ),
        (
            vec!["--binary", bin, "--arch", other],
            &format!("not {other}"),
        ),
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?}: {stderr:?} does not say {says:?}"
        );
    }
}
