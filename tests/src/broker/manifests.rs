//! The Brokers and Triggers of a rendered manifest stream
//! (`kubectl kustomize knative/base`), read as Knative's admission webhook
//! and reconcilers read them.
//!
//! Sources (knative/eventing):
//! - `pkg/apis/eventing/v1/trigger_validation.go`: attribute names match
//!   `^[a-z][a-z0-9]*$`, one dialect per `spec.filters` entry, CESQL must
//!   parse; `trigger_defaults.go`: a Trigger without `spec.filter` gets an
//!   empty one (which passes everything).
//! - `pkg/apis/duck/v1/delivery_types.go`: `retry >= 0`, `backoffPolicy` is
//!   `linear` or `exponential`, `timeout` must be a non-zero ISO 8601
//!   duration (feature `delivery-timeout`, enabled by default),
//!   `retryAfterMax` is refused while the feature `delivery-retryafter` is
//!   disabled (its default, `pkg/apis/feature/features.go`), `format` is
//!   `json` or `binary`.
//! - `pkg/eventfilter/subscriptionsapi/create.go`: how a `spec.filters`
//!   entry becomes a filter; an entry that cannot (an `exact`, `prefix` or
//!   `suffix` with an empty attribute or value, or no dialect at all) is
//!   skipped, not refused.
//! - `vendor/github.com/rickb777/date/period` (v1.13, what
//!   `pkg/kncloudevents/retries.go` parses durations with): one decimal
//!   digit per field (`PT0.25S` is 0.2 s), a year is 365.2425 days and a
//!   month a twelfth of that.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::filter::{Filter, TriggerFilter};

/// The Knative objects of a manifest stream that a Broker's behaviour
/// depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub brokers: Vec<BrokerManifest>,
    pub triggers: Vec<TriggerManifest>,
}

/// `eventing.knative.dev/v1` `Broker`.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerManifest {
    pub namespace: String,
    pub name: String,
    pub delivery: Option<Delivery>,
}

/// `eventing.knative.dev/v1` `Trigger`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerManifest {
    pub namespace: String,
    pub name: String,
    /// `spec.broker`: a Broker of the Trigger's namespace.
    pub broker: String,
    pub filter: TriggerFilter,
    pub subscriber: Destination,
    /// `spec.delivery`. When set it replaces the Broker's delivery as a
    /// whole, dead-letter sink included (`pkg/reconciler/broker/trigger/
    /// trigger.go`, `subscribeToBrokerChannel`: `delivery :=
    /// t.Spec.Delivery; if delivery == nil { delivery = b.Spec.Delivery }`).
    pub delivery: Option<Delivery>,
}

/// A `duckv1.Destination`: a reference to an addressable (here always
/// resolved by its name), a URI, or a reference plus a relative URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub reference: Option<Reference>,
    pub uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl Destination {
    /// The key a caller maps to a base URL: the reference's name (a
    /// Service's name), else the literal URI.
    pub fn key(&self) -> &str {
        match (&self.reference, &self.uri) {
            (Some(r), _) => &r.name,
            (None, Some(u)) => u,
            (None, None) => "",
        }
    }
}

/// `spec.backoffPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    Linear,
    Exponential,
}

/// `spec.delivery.format` (a Trigger's): how the event is written to the
/// subscriber. None is binary mode (the CloudEvents SDK's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    Binary,
    Json,
}

/// A `DeliverySpec`, its durations parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub dead_letter_sink: Option<Destination>,
    /// Retries after the first attempt (`RetryMax`); none is 0.
    pub retry: Option<u32>,
    /// The timeout of each attempt; none: no timeout.
    pub timeout: Option<Duration>,
    pub backoff_policy: Option<BackoffPolicy>,
    pub backoff_delay: Option<Duration>,
    pub format: Option<EventFormat>,
}

impl Delivery {
    /// How many requests a failing delivery makes: the first and `retry`
    /// retries.
    pub fn max_attempts(&self) -> u32 {
        1 + self.retry.unwrap_or(0)
    }

    /// The wait before retry number `retry_index + 1`. `retry_index` is
    /// go-retryablehttp's `attemptNum`, 0 before the first retry
    /// (`vendor/github.com/hashicorp/go-retryablehttp/client.go`, `Do`:
    /// `c.Backoff(min, max, i, resp)` with `i` from 0).
    /// `pkg/kncloudevents/retries.go`, `RetryConfigFromDeliverySpec`:
    /// exponential is `delay * 2^attemptNum`, linear is `delay *
    /// attemptNum` (so its first retry waits nothing); without both a
    /// policy and a delay the wait is 0.
    pub fn backoff(&self, retry_index: u32) -> Duration {
        match (self.backoff_policy, self.backoff_delay) {
            (Some(BackoffPolicy::Exponential), Some(d)) => {
                d.saturating_mul(2u32.saturating_pow(retry_index))
            }
            (Some(BackoffPolicy::Linear), Some(d)) => d.saturating_mul(retry_index),
            _ => Duration::ZERO,
        }
    }

    /// The waits before each retry, in order (`retry` entries).
    pub fn schedule(&self) -> Vec<Duration> {
        (0..self.retry.unwrap_or(0))
            .map(|i| self.backoff(i))
            .collect()
    }
}

impl Manifests {
    /// Reads every `eventing.knative.dev/v1` Broker and Trigger of a
    /// multi-document YAML stream; other documents are passed over. Refuses
    /// what Knative's admission webhook refuses, what the stand-in does not
    /// model (CESQL filters, `spec.brokerRef`, a Broker class other than
    /// `MTChannelBasedBroker`) and unknown fields (kubectl's strict field
    /// validation), each with the object and field.
    pub fn parse(yaml: &str) -> Result<Manifests, String> {
        let mut brokers = Vec::new();
        let mut triggers = Vec::new();
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .map_err(|e| format!("document {}: not YAML: {e}", index + 1))?;
            if value.is_null() {
                continue;
            }
            let api_version = value.get("apiVersion").and_then(|v| v.as_str());
            let kind = value.get("kind").and_then(|v| v.as_str());
            if api_version != Some("eventing.knative.dev/v1") {
                continue;
            }
            match kind {
                Some("Broker") => {
                    let raw: Object<RawBrokerSpec> = typed(&value, index)?;
                    brokers.push(broker(raw)?);
                }
                Some("Trigger") => {
                    let raw: Object<RawTriggerSpec> = typed(&value, index)?;
                    triggers.push(trigger(raw)?);
                }
                _ => {}
            }
        }
        Ok(Manifests { brokers, triggers })
    }
}

fn typed<T: DeserializeOwned>(value: &serde_yaml_ng::Value, index: usize) -> Result<T, String> {
    let what = format!(
        "document {} ({} {})",
        index + 1,
        value.get("kind").and_then(|v| v.as_str()).unwrap_or("?"),
        value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    );
    serde_path_to_error::deserialize(value.clone()).map_err(|e| format!("{what}: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<S> {
    metadata: Metadata,
    spec: Option<S>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBrokerSpec {
    #[allow(dead_code)]
    config: Option<serde_yaml_ng::Value>,
    delivery: Option<RawDelivery>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTriggerSpec {
    broker: Option<String>,
    broker_ref: Option<serde_yaml_ng::Value>,
    filter: Option<RawAttributesFilter>,
    filters: Option<Vec<RawFilter>>,
    subscriber: RawDestination,
    delivery: Option<RawDelivery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttributesFilter {
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    all: Option<Vec<RawFilter>>,
    any: Option<Vec<RawFilter>>,
    not: Option<Box<RawFilter>>,
    exact: Option<BTreeMap<String, String>>,
    prefix: Option<BTreeMap<String, String>>,
    suffix: Option<BTreeMap<String, String>>,
    cesql: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDelivery {
    dead_letter_sink: Option<RawDestination>,
    retry: Option<i64>,
    timeout: Option<String>,
    backoff_policy: Option<String>,
    backoff_delay: Option<String>,
    retry_after_max: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    #[serde(rename = "ref")]
    reference: Option<RawReference>,
    uri: Option<String>,
    #[allow(dead_code)]
    #[serde(rename = "CACerts")]
    ca_certs: Option<String>,
    #[allow(dead_code)]
    audience: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawReference {
    kind: Option<String>,
    /// Allowed by Knative; the stand-in resolves names only.
    #[allow(dead_code)]
    namespace: Option<String>,
    name: Option<String>,
    api_version: Option<String>,
    group: Option<String>,
    #[allow(dead_code)]
    address: Option<String>,
}

const BROKER_CLASS: &str = "eventing.knative.dev/broker.class";

fn broker(raw: Object<RawBrokerSpec>) -> Result<BrokerManifest, String> {
    let name = raw.metadata.name;
    let namespace = raw
        .metadata
        .namespace
        .unwrap_or_else(|| "default".to_string());
    let at = |field: &str| format!("Broker {namespace}/{name}: {field}");
    if let Some(class) = raw.metadata.annotations.get(BROKER_CLASS)
        && class != "MTChannelBasedBroker"
    {
        return Err(at(&format!(
            "metadata.annotations[{BROKER_CLASS}]: {class:?}: this stand-in models \
             MTChannelBasedBroker (with the InMemoryChannel) only"
        )));
    }
    let spec = raw.spec.unwrap_or_default();
    let delivery = spec
        .delivery
        .map(|d| delivery(d, false))
        .transpose()
        .map_err(|e| at(&format!("spec.delivery{e}")))?;
    Ok(BrokerManifest {
        namespace,
        name,
        delivery,
    })
}

fn trigger(raw: Object<RawTriggerSpec>) -> Result<TriggerManifest, String> {
    let name = raw.metadata.name;
    let namespace = raw
        .metadata
        .namespace
        .unwrap_or_else(|| "default".to_string());
    let at = |field: &str| format!("Trigger {namespace}/{name}: {field}");
    let spec = raw.spec.ok_or_else(|| at("spec: missing"))?;
    if spec.broker_ref.is_some() {
        return Err(at(
            "spec.brokerRef: cross-namespace Brokers (feature cross-namespace-event-links, \
             disabled by default) are not modelled; use spec.broker",
        ));
    }
    let broker = match spec.broker {
        Some(b) if !b.is_empty() => b,
        _ => return Err(at("spec.broker: missing field")),
    };
    let filter = match (&spec.filters, &spec.filter) {
        // pkg/broker/filter/filter_handler.go, filterEvent: `spec.filters`
        // first when it has entries, else `spec.filter`, else no filter.
        (Some(list), _) if !list.is_empty() => {
            for (i, f) in list.iter().enumerate() {
                validate_filter(f).map_err(|e| at(&format!("spec.filters[{i}]{e}")))?;
            }
            TriggerFilter::Filters(Filter::All(materialize_list(list)))
        }
        (_, Some(f)) => {
            if let Some(attrs) = &f.attributes {
                validate_names(attrs).map_err(|e| at(&format!("spec.filter.attributes{e}")))?;
            }
            match &f.attributes {
                Some(attrs) => TriggerFilter::Attributes(attrs.clone()),
                None => TriggerFilter::None,
            }
        }
        _ => TriggerFilter::None,
    };
    let subscriber =
        destination(spec.subscriber).map_err(|e| at(&format!("spec.subscriber{e}")))?;
    let delivery = spec
        .delivery
        .map(|d| delivery(d, true))
        .transpose()
        .map_err(|e| at(&format!("spec.delivery{e}")))?;
    Ok(TriggerManifest {
        namespace,
        name,
        broker,
        filter,
        subscriber,
        delivery,
    })
}

/// `ValidateAttributesNames`: `^[a-z][a-z0-9]*$`.
fn validate_names(attrs: &BTreeMap<String, String>) -> Result<(), String> {
    for name in attrs.keys() {
        let mut chars = name.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "[{name}]: invalid key name {name:?}: Attribute name must start with a letter \
                 and can only contain lowercase alphanumeric"
            ));
        }
    }
    Ok(())
}

/// `ValidateSubscriptionAPIFilter`, less the CESQL parser: a CESQL
/// expression is refused outright.
fn validate_filter(f: &RawFilter) -> Result<(), String> {
    let dialects = [
        f.exact.as_ref().is_some_and(|m| !m.is_empty()),
        f.prefix.as_ref().is_some_and(|m| !m.is_empty()),
        f.suffix.as_ref().is_some_and(|m| !m.is_empty()),
        f.all.as_ref().is_some_and(|l| !l.is_empty()),
        f.any.as_ref().is_some_and(|l| !l.is_empty()),
        f.not.is_some(),
        f.cesql.as_ref().is_some_and(|s| !s.is_empty()),
    ];
    if dialects.iter().filter(|d| **d).count() > 1 {
        return Err(": multiple dialects found, filters can have only one dialect set".into());
    }
    if let Some(expr) = f.cesql.as_ref().filter(|s| !s.is_empty()) {
        return Err(format!(
            ".cesql: {expr:?}: CESQL filters are not supported by this Broker stand-in \
             (use exact, prefix, suffix, all, any, not)"
        ));
    }
    for (field, map) in [
        ("exact", &f.exact),
        ("prefix", &f.prefix),
        ("suffix", &f.suffix),
    ] {
        if let Some(m) = map {
            validate_names(m).map_err(|e| format!(".{field}{e}"))?;
        }
    }
    for (field, list) in [("all", &f.all), ("any", &f.any)] {
        for (i, sub) in list.iter().flatten().enumerate() {
            validate_filter(sub).map_err(|e| format!(".{field}[{i}]{e}"))?;
        }
    }
    if let Some(sub) = &f.not {
        validate_filter(sub).map_err(|e| format!(".not{e}"))?;
    }
    Ok(())
}

/// `MaterializeSubscriptionsAPIFilter`: the first dialect set, in the
/// order exact, prefix, suffix, all, any, not; None where Knative's
/// constructor fails or no dialect is set (the entry is then skipped).
fn materialize(f: &RawFilter) -> Option<Filter> {
    let valid =
        |m: &BTreeMap<String, String>| m.iter().all(|(k, v)| !k.is_empty() && !v.is_empty());
    if let Some(m) = f.exact.as_ref().filter(|m| !m.is_empty()) {
        return valid(m).then(|| Filter::Exact(m.clone()));
    }
    if let Some(m) = f.prefix.as_ref().filter(|m| !m.is_empty()) {
        return valid(m).then(|| Filter::Prefix(m.clone()));
    }
    if let Some(m) = f.suffix.as_ref().filter(|m| !m.is_empty()) {
        return valid(m).then(|| Filter::Suffix(m.clone()));
    }
    if let Some(l) = f.all.as_ref().filter(|l| !l.is_empty()) {
        return Some(Filter::All(materialize_list(l)));
    }
    if let Some(l) = f.any.as_ref().filter(|l| !l.is_empty()) {
        return Some(Filter::Any(materialize_list(l)));
    }
    if let Some(inner) = &f.not {
        return Some(Filter::Not(materialize(inner).map(Box::new)));
    }
    None
}

/// `MaterializeFiltersList`: entries that do not materialize are skipped.
fn materialize_list(list: &[RawFilter]) -> Vec<Filter> {
    list.iter().filter_map(materialize).collect()
}

fn destination(raw: RawDestination) -> Result<Destination, String> {
    let reference = match raw.reference {
        None => None,
        Some(r) => {
            let missing = |f: &str| format!(".ref.{f}: missing field");
            let name = r
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| missing("name"))?;
            let kind = r
                .kind
                .filter(|k| !k.is_empty())
                .ok_or_else(|| missing("kind"))?;
            let api_version = r
                .api_version
                .or(r.group)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| missing("apiVersion"))?;
            Some(Reference {
                api_version,
                kind,
                name,
            })
        }
    };
    let uri = raw.uri.filter(|u| !u.is_empty());
    match (&reference, &uri) {
        (None, None) => Err(": expected exactly one, got neither: ref, uri".into()),
        (Some(_), Some(u)) if reqwest::Url::parse(u).is_ok() => Err(format!(
            ".uri: {u:?}: an absolute URI is not allowed when ref is set"
        )),
        (None, Some(u)) if reqwest::Url::parse(u).is_err() => Err(format!(
            ".uri: {u:?}: must be an absolute URI when ref is not set"
        )),
        _ => Ok(Destination { reference, uri }),
    }
}

fn delivery(raw: RawDelivery, is_trigger: bool) -> Result<Delivery, String> {
    let retry = match raw.retry {
        None => None,
        Some(r) if r < 0 => return Err(format!(".retry: invalid value: {r}")),
        Some(r) => Some(u32::try_from(r).map_err(|_| format!(".retry: invalid value: {r}"))?),
    };
    let timeout = match raw.timeout {
        None => None,
        Some(t) => match iso8601(&t) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => return Err(format!(".timeout: invalid value: {t}")),
        },
    };
    let backoff_policy = match raw.backoff_policy.as_deref() {
        None => None,
        Some("linear") => Some(BackoffPolicy::Linear),
        Some("exponential") => Some(BackoffPolicy::Exponential),
        Some(p) => return Err(format!(".backoffPolicy: invalid value: {p}")),
    };
    let backoff_delay = match raw.backoff_delay {
        None => None,
        Some(d) => {
            Some(iso8601(&d).map_err(|e| format!(".backoffDelay: invalid value: {d}: {e}"))?)
        }
    };
    if raw.retry_after_max.is_some() {
        return Err(
            ".retryAfterMax: not allowed: the feature delivery-retryafter is disabled \
                    by default (Retry-After headers are then ignored)"
                .into(),
        );
    }
    let format = match raw.format.as_deref() {
        None => None,
        Some("binary") => Some(EventFormat::Binary),
        Some("json") => Some(EventFormat::Json),
        Some(f) => return Err(format!(".format: invalid value: {f}")),
    };
    // Only the filter reads a format, and only a Trigger's
    // (filter_handler.go, handleDispatchToSubscriberRequest).
    let format = if is_trigger { format } else { None };
    let dead_letter_sink = raw
        .dead_letter_sink
        .map(destination)
        .transpose()
        .map_err(|e| format!(".deadLetterSink{e}"))?;
    Ok(Delivery {
        dead_letter_sink,
        retry,
        timeout,
        backoff_policy,
        backoff_delay,
        format,
    })
}

/// An ISO 8601 duration as Knative reads it (rickb777/date/period v1.13):
/// each field keeps one decimal digit (truncated), weeks are 7 days, a year
/// 365.2425 days, a month a twelfth of a year, a day 24 hours. Negative
/// durations and Knative's special `P0` are refused here.
pub fn iso8601(text: &str) -> Result<Duration, String> {
    let d: iso8601_duration::Duration = text.parse().map_err(|e| format!("{e:?}"))?;
    // One decimal digit, as parseDecimalFixedPoint keeps; the small
    // epsilon undoes f32's representation of decimals (0.7 is 0.6999…).
    let tenths = |x: f32| ((f64::from(x) * 10.0) + 1e-3).floor() / 10.0;
    const DAY: f64 = 86_400.0;
    let days_per_year = 365.2425;
    let secs = tenths(d.year) * days_per_year * DAY
        + tenths(d.month) * days_per_year / 12.0 * DAY
        + tenths(d.day) * DAY
        + tenths(d.hour) * 3600.0
        + tenths(d.minute) * 60.0
        + tenths(d.second);
    if !secs.is_finite() || secs < 0.0 {
        return Err("out of range".into());
    }
    // Millisecond resolution, as period.Duration computes.
    Ok(Duration::from_millis((secs * 1000.0).round() as u64))
}
