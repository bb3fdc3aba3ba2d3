//! A department's case system reading its record events over MQTT (docs/records.md, "Push
//! over MQTT"): logs in to the hub's gateway with the department's username and token,
//! subscribes with QoS 1 on every (re)connection (the hub keeps no sessions: its outbox holds
//! what is owed), hands each event to `on_event` and acknowledges it after `on_event` returns,
//! which is when the hub counts it delivered. Reconnects after a pause until cancelled.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

/// Pause before reconnecting after a lost connection.
const RECONNECT: Duration = Duration::from_secs(2);

/// Where and as whom to read.
#[derive(Debug, Clone)]
pub struct Feed {
    pub host: String,
    pub port: u16,
    /// `department:ID`.
    pub username: String,
    /// One of the department's API tokens.
    pub token: String,
    /// e.g. `departments/ID/#`.
    pub filter: String,
}

/// Runs until `cancel`; `on_event(topic, payload)` sees each event before its PUBACK.
pub async fn read(feed: Feed, cancel: CancellationToken, on_event: impl Fn(&str, &[u8])) {
    let mut mo = MqttOptions::new(
        format!("case-system-{}", feed.username.replace(':', "-")),
        feed.host,
        feed.port,
    );
    mo.set_credentials(feed.username.clone(), feed.token);
    mo.set_keep_alive(Duration::from_secs(30));
    mo.set_manual_acks(true);
    // An event carries a whole record (results and feedback up to thousands of characters).
    mo.set_max_packet_size(1 << 20, 1 << 20);
    // Room for an acknowledgement of every message the hub has in flight to one connection
    // (64), so `try_ack` never finds the request queue full.
    let (client, mut el) = AsyncClient::new(mo, 256);
    loop {
        let ev = tokio::select! {
            e = el.poll() => e,
            _ = cancel.cancelled() => return,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(&feed.filter, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                on_event(&p.topic, &p.payload);
                if let Err(e) = client.try_ack(&p) {
                    // Not acknowledged: the hub offers it again (same id) after its timeout.
                    tracing::warn!(user = %feed.username, error = %e, "could not acknowledge a record event");
                }
            }
            Ok(_) => {}
            // The hub closing it at shutdown is no loss worth a warning.
            Err(_) if cancel.is_cancelled() => return,
            Err(e) => {
                tracing::warn!(user = %feed.username, error = %e, "record feed connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}
