//! Record events over MQTT, on both databases: a department's subscription of transport `mqtt`
//! is read by a real MQTT client (rumqttc) logged in to the hub's gateway with the
//! department's token. Wrong credentials and another department's token are refused, a filter
//! outside the department's prefix is refused; an event made while no subscriber is connected
//! stays in the outbox and arrives as soon as one subscribes (not at the next retry); an event
//! the subscriber took but did not acknowledge (no PUBACK before it went away) comes again with
//! the same CloudEvent id; acknowledged events are logged as delivered; a revoked token's
//! connection ends.

use std::sync::Arc;
use std::time::Duration;

use common::{Clock, ManualClock};
use hub::app::StartOptions;
use hub::store::{Batch, Scope};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tests::{TestHub, client_with_token, config_with, create_token, wait_for};
use tokio::sync::mpsc;

use crate::access::{three_departments, two_sites};

const FOOD_ITEM: &str = "61000000200003";
/// Longest wait for one MQTT event.
const WAIT: Duration = Duration::from_secs(15);

/// What a subscriber's event loop saw.
#[derive(Debug)]
enum Seen {
    Connected,
    Refused(ConnectReturnCode),
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    Event(rumqttc::Publish),
    Ended(String),
}

/// Connects a subscriber; its event loop runs in a task until the connection ends.
fn subscriber(
    th: &TestHub,
    id: &str,
    username: &str,
    password: &str,
    manual_acks: bool,
) -> (AsyncClient, mpsc::Receiver<Seen>, tokio::task::JoinHandle<()>) {
    let (host, port) =
        th.mqtt_addr().rsplit_once(':').map(|(h, p)| (h.to_owned(), p.to_owned())).unwrap();
    let mut mo = MqttOptions::new(id, host, port.parse().unwrap());
    mo.set_credentials(username, password);
    mo.set_manual_acks(manual_acks);
    mo.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(mo, 16);
    // Bounded: a test that stops reading holds the event loop back (nothing is dropped).
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let seen = match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Seen::Connected,
                Ok(Event::Incoming(Packet::SubAck(s))) => Seen::SubAck(s.return_codes),
                Ok(Event::Incoming(Packet::Publish(p))) => Seen::Event(p),
                Ok(_) => continue,
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    let _ = tx.send(Seen::Refused(code)).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Seen::Ended(e.to_string())).await;
                    return;
                }
            };
            if tx.send(seen).await.is_err() {
                return;
            }
        }
    });
    (client, rx, task)
}

async fn next(rx: &mut mpsc::Receiver<Seen>, what: &str) -> anyhow::Result<Seen> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no {what} within {WAIT:?}"))?
        .ok_or_else(|| anyhow::anyhow!("the subscriber's loop ended before {what}"))
}

async fn next_event(rx: &mut mpsc::Receiver<Seen>) -> anyhow::Result<(rumqttc::Publish, Value)> {
    loop {
        match next(rx, "record event").await? {
            Seen::Event(p) => {
                let v: Value = serde_json::from_slice(&p.payload)?;
                return Ok((p, v));
            }
            Seen::Ended(e) => anyhow::bail!("the subscriber's connection ended: {e}"),
            _ => {}
        }
    }
}

async fn record_events_over_mqtt(mut cfg: config::Config) -> anyhow::Result<()> {
    cfg.records.auto_severities = vec![common::Severity::Critical];
    cfg.delivery.timeout = Duration::from_secs(2);
    cfg.delivery.poll = Duration::from_millis(100);
    cfg.http.stream_recheck = Duration::from_millis(300);
    // The clock stands still: a retry is never due by time, so only the subscriber's SUBSCRIBE
    // can make an owed event due again.
    let clock = ManualClock::new(common::SystemClock.now_ms());
    let opts = StartOptions { clock: Arc::new(clock.clone()), ..StartOptions::default() };
    let th = TestHub::start(cfg, opts).await?;
    let store = &th.hub.store;
    let base = th.base.clone();
    three_departments(&th).await?;
    let r = th
        .http
        .post(format!("{base}/api/v1/catalogue"))
        .header("content-type", "text/csv")
        .body(format!(
            "code,name,departments,industry,severity\n{FOOD_ITEM},冷库人员闯入,xian-food,food,critical\n"
        ))
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.text().await?);
    let xian_token = create_token(store, &["department"], Some("xian-food"), None).await?;
    let xy_token = create_token(store, &["department"], Some("xianyang-transport"), None).await?;
    let op_token = create_token(store, &["duty_operator"], Some("duty"), None).await?;
    let (xian, op) = (client_with_token(&xian_token), client_with_token(&op_token));

    // The subscription: no url, no secret; the answer names the login and the topic.
    let r = xian
        .post(format!("{base}/api/v1/subscriptions"))
        .json(&json!({"name": "mqtt", "transport": "mqtt", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400, "an mqtt subscription has no url");
    let sub: Value = xian
        .post(format!("{base}/api/v1/subscriptions"))
        .json(&json!({"name": "mqtt", "transport": "mqtt"}))
        .send()
        .await?
        .json()
        .await?;
    let sub_id = sub["id"].as_i64().unwrap_or_else(|| panic!("{sub}"));
    let topic = format!("departments/xian-food/records/{sub_id}");
    assert_eq!(sub["mqtt"], json!({"username": "department:xian-food", "topic": topic}), "{sub}");
    assert!(sub.get("secret").is_none(), "{sub}");

    // Logins: a wrong token, and another department's token, are refused.
    let user = "department:xian-food";
    let (_c, mut rx, _t) = subscriber(&th, "bad-1", user, "hubt_wrong", false);
    assert!(matches!(
        next(&mut rx, "CONNACK").await?,
        Seen::Refused(ConnectReturnCode::BadUserNamePassword)
    ));
    let (_c, mut rx, _t) = subscriber(&th, "bad-2", user, &xy_token, false);
    assert!(matches!(
        next(&mut rx, "CONNACK").await?,
        Seen::Refused(ConnectReturnCode::NotAuthorized)
    ));

    // A record made while no subscriber is connected: the attempt fails and is kept.
    let batch = Batch {
        findings: vec![tests::camera_hit(
            "xian-1",
            "c-xian",
            "610102",
            "r",
            Some(FOOD_ITEM),
            common::Severity::Critical,
        )],
        ..Default::default()
    };
    store.write_batch(&batch, 1).await?;
    let fid = store
        .findings(&hub::store::FindingFilter { limit: 10, ..Default::default() }, &Scope::All)
        .await?[0]
        .id;
    let f: Value = op
        .post(format!("{base}/api/v1/findings/{fid}/verify"))
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let rid = f["record_id"].as_i64().unwrap_or_else(|| panic!("{f}"));
    let log_url = format!("{base}/api/v1/subscriptions/{sub_id}/deliveries");
    let log = || {
        let (xian, url) = (xian.clone(), log_url.clone());
        async move { Ok::<Value, anyhow::Error>(xian.get(url).send().await?.json().await?) }
    };
    let b = wait_for(WAIT, "the first attempt logged", || async {
        let b = log().await?;
        Ok((b["items"][0]["attempts"] == 1).then_some(b))
    })
    .await?;
    let first = &b["items"][0];
    assert_eq!(first["state"], "pending", "{b}");
    let error = first["log"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no MQTT subscriber of department xian-food"), "{b}");

    // A subscriber that takes the event without acknowledging it, and leaves. A filter outside
    // its department is refused in the SUBACK.
    let (c, mut rx, task) = subscriber(&th, "case-system", user, &xian_token, true);
    assert!(matches!(next(&mut rx, "CONNACK").await?, Seen::Connected));
    c.subscribe("departments/xianyang-transport/records/#", QoS::AtLeastOnce).await?;
    let Seen::SubAck(codes) = next(&mut rx, "SUBACK").await? else { anyhow::bail!("no SUBACK") };
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
    c.subscribe("departments/xian-food/records/#", QoS::AtLeastOnce).await?;
    let (p, ev) = next_event(&mut rx).await?;
    assert_eq!(p.topic, topic);
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(ev["type"], "record.created", "{ev}");
    assert_eq!(ev["data"]["record"]["id"], rid, "{ev}");
    let event_id = ev["id"].as_str().unwrap().to_owned();
    task.abort();
    drop(c);
    let b = wait_for(WAIT, "the unacknowledged attempt logged", || async {
        let b = log().await?;
        Ok((b["items"][0]["attempts"] == 2).then_some(b))
    })
    .await?;
    assert_eq!(b["items"][0]["state"], "pending", "{b}");
    let error = b["items"][0]["log"][1]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("ended before its PUBACK"), "{b}");

    // It comes again, with the same id, to the next subscriber; acknowledged, it is delivered.
    let (c, mut rx, _task) = subscriber(&th, "case-system", user, &xian_token, false);
    assert!(matches!(next(&mut rx, "CONNACK").await?, Seen::Connected));
    c.subscribe(&topic, QoS::AtLeastOnce).await?;
    let (_, again) = next_event(&mut rx).await?;
    assert_eq!(again["id"], event_id.as_str(), "the same event again");
    let b = wait_for(WAIT, "delivered", || async {
        let b = log().await?;
        Ok((b["items"][0]["state"] == "delivered").then_some(b))
    })
    .await?;
    assert_eq!(b["items"][0]["attempts"], 3, "{b}");
    let last = &b["items"][0]["log"][2];
    assert_eq!((&last["status"], &last["error"]), (&Value::Null, &Value::Null), "a PUBACK: {b}");

    // The department's next step arrives while the subscriber is connected.
    let r = xian.post(format!("{base}/api/v1/records/{rid}/claim")).json(&json!({})).send().await?;
    assert!(r.status().is_success(), "{}", r.text().await?);
    let (_, claimed) = next_event(&mut rx).await?;
    assert_eq!(claimed["type"], "record.claimed", "{claimed}");
    assert_eq!(claimed["data"]["record"]["state"], "claimed", "{claimed}");
    assert_ne!(claimed["id"], event_id.as_str());

    // Revoked, the token no longer holds the connection (re-checked every http.stream_recheck).
    let tokens: Value = th.http.get(format!("{base}/api/v1/tokens")).send().await?.json().await?;
    let id = tokens["items"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["department"] == "xian-food"))
        .map(|t| t["id"].clone())
        .unwrap_or_else(|| panic!("{tokens}"));
    let r = th.http.delete(format!("{base}/api/v1/tokens/{id}")).send().await?;
    assert!(r.status().is_success(), "revoke: {}", r.status());
    loop {
        match next(&mut rx, "end of the revoked token's connection").await? {
            Seen::Ended(_) => break,
            Seen::Event(p) => anyhow::bail!("an event after the revocation: {p:?}"),
            _ => {}
        }
    }
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_events_over_mqtt_sqlite() -> anyhow::Result<()> {
    record_events_over_mqtt(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_events_over_mqtt_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    record_events_over_mqtt(cfg).await
}
