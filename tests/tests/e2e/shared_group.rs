//! Several hub processes in one shared-subscription group split the devices' messages on an
//! external broker, and store into one database.

use std::time::Duration;

use hub::StartOptions;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tests::{TestHub, config_with, small_site, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_in_one_group_split_the_load() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let url = tests::mqtt_url()?;
    let group = format!("split{}", rand::random::<u32>());
    let site = small_site(&[("split-a", "fridge"), ("split-b", "fridge")]);
    let mut hubs = Vec::new();
    for i in 0..2 {
        let mut cfg = config_with(&site)?;
        cfg.database.url = db.clone();
        cfg.mqtt.mode = config::MqttMode::External;
        cfg.mqtt.url = Some(url.clone());
        cfg.mqtt.client_id = format!("{group}-{i}");
        cfg.mqtt.shared_group = group.clone();
        let th = TestHub::start(cfg, StartOptions::default()).await?;
        wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
            Ok(th.get("/healthz").await.ok().map(|_| ()))
        })
        .await?;
        hubs.push(th);
    }

    let hostport = url.trim_start_matches("mqtt://");
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "1883"));
    let mut mo = MqttOptions::new(format!("{group}-pub"), host, port.parse()?);
    mo.set_inflight(20);
    let (client, mut el) = AsyncClient::new(mo, 64);
    let total = 400u64;
    let publisher = async {
        for i in 0..total {
            let device = if i % 2 == 0 { "split-a" } else { "split-b" };
            let payload = format!(r#"{{"ts":{i},"values":{{"temperature_c":4.0}}}}"#);
            client
                .publish(
                    format!("sites/s1/devices/{device}/telemetry"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let acks = async {
        let mut n = 0;
        while n < total {
            if let Event::Incoming(Packet::PubAck(_)) = el.poll().await? {
                n += 1;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let (p, a) = tokio::join!(publisher, acks);
    p?;
    a?;
    let per_hub =
        wait_for(Duration::from_secs(30), "all readings stored by the two hubs", || async {
            let mut counts = Vec::new();
            for h in &hubs {
                counts.push(h.metric("hub_readings_stored_total").await? as u64);
            }
            Ok((counts.iter().sum::<u64>() == total).then_some(counts))
        })
        .await?;
    assert!(per_hub.iter().all(|n| *n > 0), "each hub took a share: {per_hub:?}");
    assert_eq!(hubs[0].hub.store.count_readings().await?, total as i64, "one database holds all");
    for h in hubs {
        h.stop().await;
    }
    Ok(())
}
