//! Consumer of device messages on an external broker (e.g. Mosquitto).
//!
//! The hub subscribes with a shared subscription (`$share/{group}/…`), so several hub processes
//! in one group split the devices' messages. Per-topic ACL is then the broker's job (Mosquitto:
//! the dynamic-security roles of [`crate::dynsec`], or `pattern write sites/+/devices/%u/#`);
//! the hub still refuses messages of unknown devices or
//! from a device's wrong site. The ThingsBoard alias `v1/devices/me/telemetry` is not available:
//! only the gateway of embedded mode knows who published.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Shutdown;
use common::metrics::{Registry, names};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{Error, Inbound, topic};

/// Settings of the external consumer.
#[derive(Debug, Clone)]
pub struct ExternalConfig {
    /// `mqtt://host:port`
    pub url: String,
    pub client_id: String,
    pub shared_group: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub max_payload: usize,
}

/// Publishes hub events on the external broker (QoS 0; dropped when the client's queue is
/// full: events are a live view, not a record).
#[derive(Clone)]
pub struct Publisher(AsyncClient);

impl Publisher {
    pub fn publish(&self, topic: &str, payload: Bytes) {
        let _ = self.0.try_publish(topic, QoS::AtMostOnce, false, payload);
    }
}

/// A connection to the external broker.
pub struct ExternalBroker {
    cfg: ExternalConfig,
    client: AsyncClient,
    eventloop: EventLoop,
    /// True while connected with every subscription acknowledged.
    ready: Arc<AtomicBool>,
}

pub(crate) fn host_port(url: &str) -> Result<(String, u16), Error> {
    let bad = |m: &str| Error::External { url: url.into(), message: m.into() };
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| bad("must start with mqtt://"))?;
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    let port = port.trim_end_matches('/').parse().map_err(|_| bad("port is not a number"))?;
    Ok((host.to_owned(), port))
}

impl ExternalBroker {
    pub fn new(cfg: ExternalConfig) -> Result<Self, Error> {
        let (host, port) = host_port(&cfg.url)?;
        let mut opts = MqttOptions::new(&cfg.client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(15));
        // A persistent session under a stable client id per hub: what the broker queued while
        // the hub was away arrives when it is back; messages are acknowledged by hand once
        // stored (crate::ack), so a crash before the commit makes the broker send them again.
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        opts.set_max_packet_size(cfg.max_payload + 1024, 64 * 1024);
        opts.set_inflight(100);
        if let Some(user) = &cfg.username {
            opts.set_credentials(user, cfg.password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        Ok(Self { cfg, client, eventloop, ready: Arc::default() })
    }

    /// True while connected and subscribed. The session is persistent: messages published
    /// while the hub was away are delivered once it is back.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// A handle to publish hub events with.
    pub fn publisher(&self) -> Publisher {
        Publisher(self.client.clone())
    }

    /// Polls the connection, forwarding device messages to `out`, reconnecting with backoff and
    /// jitter, until shutdown.
    pub async fn consume(
        mut self,
        out: mpsc::Sender<Inbound>,
        metrics: &Registry,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        let received = metrics.counter(
            names::MQTT_MESSAGES,
            "MQTT messages by direction and outcome",
            &[("direction", "in"), ("outcome", "received")],
        );
        let filters = [topic::TELEMETRY_FILTER, topic::STATUS_FILTER]
            .map(|f| format!("$share/{}/{f}", self.cfg.shared_group));
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut acked = 0;
        loop {
            let ev = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = self.client.try_disconnect();
                    return Ok(());
                }
                ev = self.eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(url = %self.cfg.url, "connected to the external MQTT broker");
                    acked = 0;
                    backoff.reset();
                    for f in &filters {
                        // Queued in the client; sent by the event loop.
                        let _ = self.client.try_subscribe(f.as_str(), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    acked += 1;
                    if acked == filters.len() {
                        self.ready.store(true, Ordering::Relaxed);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    received.inc();
                    let ack = (p.qos != QoS::AtMostOnce)
                        .then(|| crate::ack::Ack::external(self.client.clone(), p.pkid));
                    let msg = Inbound {
                        topic: Bytes::from(p.topic.into_bytes()),
                        payload: p.payload,
                        received_at: crate::now_ms(),
                        ack,
                    };
                    if out.send(msg).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.ready.store(false, Ordering::Relaxed);
                    let wait = backoff.next();
                    warn!(url = %self.cfg.url, error = %e, retry_in = ?wait, "external MQTT broker connection failed");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_and_port() {
        assert_eq!(host_port("mqtt://127.0.0.1:1883").unwrap(), ("127.0.0.1".into(), 1883));
        assert_eq!(host_port("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(host_port("http://x").is_err());
        assert!(host_port("mqtt://x:y").is_err());
    }
}
