//! The outbox under stress: the hub killed with SIGKILL in the middle of a burst of record
//! transitions loses no event (every step it answered is delivered after the restart, repeats
//! only with the same webhook-id); two hubs sharing one PostgreSQL deliver each event once
//! between them while a reader pulls the feed without a gap; a three-day outage replayed on a
//! simulated clock follows the retry schedule, gives up, and five days of failures disable the
//! subscription.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxStatus};
use common::{Clock, ManualClock};
use hub::app::StartOptions;
use hub::store::{Batch, Scope, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{TestHub, client_with_token, config_with, create_token, scratch_dir, wait_for};

use crate::access::two_sites;

const ITEM: &str = "61000000200003";

/// A receiver that counts what it gets by webhook-id; `fail` makes it answer 500.
#[derive(Clone, Default)]
struct Counter {
    got: Arc<Mutex<BTreeMap<String, usize>>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<Mutex<Vec<i64>>>,
}

async fn counter(c: Counter) -> anyhow::Result<String> {
    async fn hook(
        axum::extract::State(c): axum::extract::State<Counter>,
        headers: HeaderMap,
    ) -> AxStatus {
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let ts = headers
            .get("webhook-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        c.attempts.lock().unwrap().push(ts);
        if c.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return AxStatus::INTERNAL_SERVER_ERROR;
        }
        *c.got.lock().unwrap().entry(id).or_default() += 1;
        AxStatus::NO_CONTENT
    }
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(c);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(format!("http://{addr}/hook"))
}

/// Departments, the catalogue and `n` critical findings on a hub's database; returns the
/// finding ids.
async fn seed(store: &Store, n: usize) -> anyhow::Result<Vec<i64>> {
    let now = common::SystemClock.now_ms();
    for (id, region, inds) in [
        ("duty", "610000", vec!["food".to_owned(), "transport".to_owned()]),
        ("xian-food", "610100", vec!["food".to_owned()]),
    ] {
        let d = hub::accounts::NewDepartment {
            id: id.into(),
            name: id.into(),
            region: region.into(),
            industries: inds,
            uscc: "91350100M000100Y43".into(),
        };
        match hub::accounts::create_department(store, d, tests::setup_audit(), now).await {
            Ok(_) | Err(hub::error::Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let text = format!(
        "code,name,departments,industry,severity\n{ITEM},冷库氨气浓度超标,xian-food,food,critical\n"
    );
    let depts = ["duty", "xian-food"].map(String::from).into();
    let items = hub::records::import::catalogue(&text, hub::records::import::Format::Csv, &depts)
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    store.import_catalogue(&items, &tests::setup_audit(), now).await?;
    let batch = Batch {
        findings: (0..n)
            .map(|i| {
                tests::camera_hit(
                    "xian-1",
                    "c-xian",
                    "610102",
                    &format!("r{i}"),
                    Some(ITEM),
                    common::Severity::Critical,
                )
            })
            .collect(),
        ..Default::default()
    };
    store.write_batch(&batch, 1).await?;
    let all = store
        .findings(&hub::store::FindingFilter { limit: 100_000, ..Default::default() }, &Scope::All)
        .await?;
    Ok(all.iter().map(|f| f.id).collect())
}

/// Every event of the feed (`GET /api/v1/records/events`), paged to the end.
async fn feed(
    c: &reqwest::Client,
    base: &str,
    mut after: String,
) -> anyhow::Result<(Vec<(String, String)>, String)> {
    let mut out = Vec::new();
    loop {
        let v: Value = c
            .get(format!("{base}/api/v1/records/events?after={after}&limit=1000"))
            .send()
            .await?
            .json()
            .await?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        for e in &items {
            out.push((
                e["sequence"].as_str().unwrap_or("").to_owned(),
                e["id"].as_str().unwrap_or("").to_owned(),
            ));
        }
        after = v["next"].as_str().unwrap_or("0").to_owned();
        if items.len() < 1000 {
            return Ok((out, after));
        }
    }
}

/// SIGKILL in the middle of a burst of verifications and claims (each a record transition with
/// its outbox rows): after the restart, every event in the store reaches the receiver, every
/// step the hub answered is in the store, and repeats carry the same webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_record_event() -> anyhow::Result<()> {
    const N: usize = 300;
    let dir = scratch_dir("records-kill9");
    let rx = Counter::default();
    let url = counter(rx.clone()).await?;
    let (http_port, mqtt_port) = (tests::free_port(), tests::free_port());
    let text = format!("{}\n{}", config::Config::default_toml(), two_sites())
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("listen = \"127.0.0.1:1883\"", &format!("listen = \"127.0.0.1:{mqtt_port}\""))
        .replace("data_dir = \"data\"", &format!("data_dir = {:?}", dir.display().to_string()))
        .replace("auto_severities = []", "auto_severities = [\"critical\"]")
        // A killed worker's leases expire sooner than the default's minute.
        .replace("timeout = \"15s\"", "timeout = \"2s\"")
        .replace("lease = \"60s\"", "lease = \"5s\"");
    let cfg_path = dir.join("hub.toml");
    std::fs::write(&cfg_path, &text)?;
    let cfg = config::Config::load(&cfg_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Seed the database the hub will open.
    let (findings, op_token, dept_token) = {
        let store = Store::connect(&cfg.database.url, &cfg.data_dir, 2).await?;
        let f = seed(&store, N).await?;
        let op = create_token(&store, &["duty_operator"], Some("duty"), None).await?;
        let dept = create_token(&store, &["department"], Some("xian-food"), None).await?;
        let sub = hub::store::records::SubscriptionRow::new(
            "xian-food",
            "k9",
            &url,
            hub::delivery::new_secret(),
            Default::default(),
            0,
            "test",
        );
        store.insert_subscription(&sub, &tests::setup_audit(), 0).await?;
        (f, op, dept)
    };
    let base = format!("http://127.0.0.1:{http_port}");
    let plain = reqwest::Client::new();
    let healthy = || async {
        Ok(match plain.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status().is_success() => Some(()),
            _ => None,
        })
    };
    let hub = tests::start_hub_process(
        env!("CARGO_BIN_EXE_hub-under-test"),
        &cfg_path,
        &dir.join("hub-1.log"),
    )?;
    wait_for(Duration::from_secs(60), "the hub to answer /healthz", healthy).await?;
    let op = client_with_token(&op_token);
    let dept = client_with_token(&dept_token);

    // The burst: each finding verified (its record made, record.created queued) and the
    // record claimed (record.claimed), four at a time; the hub is killed once 100 steps are
    // answered.
    let answered: Arc<Mutex<Vec<(i64, &'static str)>>> = Arc::default();
    let hub = Arc::new(Mutex::new(Some(hub)));
    let mut tasks = Vec::new();
    for chunk in findings.chunks(findings.len().div_ceil(4)) {
        let (op, dept, base, answered, hub, chunk) =
            (op.clone(), dept.clone(), base.clone(), answered.clone(), hub.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for f in chunk {
                let Ok(r) = op
                    .post(format!("{base}/api/v1/findings/{f}/verify"))
                    .json(&json!({}))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != StatusCode::OK {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else { return };
                let Some(rid) = v["record_id"].as_i64() else { return };
                answered.lock().unwrap().push((rid, "create"));
                let Ok(r) = dept
                    .post(format!("{base}/api/v1/records/{rid}/claim"))
                    .json(&json!({}))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() == StatusCode::OK {
                    answered.lock().unwrap().push((rid, "claim"));
                }
                if answered.lock().unwrap().len() >= 100
                    && let Some(mut h) = hub.lock().unwrap().take()
                {
                    // SIGKILL: no shutdown, leases held, deliveries in flight.
                    let _ = h.0.kill();
                    let _ = h.0.wait();
                    std::mem::forget(h);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    assert!(hub.lock().unwrap().is_none(), "the hub was killed mid-burst");
    let answered = answered.lock().unwrap().clone();
    let before = rx.got.lock().unwrap().len();
    println!("killed after {} answered steps, {before} events delivered", answered.len());
    assert!(answered.len() < 2 * N, "the kill came before the burst ended");

    let _hub = tests::start_hub_process(
        env!("CARGO_BIN_EXE_hub-under-test"),
        &cfg_path,
        &dir.join("hub-2.log"),
    )?;
    wait_for(Duration::from_secs(60), "the restarted hub", healthy).await?;
    // Every event the store holds is delivered (expired leases are taken over after
    // delivery.lease).
    let (events, _) = feed(&dept, &base, "0".into()).await?;
    let ids: BTreeSet<String> = events.iter().map(|e| e.1.clone()).collect();
    wait_for(Duration::from_secs(120), "every stored event delivered", || async {
        let got = rx.got.lock().unwrap();
        Ok(ids.iter().all(|id| got.contains_key(id)).then_some(()))
    })
    .await?;
    // Every answered step is in the store, as an event.
    for (rid, action) in &answered {
        let r: Value =
            dept.get(format!("{base}/api/v1/records/{rid}")).send().await?.json().await?;
        let actions: Vec<&str> =
            r["timeline"].as_array().unwrap().iter().filter_map(|t| t["action"].as_str()).collect();
        assert!(
            actions.contains(action),
            "record {rid}: {action} was answered but is not stored: {actions:?}"
        );
    }
    let got = rx.got.lock().unwrap().clone();
    assert!(
        got.keys().all(|id| ids.contains(id)),
        "nothing delivered that the store does not hold"
    );
    let repeats: usize = got.values().map(|n| n - 1).sum();
    println!("{} events, {} delivered, {repeats} repeats (same webhook-id)", ids.len(), got.len());
    Ok(())
}

/// Two hubs on one PostgreSQL database, a burst of steps through both, a reader pulling the
/// event feed all the while: each event reaches the receiver exactly once, and the reader saw
/// every event once, in ascending order, without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgres_deliver_each_event_once() -> anyhow::Result<()> {
    const N: usize = 120;
    let url = tests::fresh_postgres_database().await?;
    let rx = Counter::default();
    let hook = counter(rx.clone()).await?;
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = url;
    cfg.records.auto_severities = vec![common::Severity::Critical];
    let a = TestHub::start(cfg.clone(), StartOptions::default()).await?;
    let b = TestHub::start(cfg, StartOptions::default()).await?;
    let findings = seed(&a.hub.store, N).await?;
    let op = client_with_token(
        &create_token(&a.hub.store, &["duty_operator"], Some("duty"), None).await?,
    );
    let dept = client_with_token(
        &create_token(&a.hub.store, &["department"], Some("xian-food"), None).await?,
    );
    let (s, sub) = {
        let r = dept
            .post(format!("{}/api/v1/subscriptions", a.base))
            .json(&json!({"name": "both", "url": hook}))
            .send()
            .await?;
        (r.status(), r.json::<Value>().await?)
    };
    assert_eq!(s, StatusCode::CREATED, "{sub}");

    // The reader: pulls the feed from cursor 0 while the writers run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dept, base, stop) = (dept.clone(), b.base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = "0".to_owned();
            loop {
                let last = stop.load(std::sync::atomic::Ordering::SeqCst);
                let (page, next) = feed(&dept, &base, after.clone()).await?;
                seen.extend(page);
                after = next;
                if last {
                    return anyhow::Ok(seen);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (i, chunk) in findings.chunks(N / 4).enumerate() {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let (op, dept, chunk) = (op.clone(), dept.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for f in chunk {
                let v: Value = op
                    .post(format!("{base}/api/v1/findings/{f}/verify"))
                    .json(&json!({}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let rid =
                    v["record_id"].as_i64().ok_or_else(|| anyhow::anyhow!("no record: {v}"))?;
                let r = dept
                    .post(format!("{base}/api/v1/records/{rid}/claim"))
                    .json(&json!({}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == StatusCode::OK, "claim {rid}: {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await??;
    let (all, _) = feed(&dept, &a.base, "0".into()).await?;
    assert_eq!(all.len(), 2 * N, "a create and a claim per finding");
    assert_eq!(seen, all, "the reader, pulling during the writes, saw every event once, in order");
    let seqs: Vec<&String> = all.iter().map(|e| &e.0).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending");
    wait_for(Duration::from_secs(60), "every event delivered", || async {
        Ok((rx.got.lock().unwrap().len() == all.len()).then_some(()))
    })
    .await?;
    let got = rx.got.lock().unwrap().clone();
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// A three-day outage on a simulated clock: the attempts follow the schedule (each wait within
/// ±20 %), the tenth is the last, the delivery is given up with a notice; a later event keeps
/// failing until five days of only failures disable the subscription.
async fn outage(mut cfg: config::Config) -> anyhow::Result<()> {
    cfg.records.auto_severities = vec![common::Severity::Critical];
    cfg.delivery.poll = Duration::from_millis(50);
    let clock = ManualClock::new(common::SystemClock.now_ms());
    let th = TestHub::start(
        cfg,
        StartOptions { clock: Arc::new(clock.clone()), ..StartOptions::default() },
    )
    .await?;
    let findings = seed(&th.hub.store, 2).await?;
    let rx = Counter::default();
    rx.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let hook = counter(rx.clone()).await?;
    let op = client_with_token(
        &create_token(&th.hub.store, &["duty_operator"], Some("duty"), None).await?,
    );
    let dept = client_with_token(
        &create_token(&th.hub.store, &["department"], Some("xian-food"), None).await?,
    );
    let sub: Value = dept
        .post(format!("{}/api/v1/subscriptions", th.base))
        .json(&json!({"name": "down", "url": hook}))
        .send()
        .await?
        .json()
        .await?;
    let sid = sub["id"].as_i64().unwrap();
    let v: Value = op
        .post(format!("{}/api/v1/findings/{}/verify", th.base, findings[0]))
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let rid = v["record_id"].as_i64().unwrap();
    let deliveries = || async {
        let v: Value = dept
            .get(format!("{}/api/v1/subscriptions/{sid}/deliveries", th.base))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v["items"].as_array().cloned().unwrap_or_default())
    };
    // Steps the clock to each pending delivery's next attempt and waits for it.
    let step = || async {
        let items = deliveries().await?;
        let pending: Vec<&Value> = items.iter().filter(|d| d["state"] == "pending").collect();
        let Some(next) = pending.iter().filter_map(|d| d["next_at"].as_str()).min() else {
            return anyhow::Ok(false);
        };
        let at = chrono::DateTime::parse_from_rfc3339(next)?.timestamp_millis();
        let total: i64 = items.iter().map(|d| d["attempts"].as_i64().unwrap_or(0)).sum();
        if at > clock.now_ms() {
            clock.set(at);
        }
        wait_for(Duration::from_secs(10), "the next attempt", || async {
            let n: i64 =
                deliveries().await?.iter().map(|d| d["attempts"].as_i64().unwrap_or(0)).sum();
            Ok((n > total).then_some(()))
        })
        .await?;
        anyhow::Ok(true)
    };
    wait_for(Duration::from_secs(10), "the first attempt", || async {
        Ok((deliveries().await?.first().is_some_and(|d| d["attempts"] == 1)).then_some(()))
    })
    .await?;
    while deliveries().await?.first().is_some_and(|d| d["state"] == "pending") {
        step().await?;
    }
    let d = deliveries().await?.remove(0);
    assert_eq!((d["state"].as_str(), d["attempts"].as_i64()), (Some("failed"), Some(10)), "{d}");
    let times: Vec<i64> = d["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    for (i, w) in times.windows(2).enumerate() {
        let want = hub::delivery::SCHEDULE[i].as_millis() as f64;
        let got = (w[1] - w[0]) as f64;
        assert!(
            (0.8 * want..=1.2 * want + 1.0).contains(&got),
            "wait {i}: {got} ms, schedule {want} ms"
        );
    }
    let span = times[9] - times[0];
    assert!((2 * 86_400_000..4 * 86_400_000).contains(&span), "about three days: {span} ms");
    // A later event fails on until five days of only failures disable the subscription.
    let r = dept
        .post(format!("{}/api/v1/records/{rid}/claim", th.base))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let disabled = loop {
        let s: Value = dept
            .get(format!("{}/api/v1/subscriptions/{sid}", th.base))
            .send()
            .await?
            .json()
            .await?;
        if s["enabled"] == false {
            break s;
        }
        anyhow::ensure!(
            step().await?,
            "pending deliveries ran out before the subscription was disabled: {s}"
        );
    };
    assert!(
        disabled["disabled_reason"].as_str().unwrap().contains("only failures since"),
        "{disabled}"
    );
    let since = chrono::DateTime::parse_from_rfc3339(
        disabled["failing_since"].as_str().unwrap_or(d["log"][0]["at"].as_str().unwrap()),
    )?
    .timestamp_millis();
    assert!(clock.now_ms() - since >= 5 * 86_400_000, "disabled after five days");
    let n: Value = dept.get(format!("{}/api/v1/notices", th.base)).send().await?.json().await?;
    let kinds: Vec<&str> =
        n["items"].as_array().unwrap().iter().filter_map(|n| n["kind"].as_str()).collect();
    assert!(kinds.contains(&"delivery_failed") && kinds.contains(&"subscription_disabled"), "{n}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_day_outage_follows_the_schedule_then_disables_sqlite() -> anyhow::Result<()> {
    outage(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_day_outage_follows_the_schedule_then_disables_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    outage(cfg).await
}
