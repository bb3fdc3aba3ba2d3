//! `hub bench sensors`: the sensor path's throughput and latency, printed next to the
//! broker-only rate measured in the same run (see BENCHMARKS.md). A benchmark, not a test: it
//! asserts nothing and prints figures and ratios.
//!
//! 1. Broker only: the load generator publishes to a bare embedded rumqttd and an in-process
//!    subscriber counts deliveries (no gateway, no hub).
//! 2. End to end, throughput: the same load through the hub's gateway, timed until the hub has
//!    stored every reading (SQLite, embedded broker: the default deployment).
//! 3. End to end, latency: a fixed rate for a while; 1 % of readings trip a rule; the time from
//!    a reading's publish (its `ts`) to the stored finding's event.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use common::Shutdown;
use common::metrics::{Registry as Metrics, names};
use devices::load::{self, LoadClient, LoadOptions};
use hub::{Hub, StartOptions};
use ingest::broker::EmbeddedBroker;
use tokio::sync::mpsc;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// End-to-end sensor throughput and latency against the broker-only rate.
    Sensors {
        /// Publishing connections (devices).
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Messages of each throughput run.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Rate of the latency run, messages per second.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Length of the latency run, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Video: hub CPU per analysed and per relayed camera, missed analysis slots, and the cost
    /// per analysed frame against bare decode + inference.
    Cameras {
        /// The H.264 MP4 clip every simulated camera serves.
        #[arg(
            long,
            default_value = "../shared/data/videos/intel_worker-zone-detection_from-gif.mp4"
        )]
        clip: std::path::PathBuf,
        /// Model search path (repeatable); FastestDet must be on it.
        #[arg(long = "models", default_values = ["models", "../shared/data/models"])]
        models: Vec<std::path::PathBuf>,
        /// Analysed camera counts to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100,150")]
        counts: Vec<usize>,
        /// Relay-only cameras (0: skip).
        #[arg(long, default_value_t = 100)]
        relay: usize,
        /// Measurement window per step, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// RTSP client of every camera: native or gstreamer.
        #[arg(long, default_value = "native")]
        client: config::RtspClient,
        /// Analysis worker threads (and sessions) of each hub.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Record events: durable deliveries per second (outbox on SQLite and PostgreSQL) against
    /// the bare HTTP client's rate, and verification → delivery latency.
    Deliveries {
        /// Events per outbox drain.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Findings verified through the API for the latency run.
        #[arg(long, default_value_t = 500)]
        latency: usize,
        /// Verifications per second of the latency run.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// A PostgreSQL database for the second run (it is filled with bench data).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Live video: viewers of one camera per core against a bare WebSocket fan-out of the same
    /// bytes.
    Viewers {
        /// The H.264 MP4 clip the simulated camera serves.
        #[arg(long, default_value = "../shared/data/videos/intel_car-detection.mp4")]
        clip: std::path::PathBuf,
        /// Viewer counts to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
        counts: Vec<usize>,
        /// Measurement window per step, seconds.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
    },
}

pub fn run(cmd: BenchCmd) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let r = match cmd {
        BenchCmd::Sensors { devices, messages, rate, seconds } => {
            rt.block_on(sensors(devices, messages, rate, seconds))
        }
        BenchCmd::Deliveries { count, latency, rate, postgres } => {
            rt.block_on(super::bench_deliveries::deliveries(count, latency, rate, postgres))
        }
        BenchCmd::Viewers { clip, counts, seconds } => {
            rt.block_on(super::bench_viewers::viewers(clip, counts, seconds))
        }
        BenchCmd::Cameras { clip, models, counts, relay, seconds, client, workers } => rt.block_on(
            super::bench_cameras::cameras(clip, models, counts, relay, seconds, client, workers),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn wall_ms() -> i64 {
    use common::Clock;
    common::SystemClock.now_ms()
}

async fn broker_only(devices: usize, messages: u64) -> anyhow::Result<f64> {
    let metrics = Metrics::new();
    let broker = Arc::new(EmbeddedBroker::start(16 * 1024, &metrics)?);
    let (tx, mut rx) = mpsc::channel(16 * 1024);
    let shutdown = Shutdown::new();
    let (b, m, s) = (broker.clone(), metrics.clone(), shutdown.clone());
    tokio::spawn(async move { b.consume(tx, &m, s).await });
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while n < messages {
            if rx.recv().await.is_none() {
                break;
            }
            n += 1;
        }
        Instant::now()
    });
    let clients = (0..devices)
        .map(|i| LoadClient {
            client_id: format!("bench-{i}"),
            username: broker.internal_username.clone(),
            password: broker.internal_password.clone(),
            topic: format!("sites/bench/devices/bench-{i}/telemetry"),
        })
        .collect();
    let started = Instant::now();
    load::run(LoadOptions {
        mqtt: broker.internal_addr.to_string(),
        clients,
        messages,
        rate: None,
        high_every: 100,
    })
    .await?;
    let done = counter.await?;
    shutdown.trigger();
    Ok(messages as f64 / done.duration_since(started).as_secs_f64())
}

fn bench_config(
    devices: usize,
    dir: &std::path::Path,
) -> anyhow::Result<(config::Config, Vec<LoadClient>)> {
    let mut text = String::from(
        "[database]\nurl = \"sqlite://bench.db\"\n\n[device_kinds.bench]\ninactivity_timeout = \"10m\"\n\n\
         [[rules]]\nid = \"bench-high\"\ntype = \"threshold\"\ndevice_kinds = [\"bench\"]\nmetric = \"value\"\n\
         above = 100.0\nseverity = \"minor\"\nitem_code = \"61000000900001\"\n\n\
         [[sites]]\nid = \"bench\"\nname = \"Bench\"\nregion = \"610100\"\nindustry = \"food\"\n\
         entity_name = \"Bench\"\nuscc = \"91350100M000100Y43\"\n",
    );
    let secret = "bench-secret-0123456789";
    let hash = hub::registry::hash_secret(secret);
    let mut clients = Vec::new();
    for i in 0..devices {
        let id = format!("bench-{i}");
        text.push_str(&format!(
            "\n[[devices]]\nid = \"{id}\"\nsite = \"bench\"\nkind = \"bench\"\nsecret_hash = \"{hash}\"\n"
        ));
        clients.push(LoadClient {
            client_id: id.clone(),
            username: id.clone(),
            password: secret.into(),
            topic: format!("sites/bench/devices/{id}/telemetry"),
        });
    }
    let mut cfg = config::Config::parse(&text, "<bench configuration>")?;
    cfg.data_dir = dir.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    Ok((cfg, clients))
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn sensors(devices: usize, messages: u64, rate: f64, seconds: u64) -> anyhow::Result<()> {
    println!(
        "bench sensors: {devices} devices, {messages} messages per throughput run, latency at {rate}/s for {seconds} s"
    );
    let broker_rate = broker_only(devices, messages).await?;
    println!("broker only (rumqttd, QoS 1):           {broker_rate:>10.0} msg/s");

    let dir = std::env::temp_dir().join(format!("hub-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (cfg, clients) = bench_config(devices, &dir)?;
    let hub = Hub::start(cfg, StartOptions::default()).await?;
    let mqtt = hub.mqtt_addr.expect("embedded").to_string();
    let stored = hub.metrics.counter(names::READINGS_STORED, "Readings stored", &[]);

    let started = Instant::now();
    load::run(LoadOptions {
        mqtt: mqtt.clone(),
        clients: clients.clone(),
        messages,
        rate: None,
        high_every: 100,
    })
    .await?;
    let published = started.elapsed();
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    while stored.get() < messages {
        interval.tick().await;
    }
    let e2e = messages as f64 / started.elapsed().as_secs_f64();
    println!(
        "hub end to end (gateway+rules+SQLite):  {e2e:>10.0} readings/s  ({:.2} of broker only; publishing took {:.2} s)",
        e2e / broker_rate,
        published.as_secs_f64()
    );

    // Latency at a fixed rate.
    let mut events = hub.subscribe_events();
    let collector = tokio::spawn(async move {
        let mut lat = Vec::new();
        loop {
            match events.recv().await {
                Ok(b) => {
                    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                    if let Some(ts) = v["last_seen"].as_i64() {
                        lat.push(wall_ms() - ts);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return lat,
            }
        }
    });
    let before = stored.get();
    let n = (rate * seconds as f64) as u64;
    let t0 = Instant::now();
    load::run(LoadOptions { mqtt, clients, messages: n, rate: Some(rate), high_every: 100 })
        .await?;
    while stored.get() < before + n {
        interval.tick().await;
    }
    let achieved = n as f64 / t0.elapsed().as_secs_f64();
    hub.stop().await;
    let mut lat = collector.await?;
    lat.sort_unstable();
    println!(
        "latency at {achieved:.0}/s: publish→stored finding p50 {} ms, p99 {} ms, max {} ms ({} findings events)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        lat.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
