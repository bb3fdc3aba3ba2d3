//! `hub bench viewers`: live viewers of one camera per core (issue 9), printed next to a bare
//! WebSocket fan-out of the same bytes measured in the same run (see BENCHMARKS.md). A
//! benchmark, not a test: it asserts nothing.
//!
//! - One simulated camera in a child process (`devices cameras`), so its CPU is apart.
//! - The hub: one relay-only camera pulled always; N WebSocket clients (one process, their own
//!   runtime, threads named `viewers-cli`) read `/api/v1/cameras/cam0/live` at full rate. Over
//!   the window: the hub's CPU (the process's minus the clients' threads), messages and bytes
//!   each viewer received, drop notices.
//! - Capture: one client records the hub's messages for a while (their order and timing).
//! - Bare fan-out: a minimal axum WebSocket server replays the capture at its timing into one
//!   broadcast channel of shared buffers, every connection forwarding it (what any server must
//!   do at the least); the same N clients, the same window.
//! - `ratio` = the hub's CPU per viewer / the bare server's. CPU from `/proc` (user + system).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use futures::{SinkExt, StreamExt};
use hub::{Hub, StartOptions};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use super::bench_cameras::{CameraServer, config, cpu_seconds};

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn threads_cpu_seconds(prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for t in std::fs::read_dir("/proc/self/task")? {
        let dir = t?.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if name.trim_end().starts_with(prefix) {
            total += super::bench_cameras::stat_cpu_seconds(&dir.join("stat").to_string_lossy())
                .unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// What the clients received.
#[derive(Default)]
struct Counts {
    messages: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    /// Clients whose socket ended before they were told to stop.
    closed: AtomicU64,
}

/// N clients reading `url` at full rate on `rt`; they stop when `stop` is cancelled.
async fn clients(
    rt: &tokio::runtime::Handle,
    url: &str,
    token: Option<&str>,
    n: usize,
    counts: Arc<Counts>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let mut req = url.into_client_request()?;
        if let Some(t) = token {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse()?);
        }
        let (counts, stop) = (counts.clone(), stop.clone());
        let (ws, _) = rt
            .spawn(tokio_tungstenite::connect_async(req))
            .await?
            .with_context(|| format!("viewer {i} connecting to {url}"))?;
        handles.push(rt.spawn(async move {
            let (mut tx, mut rx) = ws.split();
            loop {
                let m = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = rx.next() => m,
                };
                match m {
                    Some(Ok(Message::Binary(b))) => {
                        counts.messages.fetch_add(1, Relaxed);
                        counts.bytes.fetch_add(b.len() as u64, Relaxed);
                    }
                    Some(Ok(Message::Text(t))) => {
                        counts.messages.fetch_add(1, Relaxed);
                        counts.bytes.fetch_add(t.len() as u64, Relaxed);
                        if t.contains("\"dropped\"") {
                            counts.dropped.fetch_add(1, Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        counts.closed.fetch_add(1, Relaxed);
                        break;
                    }
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        }));
    }
    Ok(handles)
}

/// One measurement: N viewers of `url` for `seconds` after a warm-up.
struct Run {
    /// Server CPU cores used (CPU seconds per second).
    server_cores: f64,
    client_cores: f64,
    /// Messages and bits per second per viewer.
    msgs_per_viewer: f64,
    mbit_per_viewer: f64,
    dropped: u64,
    closed: u64,
}

async fn measure(
    rt: &tokio::runtime::Handle,
    url: &str,
    token: Option<&str>,
    n: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let counts = Arc::new(Counts::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let handles = clients(rt, url, token, n, counts.clone(), stop.clone()).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let me = std::process::id();
    let (p0, c0, t0) = (cpu_seconds(me)?, threads_cpu_seconds("viewers-cli")?, Instant::now());
    let (m0, b0, d0) =
        (counts.messages.load(Relaxed), counts.bytes.load(Relaxed), counts.dropped.load(Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (p1, c1, dt) = (cpu_seconds(me)?, threads_cpu_seconds("viewers-cli")?, t0.elapsed());
    let (m1, b1, d1) =
        (counts.messages.load(Relaxed), counts.bytes.load(Relaxed), counts.dropped.load(Relaxed));
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
    let secs = dt.as_secs_f64();
    let client = (c1 - c0) / secs;
    Ok(Run {
        server_cores: ((p1 - p0) / secs - client).max(0.0),
        client_cores: client,
        msgs_per_viewer: (m1 - m0) as f64 / secs / n as f64,
        mbit_per_viewer: (b1 - b0) as f64 * 8.0 / secs / n as f64 / 1e6,
        dropped: d1 - d0,
        closed: counts.closed.load(Relaxed),
    })
}

/// `seconds` of the hub's messages to one viewer, with their times from the first.
async fn capture(url: &str, token: &str, seconds: u64) -> anyhow::Result<Vec<(Duration, Message)>> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m @ (Message::Binary(_) | Message::Text(_))))) => {
                out.push((start.elapsed(), m))
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!("the capture socket ended after {} messages", out.len()),
        }
    }
    let _ = ws.close(None).await;
    Ok(out)
}

/// The bare fan-out: the capture replayed at its timing (from its first key frame on, looped)
/// into one broadcast of shared buffers; each connection forwards it. Returns its URL.
async fn bare_server(
    capture: Vec<(Duration, Message)>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<String> {
    let (tx, _) = tokio::sync::broadcast::channel::<AxMessage>(4096);
    // From a key frame well after the start: a viewer's first second is a burst (the newest
    // key frame and what follows it at once), not the camera's steady rate.
    let first = capture
        .iter()
        .position(|(t, m)| {
            *t >= Duration::from_millis(1500)
                && matches!(m, Message::Text(s) if s.contains("\"clock\""))
        })
        .unwrap_or(0);
    let t0 = capture.get(first).map(|(t, _)| *t).unwrap_or_default();
    let msgs: Vec<(Duration, AxMessage)> = capture
        .into_iter()
        .skip(first)
        .map(|(t, m)| (t - t0, m))
        .map(|(t, m)| match m {
            Message::Binary(b) => (t, AxMessage::Binary(b)),
            Message::Text(s) => (t, AxMessage::Text(s.as_str().into())),
            _ => (t, AxMessage::Ping(Default::default())),
        })
        .collect();
    // One frame interval after the last message, the first comes again.
    let span = msgs.last().map(|(t, _)| *t).unwrap_or_default();
    let period = span + span / msgs.len().max(2) as u32;
    let feed = tx.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        for round in 0u32.. {
            for (t, m) in &msgs {
                let due = start + period * round + *t;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
                let _ = feed.send(m.clone());
            }
        }
    });
    let app = axum::Router::new().route(
        "/live",
        axum::routing::get(move |ws: WebSocketUpgrade| {
            let mut rx = tx.subscribe();
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    loop {
                        let m = match rx.recv().await {
                            Ok(m) => m,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        };
                        if socket.send(m).await.is_err() {
                            break;
                        }
                    }
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // The same socket settings as the hub's.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(hub::app::HTTP_SEND_BUFFER);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(format!("ws://{addr}/live"))
}

pub async fn viewers(clip: PathBuf, counts: Vec<usize>, seconds: u64) -> anyhow::Result<()> {
    let most = counts.iter().copied().max().unwrap_or(0);
    let limit = open_files_limit();
    if limit.is_some_and(|l| l < 2 * most as u64 + 256) {
        bail!(
            "{most} viewers need about {} open files in this process (clients and server); \
             the limit is {}: raise it (ulimit -n {})",
            2 * most + 256,
            limit.unwrap_or_default(),
            2 * most + 256
        );
    }
    if !clip.is_file() {
        bail!("clip {} not found (pass --clip, e.g. from ../shared/data/videos)", clip.display());
    }
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("viewers-cli")
        .enable_all()
        .build()?;
    let crt = clients_rt.handle().clone();
    let server = CameraServer::start(&clip, 1)?;
    let dir = std::env::temp_dir().join(format!("hub-bench-viewers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = config(&dir, &[], server.port, 1, false, config::RtspClient::Native, 1)?;
    let hub = Hub::start(cfg, StartOptions::default()).await?;
    let token = bench_token(&hub).await?;
    let url = format!("ws://{}/api/v1/cameras/cam0/live", hub.http_addr);
    // The camera delivers before anything is measured.
    let t0 = Instant::now();
    while hub.cameras.get("cam0").is_none_or(|c| c.health.frames_in < 30) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("the simulated camera delivered nothing in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fps = hub.cameras.get("cam0").map_or(0.0, |c| c.health.input_fps);
    println!(
        "viewers bench: one camera ({}, {fps:.1} fps), {seconds} s per step; CPU in cores \
         (CPU seconds per second) of the server side; clients in the same process (their own \
         threads, subtracted)",
        clip.file_name().and_then(|f| f.to_str()).unwrap_or("clip")
    );
    let mut hub_runs = Vec::new();
    for &n in &counts {
        hub_runs.push((n, measure(&crt, &url, Some(&token), n, seconds).await?));
    }
    let cap = capture(&url, &token, 12).await?;
    hub.stop().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let bare_url = bare_server(cap, stop.clone()).await?;
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12} {:>7} {:>10} {:>10} {:>8} {:>8}",
        "viewers",
        "hub cores",
        "bare cores",
        "hub ms/v·s",
        "bare ms/v·s",
        "ratio",
        "hub msg/s",
        "bare msg/s",
        "Mbit/v",
        "drops"
    );
    for (n, h) in hub_runs {
        let b = measure(&crt, &bare_url, None, n, seconds).await?;
        let per = |r: &Run| r.server_cores * 1000.0 / n as f64;
        println!(
            "{n:>8} {:>10.3} {:>10.3} {:>12.4} {:>12.4} {:>7.2} {:>10.1} {:>10.1} {:>8.2} {:>8}",
            h.server_cores,
            b.server_cores,
            per(&h),
            per(&b),
            per(&h) / per(&b).max(1e-9),
            h.msgs_per_viewer,
            b.msgs_per_viewer,
            h.mbit_per_viewer,
            h.dropped,
        );
        if h.closed + b.closed > 0 {
            println!("         sockets that ended early: hub {}, bare {}", h.closed, b.closed);
        }
        println!(
            "         clients used {:.2} / {:.2} cores (hub / bare runs)",
            h.client_cores, b.client_cores
        );
    }
    stop.cancel();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    clients_rt.shutdown_background();
    Ok(())
}

/// This process's soft limit of open files (`/proc/self/limits`).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn bench_token(hub: &Hub) -> anyhow::Result<String> {
    let n = hub::accounts::NewToken {
        name: "bench viewers".into(),
        roles: vec!["admin".into()],
        department: None,
        integrator: None,
        expires_in_days: 1,
    };
    let audit = hub::store::AuditEntry {
        actor: "cli:bench".into(),
        address: "-".into(),
        action: "token.create".into(),
        target: "token:bench".into(),
        before: None,
        after: None,
    };
    let now = common::Clock::now_ms(&common::SystemClock);
    let (_, token) = hub::accounts::create_token(&hub.store, n, "bench", audit, now)
        .await
        .map_err(|e| anyhow!("creating the viewers' token: {e}"))?;
    Ok(token)
}
