//! Bad input from devices is refused with a counter and a log line; the hub keeps running and
//! other devices are unaffected.

use std::time::Duration;

use hub::StartOptions;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
};
use tests::{TestHub, config_with, secret_of, small_site, wait_for};

use crate::logs;

/// Connects as `device` with `secret`; Ok(client, loop) on CONNACK, Err(code) when refused.
pub async fn connect(
    addr: &str,
    device: &str,
    secret: &str,
) -> anyhow::Result<Result<(AsyncClient, EventLoop), ConnectReturnCode>> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut mo =
        MqttOptions::new(format!("{device}-{}", rand::random::<u16>()), host, port.parse()?);
    mo.set_credentials(device, secret);
    mo.set_keep_alive(Duration::from_secs(30));
    mo.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(mo, 64);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(Ok((client, el))),
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => return Ok(Err(code)),
            Err(e) => anyhow::bail!("connecting as {device}: {e}"),
        }
    }
}

/// Publishes at QoS 1 and waits for the PUBACK.
pub async fn publish(
    c: &AsyncClient,
    el: &mut EventLoop,
    topic: &str,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    c.publish(topic, QoS::AtLeastOnce, false, payload).await?;
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = el.poll().await? {
            return Ok(());
        }
    }
}

fn topic(device: &str) -> String {
    format!("sites/s1/devices/{device}/telemetry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_counted_and_logged_and_harms_nobody() -> anyhow::Result<()> {
    let logs = logs::capture();
    let cfg = config_with(&small_site(&[("bad-a", "fridge"), ("bad-b", "fridge")]))?;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let addr = th.mqtt_addr();

    // Wrong password and unknown device: CONNACK 4.
    let refused = connect(&addr, "bad-b", "not-the-secret").await?.err();
    assert_eq!(refused, Some(ConnectReturnCode::BadUserNamePassword));
    let refused = connect(&addr, "nobody", "whatever-secret").await?.err();
    assert_eq!(refused, Some(ConnectReturnCode::BadUserNamePassword));

    let (a, mut ael) = connect(&addr, "bad-a", &secret_of("bad-a")).await?.expect("bad-a connects");
    publish(&a, &mut ael, &topic("bad-a"), b"{not json".to_vec()).await?;
    publish(&a, &mut ael, &topic("bad-a"), br#"{"values":{"temperature_c":"hot"}}"#.to_vec())
        .await?;
    let mut big = br#"{"values":{"temperature_c":4.0},"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 20_000));
    big.extend(br#""}"#);
    publish(&a, &mut ael, &topic("bad-a"), big).await?;
    // bad-a's credentials on bad-b's topic, with a value that would raise a finding.
    publish(&a, &mut ael, &topic("bad-b"), br#"{"values":{"temperature_c":30.0}}"#.to_vec())
        .await?;
    // A good reading after all that: once it is stored, everything before it was processed.
    publish(&a, &mut ael, &topic("bad-a"), br#"{"values":{"temperature_c":4.5}}"#.to_vec()).await?;
    wait_for(Duration::from_secs(10), "bad-a's good reading", || async {
        let r = th.get("/api/v1/devices/bad-a/readings").await?;
        Ok((r["items"].as_array().map_or(0, Vec::len) == 1).then_some(()))
    })
    .await?;

    for (series, want) in [
        ("hub_mqtt_auth_failures_total{reason=\"bad_secret\"}", 1.0),
        ("hub_mqtt_auth_failures_total{reason=\"unknown_device\"}", 1.0),
        ("hub_readings_rejected_total{reason=\"bad_json\"}", 1.0),
        ("hub_readings_rejected_total{reason=\"not_numeric\"}", 1.0),
        ("hub_mqtt_oversized_total", 1.0),
        ("hub_mqtt_acl_denied_total{packet=\"publish\"}", 1.0),
    ] {
        assert_eq!(th.metric(series).await?, want, "{series}");
    }
    let b = th.get("/api/v1/devices/bad-b/readings").await?;
    assert_eq!(b["items"].as_array().map(Vec::len), Some(0), "nothing was stored for bad-b: {b}");
    assert!(th.all_findings("device=bad-b").await?.is_empty());
    for needles in [
        &["MQTT login with a wrong secret refused", "bad-b"][..],
        &["MQTT login as an unknown device refused", "nobody"],
        &["device message refused", "bad_json", "bad-a"],
        &["device message refused", "not_numeric", "bad-a"],
        &["oversized PUBLISH dropped", "bad-a"],
        &["PUBLISH to a topic the device does not own dropped", "bad-a", "devices/bad-b/"],
    ] {
        assert!(!logs.lines_with(needles).is_empty(), "no log line with {needles:?}");
    }

    // The hub still serves, and bad-b itself is unaffected.
    assert_eq!(th.get("/healthz").await?["status"], "ok");
    let (b, mut bel) = connect(&addr, "bad-b", &secret_of("bad-b")).await?.expect("bad-b connects");
    publish(&b, &mut bel, &topic("bad-b"), br#"{"values":{"temperature_c":3.5}}"#.to_vec()).await?;
    wait_for(Duration::from_secs(10), "bad-b's own reading", || async {
        let r = th.get("/api/v1/devices/bad-b/readings").await?;
        Ok((r["items"][0]["values"]["temperature_c"] == 3.5).then_some(()))
    })
    .await?;
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingsboard_topic_and_foreign_subscriptions() -> anyhow::Result<()> {
    let cfg = config_with(&small_site(&[("tb-a", "fridge")]))?;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let (a, mut el) =
        connect(&th.mqtt_addr(), "tb-a", &secret_of("tb-a")).await?.expect("connects");
    // A subscription outside the device's own topics is refused with a failure code.
    a.subscribe("sites/+/devices/+/telemetry", QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(s)) = el.poll().await? {
            assert_eq!(s.return_codes, vec![rumqttc::SubscribeReasonCode::Failure]);
            break;
        }
    }
    publish(
        &a,
        &mut el,
        ingest::topic::TB_TELEMETRY,
        br#"{"ts":1000,"temperature_c":21}"#.to_vec(),
    )
    .await?;
    wait_for(Duration::from_secs(10), "the ThingsBoard-style reading", || async {
        let r = th.get("/api/v1/devices/tb-a/readings").await?;
        Ok((r["items"][0]["ts_ms"] == 1000).then_some(()))
    })
    .await?;
    // 21 °C is above the immediate critical threshold: a finding for tb-a.
    let f = th.all_findings("device=tb-a").await?;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["rule"], "coldchain-temp-critical");
    assert_eq!(th.metric("hub_mqtt_acl_denied_total{packet=\"subscribe\"}").await?, 1.0);
    th.stop().await;
    Ok(())
}
