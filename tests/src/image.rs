//! The relay's container image (`Containerfile`, built by `scripts/images`)
//! run as a container runtime runs it, without one (`podman run` cannot
//! start containers here: no cgroups). [`Image::build`] builds the image
//! around a binary and exports its root into a folder once (a cache under
//! the target folder, shared by the test processes); [`Image::start`] runs
//! the image's entry point there as its user, in a mount namespace of its
//! own (`unshare --mount`):
//!
//! - the root is the exported image under an overlay (so mount points can
//!   be made without touching the cache), then remounted read-only, as
//!   `readOnlyRootFilesystem: true` has it;
//! - `/proc`, a small `/dev` (null, zero, full, random, urandom) and the
//!   host's `/etc/hosts` and `/etc/resolv.conf` (read-only), as a runtime
//!   provides them;
//! - each [`Volume`] bind-mounted at its path: ConfigMaps and Secrets
//!   read-only in the kubelet's layout (`..<timestamp>/<key>` files, the
//!   `..data` symlink to them, `<key> -> ..data/<key>`), emptyDirs writable;
//! - the image's `USER` (numeric `uid:gid`) with no supplementary groups, no
//!   capabilities and `no_new_privs` (`allowPrivilegeEscalation: false`);
//! - only the image's `ENV` and the container's environment (`PORT` on a
//!   free port), nothing of the test's.
//!
//! The process listens on the host's network (`0.0.0.0:$PORT`, as the image
//! sets it); its base URL is on 127.0.0.1. Running it takes root (mount
//! namespaces, chroot) and podman; without them the tests fail, they do not
//! skip.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::free_port;

/// The tag of the images the tests build (`<repository>:<cache key>`).
pub const TEST_REPOSITORY: &str = "localhost/relay-image-test";

/// Where host tools are looked up (the tests' own PATH never reaches the
/// container).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a container may take to answer `/healthz`.
const START_WITHIN: Duration = Duration::from_secs(30);

/// Sets up the container's mounts in its own mount namespace, then execs
/// the rest of its arguments. `$1`: the exported root (the overlay's lower
/// layer), `$2`: the container's folder (upper, work, root); then triples
/// `ro|rw <host folder> <mount path>` up to `--`.
const SETUP: &str = r#"set -eu
lower=$1 state=$2
shift 2
root=$state/root
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$root"
mkdir -p "$root/proc" "$root/dev" "$root/etc"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,noexec,mode=755,size=64k tmpfs "$root/dev"
for d in null zero full random urandom; do
  : > "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
for f in hosts resolv.conf; do
  [ -e "/etc/$f" ] || continue
  : > "$root/etc/$f"
  mount --bind "/etc/$f" "$root/etc/$f"
  mount -o remount,bind,ro "$root/etc/$f"
done
while [ "$1" != -- ]; do
  mode=$1 src=$2 dst=$3
  shift 3
  mkdir -p "$root$dst"
  mount --bind "$src" "$root$dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$dst"; fi
done
shift
mount -o remount,ro "$root"
exec "$@"
"#;

/// What `podman image inspect` says of an image.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// `USER`, as written (`65532:65532`).
    pub user: String,
    pub entrypoint: Vec<String>,
    /// `CMD` (the arguments when a container gives none).
    pub cmd: Vec<String>,
    /// `ENV`, in order.
    pub env: Vec<(String, String)>,
    /// `EXPOSE` (`8080/tcp`).
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub working_dir: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    pub os: String,
}

impl ImageConfig {
    fn parse(inspect: &Value) -> ImageConfig {
        let image = inspect
            .as_array()
            .and_then(|a| a.first())
            .unwrap_or(inspect);
        let config = &image["Config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ImageConfig {
            user: text(&config["User"]),
            entrypoint: strings(&config["Entrypoint"]),
            cmd: strings(&config["Cmd"]),
            env: strings(&config["Env"])
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect(),
            exposed_ports: config["ExposedPorts"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            labels: config["Labels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            working_dir: text(&config["WorkingDir"]),
            architecture: text(&image["Architecture"]),
            os: text(&image["Os"]),
        }
    }

    /// The value of `ENV` `name`.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `USER` as numeric `(uid, gid)`; the image must name its user by number
    /// (`runAsNonRoot` can only check a number).
    pub fn uid_gid(&self) -> (u32, u32) {
        let (u, g) = self.user.split_once(':').unwrap_or((&self.user, ""));
        let num = |s: &str| {
            s.parse::<u32>()
                .unwrap_or_else(|_| panic!("USER {:?} is not numeric uid:gid", self.user))
        };
        (num(u), num(g))
    }
}

/// The image built around one binary, and its root exported into a folder.
pub struct Image {
    /// The local name (`localhost/relay-image-test:<key>`).
    pub name: String,
    root: PathBuf,
    config: ImageConfig,
}

/// The workspace's target folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A host tool, by absolute path (the container's environment has the
/// image's PATH, not the host's).
fn tool(name: &str) -> PathBuf {
    std::env::split_paths(SYSTEM_PATH)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed to run the image (not in {SYSTEM_PATH})"))
}

/// Runs `cmd`, which must succeed: its stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the cached build depends on: the binary (path, size, mtime), the
/// Containerfile and scripts/images.
fn cache_key(binary: &Path) -> String {
    let md = std::fs::metadata(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let mut h = std::hash::DefaultHasher::new();
    binary.hash(&mut h);
    md.len().hash(&mut h);
    md.modified().unwrap().hash(&mut h);
    for f in ["Containerfile", "scripts/images"] {
        let path = repo().join(f);
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

impl Image {
    /// `scripts/images --binary <binary>` (tagged [`TEST_REPOSITORY`]`:<key>`),
    /// its root exported into `target/relay-image/<key>/rootfs`. Built once
    /// per binary, Containerfile and script: test processes take turns under
    /// a lock file and reuse what the first one built; older builds go.
    pub fn build(binary: &Path) -> Image {
        let binary =
            std::fs::canonicalize(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let cache = target_dir().join("relay-image");
        std::fs::create_dir_all(&cache).unwrap();
        let key = cache_key(&binary);
        let name = format!("{TEST_REPOSITORY}:{key}");
        let entry = cache.join(&key);
        if !entry.exists() {
            let lock = std::fs::File::create(cache.join("lock")).unwrap();
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .expect("lock the image cache");
            if !entry.exists() {
                Image::export(&binary, &name, &cache, &key);
            }
        }
        let inspect: Value =
            serde_json::from_slice(&std::fs::read(entry.join("inspect.json")).unwrap()).unwrap();
        Image {
            name,
            root: entry.join("rootfs"),
            config: ImageConfig::parse(&inspect),
        }
    }

    /// Builds the image, exports its root and inspection into `cache/key`
    /// (whole, by a rename), and removes older builds. Under the lock.
    fn export(binary: &Path, name: &str, cache: &Path, key: &str) {
        run(
            Command::new(repo().join("scripts/images"))
                .arg("--binary")
                .arg(binary)
                .args(["--tag", name]),
            "scripts/images --binary",
        );
        let tmp = cache.join(format!("{key}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("rootfs")).unwrap();
        let inspect = run(
            Command::new("podman").args(["image", "inspect", name]),
            "podman image inspect",
        );
        std::fs::write(tmp.join("inspect.json"), inspect).unwrap();
        // A container is only created (never started) to export its root.
        let id = run(
            Command::new("podman").args(["create", name]),
            "podman create",
        );
        let id = id.trim();
        let mut export = Command::new("podman")
            .args(["export", id])
            .stdout(Stdio::piped())
            .spawn()
            .expect("podman export");
        let untar = Command::new("tar")
            .args(["-x", "--numeric-owner", "--same-permissions", "-C"])
            .arg(tmp.join("rootfs"))
            .stdin(export.stdout.take().unwrap())
            .status()
            .expect("tar");
        let exported = export.wait().unwrap();
        run(Command::new("podman").args(["rm", id]), "podman rm");
        assert!(
            exported.success() && untar.success(),
            "podman export | tar -x: {exported}, {untar}"
        );
        std::fs::rename(&tmp, cache.join(key)).unwrap();
        // Older builds (of older binaries) are of no further use.
        for e in std::fs::read_dir(cache).unwrap().flatten() {
            let old = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && old != key {
                let _ = std::fs::remove_dir_all(e.path());
                let _ = Command::new("podman")
                    .args(["rmi", &format!("{TEST_REPOSITORY}:{old}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// The exported root (shared: read it, never write to it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image's config (`podman image inspect`).
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// Every path in the image's root (`/relay`, `/etc`, …), sorted.
    pub fn files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
                if e.file_type().unwrap().is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    /// Starts `c` and waits until it answers `/healthz`.
    pub async fn start(&self, c: Container<'_>) -> ContainerProcess {
        let mut p = self.launch(c);
        p.wait_healthy().await;
        p
    }

    /// Starts `c` without waiting for it.
    pub fn launch(&self, c: Container<'_>) -> ContainerProcess {
        let state = tempfile::Builder::new()
            .prefix("relay-container.")
            .tempdir()
            .unwrap();
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(state.path().join(d)).unwrap();
        }
        for p in [&self.root, &state.path().to_path_buf()] {
            let s = p.to_string_lossy();
            assert!(
                !s.contains([',', ':', '=']),
                "overlay options cannot carry {s}"
            );
        }
        let port = free_port();
        let mut env: Vec<(String, String)> = self.config.env.clone();
        let given = |k: &str| c.env.iter().any(|(n, _)| *n == k);
        if !given("PORT") {
            env.push(("PORT".into(), port.to_string()));
        }
        env.extend(c.env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut merged: Vec<(String, String)> = Vec::new();
        for (k, v) in env {
            merged.retain(|(n, _)| *n != k);
            merged.push((k, v));
        }
        let port = merged
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(port);
        let (uid, gid) = self.config.uid_gid();
        let args: Vec<String> = if c.args.is_empty() {
            self.config.cmd.clone()
        } else {
            c.args.iter().map(|a| a.to_string()).collect()
        };
        assert!(
            !self.config.entrypoint.is_empty(),
            "the image has no entry point"
        );

        let mut cmd = Command::new(tool("unshare"));
        cmd.env_clear()
            .env("PATH", SYSTEM_PATH)
            .args(["--mount", "--propagation", "private", "--"])
            .arg(tool("sh"))
            .args(["-c", SETUP, "sh"])
            .arg(&self.root)
            .arg(state.path());
        let mut volumes = Vec::new();
        for (path, v) in c.volumes {
            assert!(path.starts_with('/'), "mount path {path} is not absolute");
            cmd.arg(if v.read_only() { "ro" } else { "rw" })
                .arg(v.dir())
                .arg(path);
            volumes.push((*v).clone());
        }
        cmd.arg("--")
            .arg(tool("setpriv"))
            .arg("--no-new-privs")
            .arg(tool("env"))
            .args(["-i", "--"])
            .args(merged.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(tool("chroot"))
            .arg(format!("--userspec={uid}:{gid}"))
            .arg(format!("--groups={gid}"))
            .arg(state.path().join("root"))
            .args(&self.config.entrypoint)
            .args(&args);
        let child = cmd
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(state.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(state.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("unshare starts");
        ContainerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            state,
            _volumes: volumes,
        }
    }
}

/// How [`Image::start`] runs the image, as a Pod's container spec says it.
#[derive(Default, Clone, Copy)]
pub struct Container<'a> {
    /// After the image's `ENV`; `PORT` is a free port unless given here.
    pub env: &'a [(&'a str, &'a str)],
    /// The arguments after the entry point (Kubernetes' `args`); none: the
    /// image's `CMD`.
    pub args: &'a [&'a str],
    /// `(mount path, volume)`.
    pub volumes: &'a [(&'a str, &'a Volume)],
}

/// The running entry point of an image.
pub struct ContainerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    state: tempfile::TempDir,
    _volumes: Vec<Volume>,
}

impl ContainerProcess {
    /// Waits (with a deadline) until `/healthz` answers 200; fails with the
    /// output if the process exits or the deadline passes first.
    pub async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the container exited ({status}) before answering /healthz; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the container did not answer /healthz within {START_WITHIN:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `within`) for the process to exit: its status, or
    /// `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id (of the entry point itself: every step execs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/proc/<pid>/status` (Uid, Gid, Groups, CapEff, NoNewPrivs, …).
    pub fn proc_status(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default()
    }

    /// The container's root as the host reaches it (`/proc/<pid>/root`).
    pub fn proc_root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.state.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.state.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends SIGTERM (as the kubelet stops a container) and waits for the
    /// exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new(tool("kill"))
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A volume as the kubelet lays it out on the node: a ConfigMap or Secret
/// (read-only; files behind the `..data` symlink, swapped whole by
/// [`Volume::update`]) or an emptyDir (writable, mode 0777). Clones share
/// the folder; it goes when the last one does.
#[derive(Clone)]
pub struct Volume(Arc<VolumeInner>);

struct VolumeInner {
    dir: tempfile::TempDir,
    projected: bool,
}

impl Volume {
    /// A ConfigMap volume with `files` (key, content).
    pub fn config_map(files: &[(&str, &str)]) -> Volume {
        Volume::projected(files)
    }

    /// A Secret volume with `files` (key, content); like a ConfigMap's, the
    /// files are 0644 (`defaultMode`), owned by root.
    pub fn secret(files: &[(&str, &str)]) -> Volume {
        Volume::projected(files)
    }

    fn projected(files: &[(&str, &str)]) -> Volume {
        let v = Volume::folder(true, 0o755);
        v.update(files);
        v
    }

    /// An empty, writable folder (`emptyDir: {}`, mode 0777).
    pub fn empty_dir() -> Volume {
        Volume::folder(false, 0o777)
    }

    fn folder(projected: bool, mode: u32) -> Volume {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("relay-volume.")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        Volume(Arc::new(VolumeInner { dir, projected }))
    }

    /// The folder on the host (what is mounted).
    pub fn dir(&self) -> &Path {
        self.0.dir.path()
    }

    /// ConfigMaps and Secrets are mounted read-only, emptyDirs writable.
    pub fn read_only(&self) -> bool {
        self.0.projected
    }

    /// Replaces the ConfigMap's or Secret's files with `files`, as the
    /// kubelet's atomic writer does: the new payload in a new
    /// `..<timestamp>` folder, a `..data_tmp` symlink to it renamed over
    /// `..data` (the one atomic step: a reader sees the old files or the
    /// new ones, never a mix), `<key> -> ..data/<key>` for new keys, removed
    /// for gone ones, then the old payload removed.
    pub fn update(&self, files: &[(&str, &str)]) {
        use std::os::unix::fs::PermissionsExt;
        assert!(self.0.projected, "only ConfigMap and Secret volumes update");
        let dir = self.dir();
        for (key, _) in files {
            assert!(
                !key.is_empty() && !key.starts_with("..") && !key.contains('/'),
                "bad key {key:?}"
            );
        }
        let data = dir.join("..data");
        let old = std::fs::read_link(&data).ok();
        let ts = new_timestamp_dir(dir);
        for (key, content) in files {
            let f = ts.join(key);
            std::fs::write(&f, content).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        for (key, _) in files {
            let link = dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(key), &link).unwrap();
            }
        }
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !files.iter().any(|(k, _)| *k == name) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }
}

/// A new `..2026_12_06_11_00_00.123456789` folder (UTC time, then digits
/// that make it unique, as the kubelet's `MkdirTemp` does), mode 0755.
fn new_timestamp_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let now = chrono::Utc::now();
    let mut n = now.timestamp_subsec_nanos();
    loop {
        let p = dir.join(format!("{}{n:09}", now.format("..%Y_%m_%d_%H_%M_%S.")));
        match std::fs::create_dir(&p) {
            Ok(()) => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                return p;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n = (n + 1) % 1_000_000_000,
            Err(e) => panic!("{}: {e}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(p: &Path) -> String {
        std::fs::read_link(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .display()
            .to_string()
    }

    /// What a reader sees through `..data`: key -> content.
    fn read(v: &Volume) -> BTreeMap<String, String> {
        std::fs::read_dir(v.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .map(|n| {
                let text = std::fs::read_to_string(v.dir().join(&n)).unwrap();
                (n, text)
            })
            .collect()
    }

    /// The kubelet's layout: `..<timestamp>` holds the files, `..data`
    /// points at it, each key is a symlink through `..data`; an update
    /// swaps `..data` to a new folder, adds and removes keys' links and
    /// removes the old folder.
    #[test]
    fn a_secret_volume_is_laid_out_and_swapped_as_the_kubelet_does() {
        use std::os::unix::fs::PermissionsExt;
        let v = Volume::secret(&[("token", "one\n"), ("old", "x")]);
        assert!(v.read_only());
        let first = link(&v.dir().join("..data"));
        assert!(kubelet_timestamp(&first), "{first}");
        assert_eq!(link(&v.dir().join("token")), "..data/token");
        assert_eq!(
            read(&v),
            BTreeMap::from([("old".into(), "x".into()), ("token".into(), "one\n".into())])
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&v.dir().join("token")), 0o644);
        assert_eq!(mode(&v.dir().join(&first)), 0o755);
        assert_eq!(mode(v.dir()), 0o755);

        v.update(&[("token", "two\n"), ("new", "y")]);
        let second = link(&v.dir().join("..data"));
        assert_ne!(first, second);
        assert!(!v.dir().join(&first).exists(), "the old payload is gone");
        assert!(!v.dir().join("..data_tmp").exists());
        assert!(std::fs::symlink_metadata(v.dir().join("old")).is_err());
        assert_eq!(
            read(&v),
            BTreeMap::from([("new".into(), "y".into()), ("token".into(), "two\n".into())])
        );
        let entries: Vec<String> = std::fs::read_dir(v.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            entries.len(),
            4,
            "..data, the payload, two keys: {entries:?}"
        );
    }

    /// `..2026_12_06_11_00_00.123456789`
    fn kubelet_timestamp(name: &str) -> bool {
        let Some(rest) = name.strip_prefix("..") else {
            return false;
        };
        let shape = "dddd_dd_dd_dd_dd_dd.ddddddddd";
        rest.len() == shape.len()
            && rest.chars().zip(shape.chars()).all(|(c, s)| match s {
                'd' => c.is_ascii_digit(),
                s => c == s,
            })
    }

    #[test]
    fn an_empty_dir_is_writable_by_anyone_and_never_updated() {
        use std::os::unix::fs::PermissionsExt;
        let v = Volume::empty_dir();
        assert!(!v.read_only());
        let mode = std::fs::metadata(v.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        let r = std::panic::catch_unwind(|| v.update(&[("k", "v")]));
        assert!(r.is_err());
    }

    #[test]
    fn the_image_user_is_read_as_numbers() {
        let config = ImageConfig::parse(&serde_json::json!([{
            "Architecture": "arm64", "Os": "linux",
            "Config": {"User": "65532:65532", "Env": ["PATH=/bin", "PORT=8080", "PORT=9090"],
                       "Entrypoint": ["/relay"], "ExposedPorts": {"8080/tcp": {}},
                       "Labels": {"org.opencontainers.image.version": "0.1.0"}}
        }]));
        assert_eq!(config.uid_gid(), (65532, 65532));
        assert_eq!(config.env_var("PORT"), Some("9090"), "the last one wins");
        assert_eq!(config.entrypoint, ["/relay"]);
        assert!(config.cmd.is_empty());
        assert_eq!(config.architecture, "arm64");
        let named = ImageConfig {
            user: "nonroot".into(),
            ..config
        };
        assert!(std::panic::catch_unwind(|| named.uid_gid()).is_err());
    }
}
