//! Runs a [`Scenario`] over MQTT: one connection per simulated device with its own credentials,
//! a last will on its status topic, QoS 1 telemetry.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::credentials::DeviceCredential;
use crate::scenario::Scenario;
use crate::sim::SimDevice;

/// How simulated time maps to wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Publish every reading as fast as the broker acknowledges them (tests).
    AsFastAsPossible,
    /// At most this many readings per second per device. A Mosquitto with default settings
    /// drops QoS 1 messages for a subscriber that falls 1000 behind (`max_queued_messages`), so
    /// tests against a broker whose settings they cannot choose keep bursts below that.
    PerDeviceRate(f64),
    /// Publish readings up to the wall clock at once, then follow it in real time (the demo:
    /// the scripted past appears within seconds, then the site lives on).
    CatchUpThenRealtime,
}

#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// `host:port` of the MQTT listener.
    pub mqtt: String,
    pub credentials: Vec<DeviceCredential>,
    /// Unix ms of the scenario's start.
    pub start_ms: i64,
    /// Where to stop (unix ms); None runs until cancelled.
    pub end_ms: Option<i64>,
    pub pace: Pace,
}

/// What a run published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteReport {
    /// Telemetry messages acknowledged by the broker.
    pub published: u64,
}

fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(1883)),
        None => (addr.to_owned(), 1883),
    }
}

/// Runs every simulated device of the scenario that has a credential. Returns when all devices
/// reached `end_ms` and the broker acknowledged every message, or when cancelled.
pub async fn run(
    scenario: &Scenario,
    opts: SiteOptions,
    cancel: CancellationToken,
) -> anyhow::Result<SiteReport> {
    let mut set = JoinSet::new();
    for spec in scenario.devices.iter().filter(|d| d.simulated) {
        let Some(cred) = opts.credentials.iter().find(|c| c.device_id == spec.id).cloned() else {
            anyhow::bail!("no credential for simulated device {}", spec.id);
        };
        let sim = SimDevice::new(spec.kind, scenario.seed, spec.id);
        let (scenario, opts, cancel) = (scenario.clone(), opts.clone(), cancel.clone());
        set.spawn(async move { run_device(&scenario, sim, cred, &opts, cancel).await });
    }
    let mut report = SiteReport::default();
    while let Some(r) = set.join_next().await {
        report.published += r??;
    }
    Ok(report)
}

async fn run_device(
    scenario: &Scenario,
    mut sim: SimDevice,
    cred: DeviceCredential,
    opts: &SiteOptions,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let (host, port) = split_addr(&opts.mqtt);
    let mut mo = MqttOptions::new(&cred.device_id, host, port);
    mo.set_credentials(&cred.username, &cred.secret);
    mo.set_keep_alive(Duration::from_secs(30));
    mo.set_last_will(LastWill::new(&cred.status_topic, "offline", QoS::AtLeastOnce, true));
    mo.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(mo, 256);
    // The event loop runs beside the publisher; it counts acknowledgements.
    let (ack_tx, mut ack_rx) = tokio::sync::watch::channel(0u64);
    let device = cred.device_id.clone();
    let (connected_tx, mut connected_rx) = tokio::sync::watch::channel(false);
    let stop_loop = CancellationToken::new();
    let stop = stop_loop.clone();
    let poller = tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    debug!(device = %device, ?c, "connected");
                    let _ = connected_tx.send(true);
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    ack_tx.send_modify(|n| *n += 1);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    warn!(device = %device, error = %e, "MQTT connection failed; retrying");
                    let _ = connected_tx.send(false);
                    // rumqttc reconnects on the next poll; pace the retries.
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    if matches!(e, rumqttc::ConnectionError::ConnectionRefused(_)) {
                        return Err(anyhow::anyhow!("{device}: broker refused the credentials"));
                    }
                }
            }
        }
    });
    connected_rx.wait_for(|c| *c).await?;
    client.publish(&cred.status_topic, QoS::AtLeastOnce, true, "online").await?;
    let interval = sim.kind.interval_ms();
    let mut published: u64 = 1;
    let mut ts = opts.start_ms;
    let wall_start = crate::wall_ms();
    let mut tick = match opts.pace {
        Pace::PerDeviceRate(r) => {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(t)
        }
        _ => None,
    };
    loop {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        if cancel.is_cancelled() || opts.end_ms.is_some_and(|end| ts >= end) {
            break;
        }
        if opts.pace == Pace::CatchUpThenRealtime {
            let wait = ts - crate::wall_ms().max(wall_start);
            if wait > 0 {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                }
            }
        }
        let offset = ts - opts.start_ms;
        let values: serde_json::Map<String, serde_json::Value> = sim
            .reading(ts, scenario.active(&cred.device_id, offset))
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        let payload = json!({ "ts": ts, "values": values }).to_string();
        client.publish(&cred.telemetry_topic, QoS::AtLeastOnce, false, payload).await?;
        published += 1;
        ts += interval;
    }
    // Wait until the broker acknowledged everything, then leave cleanly (no last will).
    let all = tokio::time::timeout(Duration::from_secs(60), ack_rx.wait_for(|n| *n >= published));
    if !matches!(all.await, Ok(Ok(_))) {
        anyhow::bail!(
            "{}: only {} of {published} messages acknowledged",
            cred.device_id,
            *ack_rx.borrow()
        );
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    stop_loop.cancel();
    // The status message is not telemetry.
    Ok(published - 1)
}
