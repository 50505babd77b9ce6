//! The configuration file: Kubernetes-style `RelayConfig`, `Provider` and
//! `Notification` documents (docs/design.md "Configuration").

pub mod auth;
pub mod aws;
pub mod check;
pub mod filter;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const API_VERSION: &str = "relay.tekton.dev/v1alpha1";
const KINDS: &[&str] = &["RelayConfig", "Provider", "Notification"];

/// One configuration error, located by document and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `Kind/name`, or `document N` when the document has no usable name.
    pub document: String,
    /// Dotted path inside the document, empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.document, self.message)
        } else {
            write!(f, "{}: {}: {}", self.document, self.path, self.message)
        }
    }
}

/// Every error found in a file.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn push(&mut self, document: &str, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            document: document.to_string(),
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// Deserializes `value` as `T`, reporting the failing path under `prefix`.
pub fn parse_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) => format!("{prefix}.{inner}"),
        };
        (path, e.into_inner().to_string())
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `kind: RelayConfig`: deployment-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RelaySettings {
    /// `memory`, `valkey://…`, `redis://…`, `dynamodb://…`.
    #[serde(default = "default_store")]
    pub store: String,
    /// `file:///path.jsonl`, `respond`, `sqs://…`, `http(s)://…`.
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
    /// Bound of the file dead-letter queue (default 64 MiB): past it the
    /// oldest segment (an eighth of the bound) is deleted, its entries counted
    /// in `relay_dead_letters_dropped_total`.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// Bound of one dead letter, serialized (default 262144, 256 KiB: also
    /// the most an SQS message holds; SQS is held to that, DynamoDB to
    /// 384 KiB). A larger one is kept without its event's data, marked
    /// `truncated`, and cannot be replayed.
    #[serde(default = "default_dead_letter_max_entry_bytes")]
    pub dead_letter_max_entry_bytes: usize,
    /// Link to a run, as a template over `namespace`, `name`, `kind` and
    /// `resource` (`pipelineruns`, `taskruns`, `customruns`).
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub idempotency: IdempotencySettings,
    /// Authentication required of requests from outside (events, dead-letter API).
    #[serde(default)]
    pub inbound_auth: Option<crate::event::config::auth::InboundAuth>,
    /// Authentication of the dead-letter API (list, replay, delete), apart
    /// from event senders': without it the API answers 404.
    #[serde(default)]
    pub api_auth: Option<crate::event::config::auth::InboundAuth>,
}

fn default_store() -> String {
    "memory".into()
}
fn default_dead_letter() -> String {
    "file://./relay-data/dead-letters.jsonl".into()
}
fn default_dead_letter_max_bytes() -> u64 {
    64 * 1024 * 1024
}

/// The default of `spec.deadLetterMaxEntryBytes`: 256 KiB, which is also the
/// most an SQS message holds.
pub const DEFAULT_DEAD_LETTER_MAX_ENTRY_BYTES: usize = 256 * 1024;

fn default_dead_letter_max_entry_bytes() -> usize {
    DEFAULT_DEAD_LETTER_MAX_ENTRY_BYTES
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            store: default_store(),
            dead_letter: default_dead_letter(),
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
            dead_letter_max_entry_bytes: default_dead_letter_max_entry_bytes(),
            dashboard_url: None,
            limits: Limits::default(),
            delivery: DeliverySettings::default(),
            idempotency: IdempotencySettings::default(),
            inbound_auth: None,
            api_auth: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests per source address on the event and dead-letter routes
    /// (docs/configuration.md "Rate limits"); off when absent.
    pub inbound_per_source: Option<InboundLimit>,
    /// Requests per provider host; off unless configured.
    pub outbound: OutboundLimits,
    /// A connection must send a request's headers within this many seconds
    /// of being accepted (or of its previous answer, when kept alive), else
    /// it is closed: a client that trickles headers, or sends nothing,
    /// cannot hold a connection. Read when the listener starts.
    #[serde(deserialize_with = "timeout_seconds")]
    pub header_read_timeout_seconds: u64,
    /// A request's body must have arrived within this many seconds of its
    /// headers, else it is answered `408` (`request_timeout`) and the
    /// connection closed. Processing the event is not included: deliveries
    /// have `delivery.deadlineSeconds`. Read when the listener starts.
    #[serde(deserialize_with = "timeout_seconds")]
    pub body_read_timeout_seconds: u64,
    /// Connections served at once. Past it the listener accepts no more
    /// until one closes (new ones wait in the kernel's backlog), so a flood
    /// of connections cannot exhaust the process's file descriptors; keep it
    /// well under `ulimit -n`. Applied before any request is read, hence
    /// before authentication. Read when the listener starts.
    #[serde(deserialize_with = "max_connections")]
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            inbound_per_source: None,
            outbound: OutboundLimits::default(),
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            max_connections: 512,
        }
    }
}

/// A timeout of 1 s to a day: zero would refuse every request, and a huge
/// one is no timeout (and overflows a deadline).
fn timeout_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (1..=86_400).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "must be between 1 and 86400 seconds, got {v}"
        )))
    }
}

fn max_connections<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if (1..=1_000_000).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "must be between 1 and 1000000, got {v}"
        )))
    }
}

/// A token bucket's settings: `{ratePerSecond, burst}`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RateSpec")]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RateSpec {
    rate_per_second: f64,
    /// Default: one second's worth, at least 1.
    #[serde(default)]
    burst: Option<u32>,
}

impl TryFrom<RateSpec> for Rate {
    type Error = String;
    fn try_from(s: RateSpec) -> Result<Rate, String> {
        let r = s.rate_per_second;
        if !(r.is_finite() && r > 0.0 && r <= 1e6) {
            return Err(format!(
                "ratePerSecond must be a number above 0 and at most 1000000, got {r}"
            ));
        }
        let burst = s.burst.unwrap_or(r.ceil() as u32).max(1);
        if s.burst == Some(0) || burst > 1_000_000 {
            return Err(format!(
                "burst must be between 1 and 1000000, got {}",
                s.burst.unwrap_or(burst)
            ));
        }
        Ok(Rate {
            per_second: r,
            burst,
        })
    }
}

/// `spec.limits.inboundPerSource`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "InboundLimitSpec")]
pub struct InboundLimit {
    pub rate: Rate,
    /// The proxies in front of the relay (addresses or CIDRs, `10.0.0.0/8`,
    /// `127.0.0.1`). A request whose peer is one of them is keyed on the
    /// rightmost `X-Forwarded-For` hop that is not: the address the last
    /// trusted proxy saw, which the sender cannot choose (hops to its left
    /// are the sender's to write). Empty (the default): the peer address,
    /// and the header is ignored. On Knative list the queue-proxy
    /// (`127.0.0.1`) and the addresses of the ingress gateway and activator
    /// (the pod network), else every request is keyed on the queue-proxy.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InboundLimitSpec {
    rate_per_second: f64,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// Replaced by `trustedProxies`; `true` is refused with the reason.
    #[serde(default)]
    trust_forwarded_for: bool,
}

impl TryFrom<InboundLimitSpec> for InboundLimit {
    type Error = String;
    fn try_from(s: InboundLimitSpec) -> Result<InboundLimit, String> {
        if s.trust_forwarded_for {
            // Its meaning (the first hop) was the sender's choice of bucket;
            // silently giving it another meaning would hide the change.
            return Err("trustForwardedFor is no longer supported: it keyed the limit on the first X-Forwarded-For hop, which any sender writes. List the proxies in front of the relay instead (trustedProxies: [10.0.0.0/8, 127.0.0.1]); the limit then keys on the rightmost hop they did not add".into());
        }
        let trusted_proxies = s
            .trusted_proxies
            .iter()
            .map(|p| parse_net(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InboundLimit {
            rate: Rate::try_from(RateSpec {
                rate_per_second: s.rate_per_second,
                burst: s.burst,
            })?,
            trusted_proxies,
        })
    }
}

/// `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`, `::1`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let t = s.trim();
    t.parse::<ipnet::IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("trustedProxies: {s:?} is neither an address nor a CIDR (10.0.0.0/8)"))
}

/// `spec.limits.outbound`: `default` for every provider host (each its own
/// bucket), `hosts` for named ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundLimits {
    pub default: Option<Rate>,
    pub hosts: BTreeMap<HostName, Rate>,
}

/// A host name as in a URL (`api.github.com`, `10.0.0.7`), lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HostName(String);

impl HostName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostName {
    type Error = String;
    fn try_from(s: String) -> Result<HostName, String> {
        // What the URL parser makes of it must be itself: a host, no more.
        let lower = s.to_ascii_lowercase();
        let parsed = url::Url::parse(&format!("http://{lower}/")).ok();
        if !lower.is_empty() && parsed.as_ref().and_then(url::Url::host_str) == Some(lower.as_str())
        {
            Ok(HostName(lower))
        } else {
            Err(format!(
                "{s:?} is not a host name: write the host alone (api.github.com), without scheme, port or path"
            ))
        }
    }
}

/// Retry policy of one delivery (docs/design.md "Delivery semantics" 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DeliverySettings {
    /// Attempts per Notification and event, the first included.
    pub max_attempts: u32,
    /// All attempts of one event must fit in this many seconds.
    pub deadline_seconds: f64,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Timeout of one provider request.
    pub request_timeout_seconds: f64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: 4,
            deadline_seconds: 20.0,
            initial_backoff_ms: 200,
            max_backoff_ms: 5_000,
            request_timeout_seconds: 10.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IdempotencySettings {
    /// How long a claim holds while its delivery runs.
    pub lease_seconds: u64,
    /// How long a delivered key is remembered.
    pub done_ttl_seconds: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        IdempotencySettings {
            lease_seconds: 60,
            done_ttl_seconds: 24 * 3600,
        }
    }
}

/// `kind: Provider`: one external service. Its settings sit in the block
/// named after its type and are checked by the provider's factory.
#[derive(Debug, Clone)]
pub struct ProviderDoc {
    pub name: String,
    pub provider_type: String,
    pub settings: Value,
}

/// How a Notification tells two events of one run apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Dedupe {
    /// Every distinct condition change (status, reason, message).
    #[default]
    Condition,
    /// Once per run and phase (`started`, `running`, `unknown`, …): what a
    /// commit status shows.
    State,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationSpec {
    pub provider_ref: ProviderRef,
    #[serde(default)]
    pub filter: Option<filter::FilterSpec>,
    /// A minijinja template for the provider's text or body.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub dedupe: Dedupe,
    /// What to do, for providers that can do several things (GitHub:
    /// `status`, `checkRun`, `comment`, `deployment`).
    #[serde(default)]
    pub action: Option<String>,
    /// Provider-specific settings of this Notification (a status context,
    /// say), checked by the provider.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRef {
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct NotificationDoc {
    pub name: String,
    pub spec: NotificationSpec,
}

/// A parsed file: the documents, checked for shape and references.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// `RelayConfig/<name>`, for error messages.
    pub settings_document: String,
    pub settings: RelaySettings,
    pub providers: Vec<ProviderDoc>,
    pub notifications: Vec<NotificationDoc>,
}

/// The embedded default: memory store, file dead letters under
/// `./relay-data/`, one `log` Notification for every event. The file stays
/// at `shared/src/config/`, where the tests that validate every config in
/// the repository look for it.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/embedded-default.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: Value,
}

impl RelayConfig {
    pub fn embedded_default() -> RelayConfig {
        RelayConfig::parse(EMBEDDED_DEFAULT).expect("the embedded default config is valid")
    }

    pub fn load(path: &Path) -> Result<RelayConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(&path.display().to_string(), "", format!("cannot read: {e}"));
            errs
        })?;
        RelayConfig::parse(&text)
    }

    /// Parses every document, collecting every error rather than the first.
    pub fn parse(text: &str) -> Result<RelayConfig, ConfigErrors> {
        let mut errs = ConfigErrors::default();
        let mut cfg = RelayConfig {
            settings_document: "RelayConfig".into(),
            ..RelayConfig::default()
        };
        let mut seen_relay = false;
        let mut names: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let label = format!("document {}", i + 1);
            let value = match serde_yaml_ng::Value::deserialize(doc) {
                Ok(serde_yaml_ng::Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    errs.push(&label, "", format!("invalid YAML: {e}"));
                    // The YAML stream cannot be resynchronised after a syntax error.
                    break;
                }
            };
            let json: Value = match serde_json::to_value(&value) {
                Ok(j) => j,
                Err(e) => {
                    errs.push(&label, "", format!("not representable as JSON: {e}"));
                    continue;
                }
            };
            let env: Envelope = match parse_at(json.clone(), "") {
                Ok(env) => env,
                Err((path, msg)) => {
                    let name = json
                        .get("kind")
                        .and_then(Value::as_str)
                        .zip(json.pointer("/metadata/name").and_then(Value::as_str))
                        .map_or(label, |(k, n)| format!("{k}/{n}"));
                    errs.push(&name, path, msg);
                    continue;
                }
            };
            let doc_name = format!("{}/{}", env.kind, env.metadata.name);
            if env.api_version != API_VERSION {
                errs.push(
                    &doc_name,
                    "apiVersion",
                    format!(
                        "unknown apiVersion {:?}, expected {API_VERSION}",
                        env.api_version
                    ),
                );
            }
            if let Some(first) = names.insert((env.kind.clone(), env.metadata.name.clone()), i + 1)
            {
                errs.push(
                    &doc_name,
                    "metadata.name",
                    format!("duplicate name (also document {first})"),
                );
            }
            let spec = if env.spec.is_null() {
                Value::Object(Default::default())
            } else {
                env.spec
            };
            match env.kind.as_str() {
                "RelayConfig" => {
                    if seen_relay {
                        errs.push(&doc_name, "", "only one RelayConfig document is allowed");
                    }
                    seen_relay = true;
                    cfg.settings_document = doc_name.clone();
                    match parse_at::<RelaySettings>(spec, "spec") {
                        Ok(s) => cfg.settings = s,
                        Err((p, m)) => errs.push(&doc_name, p, m),
                    }
                }
                "Provider" => match provider_doc(env.metadata.name, spec) {
                    Ok(p) => cfg.providers.push(p),
                    Err((p, m)) => errs.push(&doc_name, p, m),
                },
                "Notification" => match parse_at::<NotificationSpec>(spec, "spec") {
                    Ok(spec) => cfg.notifications.push(NotificationDoc {
                        name: env.metadata.name,
                        spec,
                    }),
                    Err((p, m)) => errs.push(&doc_name, p, m),
                },
                other => errs.push(
                    &doc_name,
                    "kind",
                    format!(
                        "unknown kind {other:?}, expected one of {}",
                        KINDS.join(", ")
                    ),
                ),
            }
        }
        for n in &cfg.notifications {
            if !cfg
                .providers
                .iter()
                .any(|p| p.name == n.spec.provider_ref.name)
            {
                errs.push(
                    &format!("Notification/{}", n.name),
                    "spec.providerRef.name",
                    format!("no Provider named {:?}", n.spec.provider_ref.name),
                );
            }
        }
        errs.into_result(cfg)
    }
}

fn provider_doc(name: String, spec: Value) -> Result<ProviderDoc, (String, String)> {
    let Value::Object(mut map) = spec else {
        return Err(("spec".into(), "expected a map".into()));
    };
    let provider_type = match map.remove("type") {
        Some(Value::String(t)) => t,
        Some(_) => return Err(("spec.type".into(), "expected a string".into())),
        None => return Err(("spec".into(), "missing field `type`".into())),
    };
    let settings = map
        .remove(&provider_type)
        .unwrap_or(Value::Object(Default::default()));
    if let Some(extra) = map.keys().next() {
        return Err((
            format!("spec.{extra}"),
            format!("unknown field `{extra}`, expected `type` or `{provider_type}`"),
        ));
    }
    Ok(ProviderDoc {
        name,
        provider_type,
        settings,
    })
}

/// The environment variable that replaces `spec.inboundAuth`.
pub const INBOUND_AUTH_ENV: &str = "RELAY_INBOUND_AUTH";

/// `RELAY_STORE` and `RELAY_DEAD_LETTER` replace `spec.store` and
/// `spec.deadLetter`: the infrastructure that creates the table and the
/// queue (Terraform) names them, while the packaged relay.yaml stays the
/// same. `RELAY_INBOUND_AUTH` (an `inboundAuth` object, JSON or YAML)
/// replaces `spec.inboundAuth`: how the platform authenticates to a
/// function (Knative's OIDC, knative/components/oidc) is set apart from the
/// config the user edits. A value that is no `inboundAuth` is an error.
pub fn apply_env_overrides(
    cfg: &mut RelayConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigErrors> {
    if let Some(v) = env("RELAY_STORE").filter(|v| !v.is_empty()) {
        cfg.settings.store = v;
    }
    if let Some(v) = env("RELAY_DEAD_LETTER").filter(|v| !v.is_empty()) {
        cfg.settings.dead_letter = v;
    }
    if let Some(v) = env(INBOUND_AUTH_ENV).filter(|v| !v.trim().is_empty()) {
        let mut errs = ConfigErrors::default();
        match serde_yaml_ng::from_str::<crate::event::config::auth::InboundAuth>(&v) {
            Ok(auth) => match auth.check_config() {
                Ok(()) => cfg.settings.inbound_auth = Some(auth),
                Err((path, msg)) => errs.push(
                    &format!("${INBOUND_AUTH_ENV}"),
                    if path.is_empty() {
                        "inboundAuth".to_string()
                    } else {
                        format!("inboundAuth.{path}")
                    },
                    msg,
                ),
            },
            Err(e) => errs.push(
                &format!("${INBOUND_AUTH_ENV}"),
                "inboundAuth",
                e.to_string(),
            ),
        }
        if !errs.0.is_empty() {
            return Err(errs);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let cfg = RelayConfig::embedded_default();
        assert_eq!(cfg.settings.store, "memory");
        assert_eq!(cfg.providers[0].provider_type, "log");
        assert_eq!(cfg.notifications.len(), 1);
    }

    #[test]
    fn reports_every_error_with_document_and_path() {
        let text = r#"
apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {name: relay}
spec: {store: memory, stor: typo}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: hook}
spec: {type: webhook, webhook: {url: "http://x"}, github: {}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: n1}
spec: {providerRef: {name: missing}, filter: {kinds: [PipelineRun], colour: red}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: n2}
spec: {providerRef: {name: nope}}
"#;
        let errs = RelayConfig::parse(text).unwrap_err();
        let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        assert!(
            lines[0].starts_with("RelayConfig/relay: spec.stor: unknown field `stor`"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("Provider/hook: spec.github: unknown field `github`"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("Notification/n1: spec.filter.colour: unknown field `colour`"),
            "{lines:?}"
        );
        assert_eq!(
            lines[3],
            "Notification/n2: spec.providerRef.name: no Provider named \"nope\""
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn rate_limits_parse_and_bad_ones_are_located() {
        let doc = |limits: &str| {
            format!(
                "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: r}}\nspec:\n  limits: {limits}\n"
            )
        };
        let cfg = RelayConfig::parse(&doc(
            r#"{inboundPerSource: {ratePerSecond: 5, burst: 20, trustedProxies: ["10.0.0.0/8", "127.0.0.1", "fd00::/8"]}, outbound: {default: {ratePerSecond: 2.5}, hosts: {"API.GitHub.com": {ratePerSecond: 1, burst: 10}}}}"#,
        ))
        .unwrap();
        let l = &cfg.settings.limits;
        let inbound = l.inbound_per_source.clone().unwrap();
        assert_eq!((inbound.rate.per_second, inbound.rate.burst), (5.0, 20));
        let proxies: Vec<String> = inbound
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
        assert_eq!(
            l.outbound.default.map(|r| r.burst),
            Some(3),
            "burst defaults to a second's worth"
        );
        let (host, rate) = l.outbound.hosts.iter().next().unwrap();
        assert_eq!((host.as_str(), rate.burst), ("api.github.com", 10));
        assert!(
            RelayConfig::embedded_default()
                .settings
                .limits
                .inbound_per_source
                .is_none()
        );
        let d = RelayConfig::embedded_default().settings.limits;
        assert_eq!(
            (
                d.header_read_timeout_seconds,
                d.body_read_timeout_seconds,
                d.max_connections
            ),
            (10, 30, 512),
            "the listener's limits are on by default"
        );

        for (limits, path, msg) in [
            (
                "{inboundPerSource: {ratePerSecond: 0}}",
                "spec.limits.inboundPerSource",
                "ratePerSecond must be a number above 0",
            ),
            (
                "{inboundPerSource: {ratePerSecond: 1, burst: 0}}",
                "spec.limits.inboundPerSource",
                "burst must be between 1",
            ),
            (
                "{inboundPerSource: {ratePerSecond: 1, brust: 2}}",
                "spec.limits.inboundPerSource",
                "unknown field `brust`",
            ),
            (
                "{inboundPerSource: {ratePerSecond: 1, trustForwardedFor: true}}",
                "spec.limits.inboundPerSource",
                "trustForwardedFor is no longer supported",
            ),
            (
                "{inboundPerSource: {ratePerSecond: 1, trustedProxies: [10.0.0.0/33]}}",
                "spec.limits.inboundPerSource",
                "\"10.0.0.0/33\" is neither an address nor a CIDR",
            ),
            (
                "{headerReadTimeoutSeconds: 0}",
                "spec.limits.headerReadTimeoutSeconds",
                "must be between 1 and 86400 seconds, got 0",
            ),
            (
                "{bodyReadTimeoutSeconds: 100000}",
                "spec.limits.bodyReadTimeoutSeconds",
                "must be between 1 and 86400 seconds",
            ),
            (
                "{maxConnections: 0}",
                "spec.limits.maxConnections",
                "must be between 1 and 1000000, got 0",
            ),
            (
                "{outbound: {default: {ratePerSecond: -1}}}",
                "spec.limits.outbound.default",
                "ratePerSecond must be",
            ),
            (
                r#"{outbound: {hosts: {"https://api.github.com": {ratePerSecond: 1}}}}"#,
                "spec.limits.outbound.hosts",
                "is not a host name",
            ),
            (
                r#"{outbound: {hosts: {"api.github.com:443": {ratePerSecond: 1}}}}"#,
                "spec.limits.outbound.hosts",
                "is not a host name",
            ),
        ] {
            let errs = RelayConfig::parse(&doc(limits)).unwrap_err();
            let e = &errs.0[0];
            assert!(
                e.path.starts_with(path) && e.message.contains(msg),
                "{limits}: {e}"
            );
        }
    }

    #[test]
    fn rejects_unknown_kind_and_api_version() {
        let errs = RelayConfig::parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
            .unwrap_err();
        assert_eq!(errs.0.len(), 2);
        assert_eq!(errs.0[0].path, "apiVersion");
        assert!(errs.0[1].message.contains("expected one of RelayConfig"));
    }
}
