//! Prometheus metrics, `relay_` prefix.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub events_received: IntCounterVec,
    /// The router's verdicts: per function woken, or `none`.
    pub events_routed: IntCounterVec,
    pub requests_rejected: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub provider_requests: IntCounterVec,
    pub provider_rate_limited: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_waits: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub dead_letters_dropped: IntCounter,
    pub dead_letters_truncated: IntCounter,
    pub dead_letter_errors: IntCounter,
    pub replays: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub store_evictions: IntCounter,
    pub config_reloads: IntCounterVec,
    /// Delivery times since the last take, once asked to keep them
    /// (Lambda); unset, a delivery takes no lock.
    duration_samples: std::sync::OnceLock<std::sync::Mutex<Vec<(String, f64)>>>,
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// The `type` label of an event: one of a fixed set whatever the sender
/// writes, so no sender can make new series (each costs memory and every
/// `/metrics` scrape). A Tekton type is only ever one of its twenty; a
/// CDEvents type loses its version (any digits pass the decoder); a Flux
/// severity is free text, so only `info` and `error` are kept.
pub fn event_type_label(ty: &str) -> std::borrow::Cow<'_, str> {
    use crate::event::decode::{cdevents, flux, tekton};
    use std::borrow::Cow;
    if tekton::parse_type(ty).is_some() {
        return Cow::Borrowed(ty);
    }
    if let Some(t) = cdevents::parse_type(ty) {
        return Cow::Owned(format!(
            "dev.cdevents.{}.{}",
            t.kind.to_ascii_lowercase(),
            t.verb
        ));
    }
    if flux::is_flux_type(ty) {
        return Cow::Borrowed(match &ty[flux::TYPE_PREFIX.len()..] {
            "info" => "io.fluxcd.notification.info",
            "error" => "io.fluxcd.notification.error",
            _ => "io.fluxcd.notification.other",
        });
    }
    Cow::Borrowed("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                "relay_delivery_duration_seconds",
                "Time to deliver one event to one Notification, retries included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["notification"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_duration.clone()))
            .expect("unique metric");
        let dropped = IntCounter::new(
            "relay_dead_letters_dropped_total",
            "Dead letters dropped, oldest first, to keep the queue under its size bound.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(dropped.clone()))
            .expect("unique metric");
        let truncated = IntCounter::new(
            "relay_dead_letters_truncated_total",
            "Dead letters over the per-entry size cap, kept without their event data.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(truncated.clone()))
            .expect("unique metric");
        let dl_errors = IntCounter::new(
            "relay_dead_letter_errors_total",
            "Dead letters that could not be written (the event was answered as retryable).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(dl_errors.clone()))
            .expect("unique metric");
        let evictions = IntCounter::new(
            "relay_store_evictions_total",
            "Idempotency records the memory store dropped, least recently used first, to stay within its bounds (maxEntries, maxBytes).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(evictions.clone()))
            .expect("unique metric");
        Metrics {
            events_received: counter(
                &registry,
                "relay_events_received_total",
                "Events received, by type: Tekton types as sent, CDEvents types without their version, Flux `io.fluxcd.notification.info`, `error` or `other`; anything else `other`.",
                &["type"],
            ),
            events_routed: counter(
                &registry,
                "relay_events_routed_total",
                "Events routed (by the Knative router, or the ingress on AWS), by the function woken (`to`: a provider type; one event can wake several), or `none` when no Notification wants it.",
                &["to"],
            ),
            requests_rejected: counter(
                &registry,
                "relay_requests_rejected_total",
                "Requests answered 4xx before any delivery, by error code.",
                &["code"],
            ),
            deliveries: counter(
                &registry,
                "relay_deliveries_total",
                "Per-Notification results, by outcome.",
                &["notification", "outcome"],
            ),
            delivery_duration,
            provider_requests: counter(
                &registry,
                "relay_provider_requests_total",
                "Requests sent to providers, by provider and result.",
                &["provider", "result"],
            ),
            provider_rate_limited: counter(
                &registry,
                "relay_provider_rate_limited_total",
                "Provider answers that were rate limits (429, or 403 classified retryable), by provider.",
                &["provider"],
            ),
            rate_limited: counter(
                &registry,
                "relay_rate_limited_total",
                "Requests refused by the relay's own rate limits: inbound (answered 429; key `source`) or outbound (the wait for a token would pass the delivery deadline; key the configured host or `default`).",
                &["direction", "key"],
            ),
            rate_limit_waits: counter(
                &registry,
                "relay_rate_limit_waits_total",
                "Provider requests that waited for an outbound rate-limit token, by configured host or `default`.",
                &["key"],
            ),
            dead_letters: counter(
                &registry,
                "relay_dead_letters_total",
                "Events dead-lettered, by Notification.",
                &["notification"],
            ),
            dead_letters_dropped: dropped,
            dead_letters_truncated: truncated,
            dead_letter_errors: dl_errors,
            replays: counter(
                &registry,
                "relay_dead_letter_replays_total",
                "Dead-letter replays, by result: succeeded, failed, or refused (not sent: an entry cut to the size cap, or one whose destination is not a configured subscriber).",
                &["result"],
            ),
            store_errors: counter(
                &registry,
                "relay_store_errors_total",
                "Store operations that failed (the relay then fails open).",
                &["backend", "op"],
            ),
            store_evictions: evictions,
            config_reloads: counter(
                &registry,
                "relay_config_reloads_total",
                "Config reloads (file change or SIGHUP), by result: applied, or rejected (the old config stays).",
                &["result"],
            ),
            duration_samples: Default::default(),
            registry,
        }
    }

    /// Records one Notification's delivery time.
    pub fn observe_delivery(&self, notification: &str, seconds: f64) {
        self.delivery_duration
            .with_label_values(&[notification])
            .observe(seconds);
        if let Some(samples) = self.duration_samples.get()
            && let Ok(mut samples) = samples.lock()
        {
            samples.push((notification.to_string(), seconds));
        }
    }

    /// Keeps each delivery time (not only the histogram) until
    /// [`Metrics::take_duration_samples`]: CloudWatch EMF takes values.
    pub fn keep_duration_samples(&self) {
        self.duration_samples.get_or_init(Default::default);
    }

    pub fn take_duration_samples(&self) -> Vec<(String, f64)> {
        self.duration_samples
            .get()
            .and_then(|s| s.lock().ok().map(|mut s| std::mem::take(&mut *s)))
            .unwrap_or_default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }

    /// Shows `relay_insecure_no_auth 1`: this process serves events without
    /// inbound auth beyond loopback, as its operator allowed. Absent
    /// otherwise, so an alert on the series catches it.
    pub fn set_insecure_no_auth(&self) {
        let g = prometheus::IntGauge::new(
            "relay_insecure_no_auth",
            "1 when events are served without inbound auth beyond loopback (--insecure-no-auth, RELAY_INSECURE_NO_AUTH).",
        )
        .expect("valid metric");
        // Registered once; a second call finds it there.
        if self.registry.register(Box::new(g.clone())).is_ok() {
            g.set(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hundreds of distinct Flux severities, CDEvents versions and unknown
    /// types make a handful of series, not hundreds: the label set is fixed.
    #[test]
    fn free_form_types_make_a_fixed_label_set() {
        let m = Metrics::new();
        for i in 0..350 {
            for ty in [
                format!("io.fluxcd.notification.sev{i}"),
                format!("dev.cdevents.pipelinerun.finished.0.{i}.0"),
                format!("dev.cdevents.taskrun.started.0.1.0-x{i}"),
                format!("com.example.{i}"),
                "dev.tekton.event.pipelinerun.failed.v1".to_string(),
                "io.fluxcd.notification.error".to_string(),
            ] {
                m.events_received
                    .with_label_values(&[&event_type_label(&ty)])
                    .inc();
            }
        }
        let text = m.render();
        let labels: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("relay_events_received_total{type=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [
                "dev.cdevents.pipelinerun.finished",
                "dev.cdevents.taskrun.started",
                "dev.tekton.event.pipelinerun.failed.v1",
                "io.fluxcd.notification.error",
                "io.fluxcd.notification.other",
                "other",
            ]
        );
        assert!(text.len() < 8 * 1024, "{} bytes of /metrics", text.len());
    }
}
