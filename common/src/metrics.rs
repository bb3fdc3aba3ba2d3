//! A small metrics registry rendered in the Prometheus text format.
//!
//! Names are constants defined once ([`names`]); each metric is an atomic looked up at start-up
//! and kept by the component that updates it, so the hot path touches one atomic and never
//! formats a name.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Metric names, defined once.
pub mod names {
    pub const MQTT_CONNECTIONS: &str = "hub_mqtt_connections";
    pub const LIVE_VIEWERS: &str = "hub_live_viewers";
    pub const CAMERA_PULLS: &str = "hub_camera_pulls";
    pub const MQTT_AUTH_FAILURES: &str = "hub_mqtt_auth_failures_total";
    pub const MQTT_ACL_DENIED: &str = "hub_mqtt_acl_denied_total";
    pub const MQTT_OVERSIZED: &str = "hub_mqtt_oversized_total";
    pub const MQTT_MESSAGES: &str = "hub_mqtt_messages_total";
    /// Gateway connections closed before CONNECT, by reason (`max_connections`, `rate`).
    pub const MQTT_CONNECTIONS_REFUSED: &str = "hub_mqtt_connections_refused_total";
    /// argon2 verifications the gateway ran (cache misses that were not throttled).
    pub const MQTT_ARGON2_RUNS: &str = "hub_mqtt_argon2_runs_total";
    pub const READINGS_REJECTED: &str = "hub_readings_rejected_total";
    pub const READINGS_STORED: &str = "hub_readings_stored_total";
    pub const PIPELINE_QUEUE_DEPTH: &str = "hub_pipeline_queue_depth";
    pub const FINDINGS_OPENED: &str = "hub_findings_opened_total";
    pub const FINDINGS_UPDATED: &str = "hub_findings_updated_total";
    pub const DEVICES_ONLINE: &str = "hub_devices_online";
    pub const MODEL_SCORES: &str = "hub_model_scores_total";
    pub const BATCH_WRITE_SECONDS: &str = "hub_batch_write_seconds";
    pub const HTTP_REQUESTS: &str = "hub_http_requests_total";
    pub const WRITE_RETRIES: &str = "hub_write_retries_total";
    pub const DEAD_LETTERS: &str = "hub_dead_letters_total";
    pub const SPOOLED_BATCHES: &str = "hub_spooled_batches_total";
    pub const TASK_FAILURES: &str = "hub_task_failures_total";
    pub const TASKS_DOWN: &str = "hub_tasks_down";
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(std::sync::atomic::AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed bucket bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, to stay atomic.
    sum_us: AtomicU64,
}

/// Default latency buckets, seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

struct Entry {
    name: &'static str,
    help: &'static str,
    /// Rendered label set, e.g. `reason="bad_json"`; empty for none.
    labels: String,
    metric: Metric,
}

/// The process's metrics. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<Vec<Entry>>>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "'")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn find_or_insert(
        &self,
        name: &'static str,
        help: &'static str,
        label_pairs: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
    ) -> Metric {
        let labels = labels(label_pairs);
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.iter().find(|e| e.name == name && e.labels == labels) {
            return match &e.metric {
                Metric::Counter(c) => Metric::Counter(c.clone()),
                Metric::Gauge(g) => Metric::Gauge(g.clone()),
                Metric::Histogram(h) => Metric::Histogram(h.clone()),
            };
        }
        let metric = make();
        let copy = match &metric {
            Metric::Counter(c) => Metric::Counter(c.clone()),
            Metric::Gauge(g) => Metric::Gauge(g.clone()),
            Metric::Histogram(h) => Metric::Histogram(h.clone()),
        };
        entries.push(Entry { name, help, labels, metric });
        copy
    }

    /// The counter `name{labels}`, created on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        label_pairs: &[(&str, &str)],
    ) -> Arc<Counter> {
        match self.find_or_insert(name, help, label_pairs, || Metric::Counter(Arc::default())) {
            Metric::Counter(c) => c,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        label_pairs: &[(&str, &str)],
    ) -> Arc<Gauge> {
        match self.find_or_insert(name, help, label_pairs, || Metric::Gauge(Arc::default())) {
            Metric::Gauge(g) => g,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        label_pairs: &[(&str, &str)],
    ) -> Arc<Histogram> {
        let make = || Metric::Histogram(Arc::new(Histogram::new(LATENCY_BUCKETS)));
        match self.find_or_insert(name, help, label_pairs, make) {
            Metric::Histogram(h) => h,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Series of one name must be contiguous under one HELP/TYPE header.
        let mut sorted: Vec<&Entry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.name);
        let mut out = String::new();
        let mut last = "";
        for e in sorted {
            let kind = match e.metric {
                Metric::Counter(_) => "counter",
                Metric::Gauge(_) => "gauge",
                Metric::Histogram(_) => "histogram",
            };
            if e.name != last {
                let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", e.name, e.help, e.name);
                last = e.name;
            }
            let braces = |extra: &str| {
                let parts = [e.labels.as_str(), extra];
                let joined: Vec<&str> = parts.into_iter().filter(|s| !s.is_empty()).collect();
                if joined.is_empty() { String::new() } else { format!("{{{}}}", joined.join(",")) }
            };
            match &e.metric {
                Metric::Counter(c) => {
                    let _ = writeln!(out, "{}{} {}", e.name, braces(""), c.get());
                }
                Metric::Gauge(g) => {
                    let _ = writeln!(out, "{}{} {}", e.name, braces(""), g.get());
                }
                Metric::Histogram(h) => {
                    let mut cum = 0;
                    for (b, n) in h.bounds.iter().zip(&h.buckets) {
                        cum += n.load(Ordering::Relaxed);
                        let le = format!("le=\"{b}\"");
                        let _ = writeln!(out, "{}_bucket{} {cum}", e.name, braces(&le));
                    }
                    let count = h.count.load(Ordering::Relaxed);
                    let _ = writeln!(out, "{}_bucket{} {count}", e.name, braces("le=\"+Inf\""));
                    let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
                    let _ = writeln!(out, "{}_sum{} {sum}", e.name, braces(""));
                    let _ = writeln!(out, "{}_count{} {count}", e.name, braces(""));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_with_labels_render_and_are_shared_by_name() {
        let r = Registry::new();
        let a = r.counter(names::READINGS_REJECTED, "Rejected readings", &[("reason", "bad_json")]);
        let b = r.counter(names::READINGS_REJECTED, "Rejected readings", &[("reason", "bad_json")]);
        a.inc();
        b.add(2);
        let h = r.histogram(names::BATCH_WRITE_SECONDS, "Batch write time", &[]);
        h.observe(0.003);
        let text = r.render();
        assert!(text.contains("hub_readings_rejected_total{reason=\"bad_json\"} 3"), "{text}");
        assert!(text.contains("hub_batch_write_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert_eq!(text.matches("# TYPE hub_readings_rejected_total").count(), 1);
    }
}
