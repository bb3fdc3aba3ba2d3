//! Offline detection: a device's last will, and the per-kind inactivity timeout.

use std::time::Duration;

use hub::StartOptions;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tests::{TestHub, config_with, secret_of, small_site, wait_for};

use crate::bad_input::{connect, publish};

async fn offline_finding(th: &TestHub, device: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let f = th.all_findings(&format!("device={device}&rule=offline")).await?;
    Ok(f.into_iter().next())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_last_will_mark_devices_offline() -> anyhow::Result<()> {
    let mut cfg = config_with(&small_site(&[("quiet", "fridge"), ("dropper", "reefer_truck")]))?;
    cfg.device_kinds.get_mut("fridge").unwrap().inactivity_timeout = Duration::from_millis(500);
    let opts = StartOptions { monitor_tick: Duration::from_millis(50), ..Default::default() };
    let th = TestHub::start(cfg, opts).await?;
    let addr = th.mqtt_addr();

    // quiet: one reading, then silence on an open connection.
    let (q, mut qel) = connect(&addr, "quiet", &secret_of("quiet")).await?.expect("connects");
    publish(
        &q,
        &mut qel,
        "sites/s1/devices/quiet/telemetry",
        br#"{"values":{"temperature_c":4}}"#.to_vec(),
    )
    .await?;
    let f = wait_for(Duration::from_secs(10), "quiet's offline finding", || {
        offline_finding(&th, "quiet")
    })
    .await?;
    assert!(f["summary"].as_str().unwrap().contains("no data"), "{f}");
    assert_eq!(f["severity"], "major", "fridge kind's offline severity");
    assert_eq!(th.get("/api/v1/devices/quiet").await?["online"], false);

    // dropper: a last will on its status topic, then the connection dies without DISCONNECT.
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut mo = MqttOptions::new("dropper", host, port.parse()?);
    mo.set_credentials("dropper", secret_of("dropper"));
    let status = "sites/s1/devices/dropper/status";
    mo.set_last_will(LastWill::new(status, "offline", QoS::AtLeastOnce, false));
    let (d, mut del) = AsyncClient::new(mo, 16);
    d.publish(status, QoS::AtLeastOnce, false, "online").await?;
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = del.poll().await? {
            break;
        }
    }
    wait_for(Duration::from_secs(10), "dropper online", || async {
        Ok((th.get("/api/v1/devices/dropper").await?["online"] == true).then_some(()))
    })
    .await?;
    assert!(offline_finding(&th, "dropper").await?.is_none());
    drop(d);
    drop(del); // closes the socket: the broker publishes the will
    let f = wait_for(Duration::from_secs(10), "dropper's offline finding", || {
        offline_finding(&th, "dropper")
    })
    .await?;
    assert!(f["summary"].as_str().unwrap().contains("last will"), "{f}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_on_a_foreign_topic_is_refused() -> anyhow::Result<()> {
    let cfg = config_with(&small_site(&[("w1", "fridge"), ("w2", "fridge")]))?;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let (host, port) =
        th.mqtt_addr().rsplit_once(':').map(|(h, p)| (h.to_owned(), p.to_owned())).unwrap();
    let mut mo = MqttOptions::new("w1", host, port.parse()?);
    mo.set_credentials("w1", secret_of("w1"));
    mo.set_last_will(LastWill::new(
        "sites/s1/devices/w2/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (_c, mut el) = AsyncClient::new(mo, 16);
    match el.poll().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized)
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    th.stop().await;
    Ok(())
}
