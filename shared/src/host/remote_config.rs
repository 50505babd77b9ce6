//! The config from AWS rather than a file: `RELAY_CONFIG=ssm://<parameter>`
//! (SSM Parameter Store, read with decryption) or `s3://<bucket>/<key>` (an
//! S3 object), so a deployment changes its Notifications without a new
//! artifact. Read at start (a cold start on Lambda) and checked again at
//! most once per TTL (`RELAY_CONFIG_TTL_SECONDS`, default 60): on Lambda at
//! the start of an invocation, in HTTP mode by a background task (and on
//! SIGHUP). A changed config is applied as a hot reload is
//! ([`reload::reload_with`]): compiled whole first, and if it is invalid
//! the old one keeps serving, logged with every error.
//!
//! A check asks only whether the config changed: SSM answers the
//! parameter's version, S3 answers `304 Not Modified` to the object's last
//! ETag. A version seen once is not applied again, so an invalid one is
//! logged once, not every TTL.
//!
//! S3 is behind the cargo feature `config-s3` (its client adds 1.2 MB to a
//! Lambda artifact, over the size budget: docs/deploy-aws.md); a build
//! without it refuses `s3://` at start, saying so.
//!
//! Names: `ssm://tekton-relay/relay.yaml` is the parameter
//! `/tekton-relay/relay.yaml` (a name is always a path; `ssm:///a/b` is the
//! same), and `ssm://arn:aws:ssm:…:parameter/…` an ARN as it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::delivery::provider::Registry;
use crate::event::config::{ConfigErrors, RelayConfig};
use crate::host::reload;
use crate::host::server::{App, SharedApp};

/// The environment variable of the check interval, in seconds.
pub const TTL_ENV: &str = "RELAY_CONFIG_TTL_SECONDS";
/// How often the config is checked without [`TTL_ENV`].
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The largest TTL taken: a day.
const MAX_TTL_SECONDS: u64 = 86_400;
/// The longest a read of the config may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A config larger than this is refused rather than read (an SSM parameter
/// holds at most 8 KB; an S3 object could hold anything).
pub const MAX_CONFIG_BYTES: i64 = 1 << 20;

/// Where a remote config lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A parameter name (`/a/b`) or ARN.
    Ssm {
        name: String,
    },
    S3 {
        bucket: String,
        key: String,
    },
}

impl Location {
    /// The location `spec` names; `Ok(None)` when it is no `ssm://` or
    /// `s3://` URL (a file path).
    pub fn parse(spec: &str) -> Result<Option<Location>, String> {
        if let Some(rest) = spec.strip_prefix("ssm://") {
            let name = if rest.starts_with("arn:") || rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            };
            if name.trim_matches('/').is_empty() {
                return Err(format!("{spec:?} names no SSM parameter"));
            }
            return Ok(Some(Location::Ssm { name }));
        }
        if let Some(rest) = spec.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(Some(Location::S3 {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                    }))
                }
                _ => Err(format!("{spec:?} is not s3://<bucket>/<key>")),
            };
        }
        Ok(None)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Ssm { name } => write!(f, "SSM parameter {name}"),
            Location::S3 { bucket, key } => write!(f, "S3 object s3://{bucket}/{key}"),
        }
    }
}

/// [`TTL_ENV`] from `env`: whole seconds, 1 to a day; unset is
/// [`DEFAULT_TTL`], anything else is refused.
pub fn ttl_from(env: impl Fn(&str) -> Option<String>) -> Result<Duration, String> {
    match env(TTL_ENV).filter(|v| !v.trim().is_empty()) {
        None => Ok(DEFAULT_TTL),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(format!(
                "{TTL_ENV} must be whole seconds from 1 to {MAX_TTL_SECONDS}, got {v:?}"
            )),
        },
    }
}

enum Client {
    Ssm {
        client: aws_sdk_ssm::Client,
        name: String,
    },
    #[cfg(feature = "config-s3")]
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        key: String,
    },
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The version last read: nothing to do.
    Unchanged,
    /// A version not read before, and its text.
    Changed(String),
}

/// A config in SSM or S3, and the version of it last read.
pub struct RemoteConfig {
    location: Location,
    client: Client,
    /// The SSM parameter's version, or the S3 object's ETag.
    seen: tokio::sync::Mutex<Option<String>>,
}

impl RemoteConfig {
    /// Credentials, region and endpoint (`AWS_ENDPOINT_URL`) from the
    /// environment. A read (retries included) takes at most
    /// [`READ_TIMEOUT`]: on Lambda an invocation waits for it.
    pub async fn open(location: Location) -> Result<RemoteConfig, String> {
        let conf = crate::event::config::aws::loader()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(READ_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        RemoteConfig::from_conf(&conf, location)
    }

    /// An error for an S3 location in a build without S3.
    pub fn from_conf(
        conf: &aws_config::SdkConfig,
        location: Location,
    ) -> Result<RemoteConfig, String> {
        let client = match &location {
            Location::Ssm { name } => Client::Ssm {
                client: aws_sdk_ssm::Client::new(conf),
                name: name.clone(),
            },
            #[cfg(feature = "config-s3")]
            Location::S3 { bucket, key } => Client::S3 {
                client: aws_sdk_s3::Client::new(conf),
                bucket: bucket.clone(),
                key: key.clone(),
            },
            #[cfg(not(feature = "config-s3"))]
            Location::S3 { .. } => {
                let _ = conf;
                return Err(format!(
                    "{location}: this build reads no config from S3 (built without the cargo feature config-s3); use ssm://… or a file"
                ));
            }
        };
        Ok(RemoteConfig {
            location,
            client,
            seen: tokio::sync::Mutex::new(None),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Reads the config if it changed since the last read. The error says
    /// why it could not be read (no such parameter, bucket or key, access
    /// denied, …); its location is [`RemoteConfig::location`].
    pub async fn fetch(&self) -> Result<Fetched, String> {
        let mut seen = self.seen.lock().await;
        let (version, text) = match &self.client {
            Client::Ssm { client, name } => {
                let out = client
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        if e.as_service_error()
                            .is_some_and(|s| s.is_parameter_not_found())
                        {
                            "no such parameter".to_string()
                        } else {
                            aws_sdk_ssm::error::DisplayErrorContext(e).to_string()
                        }
                    })?;
                let p = out.parameter.ok_or("SSM answered no parameter")?;
                let version = p.version().to_string();
                if seen.as_deref() == Some(version.as_str()) {
                    return Ok(Fetched::Unchanged);
                }
                let text = p.value.unwrap_or_default();
                (version, text)
            }
            #[cfg(feature = "config-s3")]
            Client::S3 {
                client,
                bucket,
                key,
            } => match self.fetch_s3(client, bucket, key, seen.as_deref()).await? {
                None => return Ok(Fetched::Unchanged),
                Some(read) => read,
            },
        };
        *seen = Some(version);
        Ok(Fetched::Changed(text))
    }

    /// `None` when the object still has the ETag `seen`.
    #[cfg(feature = "config-s3")]
    async fn fetch_s3(
        &self,
        c: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        seen: Option<&str>,
    ) -> Result<Option<(String, String)>, String> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let out = c
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_none_match(seen.map(str::to_string))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                if e.raw_response().map(|r| r.status().as_u16()) == Some(304) {
                    return Ok(None);
                }
                let why = match e.as_service_error() {
                    Some(s) if s.is_no_such_key() => "no such key".to_string(),
                    Some(s) if s.code() == Some("NoSuchBucket") => "no such bucket".to_string(),
                    _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                };
                return Err(why);
            }
        };
        if out.content_length().is_some_and(|n| n > MAX_CONFIG_BYTES) {
            return Err(format!(
                "{} bytes, over the {MAX_CONFIG_BYTES} a config may have",
                out.content_length().unwrap_or_default()
            ));
        }
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8 text".to_string())?;
        Ok(Some((etag, text)))
    }

    /// Reads and parses the config (with no deployment overrides), for the
    /// start: every error names the location.
    pub async fn load(&self) -> Result<RelayConfig, ConfigErrors> {
        *self.seen.lock().await = None;
        let document = self.location.to_string();
        match self.fetch().await {
            Ok(Fetched::Changed(text)) => parse(&document, &text),
            // Nothing was seen before this read, so it cannot be unchanged.
            Ok(Fetched::Unchanged) => Err(errs(&document, "read nothing".into())),
            Err(e) => Err(errs(&document, format!("cannot read: {e}"))),
        }
    }
}

fn errs(document: &str, message: String) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    errs.push(document, "", message);
    errs
}

/// The text's config; an error names `document` where the text's own
/// labels would say only `document N`.
fn parse(location: &str, text: &str) -> Result<RelayConfig, ConfigErrors> {
    RelayConfig::parse(text).map_err(|mut errs| {
        for e in &mut errs.0 {
            e.document = format!("{location}: {}", e.document);
        }
        errs
    })
}

/// Keeps an app's config current from a [`RemoteConfig`].
pub struct Refresh {
    remote: Arc<RemoteConfig>,
    ttl: Duration,
    next: tokio::sync::Mutex<Instant>,
    #[cfg(unix)]
    hangup: std::sync::Mutex<Option<tokio::signal::unix::Signal>>,
}

impl Refresh {
    /// Create it before the first read: SIGHUP then asks for a check rather
    /// than ending the process (HTTP mode). Needs a Tokio runtime.
    pub fn new(remote: Arc<RemoteConfig>, ttl: Duration) -> Refresh {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; checking the config every TTL only");
                None
            }
        };
        Refresh {
            remote,
            ttl,
            next: tokio::sync::Mutex::new(Instant::now() + ttl),
            #[cfg(unix)]
            hangup: std::sync::Mutex::new(hangup),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// On Lambda, at the start of an invocation: checks the config if the
    /// TTL has passed since the last check (one invocation waits for it;
    /// those at once with it do not check again).
    pub async fn if_due(&self, app: &App, registry: &Registry) {
        {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            if now < *next {
                return;
            }
            *next = now + self.ttl;
        }
        self.check(app, registry, "TTL").await;
    }

    /// Reads the config and applies it if it changed; whatever fails, the
    /// current config stays (logged).
    pub async fn check(&self, app: &App, registry: &Registry, trigger: &str) {
        let location = self.remote.location();
        match self.remote.fetch().await {
            Ok(Fetched::Unchanged) => {
                tracing::debug!(%location, "config unchanged");
            }
            Ok(Fetched::Changed(text)) => {
                let loaded = parse(&location.to_string(), &text);
                match reload::reload_with(app, loaded, registry).await {
                    Ok(n) => {
                        tracing::info!(%location, trigger, notifications = n, "config reloaded")
                    }
                    Err(e) => tracing::error!(
                        %location,
                        trigger,
                        "config reload rejected; the previous config stays:\n{e}"
                    ),
                }
            }
            Err(e) => tracing::warn!(
                %location,
                trigger,
                error = %e,
                "cannot read the config; the previous config stays"
            ),
        }
    }

    /// HTTP mode: checks every TTL and on SIGHUP, in the background, for
    /// the life of the process.
    pub fn start(self, app: SharedApp, registry: Registry) {
        let reloads = &app.engine().metrics.config_reloads;
        for result in ["applied", "rejected"] {
            reloads.with_label_values(&[result]);
        }
        tracing::info!(location = %self.remote.location(), ttl = ?self.ttl,
            "checking the config every TTL; SIGHUP checks it now");
        tokio::spawn(self.run(app, registry));
    }

    async fn run(self, app: SharedApp, registry: Registry) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.ttl, self.ttl);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hangup = self.hangup.lock().unwrap_or_else(|p| p.into_inner()).take();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            let trigger = tokio::select! {
                () = hup => "SIGHUP",
                _ = tick.tick() => "TTL",
            };
            self.check(&app, &registry, trigger).await;
        }
    }
}

/// `spec` (`--config`, else `$RELAY_CONFIG`, already resolved) as a
/// remote config: `Ok(None)` when it is a file path.
pub async fn resolve(spec: Option<&std::path::Path>) -> Result<Option<RemoteConfig>, String> {
    let Some(s) = spec.and_then(std::path::Path::to_str) else {
        return Ok(None);
    };
    Ok(match Location::parse(s)? {
        Some(location) => Some(RemoteConfig::open(location).await?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_parameters_objects_or_nothing() {
        let ssm = |n: &str| Ok(Some(Location::Ssm { name: n.into() }));
        assert_eq!(
            Location::parse("ssm://tekton-relay/relay.yaml"),
            ssm("/tekton-relay/relay.yaml")
        );
        assert_eq!(Location::parse("ssm:///a/b"), ssm("/a/b"));
        assert_eq!(Location::parse("ssm://relay"), ssm("/relay"));
        let arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/tekton-relay/relay.yaml";
        assert_eq!(Location::parse(&format!("ssm://{arn}")), ssm(arn));
        assert_eq!(
            Location::parse("s3://cfg-bucket/relay/relay.yaml"),
            Ok(Some(Location::S3 {
                bucket: "cfg-bucket".into(),
                key: "relay/relay.yaml".into()
            }))
        );
        for bad in [
            "ssm://",
            "ssm:///",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Location::parse("/etc/relay/relay.yaml"), Ok(None));
        assert_eq!(Location::parse("relay.yaml"), Ok(None));
        assert_eq!(
            Location::parse("ssm://tekton-relay/relay.yaml")
                .unwrap()
                .unwrap()
                .to_string(),
            "SSM parameter /tekton-relay/relay.yaml"
        );
    }

    #[test]
    fn the_ttl_is_whole_seconds_within_a_day() {
        let env = |v: Option<&'static str>| move |_: &str| v.map(str::to_string);
        assert_eq!(ttl_from(env(None)), Ok(DEFAULT_TTL));
        assert_eq!(ttl_from(env(Some("5"))), Ok(Duration::from_secs(5)));
        for bad in ["0", "-1", "1.5", "soon", "86401"] {
            let e = ttl_from(env(Some(bad))).unwrap_err();
            assert!(e.contains(TTL_ENV), "{e}");
        }
    }

    /// A build without S3 refuses an S3 location, saying why
    /// (`cargo test -p relay-core --no-default-features`).
    #[cfg(not(feature = "config-s3"))]
    #[test]
    fn without_the_feature_s3_is_refused_naming_it() {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .http_client(crate::event::config::aws::https_client())
            .build();
        let location = Location::parse("s3://b/k").unwrap().unwrap();
        let e = RemoteConfig::from_conf(&conf, location).err().unwrap();
        assert!(e.contains("config-s3") && e.contains("s3://b/k"), "{e}");
    }

    /// Errors of a remote config say where it came from.
    #[test]
    fn parse_errors_name_the_location() {
        let e = parse("SSM parameter /x", "kind: Notification\nspec: [\n").unwrap_err();
        assert!(e.to_string().starts_with("SSM parameter /x: "), "{e}");
    }
}
