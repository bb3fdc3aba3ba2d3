//! `hub bench cameras`: the video path's cost, printed next to the bare parts measured in the
//! same run (see BENCHMARKS.md). A benchmark, not a test: it asserts nothing.
//!
//! - Simulated cameras run in a child process (`devices cameras`), so their CPU is measured
//!   apart from the hub's.
//! - Bare parts: the clip's key frames decoded in one pipeline with the cameras' decode chain
//!   (the clip looped in memory, CPU per frame), then FastestDet with its pre- and
//!   post-processing on those frames (CPU of the thread running it, per frame). Their sum is
//!   the floor, measured again right before each analysed step (`bare ms`).
//! - Analysed cameras: for each count, a hub with that many key-frame cameras, each with a
//!   FastestDet rule, and `--workers` analysis workers (one session each); over the window, the
//!   hub's CPU per camera, analysis slots missed and the hub's CPU per analysed frame divided by
//!   the floor. Every key frame received is an analysis slot; a slot is missed when its frame
//!   is dropped (at a decoder's input or at the analysis queue, both counted). Comparing frames
//!   analysed with key frames received over the window instead would count the frames still
//!   in flight at its ends: the simulated cameras send their key frames at the same instants,
//!   so up to one frame per camera is in flight (± 5 % over 20 s).
//! - Bare parts from RTSP: the same number of cameras as the smallest step as bare ingest
//!   sources (receive, depay, parse, key-frame decode; frames discarded): CPU per decoded frame,
//!   plus FastestDet. `ratio rtsp` divides the hub's cost per analysed frame by this floor: the
//!   hub's own overhead. `ratio mem` divides by the in-memory decode floor.
//! - Relay-only cameras: a hub with cameras that decode nothing; CPU per camera.
//!
//! CPU is read from `/proc/<pid>/stat` (user + system, Linux clock ticks of 10 ms).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use config::RtspClient;
use hub::{Hub, StartOptions};
use inference::ModelLibrary;
use inference::library::{BUILTIN, LoadOptions};
use inference::vision::Detector;

/// Seconds of CPU (user + system) a process has used.
pub(super) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// Seconds of CPU the calling thread has used (other threads of the process left out).
fn thread_cpu_seconds() -> anyhow::Result<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

pub(super) fn stat_cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("odd stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
    Ok((utime + stime) / 100.0)
}

pub(super) struct CameraServer {
    child: Child,
    pub(super) port: u16,
}

impl CameraServer {
    pub(super) fn start(clip: &Path, mounts: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let devices = exe.with_file_name("devices");
        if !devices.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p devices`",
                devices.display()
            );
        }
        let mut child = Command::new(&devices)
            .args(["cameras", "--port", "0", "--mounts", &mounts.to_string(), "--clip"])
            .arg(clip)
            .env("HUB_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", devices.display()))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut out = std::io::BufReader::new(out);
        let mut line = String::new();
        out.read_line(&mut line)?;
        // The URLs follow; keep reading so the child never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("devices cameras printed {line:?}, not a port"))?;
        Ok(Self { child, port })
    }
}

impl Drop for CameraServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn site() -> &'static str {
    "[[sites]]\nid = \"bench\"\nname = \"Bench\"\nregion = \"610100\"\nindustry = \"food\"\n\
     entity_name = \"Bench\"\nuscc = \"91350100M000100Y43\"\n"
}

pub(super) fn config(
    dir: &Path,
    models: &[PathBuf],
    port: u16,
    cameras: usize,
    analysed: bool,
    client: RtspClient,
    workers: usize,
) -> anyhow::Result<config::Config> {
    let mut text = format!("[database]\nurl = \"sqlite://bench.db\"\n{}", site());
    for i in 0..cameras {
        text.push_str(&format!(
            "\n[[cameras]]\nid = \"cam{i}\"\nsite = \"bench\"\nurl = \"rtsp://127.0.0.1:{port}/cam{i}\"\n"
        ));
        if analysed {
            // A rule that runs the model on every analysed frame and never fires (no
            // evidence writing in the measurement).
            text.push_str(
                "[[cameras.rules]]\nid = \"crowd\"\nmodel = \"fastestdet\"\nlabels = [\"person\"]\n\
                 min_count = 1000\nseverity = \"minor\"\nitem_code = \"61000000900001\"\n",
            );
        } else {
            // Relay-only cameras are pulled while watched: this measures receiving them.
            text.push_str("analysis = \"off\"\npull = \"always\"\n");
        }
    }
    let mut cfg = config::Config::parse(&text, "<bench configuration>")?;
    for c in &mut cfg.cameras {
        c.rtsp_client = client;
    }
    cfg.models.search_path = models.to_vec();
    cfg.data_dir = dir.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    cfg.vision.queue = cameras.max(64);
    cfg.vision.workers = workers;
    cfg.vision.sessions = workers;
    Ok(cfg)
}

/// Bare parts: CPU seconds per frame of decoding the clip's key frames (one pipeline, the clip
/// looped in memory), and of FastestDet on those frames.
fn bare(clip: &devices::camera::Clip, models: &[PathBuf]) -> anyhow::Result<(f64, f64, usize)> {
    let me = std::process::id();
    let lib = ModelLibrary::load(BUILTIN, models, &LoadOptions::default());
    let model = lib.get("fastestdet").context("fastestdet must be on the model search path")?;
    let mut det = Detector::new(model)?;
    let c0 = cpu_seconds(me)?;
    let (frames, decoded) = clip.decode_keyframes(60)?;
    let c1 = cpu_seconds(me)?;
    let decode = (c1 - c0) / decoded as f64;
    let mut out = Vec::new();
    let rounds = 300usize.div_ceil(frames.len().max(1));
    // One thread runs the model (one intra-op thread): its own CPU time, so nothing else the
    // process does is counted.
    for (w, h, rgb) in &frames {
        det.detect_into(rgb, *w, *h, &mut out)?;
    }
    let c2 = thread_cpu_seconds()?;
    for _ in 0..rounds {
        for (w, h, rgb) in &frames {
            det.detect_into(rgb, *w, *h, &mut out)?;
        }
    }
    let c3 = thread_cpu_seconds()?;
    let infer = (c3 - c2) / (rounds * frames.len()) as f64;
    Ok((decode, infer, decoded))
}

/// Bare decode from RTSP: `cameras` ingest sources (the hub's camera threads without the hub:
/// receive, depay, parse, key-frame decode to RGB), frames discarded. CPU seconds per decoded
/// frame.
async fn bare_rtsp(
    server: &CameraServer,
    cameras: usize,
    seconds: u64,
    client: RtspClient,
) -> anyhow::Result<f64> {
    use ingest::camera::{Analysis, Camera, CameraSpec};
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let dropped = Arc::new(common::metrics::Counter::default());
    let cams: Vec<Camera> = (0..cameras)
        .map(|i| {
            Camera::start(
                CameraSpec {
                    id: common::CameraId::new(format!("cam{i}")).expect("a valid id"),
                    url: format!("rtsp://127.0.0.1:{}/cam{i}", server.port),
                    latency_ms: 1000,
                    analysis: Analysis::Keyframes,
                    client,
                    stall_timeout: ingest::camera::DEFAULT_STALL_TIMEOUT,
                    live: None,
                },
                tx.clone(),
                dropped.clone(),
            )
        })
        .collect();
    drop(tx);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let decoded = |c: &[Camera]| c.iter().map(|c| c.health().frames_decoded).sum::<u64>();
    let me = std::process::id();
    let (n0, c0) = (decoded(&cams), cpu_seconds(me)?);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (n1, c1) = (decoded(&cams), cpu_seconds(me)?);
    tokio::task::spawn_blocking(move || cams.into_iter().for_each(Camera::stop)).await?;
    let _ = drain.await;
    Ok((c1 - c0) / (n1 - n0).max(1) as f64)
}

struct Step {
    cameras: usize,
    hub_cpu: f64,
    sim_cpu: f64,
    seconds: f64,
    analysed: u64,
    expected: f64,
    dropped: u64,
}

async fn step(
    server: &CameraServer,
    models: &[PathBuf],
    cameras: usize,
    analysed: bool,
    seconds: u64,
    client: RtspClient,
    workers: usize,
) -> anyhow::Result<Step> {
    let dir = std::env::temp_dir().join(format!("hub-bench-cam-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let cfg = config(&dir, models, server.port, cameras, analysed, client, workers)?;
    let hub = Hub::start(cfg, StartOptions::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(60 + cameras as u64 / 2);
    loop {
        let online = hub
            .cameras
            .list()
            .iter()
            .filter(|c| c.health.state == ingest::camera::CameraState::Online)
            .count();
        if online == cameras {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {online} of {cameras} cameras came online");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Warm-up: sessions, jitter buffers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // (analysed, dropped, key frames received)
    let totals = |hub: &Hub| {
        hub.cameras.list().iter().fold((0u64, 0u64, 0u64), |(a, d, k), c| {
            (a + c.stats.frames_analysed, d + c.health.frames_dropped, k + c.health.keyframes_in)
        })
    };
    let (me, sim) = (std::process::id(), server.child.id());
    let (a0, d0, k0) = totals(&hub);
    let (h0, s0, t0) = (cpu_seconds(me)?, cpu_seconds(sim)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (a1, d1, k1) = totals(&hub);
    let (h1, s1, t1) = (cpu_seconds(me)?, cpu_seconds(sim)?, Instant::now());
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let secs = (t1 - t0).as_secs_f64();
    Ok(Step {
        cameras,
        hub_cpu: h1 - h0,
        sim_cpu: s1 - s0,
        seconds: secs,
        analysed: a1 - a0,
        // Every key frame received is an analysis slot.
        expected: if analysed { (k1 - k0) as f64 } else { 0.0 },
        dropped: d1 - d0,
    })
}

pub async fn cameras(
    clip: PathBuf,
    models: Vec<PathBuf>,
    counts: Vec<usize>,
    relay: usize,
    seconds: u64,
    client: RtspClient,
    workers: usize,
) -> anyhow::Result<()> {
    println!("RTSP client: {client}; analysis workers: {workers}");
    let c = devices::camera::Clip::from_mp4(&clip)?;
    let keyframes_per_s = c.keyframes() as f64 / c.length_seconds();
    println!(
        "clip {} ({} key frames in {:.2} s: {keyframes_per_s:.2} key frames/s per camera)",
        clip.display(),
        c.keyframes(),
        c.length_seconds()
    );
    let (decode, infer, n) = bare(&c, &models)?;
    let floor = decode + infer;
    println!(
        "bare parts ({n} key frames): decode {:.2} ms + FastestDet {:.2} ms = {:.2} ms CPU per frame",
        decode * 1e3,
        infer * 1e3,
        floor * 1e3
    );
    let most = counts.iter().copied().max().unwrap_or(1).max(relay);
    let server = CameraServer::start(&clip, most)?;
    let rtsp_cams = counts.iter().copied().min().unwrap_or(10).max(1);
    let rtsp = bare_rtsp(&server, rtsp_cams, seconds, client).await?;
    let floor_rtsp = rtsp + infer;
    println!(
        "bare parts from RTSP ({rtsp_cams} cameras, ingest only): receive + decode {:.2} ms + \
         FastestDet {:.2} ms = {:.2} ms CPU per analysed frame",
        rtsp * 1e3,
        infer * 1e3,
        floor_rtsp * 1e3
    );
    println!(
        "\n{:>8} {:>10} {:>9} {:>10} {:>9} {:>8} {:>13} {:>9} {:>10} {:>10}",
        "cameras",
        "hub %core",
        "%/camera",
        "sim %/cam",
        "analysed",
        "missed",
        "ms CPU/frame",
        "bare ms",
        "ratio mem",
        "ratio rtsp"
    );
    for &n in &counts {
        // The bare parts again just before each step: this VM's speed drifts by ±15 % over
        // minutes, and a ratio is only as good as the baseline next to it.
        let (decode, infer, _) = bare(&c, &models)?;
        let (floor, floor_rtsp) = (decode + infer, rtsp + infer);
        let s = step(&server, &models, n, true, seconds, client, workers).await?;
        let per_frame = s.hub_cpu / s.analysed.max(1) as f64;
        let missed = s.dropped as f64 / s.expected.max(1.0);
        println!(
            "{:>8} {:>9.1}% {:>8.2}% {:>9.2}% {:>9} {:>7.2}% {:>13.2} {:>9.2} {:>10.2} {:>10.2}",
            s.cameras,
            100.0 * s.hub_cpu / s.seconds,
            100.0 * s.hub_cpu / s.seconds / n as f64,
            100.0 * s.sim_cpu / s.seconds / n as f64,
            s.analysed,
            100.0 * missed,
            per_frame * 1e3,
            floor * 1e3,
            per_frame / floor,
            per_frame / floor_rtsp
        );
        if s.dropped > 0 {
            println!(
                "{:>8} ({} frames dropped of {} key frames received)",
                "", s.dropped, s.expected
            );
        }
    }
    if relay > 0 {
        let s = step(&server, &models, relay, false, seconds, client, workers).await?;
        println!(
            "\nrelay only: {relay} cameras, hub {:.1}% of a core = {:.3}% per camera \
             (simulated cameras {:.3}% per camera)",
            100.0 * s.hub_cpu / s.seconds,
            100.0 * s.hub_cpu / s.seconds / relay as f64,
            100.0 * s.sim_cpu / s.seconds / relay as f64
        );
    }
    drop(server);
    Ok(())
}
