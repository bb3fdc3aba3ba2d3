//! External mode against Mosquitto with the dynamic-security plugin (the broker
//! `scripts/lib/setup.sh` starts): the hub provisions a device registered through the API, the
//! broker refuses a wrong password, drops a device's publish on another device's topic, and
//! refuses the device once it is removed. On SQLite and PostgreSQL (registration and removal
//! are stored).

use std::time::Duration;

use anyhow::{bail, ensure};
use hub::StartOptions;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Packet, QoS};
use serde_json::{Value, json};
use tests::{Broker, TestHub, config_with, small_site, wait_for};

/// `assert_eq!` that returns the failure, so the hub under test is still stopped.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        ensure!(l == r, "{}: {:?} != {:?}", format!($($msg)+), l, r);
    }};
}

/// Connects as `user`; the CONNACK's refusal as `Err(code)`.
async fn connect(
    b: &Broker,
    user: &str,
    password: &str,
) -> anyhow::Result<Result<(AsyncClient, EventLoop), ConnectReturnCode>> {
    let client_id = format!("{user}-{}", rand::random::<u32>());
    let (client, mut el) = AsyncClient::new(b.options(&client_id, user, password), 16);
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => return Ok(c.code),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(e) => return Err(anyhow::anyhow!("connecting to {} as {user}: {e}", b.url)),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no CONNACK from {} within 10 s", b.url))??;
    Ok(match first {
        ConnectReturnCode::Success => Ok((client, el)),
        refused => Err(refused),
    })
}

/// Publishes QoS 1 and waits for the broker's PUBACK (Mosquitto acknowledges a denied publish
/// of an MQTT 3.1.1 client too, and drops it).
async fn publish_acked(
    client: &AsyncClient,
    el: &mut EventLoop,
    topic: String,
    payload: Value,
) -> anyhow::Result<()> {
    client.publish(topic.clone(), QoS::AtLeastOnce, false, payload.to_string()).await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = el.poll().await? {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no PUBACK for {topic} within 10 s"))?
}

async fn register(th: &TestHub, id: &str) -> anyhow::Result<String> {
    let r = th
        .http
        .post(format!("{}/api/v1/devices", th.base))
        .json(&json!({"id": id, "site_id": "s1", "kind": "fridge"}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    anyhow::ensure!(status == 201, "registering {id}: {status} {body}");
    Ok(body["secret"].as_str().unwrap_or_default().to_owned())
}

async fn readings_of(th: &TestHub, id: &str) -> anyhow::Result<usize> {
    let page = th.get(&format!("/api/v1/devices/{id}/readings?limit=100")).await?;
    Ok(page["items"].as_array().map_or(0, Vec::len))
}

async fn run(database: Option<String>) -> anyhow::Result<()> {
    let b = tests::broker()?;
    let n = rand::random::<u32>();
    let group = format!("dynsec{n}");
    let file_device = format!("ds{n}-file");
    let mut cfg = config_with(&small_site(&[(&file_device, "fridge")]))?;
    if let Some(db) = database {
        cfg.database.url = db;
    }
    b.configure(&mut cfg, &format!("{group}-hub"), &group);
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
        Ok(th.get("/healthz").await.ok().map(|_| ()))
    })
    .await?;

    let checked = checks(&b, &th, n, &file_device).await;
    // Stopped on failure too: a hub left running keeps the test's runtime from shutting down.
    th.stop().await;
    checked
}

async fn checks(b: &Broker, th: &TestHub, n: u32, file_device: &str) -> anyhow::Result<()> {
    let (a, other) = (format!("ds{n}-a"), format!("ds{n}-b"));
    let secret = register(th, &a).await?;
    let other_secret = register(th, &other).await?;

    // A wrong password, another device's secret, and no login at all are refused at CONNECT.
    for (user, password) in [(&a, "wrong-secret"), (&a, other_secret.as_str()), (&a, "")] {
        match connect(b, user, password).await? {
            Err(code) => ensure!(
                matches!(
                    code,
                    ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
                ),
                "{user} with a wrong password: refused with {code:?}"
            ),
            Ok(_) => bail!("{user} logged in with the password {password:?}"),
        }
    }

    // The device's publish on another device's topic is dropped by the broker; its own
    // publish after it, on the same connection, arrives and is stored.
    let (client, mut el) = connect(b, &a, &secret)
        .await?
        .map_err(|c| anyhow::anyhow!("{a} refused with its own secret: {c:?}"))?;
    let reading = |t: f64| json!({"values": {"temperature_c": t}});
    publish_acked(&client, &mut el, format!("sites/s1/devices/{other}/telemetry"), reading(30.0))
        .await?;
    publish_acked(&client, &mut el, format!("sites/s1/devices/{a}/telemetry"), reading(4.0))
        .await?;
    wait_for(Duration::from_secs(20), "the device's own reading stored", || async {
        Ok((readings_of(th, &a).await? == 1).then_some(()))
    })
    .await?;
    ensure_eq!(readings_of(th, &other).await?, 0, "a reading on another device's topic got in");
    ensure_eq!(th.metric("hub_readings_stored_total").await?, 1.0, "only the own reading");

    // Configuration devices are the file's: the API does not remove them.
    let r = th.http.delete(format!("{}/api/v1/devices/{file_device}", th.base)).send().await?;
    ensure_eq!(r.status(), 409, "removing a configuration device");

    // Removing the device disconnects it and revokes its login.
    let r = th.http.delete(format!("{}/api/v1/devices/{a}", th.base)).send().await?;
    ensure_eq!(r.status(), 204, "removing {a}: {}", r.text().await?);
    tokio::time::timeout(Duration::from_secs(10), async { while el.poll().await.is_ok() {} })
        .await
        .map_err(|_| anyhow::anyhow!("the broker kept {a} connected after its removal"))?;
    ensure!(connect(b, &a, &secret).await?.is_err(), "{a} can still log in after its removal");
    let r = th.http.get(format!("{}/api/v1/devices/{a}", th.base)).send().await?;
    ensure_eq!(r.status(), 404, "the removed device is gone from the API");
    // The other device is untouched.
    ensure!(connect(b, &other, &other_secret).await?.is_ok(), "{other} lost its login");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_accounts_follow_the_api_on_sqlite() -> anyhow::Result<()> {
    run(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_accounts_follow_the_api_on_postgres() -> anyhow::Result<()> {
    run(Some(tests::fresh_postgres_database().await?)).await
}

/// A registration the broker cannot take is undone: the API answers 503 and the device does
/// not exist (a device that cannot log in would only look registered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_the_broker_refuses_is_undone() -> anyhow::Result<()> {
    let mut b = tests::broker()?;
    b.admin.1 = "not-the-admin-password".into();
    let n = rand::random::<u32>();
    let mut cfg = config_with(&small_site(&[]))?;
    b.configure(&mut cfg, &format!("dynsec{n}-hub"), &format!("dynsec{n}"));
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let checked = async {
        let id = format!("ds{n}-refused");
        let r = th
            .http
            .post(format!("{}/api/v1/devices", th.base))
            .json(&json!({"id": id, "site_id": "s1", "kind": "fridge"}))
            .send()
            .await?;
        ensure_eq!(r.status(), 503, "registration without a broker account");
        let r = th.http.get(format!("{}/api/v1/devices/{id}", th.base)).send().await?;
        ensure_eq!(r.status(), 404, "the refused registration left a device behind");
        ensure!(
            th.hub.store.devices().await?.iter().all(|d| d.id != id),
            "the refused registration left a row behind"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    th.stop().await;
    checked
}
