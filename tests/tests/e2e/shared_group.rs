//! Several hub processes in one shared-subscription group split the devices' messages on an
//! external broker, and store into one database.

use std::time::Duration;

use hub::StartOptions;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tests::{TestHub, config_with, secret_of, small_site, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_in_one_group_split_the_load() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let broker = tests::broker()?;
    let group = format!("split{}", rand::random::<u32>());
    let devices = ["split-a", "split-b"];
    let site = small_site(&[(devices[0], "fridge"), (devices[1], "fridge")]);
    // The file's devices: the hub knows only their hashes, so the test creates their broker
    // accounts as an operator would.
    broker.provision(&devices.map(|d| (d, "s1", secret_of(d)))).await?;
    let mut hubs = Vec::new();
    for i in 0..2 {
        let mut cfg = config_with(&site)?;
        cfg.database.url = db.clone();
        broker.configure(&mut cfg, &format!("{group}-{i}"), &group);
        let th = TestHub::start(cfg, StartOptions::default()).await?;
        wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
            Ok(th.get("/healthz").await.ok().map(|_| ()))
        })
        .await?;
        hubs.push(th);
    }

    // Each device publishes its half of the readings on its own login.
    let total = 400u64;
    let publishers = devices.map(|device| {
        let mut mo = broker.options(&format!("{group}-{device}"), device, &secret_of(device));
        mo.set_inflight(20);
        async move {
            let (client, mut el) = AsyncClient::new(mo, 64);
            let publisher = async {
                for i in 0..total / 2 {
                    let payload = format!(r#"{{"ts":{i},"values":{{"temperature_c":4.0}}}}"#);
                    let topic = format!("sites/s1/devices/{device}/telemetry");
                    client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
                }
                Ok::<_, anyhow::Error>(())
            };
            let acks = async {
                let mut n = 0;
                while n < total / 2 {
                    if let Event::Incoming(Packet::PubAck(_)) = el.poll().await? {
                        n += 1;
                    }
                }
                Ok::<_, anyhow::Error>(())
            };
            let (p, a) = tokio::join!(publisher, acks);
            p.and(a)
        }
    });
    let [a, b] = publishers;
    let (a, b) = tokio::join!(a, b);
    a?;
    b?;
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
