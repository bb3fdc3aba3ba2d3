//! Acknowledged means stored: a SIGKILL loses no acknowledged reading, a database outage loses
//! nothing and leaves the API answering, and `/healthz` names a failed stage.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hub::StartOptions;
use hub::supervise::Faults;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Login, Packet, Publish};
use sqlx::Row;
use tests::{TestHub, config_with, scratch_dir, secret_of, small_site, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bare MQTT 3.1.1 device connection: the test decides what is sent and sees exactly which
/// packet ids were acknowledged (a library client would resend on its own).
struct RawDevice {
    write: tokio::net::tcp::OwnedWriteHalf,
    acked: Arc<Mutex<BTreeSet<u16>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl RawDevice {
    async fn connect(addr: &str, device: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (mut rd, mut write) = s.into_split();
        let mut c = Connect::new(device);
        c.keep_alive = 60;
        c.login = Some(Login::new(device, secret_of(device)));
        let mut buf = BytesMut::new();
        c.write(&mut buf).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        write.write_all(&buf).await?;
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let a = acked.clone();
        let (connack_tx, connack_rx) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let mut connack = Some(connack_tx);
            let mut inb = BytesMut::with_capacity(4096);
            loop {
                match Packet::read(&mut inb, 1 << 20) {
                    Ok(Packet::ConnAck(ca)) => {
                        if let Some(tx) = connack.take() {
                            let _ = tx.send(ca.code);
                        }
                        continue;
                    }
                    Ok(Packet::PubAck(p)) => {
                        a.lock().unwrap().insert(p.pkid);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(_) => {}
                }
                match rd.read_buf(&mut inb).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let code = tokio::time::timeout(Duration::from_secs(10), connack_rx).await??;
        anyhow::ensure!(code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success, "{code:?}");
        Ok(Self { write, acked, reader: Some(reader) })
    }

    /// Sends reading `i` (QoS 1, packet id i + 1, the device's own ts).
    async fn send(&mut self, device: &str, i: u16, ts0: i64) -> anyhow::Result<()> {
        let body = format!(r#"{{"ts":{},"values":{{"temperature_c":4.{i}}}}}"#, ts0 + i64::from(i));
        let mut p =
            Publish::new(format!("sites/s1/devices/{device}/telemetry"), QoS::AtLeastOnce, body);
        p.pkid = i + 1;
        let mut buf = BytesMut::new();
        p.write(&mut buf).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.write.write_all(&buf).await?;
        Ok(())
    }

    fn acked(&self) -> BTreeSet<u16> {
        self.acked.lock().unwrap().clone()
    }

    /// Every packet id acknowledged once the server has closed the connection.
    async fn closed(mut self) -> BTreeSet<u16> {
        if let Some(r) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
        self.acked()
    }
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

async fn healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<Option<()>> {
    Ok(match http.get(format!("{base}/healthz")).send().await {
        Ok(r) if r.status().is_success() => Some(()),
        _ => None,
    })
}

/// (rows, distinct ts) of a device's readings in a SQLite file.
async fn stored(db: &std::path::Path, device: &str) -> anyhow::Result<(i64, i64)> {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let r = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT ts) AS d FROM readings WHERE device_id = $1",
    )
    .bind(device)
    .fetch_one(&mut c)
    .await?;
    Ok((r.try_get("n")?, r.try_get("d")?))
}

/// N QoS 1 readings; the hub is killed with SIGKILL mid-stream and restarted; the client resends
/// what was not acknowledged → all N stored, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_reading() -> anyhow::Result<()> {
    // Far more than the hub commits before the kill below: many are in flight when it dies.
    const N: u16 = 10_000;
    const WINDOW: usize = 1_000;
    let dir = scratch_dir("kill9");
    let (http_port, mqtt_port) = (tests::free_port(), tests::free_port());
    let text = format!("{}\n{}", config::Config::default_toml(), small_site(&[("k9", "fridge")]))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("listen = \"127.0.0.1:1883\"", &format!("listen = \"127.0.0.1:{mqtt_port}\""))
        .replace("data_dir = \"data\"", &format!("data_dir = {:?}", dir.display().to_string()));
    let cfg_path = dir.join("hub.toml");
    std::fs::write(&cfg_path, &text)?;
    config::Config::load(&cfg_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = format!("http://127.0.0.1:{http_port}");
    let addr = format!("127.0.0.1:{mqtt_port}");
    let http = reqwest::Client::new();
    let ts0 = chrono_now() - 3_600_000;

    let mut hub = tests::start_hub_process(
        env!("CARGO_BIN_EXE_hub-under-test"),
        &cfg_path,
        &dir.join("hub-1.log"),
    )?;
    wait_for(Duration::from_secs(60), "the hub to answer /healthz", || healthy(&http, &base))
        .await?;
    let mut dev = RawDevice::connect(&addr, "k9").await?;
    let mut killed = false;
    let mut kill_at = None;
    for i in 0..N {
        // At most WINDOW unacknowledged: the hub commits what it has in one batch, and a device
        // far ahead of it would see everything acknowledged before the kill below lands.
        if kill_at.is_none() && usize::from(i) >= dev.acked().len() + WINDOW {
            wait_for(Duration::from_secs(30), "the hub to acknowledge", || async {
                Ok((usize::from(i) < dev.acked().len() + WINDOW).then_some(()))
            })
            .await?;
        }
        if dev.send("k9", i, ts0).await.is_err() {
            break; // the hub is gone
        }
        if kill_at.is_none() && dev.acked().len() >= 200 {
            // Some readings acknowledged: 500 more go out at once, then the kill, so that
            // many are in flight when it lands.
            kill_at = Some(i + 500);
        }
        if !killed && kill_at == Some(i) {
            hub.0.kill()?;
            let _ = hub.0.wait();
            killed = true;
        }
    }
    if !killed {
        // Everything was written before 200 were acknowledged: kill at the 200th.
        wait_for(Duration::from_secs(30), "200 acknowledged", || async {
            Ok((dev.acked().len() >= 200).then_some(()))
        })
        .await?;
        hub.0.kill()?;
        let _ = hub.0.wait();
    }
    // What was acknowledged before the kill (every PUBACK the socket still held is read), and
    // so what the device must send again.
    let acked_before = dev.closed().await;
    println!(
        "killed with {} of {N} acknowledged, {} sent",
        acked_before.len(),
        kill_at.map_or(usize::from(N), |k| usize::from(k) + 1)
    );
    assert!(acked_before.len() < usize::from(N), "the kill came after everything was acknowledged");

    let _hub = tests::start_hub_process(
        env!("CARGO_BIN_EXE_hub-under-test"),
        &cfg_path,
        &dir.join("hub-2.log"),
    )?;
    wait_for(Duration::from_secs(60), "the restarted hub", || healthy(&http, &base)).await?;
    let mut dev = RawDevice::connect(&addr, "k9").await?;
    let resend: Vec<u16> = (0..N).filter(|i| !acked_before.contains(&(i + 1))).collect();
    for &i in &resend {
        dev.send("k9", i, ts0).await?;
    }
    wait_for(Duration::from_secs(60), "every resent reading acknowledged", || async {
        Ok((resend.iter().all(|i| dev.acked().contains(&(i + 1)))).then_some(()))
    })
    .await?;
    let (rows, distinct) = stored(&dir.join("hub.db"), "k9").await?;
    println!("resent {} readings; stored {rows} rows, {distinct} distinct", resend.len());
    assert_eq!(distinct, i64::from(N), "every reading stored: none acknowledged and lost");
    assert_eq!(rows, i64::from(N), "none stored twice");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Makes the database unavailable and gives it back: SQLite by an exclusive lock held from
/// another connection, PostgreSQL by refusing connections to the hub's database and ending the
/// ones it has.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres { admin: sqlx::PgConnection, db: String },
}

impl Outage {
    async fn begin(th: &TestHub, pg_db_url: Option<&str>) -> anyhow::Result<Self> {
        use sqlx::Connection;
        match pg_db_url {
            None => {
                let path = th.dir.join("hub.db");
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await?;
                sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await?;
                Ok(Outage::Sqlite(c))
            }
            Some(url) => {
                let db = url.rsplit('/').next().unwrap().to_owned();
                let mut admin = sqlx::PgConnection::connect(&tests::postgres_url()?).await?;
                sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
                    .execute(&mut admin)
                    .await?;
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&db)
                .execute(&mut admin)
                .await?;
                Ok(Outage::Postgres { admin, db })
            }
        }
    }

    async fn end(self) -> anyhow::Result<()> {
        match self {
            Outage::Sqlite(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await?;
            }
            Outage::Postgres { mut admin, db } => {
                sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
                    .execute(&mut admin)
                    .await?;
            }
        }
        Ok(())
    }
}

/// GET `path`: (status, body, how long it took).
async fn timed_get(th: &TestHub, path: &str) -> anyhow::Result<(u16, serde_json::Value, Duration)> {
    let t = Instant::now();
    let r =
        th.http.get(format!("{}{path}", th.base)).timeout(Duration::from_secs(10)).send().await?;
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body, t.elapsed()))
}

async fn database_outage_loses_nothing(pg: bool) -> anyhow::Result<()> {
    let mut cfg = config_with(&small_site(&[("out-1", "fridge")]))?;
    let pg_url = if pg { Some(tests::fresh_postgres_database().await?) } else { None };
    if let Some(u) = &pg_url {
        cfg.database.url = u.clone();
    }
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let (host, port) =
        th.mqtt_addr().rsplit_once(':').map(|(h, p)| (h.to_owned(), p.to_owned())).unwrap();
    let mut mo = rumqttc::MqttOptions::new("out-1", host, port.parse()?);
    mo.set_credentials("out-1", secret_of("out-1"));
    mo.set_inflight(100);
    let (client, mut el) = rumqttc::AsyncClient::new(mo, 256);
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dropped: Arc<Mutex<Option<String>>> = Arc::default();
    let (a, d) = (acks.clone(), dropped.clone());
    let poller = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(_) => {}
                // The device's connection never drops in this test (only the database goes
                // away): an error ends the poller, and the waits below report it.
                Err(e) => {
                    *d.lock().unwrap() = Some(e.to_string());
                    return;
                }
            }
        }
    });
    // PUBACKs received so far, or the connection's error.
    let acked = || {
        if let Some(e) = dropped.lock().unwrap().clone() {
            anyhow::bail!("the device's MQTT connection dropped: {e}");
        }
        Ok(acks.load(std::sync::atomic::Ordering::SeqCst))
    };
    let topic = "sites/s1/devices/out-1/telemetry";
    let ts0 = chrono_now() - 600_000;
    let publish = |i: i64, t: f64| {
        let c = client.clone();
        async move {
            let body = format!(r#"{{"ts":{},"values":{{"temperature_c":{t}}}}}"#, ts0 + i);
            c.publish(topic, rumqttc::QoS::AtLeastOnce, false, body).await
        }
    };
    publish(0, 4.0).await?;
    wait_for(Duration::from_secs(10), "the first reading acknowledged", || async {
        Ok((acked()? == 1).then_some(()))
    })
    .await?;

    // The duty room was using the API before the outage (its token verified).
    assert_eq!(timed_get(&th, "/api/v1/cameras").await?.0, 200);
    let outage = Outage::begin(&th, pg_url.as_deref()).await?;
    // Readings and a critical finding (above 16 °C) while the database is away.
    for i in 1..=20 {
        publish(i, if i == 10 { 25.0 } else { 4.0 }).await?;
    }
    let health = wait_for(Duration::from_secs(30), "/healthz to report the database", || async {
        let (status, body, took) = timed_get(&th, "/healthz").await?;
        assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
        Ok((status == 503).then_some(body))
    })
    .await?;
    let db_state = health["database"].as_str().unwrap_or_default().to_owned();
    assert!(db_state != "ok" && !db_state.is_empty(), "{health}");
    println!("healthz during the outage: {health}");
    // The rest of the API still answers.
    let (status, _, took) = timed_get(&th, "/api/v1/cameras").await?;
    assert_eq!(status, 200, "cameras during the outage");
    assert!(took < Duration::from_secs(1), "cameras took {took:?}");
    let (status, body, took) = timed_get(&th, "/api/v1/findings").await?;
    assert!(status == 200 || status == 503, "findings during the outage: {status} {body}");
    assert!(took < Duration::from_secs(5), "findings took {took:?}");
    // Nothing acknowledged while nothing can be stored.
    assert_eq!(acked()?, 1, "acknowledged before stored");

    outage.end().await?;
    wait_for(Duration::from_secs(60), "every reading acknowledged after the outage", || async {
        Ok((acked()? == 21).then_some(()))
    })
    .await?;
    wait_for(Duration::from_secs(30), "/healthz green again", || async {
        Ok((timed_get(&th, "/healthz").await?.0 == 200).then_some(()))
    })
    .await?;
    let readings = th.get("/api/v1/devices/out-1/readings?limit=100").await?;
    let n = readings["items"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 21, "every reading stored: {readings}");
    let f = th.all_findings("device=out-1&rule=coldchain-temp-critical").await?;
    assert_eq!(f.len(), 1, "the finding raised during the outage is stored: {f:?}");
    poller.abort();
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outage_loses_nothing_and_the_api_answers() -> anyhow::Result<()> {
    database_outage_loses_nothing(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_the_api_answers() -> anyhow::Result<()> {
    database_outage_loses_nothing(true).await
}

/// A stage made to fail turns `/healthz` red naming it; restarted, it turns green again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stage_is_named_by_healthz_until_it_is_back() -> anyhow::Result<()> {
    let faults = Faults::default();
    let opts = StartOptions { faults: faults.clone(), ..Default::default() };
    let th = TestHub::start(config_with(&small_site(&[]))?, opts).await?;
    wait_for(Duration::from_secs(10), "healthy", || async {
        Ok((timed_get(&th, "/healthz").await?.0 == 200).then_some(()))
    })
    .await?;
    faults.fail("monitor");
    let body = wait_for(Duration::from_secs(10), "/healthz naming the monitor", || async {
        let (status, body, _) = timed_get(&th, "/healthz").await?;
        Ok((status == 503).then_some(body))
    })
    .await?;
    assert!(body["tasks_down"]["monitor"].is_string(), "{body}");
    assert_eq!(body["database"], "ok", "{body}");
    assert!(th.metric("hub_task_failures_total{task=\"monitor\"}").await? >= 1.0);
    faults.heal("monitor");
    wait_for(Duration::from_secs(30), "the monitor restarted", || async {
        Ok((timed_get(&th, "/healthz").await?.0 == 200).then_some(()))
    })
    .await?;
    th.stop().await;
    Ok(())
}

/// External broker: the hub's session is persistent under a stable client id, so readings
/// published while the hub is stopped are stored after it starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_queued_by_the_broker_while_the_hub_is_down_are_stored() -> anyhow::Result<()> {
    let db = tests::fresh_postgres_database().await?;
    let broker = tests::broker()?;
    let tag = rand::random::<u32>();
    let device = format!("persist-{tag}");
    let site = small_site(&[(device.as_str(), "fridge")]);
    broker.provision(&[(device.as_str(), "s1", secret_of(&device))]).await?;
    let start = || async {
        let mut cfg = config_with(&site)?;
        cfg.database.url = db.clone();
        // The same client id both times: the broker keeps the session while the hub is away.
        broker.configure(&mut cfg, &format!("persist-hub-{tag}"), &format!("persist{tag}"));
        let th = TestHub::start(cfg, StartOptions::default()).await?;
        wait_for(Duration::from_secs(20), "the hub's MQTT subscription", || async {
            Ok(th.get("/healthz").await.ok().map(|_| ()))
        })
        .await?;
        anyhow::Ok(th)
    };
    let publish_all = |from: i64, to: i64| {
        let mo = broker.options(&format!("{device}-pub"), &device, &secret_of(&device));
        let topic = format!("sites/s1/devices/{device}/telemetry");
        async move {
            let (client, mut el) = rumqttc::AsyncClient::new(mo, 64);
            let ts0 = chrono_now() - 600_000;
            let publisher = async {
                for i in from..to {
                    let body = format!(r#"{{"ts":{},"values":{{"temperature_c":4.0}}}}"#, ts0 + i);
                    client.publish(&topic, rumqttc::QoS::AtLeastOnce, false, body).await?;
                }
                anyhow::Ok(())
            };
            let acks = async {
                let mut n = 0;
                while n < to - from {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = el.poll().await? {
                        n += 1;
                    }
                }
                anyhow::Ok(())
            };
            let (p, a) = tokio::join!(publisher, acks);
            p.and(a)
        }
    };
    let th = start().await?;
    publish_all(0, 10).await?;
    wait_for(Duration::from_secs(20), "the first readings stored", || async {
        Ok((th.hub.store.count_readings().await? == 10).then_some(()))
    })
    .await?;
    th.stop().await;
    // The hub is away: the broker acknowledges these and queues them for its session.
    publish_all(10, 60).await?;
    let th = start().await?;
    wait_for(Duration::from_secs(30), "what the broker queued, stored", || async {
        Ok((th.hub.store.count_readings().await? == 60).then_some(()))
    })
    .await?;
    th.stop().await;
    Ok(())
}
