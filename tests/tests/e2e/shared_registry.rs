//! Several hubs, one registry: a device registered through one hub is known to the others on
//! the same database without a restart (a registry miss asks the database). In external mode
//! two hubs of one shared-subscription group store every reading of such a device; in embedded
//! mode the other hub's gateway lets it log in.

use std::time::Duration;

use hub::StartOptions;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};
use tests::{TestHub, config_with, small_site, wait_for};

async fn register(th: &TestHub, id: &str) -> anyhow::Result<String> {
    let r = th
        .http
        .post(format!("{}/api/v1/devices", th.base))
        .json(&json!({"id": id, "site_id": "s1", "kind": "fridge"}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    anyhow::ensure!(status == 201, "registering {id} through hub A: {status} {body}");
    Ok(body["secret"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registered_through_one_hub_is_stored_by_both() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let broker = tests::broker()?;
    let n = rand::random::<u32>();
    let group = format!("reg{n}");
    let mut hubs = Vec::new();
    for i in 0..2 {
        let mut cfg = config_with(&small_site(&[]))?;
        cfg.database.url = db.clone();
        broker.configure(&mut cfg, &format!("{group}-{i}"), &group);
        let th = TestHub::start(cfg, StartOptions::default()).await?;
        wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
            Ok(th.get("/healthz").await.ok().map(|_| ()))
        })
        .await?;
        hubs.push(th);
    }
    let r = async {
        // Registered through hub A after both started: hub B has never heard of it.
        let device = format!("reg{n}-a");
        let secret = register(&hubs[0], &device).await?;

        let total = 200u64;
        let mut mo = broker.options(&format!("{group}-dev"), &device, &secret);
        mo.set_inflight(20);
        let (client, mut el) = AsyncClient::new(mo, 64);
        let topic = format!("sites/s1/devices/{device}/telemetry");
        let publisher = async {
            for i in 0..total {
                let payload = json!({"values": {"temperature_c": 4.0 + i as f64 / 1000.0}});
                client.publish(&topic, QoS::AtLeastOnce, false, payload.to_string()).await?;
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

        // Only this device's readings can be stored (the database is this test's own), while
        // `unknown_device` refusals may count other tests' devices on the shared broker: the
        // device's readings must all be stored, hub B's share included.
        let per_hub = wait_for(Duration::from_secs(30), "every reading stored", || async {
            let mut stored = Vec::new();
            for h in &hubs {
                stored.push(h.metric("hub_readings_stored_total").await? as u64);
            }
            Ok((stored.iter().sum::<u64>() == total).then_some(stored))
        })
        .await?;
        anyhow::ensure!(per_hub[1] > 0, "hub B took a share of the group's messages: {per_hub:?}");
        let stored = hubs[1].hub.store.count_readings().await?;
        anyhow::ensure!(stored == total as i64, "one database holds all: {stored} of {total}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    for h in hubs {
        h.stop().await;
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_hubs_gateway_lets_a_device_registered_elsewhere_in() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let mut hubs = Vec::new();
    for _ in 0..2 {
        let mut cfg = config_with(&small_site(&[]))?;
        cfg.database.url = db.clone();
        hubs.push(TestHub::start(cfg, StartOptions::default()).await?);
    }
    let r = async {
        let device = format!("reg{}-b", rand::random::<u32>());
        // Unknown everywhere first: refused, and the miss is remembered (negative cache).
        let refused =
            crate::bad_input::connect(&hubs[1].mqtt_addr(), &device, "no-such-secret").await?;
        anyhow::ensure!(refused.is_err(), "an unregistered device logged in");
        let secret = register(&hubs[0], &device).await?;
        // Once the negative cache's entry expires, hub B's gateway finds the device in the database.
        let (c, mut el) =
            wait_for(Duration::from_secs(10), "hub B to accept the device", || async {
                let addr = hubs[1].mqtt_addr();
                let tried = crate::bad_input::connect(&addr, &device, &secret);
                match tokio::time::timeout(Duration::from_secs(5), tried).await {
                    Ok(r) => Ok(r?.ok()),
                    Err(_) => anyhow::bail!("no CONNACK from hub B within 5 s"),
                }
            })
            .await?;
        let topic = format!("sites/s1/devices/{device}/telemetry");
        crate::bad_input::publish(
            &c,
            &mut el,
            &topic,
            br#"{"values":{"temperature_c":4.5}}"#.to_vec(),
        )
        .await?;
        wait_for(Duration::from_secs(10), "the reading stored through hub B", || async {
            let r = hubs[0].get(&format!("/api/v1/devices/{device}/readings")).await?;
            Ok((r["items"].as_array().map_or(0, Vec::len) == 1).then_some(()))
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    for h in hubs {
        h.stop().await;
    }
    r
}
