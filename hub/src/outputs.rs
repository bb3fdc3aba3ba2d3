//! Where stored findings are announced besides the database: a log line, a JSON-lines file, and
//! the live event topic `hub/events/findings` on the MQTT broker.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::Severity;
use config::{Output, OutputType};
use tracing::{info, warn};

use crate::error::Error;

/// Publishes hub events on the broker. Events are a live view: publishers drop (and count)
/// rather than wait when the broker is saturated.
pub trait EventPublisher: Send + Sync + 'static {
    fn publish(&self, topic: &str, payload: Bytes);
}

impl EventPublisher for ingest::broker::EmbeddedBroker {
    fn publish(&self, topic: &str, payload: Bytes) {
        ingest::broker::EmbeddedBroker::publish(self, topic, payload)
    }
}

impl EventPublisher for ingest::external::Publisher {
    fn publish(&self, topic: &str, payload: Bytes) {
        ingest::external::Publisher::publish(self, topic, payload)
    }
}

/// A finding as announced: enough to act on without a database round trip.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingEvent<'a> {
    pub id: i64,
    /// `opened` or `updated`.
    pub change: &'static str,
    pub count: i64,
    pub site_id: &'a str,
    pub device_id: Option<&'a str>,
    pub rule: &'a str,
    pub kind: &'a str,
    pub severity: Severity,
    pub summary: &'a str,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_value: Option<f64>,
}

enum Sink {
    Log { min: Severity },
    Jsonl { min: Severity, file: Mutex<std::fs::File>, path: String },
}

/// Finding events kept for in-process subscribers (benchmarks, later the UI). A subscriber that
/// falls further behind loses the oldest events (`broadcast` lag), never blocks the writer.
pub const EVENT_BUFFER: usize = 4096;

/// The configured outputs.
pub struct Outputs {
    sinks: Vec<Sink>,
    publisher: Option<Arc<dyn EventPublisher>>,
    events: tokio::sync::broadcast::Sender<Bytes>,
}

impl Outputs {
    pub fn new(
        outputs: &[Output],
        data_dir: &Path,
        publisher: Option<Arc<dyn EventPublisher>>,
    ) -> Result<Self, Error> {
        let mut sinks = Vec::new();
        for o in outputs {
            match o.output_type {
                OutputType::Log => sinks.push(Sink::Log { min: o.min_severity }),
                OutputType::Jsonl => {
                    let rel = o.path.clone().unwrap_or_default();
                    let path = if rel.is_absolute() { rel } else { data_dir.join(rel) };
                    let file =
                        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(
                            |source| Error::Io {
                                context: format!("opening jsonl output {}", path.display()),
                                source,
                            },
                        )?;
                    sinks.push(Sink::Jsonl {
                        min: o.min_severity,
                        file: Mutex::new(file),
                        path: path.display().to_string(),
                    });
                }
            }
        }
        let (events, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
        Ok(Self { sinks, publisher, events })
    }

    /// The sender of in-process finding events (the JSON of [`FindingEvent`]).
    pub fn sender(&self) -> tokio::sync::broadcast::Sender<Bytes> {
        self.events.clone()
    }

    /// Announces a stored finding change.
    pub fn emit(&self, e: &FindingEvent<'_>) {
        let json = match serde_json::to_vec(e) {
            Ok(j) => j,
            Err(_) => return,
        };
        let bytes = Bytes::from(json);
        if let Some(p) = &self.publisher {
            p.publish(ingest::topic::FINDING_EVENTS, bytes.clone());
        }
        // No receiver is not an error.
        let _ = self.events.send(bytes.clone());
        if e.change != "opened" {
            return;
        }
        for s in &self.sinks {
            match s {
                Sink::Log { min } if e.severity >= *min => {
                    info!(
                        finding = e.id, site = e.site_id, device = e.device_id, rule = e.rule,
                        severity = %e.severity, summary = e.summary, "new finding"
                    );
                }
                Sink::Jsonl { min, file, path } if e.severity >= *min => {
                    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                    let mut line = bytes.to_vec();
                    line.push(b'\n');
                    if let Err(err) = f.write_all(&line) {
                        warn!(path = %path, error = %err, "jsonl output write failed");
                    }
                }
                _ => {}
            }
        }
    }
}
