//! The demo site's scripted scenario produces exactly the findings it declares — on SQLite with
//! the embedded broker, and on PostgreSQL with Mosquitto.

use std::collections::BTreeSet;
use std::time::Duration;

use devices::scenario::Scenario;
use devices::site::{self, Pace, SiteOptions};
use hub::StartOptions;
use hub::demo::DemoOptions;
use tests::{TestHub, secret_of, wait_for};

/// 2026-01-05T00:00:00Z: a fixed origin, so daily cycles replay identically.
const START: i64 = 1_767_571_200_000;

async fn run(
    configure: impl FnOnce(&mut config::Config),
    external_mqtt: Option<String>,
    pace: Pace,
) -> anyhow::Result<()> {
    let scenario = Scenario::demo();
    let secrets: Vec<(String, String)> =
        scenario.devices.iter().map(|d| (d.id.to_owned(), secret_of(d.id))).collect();
    let opts = DemoOptions {
        http: String::new(),
        mqtt: String::new(),
        data_dir: Default::default(),
        models: Vec::new(),
        clips: None,
    };
    let mut cfg = hub::demo::config(&opts, &scenario, &secrets, "")?;
    configure(&mut cfg);
    // The scenario replays a fixed day in the past.
    cfg.pipeline.max_reading_age = tests::HISTORY;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    // An external broker delivers only to existing subscriptions: wait for the hub's.
    wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
        Ok(th.get("/healthz").await.ok().map(|_| ()))
    })
    .await?;
    let mqtt = external_mqtt
        .map(|u| u.trim_start_matches("mqtt://").to_owned())
        .unwrap_or_else(|| th.mqtt_addr());
    let addr: std::net::SocketAddr = th.hub.http_addr;
    let creds = hub::demo::credentials(&scenario, &secrets, addr, addr).devices;
    let _ = crate::logs::capture();
    let report = site::run(
        &scenario,
        SiteOptions {
            mqtt,
            credentials: creds,
            start_ms: START,
            end_ms: Some(START + scenario.length_ms),
            pace,
        },
        Default::default(),
    )
    .await?;
    let expected_readings: u64 = scenario
        .devices
        .iter()
        .filter(|d| d.simulated)
        .map(|d| (scenario.length_ms / d.kind.interval_ms()) as u64)
        .sum();
    assert_eq!(report.published, expected_readings);
    let stored = wait_for(Duration::from_secs(60), "every reading stored", || async {
        let n = th.metric("hub_readings_stored_total").await?;
        Ok((n as u64 >= report.published).then_some(()))
    })
    .await;
    if let Err(e) = stored {
        let n = th.metric("hub_readings_stored_total").await?;
        let rx =
            th.metric("hub_mqtt_messages_total{direction=\"in\",outcome=\"received\"}").await?;
        anyhow::bail!("{e}: {n} of {} stored, {rx} messages received", report.published);
    }
    let findings = th.all_findings("").await?;
    let expected = scenario.expected();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &findings {
        let device = f["device_id"].as_str().unwrap_or("");
        let rule = f["rule"].as_str().unwrap_or("");
        let first = chrono_ms(f["first_seen"].as_str().unwrap_or(""));
        match expected.iter().find(|e| e.device == device && e.rule == rule) {
            None => {
                problems.push(format!("unexpected finding {device}/{rule} at {}", f["first_seen"]))
            }
            Some(e) if !(START + e.from_ms..START + e.to_ms).contains(&first) => {
                problems.push(format!(
                    "{device}/{rule} first seen at {} (+{} min), outside +{}..+{} min",
                    f["first_seen"],
                    (first - START) / 60_000,
                    e.from_ms / 60_000,
                    e.to_ms / 60_000
                ))
            }
            Some(_) => {}
        }
        if !seen.insert((device.to_owned(), rule.to_owned())) {
            problems.push(format!("duplicate finding {device}/{rule}"));
        }
    }
    for e in &expected {
        if !seen.contains(&(e.device.to_owned(), e.rule.to_owned())) {
            problems.push(format!("missing finding {}/{}", e.device, e.rule));
        }
    }
    th.stop().await;
    assert!(problems.is_empty(), "scenario findings differ:\n{}", problems.join("\n"));
    Ok(())
}

fn chrono_ms(rfc3339: &str) -> i64 {
    // The API writes RFC 3339 UTC with milliseconds: YYYY-MM-DDTHH:MM:SS.mmmZ.
    let p = |a: usize, b: usize| rfc3339.get(a..b).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, mo, d) = (p(0, 4), p(5, 7), p(8, 10));
    let (h, mi, s, ms) = (p(11, 13), p(14, 16), p(17, 19), p(20, 23));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms
}

#[test]
fn rfc3339_parsing_used_by_the_checks_is_right() {
    assert_eq!(chrono_ms("2026-01-05T00:00:00.000Z"), START);
    assert_eq!(chrono_ms("2026-01-05T01:30:00.250Z"), START + 90 * 60_000 + 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_sqlite_with_the_embedded_broker() -> anyhow::Result<()> {
    run(|_| {}, None, Pace::AsFastAsPossible).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_postgres_with_mosquitto() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let broker = tests::broker()?;
    // The demo's devices come from the file: the hub knows only their hashes, so the test
    // creates their broker accounts as an operator would.
    let scenario = Scenario::demo();
    let accounts: Vec<_> =
        scenario.devices.iter().map(|d| (d.id, d.site, secret_of(d.id))).collect();
    broker.provision(&accounts).await?;
    clear_retained_status(&broker).await?;
    let group = format!("hubtest{}", rand::random::<u32>());
    let b = broker.clone();
    run(
        move |c| {
            c.database.url = db;
            b.configure(c, &format!("{group}-hub"), &group);
        },
        Some(broker.url.clone()),
        // The Mosquitto on :1883 may run with default queue limits; see Pace::PerDeviceRate.
        Pace::PerDeviceRate(250.0),
    )
    .await
}

/// Earlier runs may have left retained status messages of the demo devices on the broker; each
/// device clears its own (a device may write only its own topics).
async fn clear_retained_status(broker: &tests::Broker) -> anyhow::Result<()> {
    use rumqttc::{AsyncClient, Event, Outgoing, QoS};
    for d in &Scenario::demo().devices {
        let mo =
            broker.options(&format!("cleaner{}", rand::random::<u32>()), d.id, &secret_of(d.id));
        let (client, mut el) = AsyncClient::new(mo, 64);
        let t = format!("sites/{}/devices/{}/status", d.site, d.id);
        client.publish(t, QoS::AtLeastOnce, true, Vec::new()).await?;
        client.disconnect().await?;
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    anyhow::bail!("clearing {}'s retained status on {}: {e}", d.id, broker.url)
                }
            }
        }
    }
    Ok(())
}
