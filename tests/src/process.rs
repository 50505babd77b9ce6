//! A real `relay serve` process on a free port, with its output kept in files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::RequestFile;

/// How [`RelayProcess::start_with`] starts `relay serve`.
pub struct Serve<'a> {
    /// The config (`$DIR`: the process's folder); none: the embedded default.
    pub config: Option<&'a str>,
    pub env: &'a [(&'a str, &'a str)],
    /// More arguments after `serve --config … --listen …`.
    pub args: &'a [&'a str],
    /// The address to listen on (on a free port).
    pub listen_ip: &'a str,
    /// A command the binary is run under (`prlimit --nofile=64`).
    pub wrapper: &'a [&'a str],
}

impl Default for Serve<'_> {
    fn default() -> Self {
        Serve {
            config: None,
            env: &[],
            args: &[],
            listen_ip: "127.0.0.1",
            wrapper: &[],
        }
    }
}

pub struct RelayProcess {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RelayProcess {
    /// Starts `binary serve --config <config>` and waits until `/healthz` answers.
    /// `$DIR` in the config stands for the process's own temporary folder.
    pub async fn start(binary: &Path, config: &str) -> RelayProcess {
        RelayProcess::spawn(binary, Some(config), &[]).await
    }

    /// As `start`, with extra environment variables.
    pub async fn start_with_env(binary: &Path, config: &str, env: &[(&str, &str)]) -> RelayProcess {
        RelayProcess::spawn(binary, Some(config), env).await
    }

    /// Starts `binary serve` on its embedded default (no config anywhere).
    pub async fn start_default(binary: &Path) -> RelayProcess {
        RelayProcess::spawn(binary, None, &[]).await
    }

    async fn spawn(binary: &Path, config: Option<&str>, env: &[(&str, &str)]) -> RelayProcess {
        RelayProcess::start_with(
            binary,
            &Serve {
                config,
                env,
                ..Serve::default()
            },
        )
        .await
    }

    /// Starts `relay serve` as `how` says and waits until `/healthz`
    /// answers on `127.0.0.1` (which reaches a wildcard listener too).
    pub async fn start_with(binary: &Path, how: &Serve<'_>) -> RelayProcess {
        let p = RelayProcess::launch(binary, how);
        p.wait_healthy().await;
        p
    }

    /// Starts `relay serve` as `how` says without waiting for it.
    pub fn launch(binary: &Path, how: &Serve<'_>) -> RelayProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = match how.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.env_remove("RELAY_INSECURE_NO_AUTH")
            .env_remove("RELAY_LISTEN")
            .envs(how.env.iter().copied());
        cmd.arg("serve")
            .env_remove("RELAY_CONFIG")
            .env("RELAY_LOG", "info");
        if let Some(config) = how.config {
            let config = config.replace("$DIR", &dir.path().display().to_string());
            let cfg_path = dir.path().join("relay.yaml");
            std::fs::write(&cfg_path, config).unwrap();
            cmd.arg("--config").arg(&cfg_path);
        }
        let child = cmd
            .args([
                "--listen",
                &format!("{}:{port}", how.listen_ip),
                "--drain-seconds",
                "5",
            ])
            .args(how.args)
            .current_dir(dir.path())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("relay binary starts");
        RelayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Waits (at most `within`) for the process to exit: its status, or
    /// `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
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

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not become healthy; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.path("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts one request file to `url`: `(status, body as JSON)`.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    f: &RequestFile,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(f.method.as_bytes()).unwrap();
    let mut req = client.request(method, url).body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(
            k,
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Posts a structured CloudEvent.
pub async fn send_structured(
    client: &reqwest::Client,
    url: &str,
    event: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(event).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// A function binary started as its host starts it: no arguments, the
/// config named by `RELAY_CONFIG`, output kept in files.
/// A function: the `relay` binary and the function it serves, named as its
/// host names it (`RELAY_FUNCTION`); a bare path is a binary of its own.
#[derive(Debug, Clone, Copy)]
pub struct Binary<'a> {
    pub path: &'a str,
    pub function: Option<&'a str>,
}

impl<'a> Binary<'a> {
    /// `path` (the `relay` binary) serving as the function `name`.
    pub const fn function(path: &'a str, name: &'a str) -> Binary<'a> {
        Binary {
            path,
            function: Some(name),
        }
    }

    /// The command that starts it, with `RELAY_FUNCTION` set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.path);
        if let Some(f) = self.function {
            c.env("RELAY_FUNCTION", f);
        }
        c
    }
}

impl<'a> From<&'a str> for Binary<'a> {
    fn from(path: &'a str) -> Binary<'a> {
        Binary {
            path,
            function: None,
        }
    }
}

impl<'a> From<&'a Path> for Binary<'a> {
    fn from(path: &'a Path) -> Binary<'a> {
        Binary {
            path: path.to_str().expect("a UTF-8 binary path"),
            function: None,
        }
    }
}

pub struct FunctionProcess {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl FunctionProcess {
    /// `$DIR` in the config stands for the process's own temporary folder.
    pub fn start<'a>(
        binary: impl Into<Binary<'a>>,
        config: &str,
        env: &[(String, String)],
    ) -> FunctionProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = config.replace("$DIR", &dir.path().display().to_string());
        let cfg_path = dir.path().join("relay.yaml");
        std::fs::write(&cfg_path, config).unwrap();
        let child = binary
            .into()
            .command()
            .env("RELAY_CONFIG", &cfg_path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("function binary starts");
        FunctionProcess { child, dir }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `within`) for the process to exit: its status, or
    /// `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
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

    /// Waits (at most 30 s) until the process's stderr or stdout has
    /// `text`; panics with both otherwise.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stderr().contains(text) && !self.stdout().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}\n{}",
                self.stderr(),
                self.stdout()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a function in HTTP mode on a free `$PORT` and waits until
    /// `/healthz` answers; returns it and its base URL.
    pub async fn start_http<'a>(
        binary: impl Into<Binary<'a>>,
        config: &str,
        env: &[(String, String)],
    ) -> (FunctionProcess, String) {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("PORT".into(), port.to_string()));
        // Loopback, as a test has no network policy to keep others out:
        // events need no inbound auth there (an env given wins).
        if !env.iter().any(|(k, _)| k == "RELAY_LISTEN") {
            env.push(("RELAY_LISTEN".into(), format!("127.0.0.1:{port}")));
        }
        let f = FunctionProcess::start(binary, config, &env);
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "function did not start: {}",
                f.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (f, base)
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `relay <args>` as an operator runs it (`RELAY_LOG=warn`, `env` added):
/// whether it succeeded, its stdout as JSON, and that stdout as printed.
pub async fn relay_json(
    binary: &str,
    args: &[&str],
    env: &[(String, String)],
) -> (bool, serde_json::Value, String) {
    let out = tokio::process::Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RELAY_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "relay {args:?}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v, stdout)
}
