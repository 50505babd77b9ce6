//! Real servers for tests: a Valkey/Redis server on a free port (or one that
//! already answers), and moto for DynamoDB, SQS, EventBridge, SSM and S3.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python that runs a console script: the one its `#!` line names (the
/// virtualenv's, where moto is installed).
fn interpreter(script: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(script).expect("read the moto_server script");
    let shebang = text.lines().next().and_then(|l| l.strip_prefix("#!"));
    let python = shebang.and_then(|l| l.split_whitespace().next());
    PathBuf::from(python.expect("moto_server starts with a #! line naming its Python"))
}

/// A Valkey or Redis server this test owns (or a shared one it only uses).
pub struct ValkeyServer {
    pub port: u16,
    binary: Option<PathBuf>,
    child: Option<Child>,
    /// `requirepass`, for a server this test started.
    password: Option<String>,
}

impl ValkeyServer {
    /// Starts `valkey-server` or `redis-server` on a free port; without
    /// either, uses `$RELAY_TEST_REDIS_PORT` or 6379 if a server answers there.
    pub fn start() -> ValkeyServer {
        match which(&["valkey-server", "redis-server"]) {
            Some(bin) => {
                let mut s = ValkeyServer {
                    port: free_port(),
                    binary: Some(bin),
                    child: None,
                    password: None,
                };
                s.restart();
                s
            }
            None => {
                let port = std::env::var("RELAY_TEST_REDIS_PORT")
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(6379);
                assert!(
                    answers(port),
                    "no valkey-server or redis-server on PATH and nothing answers on 127.0.0.1:{port}; \
                     install one (scripts/test does)"
                );
                ValkeyServer {
                    port,
                    binary: None,
                    child: None,
                    password: None,
                }
            }
        }
    }

    /// A server of its own that takes only clients with `password`
    /// (`requirepass`), as a production Valkey does.
    pub fn start_with_password(password: &str) -> ValkeyServer {
        let bin = which(&["valkey-server", "redis-server"]).expect(
            "valkey-server or redis-server on PATH for a password-protected server (scripts/test installs it)",
        );
        let mut s = ValkeyServer {
            port: free_port(),
            binary: Some(bin),
            child: None,
            password: Some(password.to_string()),
        };
        s.restart();
        s
    }

    /// A store URL with a key prefix of its own, so tests sharing a server
    /// never see each other's keys.
    pub fn url(&self, prefix: &str) -> String {
        format!("valkey://127.0.0.1:{}/0?prefix={prefix}:", self.port)
    }

    /// The commands this server has run, summed over `INFO commandstats`
    /// (the `INFO` and `AUTH` of this count excluded). The statistics count
    /// the commands a Lua script runs as well as the script's own call, so
    /// this is more than the round trips clients made ([`Self::monitor`]
    /// counts those).
    pub fn commands_run(&self) -> u64 {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stream = self.connect();
        stream.write_all(&resp(&["INFO", "commandstats"])).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let len: usize = line
            .trim()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("INFO answered {line:?}"));
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body).unwrap();
        // cmdstat_get:calls=81,usec=…
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter(|l| !l.starts_with("info:") && !l.starts_with("auth:"))
            .filter_map(|l| {
                l.split_once(":calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Counts the commands clients send this server from now on, by
    /// `MONITOR`: what a workload cost in round trips (the commands a Lua
    /// script runs are shown as `[… lua]` and not counted).
    pub fn monitor(&self) -> Monitor {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = self.connect();
        stream.write_all(&resp(&["MONITOR"])).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "+OK\r\n");
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0u64, String::new())));
        let shared = seen.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                // +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" …
                let client = line.split('[').nth(1).and_then(|r| r.split(']').next());
                let mut seen = shared.lock().unwrap();
                match client {
                    Some(c) if c.ends_with(" lua") => {}
                    _ if line.contains("\"relay-monitor-mark-") => seen.1 = line.clone(),
                    Some(_) => seen.0 += 1,
                    None => {}
                }
                line.clear();
            }
        });
        Monitor {
            port: self.port,
            password: self.password.clone(),
            seen,
            marks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn connect(&self) -> std::net::TcpStream {
        connect(self.port, self.password.as_deref())
    }

    pub fn can_restart(&self) -> bool {
        self.binary.is_some()
    }

    /// Kills the server (only one this test started).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            wait_until("server stop", || !answers(self.port));
        }
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let bin = self.binary.clone().expect("a server this test started");
        let mut command = Command::new(bin);
        if let Some(p) = &self.password {
            command.args(["--requirepass", p]);
        }
        let child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("valkey/redis server starts");
        self.child = Some(child);
        let port = self.port;
        wait_until("valkey/redis server", || answers(port));
    }
}

impl Drop for ValkeyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command in RESP, as a client sends it.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}

/// A connection to the server on `port`, authenticated with `password`.
fn connect(port: u16, password: Option<&str>) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    if let Some(p) = password {
        stream.write_all(&resp(&["AUTH", p])).unwrap();
        let mut ok = [0u8; 5];
        stream.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
    }
    stream
}

/// The commands clients sent a server since [`ValkeyServer::monitor`].
pub struct Monitor {
    port: u16,
    password: Option<String>,
    /// Commands counted, and the last mark seen.
    seen: std::sync::Arc<std::sync::Mutex<(u64, String)>>,
    marks: std::sync::atomic::AtomicU64,
}

impl Monitor {
    /// The commands counted up to now: a mark is sent and, once `MONITOR`
    /// shows it, everything sent before it has been counted.
    pub fn count(&self) -> u64 {
        use std::io::{Read, Write};
        let n = self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mark = format!("relay-monitor-mark-{n}");
        let mut stream = connect(self.port, self.password.as_deref());
        stream.write_all(&resp(&["ECHO", &mark])).unwrap();
        let mut echoed = vec![0u8; format!("${}\r\n{mark}\r\n", mark.len()).len()];
        stream.read_exact(&mut echoed).unwrap();
        wait_until("the monitor's mark", || {
            self.seen.lock().unwrap().1.contains(&format!("\"{mark}\""))
        });
        self.seen.lock().unwrap().0
    }
}

/// moto (PyPI `moto[server]`) on a free port, its DynamoDB writes made
/// atomic as the real service's are (see `moto_atomic.py`).
pub struct MotoServer {
    pub port: u16,
    child: Child,
}

/// The launcher: moto's own server with DynamoDB requests serialized.
const MOTO_ATOMIC: &str = include_str!("moto_atomic.py");

impl MotoServer {
    pub fn start() -> MotoServer {
        let bin = which(&["moto_server"])
            .expect("moto_server not on PATH: pip install 'moto[server]' (scripts/test does)");
        let python = interpreter(&bin);
        let port = free_port();
        let child = Command::new(python)
            .args(["-c", MOTO_ATOMIC, "127.0.0.1", &port.to_string()])
            .env("MOTO_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_until("moto_server", || answers(port));
        MotoServer { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The DynamoDB requests this server has answered, by operation
    /// (`PutItem`, `GetItem`…), counted by the launcher.
    pub async fn dynamodb_requests(&self) -> std::collections::BTreeMap<String, u64> {
        reqwest::get(format!("{}/_relay/dynamodb-requests", self.endpoint()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SDK configuration for this server: static test credentials, us-east-1.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .http_client(relay_core::config::aws::https_client())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("test", "test", None, None, "tests"),
                ),
            )
            .build()
    }

    /// Environment for a relay process talking to this server.
    pub const PROCESS_ENV: [(&'static str, &'static str); 3] = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];

    /// Environment for a relay process: credentials and this server as the
    /// endpoint of every AWS service.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = MotoServer::PROCESS_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("AWS_ENDPOINT_URL".into(), self.endpoint()));
        env.push(("AWS_REGION".into(), "us-east-1".into()));
        env
    }

    /// Creates an SQS queue and returns its URL.
    pub async fn sqs_queue(&self, name: &str) -> String {
        aws_sdk_sqs::Client::new(&self.sdk_config())
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// Puts the SSM parameter `name` (a `SecureString`, as a secret or a
    /// config with secrets in it would be), a new version over any before.
    pub async fn ssm_parameter(&self, name: &str, value: &str) {
        aws_sdk_ssm::Client::new(&self.sdk_config())
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }

    /// The SSM parameter `name`'s value, decrypted; `None` if there is none.
    pub async fn ssm_value(&self, name: &str) -> Option<String> {
        aws_sdk_ssm::Client::new(&self.sdk_config())
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .ok()?
            .parameter?
            .value
    }

    /// Deletes the SSM parameter `name`.
    pub async fn delete_ssm_parameter(&self, name: &str) {
        aws_sdk_ssm::Client::new(&self.sdk_config())
            .delete_parameter()
            .name(name)
            .send()
            .await
            .unwrap();
    }

    /// Writes the S3 object `key` of `bucket`, creating the bucket first
    /// if there is none.
    pub async fn put_object(&self, bucket: &str, key: &str, body: &str) {
        let s3 = aws_sdk_s3::Client::new(&self.sdk_config());
        let exists = s3.head_bucket().bucket(bucket).send().await.is_ok();
        if !exists {
            s3.create_bucket().bucket(bucket).send().await.unwrap();
        }
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// Sets the Secrets Manager secret `name`'s `SecretString` to `value`,
    /// creating the secret the first time (a new version after).
    pub async fn secret(&self, name: &str, value: &str) {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk_config());
        let exists = client
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .is_ok();
        if exists {
            client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
        } else {
            client
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
        }
    }

    /// Creates `table` with the store's schema and returns its store URL.
    pub async fn dynamodb_table(&self, table: &str) -> String {
        relay_core::store::dynamodb::DynamoStore::from_conf(&self.sdk_config(), table)
            .create_table()
            .await
            .unwrap();
        format!(
            "dynamodb://{table}?region=us-east-1&endpoint={}",
            self.endpoint()
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
