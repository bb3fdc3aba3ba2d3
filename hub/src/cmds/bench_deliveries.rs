//! `hub bench deliveries`: durable record-event deliveries per second to a local receiver, with
//! the outbox on SQLite and on PostgreSQL, beside the bare HTTP client's rate to the same
//! receiver in the same run, and the time from a verification (the HTTP call) to the signed
//! event's arrival (see BENCHMARKS.md). A benchmark, not a test: it asserts nothing.
//!
//! 1. Bare client: the same signed CloudEvent body posted N times, 64 in flight (the worker's
//!    concurrency), by a reqwest client set up as the worker's (no redirects, timeout).
//! 2. Outbox drain: N records made while the subscription is paused (N transitions, N delivery
//!    rows held), then the subscription enabled: the hub's worker claims by lease, signs, posts
//!    and stores each outcome. Rate = deliveries / (last arrival − first arrival).
//! 3. Latency: findings verified through the API at a steady rate (each verification makes its
//!    record and queues its event in one transaction); arrival − the transition's time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::Clock;
use hub::store::{AuditEntry, Batch, EvidenceRow, FindingHit, Scope, Store};
use hub::{Hub, StartOptions};
use serde_json::{Value, json};

const ITEM: &str = "61000000200003";
const SITE: &str = r#"
[[sites]]
id = "bench"
name = "Bench cold store"
region = "610116"
industry = "food"
entity_name = "Bench Co."
uscc = "91350100M000100Y43"
"#;

/// What the receiver saw: arrival times (ms) and each event's transition time.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(Instant, i64, i64)>,
}

async fn receiver(seen: Arc<Mutex<Seen>>) -> anyhow::Result<String> {
    async fn hook(
        axum::extract::State(s): axum::extract::State<Arc<Mutex<Seen>>>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let now = common::SystemClock.now_ms();
        let at = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["transition"]["at"].as_str().map(str::to_owned))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map_or(0, |t| t.timestamp_millis());
        s.lock().unwrap().arrivals.push((Instant::now(), now, at));
        axum::http::StatusCode::NO_CONTENT
    }
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(seen);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(format!("http://{addr}/hook"))
}

fn audit() -> AuditEntry {
    AuditEntry {
        actor: "bench".into(),
        address: "-".into(),
        action: "bench".into(),
        target: "-".into(),
        before: None,
        after: None,
    }
}

fn hit(n: usize) -> FindingHit {
    FindingHit {
        dedup_key: format!("bench|cam|r{n}|k"),
        site_id: "bench".into(),
        device_id: None,
        camera_id: Some("cam".into()),
        rule: format!("r{n}"),
        kind: "k".into(),
        severity: common::Severity::Critical,
        item_code: Some(ITEM.into()),
        region: Some("610116".into()),
        summary: format!("bench finding {n}"),
        first_seen: 1,
        last_seen: 1,
        count: 1,
        last_value: None,
        details: "{}".into(),
        evidence: vec![EvidenceRow {
            captured_at: 1,
            frame_path: "x.jpg".into(),
            annotated_path: "x.jpg".into(),
            details: "[]".into(),
            missing: None,
        }],
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The bare client's rate: `n` posts of `body`, `conc` in flight.
async fn bare(url: &str, body: &str, n: usize, conc: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()?;
    let sig =
        hub::delivery::signature(&[&hub::delivery::new_secret()], "evt_1", 1, body.as_bytes())
            .map_err(anyhow::Error::msg)?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, body, sig, next) =
            (client.clone(), url.to_owned(), body.to_owned(), sig.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                client
                    .post(&url)
                    .header("content-type", "application/cloudevents+json")
                    .header("webhook-id", "evt_1")
                    .header("webhook-timestamp", "1")
                    .header("webhook-signature", &sig)
                    .body(body.clone())
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

struct Run {
    name: &'static str,
    bare: f64,
    durable: f64,
    p50: i64,
    p99: i64,
    latency_n: usize,
}

async fn one(
    name: &'static str,
    url: Option<String>,
    n: usize,
    latency: usize,
    rate: f64,
) -> anyhow::Result<Run> {
    let dir =
        std::env::temp_dir().join(format!("hub-bench-deliveries-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut text = format!("{}\n{SITE}", config::Config::default_toml());
    text = text.replace("auto_severities = []", "auto_severities = [\"critical\"]");
    let mut cfg = config::Config::parse(&text, "<bench>")?;
    cfg.data_dir = dir.clone();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    if let Some(u) = url {
        cfg.database.url = u;
    }
    let hub = Hub::start(cfg, StartOptions::default()).await.context("starting the hub")?;
    let store: &Store = &hub.store;
    let now = common::SystemClock.now_ms();
    let dept = hub::accounts::NewDepartment {
        id: "bench-food".into(),
        name: "bench".into(),
        region: "610100".into(),
        industries: vec!["food".into()],
        uscc: "91350100M000100Y43".into(),
    };
    let _ = hub::accounts::create_department(store, dept, audit(), now).await;
    let cat = format!(
        "code,name,departments,industry,severity\n{ITEM},bench item,bench-food,food,critical\n"
    );
    let items = hub::records::import::catalogue(
        &cat,
        hub::records::import::Format::Csv,
        &["bench-food".to_owned()].into(),
    )
    .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    store.import_catalogue(&items, &audit(), now).await?;
    store
        .write_batch(
            &Batch { findings: (0..n + latency).map(hit).collect(), ..Default::default() },
            now,
        )
        .await?;
    // Pages of 1000 (the store's most per query), newest first.
    let mut findings = Vec::new();
    loop {
        let page = store
            .findings(
                &hub::store::FindingFilter {
                    limit: 1000,
                    before_id: findings.last().map(|f: &hub::store::Finding| f.id),
                    ..Default::default()
                },
                &Scope::All,
            )
            .await?;
        if page.is_empty() {
            break;
        }
        findings.extend(page);
    }
    findings.sort_by_key(|f| f.id);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook = receiver(seen.clone()).await?;

    // 1. The bare client, with a body of the events' size.
    let body =
        json!({"specversion": "1.0", "id": "evt_1", "data": {"pad": "x".repeat(1800)}}).to_string();
    let bare_rate = bare(&hook, &body, n, 64).await?;
    seen.lock().unwrap().arrivals.clear();

    // 2. The outbox: N events held behind a paused subscription, then let go.
    let mut sub = hub::store::records::SubscriptionRow::new(
        "bench-food",
        "bench",
        &hook,
        hub::delivery::new_secret(),
        Default::default(),
        now,
        "bench",
    );
    sub.id = store.insert_subscription(&sub, &audit(), now).await?;
    sub.enabled = false;
    store.apply(&[Store::save_subscription(&sub)], &audit(), now).await?;
    let policy = hub::store::records::Policy::of(&config::Records::default());
    let made = Instant::now();
    for f in &findings[..n] {
        let plan = store.plan_record(f, None, &policy).await?;
        store.record_finding(f, &plan, None, &audit(), common::SystemClock.now_ms()).await?;
    }
    println!(
        "  {name}: {n} records made in {:.1} s (one transaction each, with its outbox row)",
        made.elapsed().as_secs_f64()
    );
    sub.enabled = true;
    store.apply(&[Store::save_subscription(&sub)], &audit(), now).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.lock().unwrap().arrivals.len() < n {
        anyhow::ensure!(Instant::now() < deadline, "not every delivery arrived in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let durable = {
        let s = seen.lock().unwrap();
        let first = s.arrivals.first().map(|a| a.0).unwrap();
        let last = s.arrivals.last().map(|a| a.0).unwrap();
        (n - 1) as f64 / (last - first).as_secs_f64()
    };
    seen.lock().unwrap().arrivals.clear();

    // 3. Verification → delivery, through the API at a steady rate.
    let token = {
        let t = hub::accounts::NewToken {
            name: "bench".into(),
            roles: vec!["duty_operator".into()],
            department: Some("bench-food".into()),
            integrator: None,
            expires_in_days: 1,
        };
        hub::accounts::create_token(store, t, "bench", audit(), now).await?.1
    };
    let client = reqwest::Client::new();
    let base = format!("http://{}", hub.http_addr);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut calls = Vec::new();
    for f in &findings[n..] {
        tick.tick().await;
        let (client, url, token) =
            (client.clone(), format!("{base}/api/v1/findings/{}/verify", f.id), token.clone());
        calls.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
        }));
    }
    for c in calls {
        c.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().arrivals.len() < latency {
        anyhow::ensure!(Instant::now() < deadline, "not every verified finding's event arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat: Vec<i64> = seen.lock().unwrap().arrivals.iter().map(|a| a.1 - a.2).collect();
    lat.sort_unstable();
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run {
        name,
        bare: bare_rate,
        durable,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        latency_n: lat.len(),
    })
}

pub async fn deliveries(
    count: usize,
    latency: usize,
    rate: f64,
    postgres: Option<String>,
) -> anyhow::Result<()> {
    println!(
        "hub bench deliveries: {count} events per outbox drain, {latency} verifications at {rate}/s"
    );
    let mut runs = vec![one("sqlite", None, count, latency, rate).await?];
    match postgres {
        Some(url) => runs.push(one("postgres", Some(url), count, latency, rate).await?),
        None => println!(
            "  postgres: skipped (pass --postgres postgres://…, a database the bench may fill)"
        ),
    }
    println!();
    println!(
        "| outbox | bare client /s | durable deliveries /s | ratio | verification → delivery p50 / p99 (n) |"
    );
    println!("|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} ms / {} ms ({}) |",
            r.name,
            r.bare,
            r.durable,
            r.durable / r.bare,
            r.p50,
            r.p99,
            r.latency_n
        );
    }
    Ok(())
}
