//! The embedded rumqttd broker and the hub's consumer of device messages.
//!
//! rumqttd listens on a loopback port that only the [`gateway`](crate::gateway) can log in to
//! (a random per-process password); devices connect to the gateway. The hub reads device
//! messages through a local link subscribed to the telemetry and status filters, and publishes
//! its own events through the same link.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::Shutdown;
use common::metrics::{Counter, Registry, names};
use rand::Rng;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{Error, Inbound, topic};

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// The loopback listener the gateway relays to.
    pub internal_addr: SocketAddr,
    pub internal_username: String,
    pub internal_password: String,
    link_tx: Mutex<LinkTx>,
    link_rx: Mutex<Option<LinkRx>>,
    published_dropped: Arc<Counter>,
}

fn free_loopback_port() -> Result<SocketAddr, Error> {
    // rumqttd cannot report the port it bound, so pick a free one first. Another process could
    // take it in between; start() then fails loudly.
    let l = StdListener::bind("127.0.0.1:0").map_err(|e| Error::Broker(e.to_string()))?;
    l.local_addr().map_err(|e| Error::Broker(e.to_string()))
}

/// Connects to the embedded broker's loopback listener, retrying while it is still being bound
/// (rumqttd binds on its own thread and cannot report when it is done).
pub async fn connect_internal(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            r => return r,
        }
    }
}

impl EmbeddedBroker {
    /// Starts rumqttd on its own thread (its `start()` blocks). Its listener is bound shortly
    /// after; connecting code retries refused connections for a few seconds
    /// ([`connect_internal`]).
    pub fn start(max_payload: usize, metrics: &Registry) -> Result<Self, Error> {
        let addr = free_loopback_port()?;
        let username = "hub-gateway".to_owned();
        let password: String = {
            let mut rng = rand::thread_rng();
            (0..32).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect()
        };
        let mut connections = ConnectionSettings {
            connection_timeout_ms: 10_000,
            // The gateway enforces mqtt.max_payload; allow some headroom for topic and ids.
            max_payload_size: max_payload + 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let (u, p) = (username.clone(), password.clone());
        connections.set_auth_handler(move |_client, user: String, pass: String| {
            let ok = user == u && pass == p;
            async move { ok }
        });
        let server = ServerSettings {
            name: "gateway-loopback".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections,
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 100_010,
                max_outgoing_packet_count: 1000,
                max_segment_size: 64 * 1024 * 1024,
                max_segment_count: 16,
                ..Default::default()
            },
            v4: Some(HashMap::from([("gateway".to_owned(), server)])),
            ..Default::default()
        };
        let mut broker = Broker::new(config);
        let (mut link_tx, link_rx) =
            broker.link("hub").map_err(|e| Error::Broker(e.to_string()))?;
        for f in [topic::TELEMETRY_FILTER, topic::STATUS_FILTER] {
            link_tx.subscribe(f).map_err(|e| Error::Broker(e.to_string()))?;
        }
        std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .map_err(|e| Error::Broker(e.to_string()))?;
        info!(%addr, "embedded MQTT broker started (loopback, gateway only)");
        Ok(Self {
            internal_addr: addr,
            internal_username: username,
            internal_password: password,
            link_tx: Mutex::new(link_tx),
            link_rx: Mutex::new(Some(link_rx)),
            published_dropped: metrics.counter(
                names::MQTT_MESSAGES,
                "MQTT messages by direction and outcome",
                &[("direction", "out"), ("outcome", "dropped")],
            ),
        })
    }

    /// Publishes a hub event (QoS 0). Events are a live view, not a record: when the broker's
    /// buffer is full the event is dropped and counted.
    pub fn publish(&self, topic: &str, payload: Bytes) {
        let mut tx = self.link_tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.try_publish(topic.to_owned(), payload).is_err() {
            self.published_dropped.inc();
        }
    }

    /// Forwards device messages to `out` until shutdown. The send waits when `out` is full:
    /// rumqttd keeps the backlog in its commit log.
    pub async fn consume(
        &self,
        out: mpsc::Sender<Inbound>,
        metrics: &Registry,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        let mut rx = self
            .link_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::Broker("consume() called twice".into()))?;
        let received = metrics.counter(
            names::MQTT_MESSAGES,
            "MQTT messages by direction and outcome",
            &[("direction", "in"), ("outcome", "received")],
        );
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                n = rx.next() => n,
            };
            match next {
                Ok(Some(Notification::Forward(f))) => {
                    received.inc();
                    let msg = Inbound {
                        topic: f.publish.topic,
                        payload: f.publish.payload,
                        received_at: crate::now_ms(),
                        // Status messages and QoS 2 telemetry through rumqttd: the broker
                        // acknowledged them to the device already (rumqttd keeps no state on
                        // disk; the device's own telemetry goes through the gateway instead).
                        ack: None,
                    };
                    if out.send(msg).await.is_err() {
                        return Ok(());
                    }
                }
                // The router parks a link whose buffer it drained; wake it or it stalls.
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(e) = rx.wake().await {
                        return Err(Error::Broker(format!("link wake failed: {e}")));
                    }
                }
                Ok(Some(_)) | Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "embedded broker link closed");
                    return Err(Error::Broker(e.to_string()));
                }
            }
        }
    }
}
