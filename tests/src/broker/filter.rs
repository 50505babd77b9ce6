//! Trigger filters, evaluated as Knative's broker-filter evaluates them.
//!
//! Sources (knative/eventing):
//! - `pkg/eventfilter/filter.go`: three results, `PassFilter`,
//!   `FailFilter`, `NoFilter`; `pkg/broker/filter/filter_handler.go`
//!   (`handleDispatchToSubscriberRequest`) drops an event only on
//!   `FailFilter`, so `NoFilter` delivers.
//! - `pkg/eventfilter/attributes/filter.go`: the legacy `spec.filter.
//!   attributes`: every attribute must be present, `""` means any value but
//!   still requires a non-empty one, otherwise the values must be equal;
//!   `LookupAttribute` names the attributes (`subject`, `time`,
//!   `dataschema`, `datacontenttype` are "present" even when unset, with
//!   the Go zero value).
//! - `pkg/eventfilter/subscriptionsapi/{exact,prefix,suffix,all,any,not}_filter.go`:
//!   `all` fails on the first failing filter and otherwise returns the last
//!   result (an empty `all` is `NoFilter`); `any` passes on the first
//!   passing filter and otherwise returns the last result; `not` swaps pass
//!   and fail and keeps `NoFilter`. Knative reorders `all`/`any` members by
//!   how often they decide (`optimizeLoop`), which changes nothing unless a
//!   member yields `NoFilter`; here the declared order is kept.
//!
//! The filter sees the event as it arrives at broker-filter: after the
//! ingress added `knativearrivaltime`, without `knativebrokerttl` (removed
//! before filtering), and after a binary-mode hop, so every extension value
//! is a string (`10`, `true`).

use std::collections::BTreeMap;

use cloudevents::{AttributesReader, Event, event::ExtensionValue};

/// `eventfilter.FilterResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterResult {
    Pass,
    Fail,
    NoFilter,
}

impl FilterResult {
    /// Whether broker-filter sends the event on (all but `Fail`).
    pub fn delivers(self) -> bool {
        self != FilterResult::Fail
    }
}

/// What a Trigger filters with, after Knative's defaulting and
/// precedence (`spec.filters` when it has entries, else `spec.filter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerFilter {
    /// No filter (`spec.filter` defaulted to `{}`): `NoFilter`.
    None,
    /// `spec.filter.attributes`.
    Attributes(BTreeMap<String, String>),
    /// `spec.filters`: an `all` of its entries that materialized.
    Filters(Filter),
}

/// A materialized `spec.filters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Exact(BTreeMap<String, String>),
    Prefix(BTreeMap<String, String>),
    Suffix(BTreeMap<String, String>),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    /// `not` of a filter that did not materialize holds None (`NoFilter`).
    Not(Option<Box<Filter>>),
}

impl TriggerFilter {
    pub fn evaluate(&self, event: &Event) -> FilterResult {
        match self {
            TriggerFilter::None => FilterResult::NoFilter,
            TriggerFilter::Attributes(attrs) => {
                for (name, want) in attrs {
                    let Some(value) = lookup_attribute(event, name) else {
                        return FilterResult::Fail;
                    };
                    if want.is_empty() && value.is_empty() {
                        return FilterResult::Fail;
                    }
                    if !want.is_empty() && *want != value {
                        return FilterResult::Fail;
                    }
                }
                FilterResult::Pass
            }
            TriggerFilter::Filters(f) => f.evaluate(event),
        }
    }
}

impl Filter {
    pub fn evaluate(&self, event: &Event) -> FilterResult {
        let each = |m: &BTreeMap<String, String>, test: &dyn Fn(&str, &str) -> bool| {
            for (name, want) in m {
                match lookup_attribute(event, name) {
                    Some(value) if test(&value, want) => {}
                    _ => return FilterResult::Fail,
                }
            }
            FilterResult::Pass
        };
        match self {
            Filter::Exact(m) => each(m, &|v, w| v == w),
            Filter::Prefix(m) => each(m, &|v, w| v.starts_with(w)),
            Filter::Suffix(m) => each(m, &|v, w| v.ends_with(w)),
            Filter::All(list) => {
                let mut result = FilterResult::NoFilter;
                for f in list {
                    result = f.evaluate(event);
                    if result == FilterResult::Fail {
                        return FilterResult::Fail;
                    }
                }
                result
            }
            Filter::Any(list) => {
                let mut result = FilterResult::NoFilter;
                for f in list {
                    result = f.evaluate(event);
                    if result == FilterResult::Pass {
                        return FilterResult::Pass;
                    }
                }
                result
            }
            Filter::Not(None) => FilterResult::NoFilter,
            Filter::Not(Some(inner)) => match inner.evaluate(event) {
                FilterResult::Pass => FilterResult::Fail,
                FilterResult::Fail => FilterResult::Pass,
                FilterResult::NoFilter => FilterResult::NoFilter,
            },
        }
    }
}

/// `attributes.LookupAttribute` on the event broker-filter decodes: None
/// where Go answers `ok == false` (an absent extension).
pub fn lookup_attribute(event: &Event, name: &str) -> Option<String> {
    let or_empty = |v: Option<&str>| v.unwrap_or("").to_string();
    Some(match name {
        "specversion" => event.specversion().to_string(),
        "type" => event.ty().to_string(),
        "source" => event.source().to_string(),
        "subject" => or_empty(event.subject()),
        "id" => event.id().to_string(),
        // time.Time{}.MarshalText() when unset.
        "time" => match event.time() {
            Some(t) => rfc3339_nano(t),
            None => "0001-01-01T00:00:00Z".to_string(),
        },
        "dataschema" | "schemaurl" => or_empty(event.dataschema().map(|u| u.as_str())),
        "datacontenttype" => or_empty(event.datacontenttype()),
        // EventContext.GetDataMediaType: up to the first ';', trimmed.
        "datamediatype" => match event.datacontenttype() {
            Some(ct) => match ct.find(';') {
                Some(i) => ct[..i].trim().to_string(),
                None => ct.to_string(),
            },
            None => String::new(),
        },
        "datacontentencoding" => String::new(),
        _ => extension_string(event.extension(name)?),
    })
}

/// An extension's value as it reads after a binary-mode hop.
pub fn extension_string(value: &ExtensionValue) -> String {
    match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Boolean(b) => b.to_string(),
        ExtensionValue::Integer(i) => i.to_string(),
    }
}

/// Go's `time.RFC3339Nano` of a UTC time (fraction without trailing zeros),
/// as the CloudEvents Go SDK writes timestamps.
pub fn rfc3339_nano(t: &chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}
