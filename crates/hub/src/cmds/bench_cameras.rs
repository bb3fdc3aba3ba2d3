//! `hub bench cameras`: the video path's cost, printed next to the bare parts measured in the
//! same run (see BENCHMARKS.md). A benchmark, not a test: it asserts nothing.
//!
//! - Simulated cameras run in a child process (`devices cameras`), so their CPU is measured
//!   apart from the hub's.
//! - Bare parts: the clip's key frames decoded by a file pipeline with the cameras' decode chain
//!   (CPU per frame), then FastestDet on those frames (CPU per frame). Their sum is the floor.
//! - Analysed cameras: for each count, a hub with that many key-frame cameras, each with a
//!   FastestDet rule; over the window, the hub's CPU per camera, analysis slots missed (key
//!   frames the cameras received but analysis did not look at), and the hub's CPU per analysed
//!   frame divided by the floor.
//! - Relay-only cameras: a hub with cameras that decode nothing; CPU per camera.
//!
//! CPU is read from `/proc/<pid>/stat` (user + system, Linux clock ticks of 10 ms).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hub::{Hub, StartOptions};
use inference::ModelLibrary;
use inference::library::{BUILTIN, LoadOptions};
use inference::vision::Detector;

/// Seconds of CPU (user + system) a process has used.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("odd stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
    Ok((utime + stime) / 100.0)
}

struct CameraServer {
    child: Child,
    port: u16,
}

impl CameraServer {
    fn start(clip: &Path, mounts: usize) -> anyhow::Result<Self> {
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
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
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

fn config(
    dir: &Path,
    models: &[PathBuf],
    port: u16,
    cameras: usize,
    analysed: bool,
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
            text.push_str("analysis = \"off\"\n");
        }
    }
    let mut cfg = config::Config::parse(&text, "<bench configuration>")?;
    cfg.models.search_path = models.to_vec();
    cfg.data_dir = dir.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    cfg.vision.queue = cameras.max(64);
    Ok(cfg)
}

/// Bare parts: CPU seconds per frame of decoding the clip's key frames, and of FastestDet.
fn bare(clip: &Path, models: &[PathBuf]) -> anyhow::Result<(f64, f64, usize)> {
    let me = std::process::id();
    let lib = ModelLibrary::load(BUILTIN, models, &LoadOptions::default());
    let model = lib.get("fastestdet").context("fastestdet must be on the model search path")?;
    let mut det = Detector::new(model)?;
    // Decode a few times over to get past 10 ms clock ticks.
    let c0 = cpu_seconds(me)?;
    let mut frames = Vec::new();
    for _ in 0..10 {
        frames = ingest::camera::decode_keyframes_file(clip).map_err(|e| anyhow!(e))?;
    }
    let c1 = cpu_seconds(me)?;
    let decode = (c1 - c0) / (10 * frames.len()) as f64;
    let mut out = Vec::new();
    let rounds = 200usize.div_ceil(frames.len());
    let c2 = cpu_seconds(me)?;
    for _ in 0..rounds {
        for f in &frames {
            det.detect_into(&f.rgb, f.width, f.height, &mut out)?;
        }
    }
    let c3 = cpu_seconds(me)?;
    let infer = (c3 - c2) / (rounds * frames.len()) as f64;
    Ok((decode, infer, frames.len()))
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
    keyframes_per_s: f64,
) -> anyhow::Result<Step> {
    let dir = std::env::temp_dir().join(format!("hub-bench-cam-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let cfg = config(&dir, models, server.port, cameras, analysed)?;
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
    let totals = |hub: &Hub| {
        hub.cameras.list().iter().fold((0u64, 0u64), |(a, d), c| {
            (a + c.stats.frames_analysed, d + c.health.frames_dropped)
        })
    };
    let (me, sim) = (std::process::id(), server.child.id());
    let (a0, d0) = totals(&hub);
    let (h0, s0, t0) = (cpu_seconds(me)?, cpu_seconds(sim)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (a1, d1) = totals(&hub);
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
        expected: if analysed { cameras as f64 * secs * keyframes_per_s } else { 0.0 },
        dropped: d1 - d0,
    })
}

pub async fn cameras(
    clip: PathBuf,
    models: Vec<PathBuf>,
    counts: Vec<usize>,
    relay: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let c = devices::camera::Clip::from_mp4(&clip)?;
    let keyframes_per_s = c.keyframes() as f64 / c.length_seconds();
    println!(
        "clip {} ({} key frames in {:.2} s: {keyframes_per_s:.2} key frames/s per camera)",
        clip.display(),
        c.keyframes(),
        c.length_seconds()
    );
    let (decode, infer, n) = bare(&clip, &models)?;
    let floor = decode + infer;
    println!(
        "bare parts ({n} key frames): decode {:.2} ms + FastestDet {:.2} ms = {:.2} ms CPU per frame",
        decode * 1e3,
        infer * 1e3,
        floor * 1e3
    );
    let most = counts.iter().copied().max().unwrap_or(1).max(relay);
    let server = CameraServer::start(&clip, most)?;
    println!(
        "\n{:>8} {:>12} {:>12} {:>10} {:>10} {:>9} {:>14} {:>8}",
        "cameras",
        "hub %core",
        "%/camera",
        "sim %/cam",
        "analysed",
        "missed",
        "ms CPU/frame",
        "ratio"
    );
    for &n in &counts {
        let s = step(&server, &models, n, true, seconds, keyframes_per_s).await?;
        let per_frame = s.hub_cpu / s.analysed.max(1) as f64;
        let missed = (1.0 - s.analysed as f64 / s.expected).max(0.0);
        println!(
            "{:>8} {:>11.1}% {:>11.2}% {:>9.2}% {:>10} {:>8.2}% {:>14.2} {:>8.2}",
            s.cameras,
            100.0 * s.hub_cpu / s.seconds,
            100.0 * s.hub_cpu / s.seconds / n as f64,
            100.0 * s.sim_cpu / s.seconds / n as f64,
            s.analysed,
            100.0 * missed,
            per_frame * 1e3,
            per_frame / floor
        );
        if s.dropped > 0 {
            println!("{:>8} ({} frames dropped at the analysis queue)", "", s.dropped);
        }
    }
    if relay > 0 {
        let s = step(&server, &models, relay, false, seconds, keyframes_per_s).await?;
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
