//! The load generator of the benchmark: N MQTT connections publishing QoS 1 telemetry at a total
//! rate (or as fast as acknowledged), every n-th message out of range so that it trips a rule.
//! Each payload's `ts` is its publish time (unix ms), so a consumer can measure latency; a
//! device's readings never share a `ts` (the hub stores one reading per device and `ts`).

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinSet;

/// One publishing connection.
#[derive(Debug, Clone)]
pub struct LoadClient {
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub topic: String,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `host:port`
    pub mqtt: String,
    pub clients: Vec<LoadClient>,
    /// Messages in total, split evenly over the clients.
    pub messages: u64,
    /// Total messages per second; None publishes as fast as the broker acknowledges.
    pub rate: Option<f64>,
    /// Every n-th message of a client carries `value = 150` (out of range); the rest 20.
    pub high_every: u64,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    /// From the first publish to the last acknowledgement.
    pub elapsed: Duration,
}

/// Publishes the load; returns when every message was acknowledged.
pub async fn run(opts: LoadOptions) -> anyhow::Result<LoadReport> {
    let n = opts.clients.len().max(1) as u64;
    let per_client = opts.messages / n;
    let (host, port) = match opts.mqtt.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse()?),
        None => anyhow::bail!("--mqtt must be host:port"),
    };
    // Connect everybody first so that connection set-up is not measured.
    let mut conns = Vec::new();
    for c in &opts.clients {
        let mut mo = MqttOptions::new(&c.client_id, host.clone(), port);
        mo.set_credentials(&c.username, &c.password);
        mo.set_keep_alive(Duration::from_secs(60));
        mo.set_inflight(100);
        let (client, mut el) = AsyncClient::new(mo, 1024);
        // A broker that was just started may still be binding its port.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("{}: cannot connect: {e}", c.client_id)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        conns.push((c.topic.clone(), client, el));
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (topic, client, mut el) in conns {
        let interval = opts.rate.map(|r| Duration::from_secs_f64(n as f64 / r));
        let high_every = opts.high_every.max(1);
        set.spawn(async move {
            let publisher = async {
                let mut tick = interval.map(|i| {
                    let mut t = tokio::time::interval(i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    t
                });
                // A device's readings are keyed by (device, ts): each gets its own millisecond
                // (the publish time, or one past the previous reading's when faster than that).
                let mut last_ts = 0;
                for seq in 1..=per_client {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let value = if seq % high_every == 0 { 150 } else { 20 };
                    last_ts = crate::wall_ms().max(last_ts + 1);
                    let payload = format!(r#"{{"ts":{last_ts},"values":{{"value":{value}}}}}"#);
                    client.publish(&topic, QoS::AtLeastOnce, false, payload).await?;
                }
                Ok::<_, anyhow::Error>(())
            };
            let poller = async {
                let mut acked = 0;
                while acked < per_client {
                    if let Event::Incoming(Packet::PubAck(_)) = el.poll().await? {
                        acked += 1;
                    }
                }
                Ok::<_, anyhow::Error>(())
            };
            let (a, b) = tokio::join!(publisher, poller);
            a?;
            b?;
            let _ = client.disconnect().await;
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(LoadReport { sent: per_client * n, elapsed: started.elapsed() })
}
