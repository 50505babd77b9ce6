//! Metrics as CloudWatch embedded metric format (EMF) log lines, for Lambda,
//! where nothing scrapes `/metrics`. After each invocation the counters'
//! increases since the last flush, and each delivery's duration, are written
//! to stdout as EMF documents; CloudWatch Logs turns them into metrics.
//! Dimensions are the function name and the metric's own labels.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use prometheus::proto::MetricType;
use serde_json::{Map, Value, json};

use crate::delivery::metrics::Metrics;

/// EMF's limit on the values of one metric in one document.
const MAX_VALUES: usize = 100;

pub struct Emf {
    namespace: String,
    function: String,
    /// Counter values at the last flush, by series.
    last: Mutex<HashMap<String, f64>>,
}

impl Emf {
    /// Namespace `RELAY_METRICS_NAMESPACE` (default `TektonRelay`); the
    /// function dimension is `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn from_env() -> Emf {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Emf::new(
            &var("RELAY_METRICS_NAMESPACE").unwrap_or_else(|| "TektonRelay".into()),
            &var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "relay".into()),
        )
    }

    pub fn new(namespace: &str, function: &str) -> Emf {
        Emf {
            namespace: namespace.into(),
            function: function.into(),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The documents for what changed since the last call: one per counter
    /// series that grew (its increase), and one per Notification that
    /// delivered (its delivery times).
    pub fn documents(&self, metrics: &Metrics, timestamp_ms: i64) -> Vec<Value> {
        let mut docs = Vec::new();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for family in metrics.registry().gather() {
            if family.get_field_type() != MetricType::COUNTER {
                continue;
            }
            for m in family.get_metric() {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let value = m.get_counter().get_value();
                let series = format!("{}{labels:?}", family.name());
                let before = last.insert(series, value).unwrap_or(0.0);
                if value > before {
                    docs.push(self.document(
                        family.name(),
                        "Count",
                        json!(value - before),
                        &labels,
                        timestamp_ms,
                    ));
                }
            }
        }
        let mut durations: HashMap<String, Vec<f64>> = HashMap::new();
        for (notification, secs) in metrics.take_duration_samples() {
            durations.entry(notification).or_default().push(secs);
        }
        let mut durations: Vec<_> = durations.into_iter().collect();
        durations.sort_by(|a, b| a.0.cmp(&b.0));
        for (notification, values) in durations {
            for chunk in values.chunks(MAX_VALUES) {
                docs.push(self.document(
                    "relay_delivery_duration_seconds",
                    "Seconds",
                    json!(chunk),
                    &[("notification", notification.as_str())],
                    timestamp_ms,
                ));
            }
        }
        docs
    }

    fn document(
        &self,
        name: &str,
        unit: &str,
        value: Value,
        labels: &[(&str, &str)],
        timestamp_ms: i64,
    ) -> Value {
        let mut dimensions = vec!["function"];
        dimensions.extend(labels.iter().map(|(k, _)| *k));
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            }),
        );
        doc.insert("function".into(), json!(self.function));
        for (k, v) in labels {
            doc.insert((*k).into(), json!(v));
        }
        doc.insert(name.into(), value);
        Value::Object(doc)
    }

    /// Writes the documents, one line each, to stdout (Lambda sends it to
    /// CloudWatch Logs).
    pub fn flush(&self, metrics: &Metrics) {
        let docs = self.documents(metrics, chrono::Utc::now().timestamp_millis());
        let mut out = std::io::stdout().lock();
        for doc in docs {
            let _ = writeln!(out, "{doc}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_hold_increases_and_durations_once() {
        let metrics = Metrics::new();
        metrics.keep_duration_samples();
        let emf = Emf::new("TektonRelay", "relay-github");
        assert!(emf.documents(&metrics, 1).is_empty(), "nothing happened");

        metrics
            .deliveries
            .with_label_values(&["status", "delivered"])
            .inc_by(2);
        metrics.observe_delivery("status", 0.25);
        metrics.observe_delivery("status", 0.5);
        let docs = emf.documents(&metrics, 1_700_000_000_000);
        assert_eq!(docs.len(), 2, "{docs:#?}");
        let delivered = &docs[0];
        assert_eq!(
            delivered["_aws"],
            json!({"Timestamp": 1_700_000_000_000_i64, "CloudWatchMetrics": [{
                "Namespace": "TektonRelay",
                "Dimensions": [["function", "notification", "outcome"]],
                "Metrics": [{"Name": "relay_deliveries_total", "Unit": "Count"}]}]})
        );
        assert_eq!(delivered["function"], "relay-github");
        assert_eq!(delivered["notification"], "status");
        assert_eq!(delivered["outcome"], "delivered");
        assert_eq!(delivered["relay_deliveries_total"], 2.0);
        assert_eq!(
            docs[1]["relay_delivery_duration_seconds"],
            json!([0.25, 0.5])
        );
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );

        // The next flush holds only what changed since.
        metrics
            .deliveries
            .with_label_values(&["status", "delivered"])
            .inc();
        let docs = emf.documents(&metrics, 2);
        assert_eq!(docs.len(), 1, "{docs:#?}");
        assert_eq!(docs[0]["relay_deliveries_total"], 1.0);
        assert!(emf.documents(&metrics, 3).is_empty());
    }

    #[test]
    fn many_durations_are_split_at_the_emf_limit() {
        let metrics = Metrics::new();
        metrics.keep_duration_samples();
        for _ in 0..250 {
            metrics.observe_delivery("chat", 0.1);
        }
        let docs = Emf::new("N", "f").documents(&metrics, 0);
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| {
                d["relay_delivery_duration_seconds"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn durations_are_not_kept_unless_asked() {
        let metrics = Metrics::new();
        metrics.observe_delivery("chat", 0.1);
        assert!(metrics.take_duration_samples().is_empty());
    }
}
