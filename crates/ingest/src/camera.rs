//! Camera sources. Two RTSP clients, chosen per camera ([`RtspClient`]):
//!
//! - `native` (the default, [`crate::native`]): retina receives on a small shared async
//!   runtime; only the access units analysis needs go to a GStreamer decoder
//!   (`appsrc ! avdec_h264 ! videoconvert ! RGB appsink`). About a fifth of rtspsrc's receiving CPU.
//! - `gstreamer`: one whole GStreamer pipeline per camera on its own thread, for cameras the
//!   native client cannot talk to:
//!
//! ```text
//! rtspsrc (TCP) ! rtph264depay ! h264parse ─┬─ relay only (`off`): nothing decoded
//!                                           └─ identity drop-buffer-flags=delta-unit
//!                                              ! avdec_h264 max-threads=1 ! videoconvert ! RGB appsink
//! ```
//!
//! Analysis decodes as little as possible: `keyframes` (the default) drops every delta unit
//! before the decoder, so about one frame per GOP is decoded; `fps = N` decodes everything and
//! keeps N frames a second; `off` decodes nothing. Decoded frames go to a bounded queue with
//! `try_send`: when analysis is behind, frames are dropped and counted, and ingest never waits.
//! Decoders run one thread each: with many cameras the parallelism is across cameras, and a
//! frame-threaded decoder would hold key frames back (one per thread) before emitting them.
//!
//! A camera reconnects with backoff and jitter after an error, an end of stream, or a stall
//! (no data for [`STALL`]), and keeps its health (state, input fps, last key frame, last error
//! with credentials redacted). A dead camera never blocks another: each has its own thread and
//! pipeline.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::metrics::Counter;
use common::{CameraId, UnixMs};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A camera that delivered nothing for this long is restarted.
pub const STALL: Duration = Duration::from_secs(3);
/// Connecting (until the first data) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between reconnection attempts (before up to 25 % jitter): a camera is back
/// within about a second of its server's return, plus the RTSP set-up.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How much of a camera's stream is decoded for analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// Decode key frames only.
    Keyframes,
    /// Decode everything, keep this many frames a second.
    Fps(u32),
    /// Relay only: no decoder at all.
    Off,
}

/// Which RTSP client pulls a camera: the configuration's own type (`native`: see
/// [`crate::native`]; `gstreamer`: one rtspsrc pipeline and thread per camera).
pub use config::RtspClient;

/// What a camera source needs.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub id: CameraId,
    /// `rtsp://[user:pass@]host[:port]/path`; the credentials never reach logs or health.
    pub url: String,
    /// rtspsrc's jitter buffer (the `gstreamer` client only: over TCP the native client needs
    /// none).
    pub latency_ms: u32,
    pub analysis: Analysis,
    pub client: RtspClient,
}

/// A decoded frame for analysis: RGB, tightly packed.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: CameraId,
    pub width: u32,
    pub height: u32,
    /// The GStreamer buffer's memory, mapped (no copy).
    pub rgb: Bytes,
    pub received_at: UnixMs,
}

/// Connection state of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Connecting,
    Online,
    Offline,
    Stopped,
}

/// A camera's health, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub state: CameraState,
    /// Input access units per second (all frames, decoded or not).
    pub input_fps: f64,
    /// Input bits per second.
    pub bitrate: f64,
    /// Input access units since the camera started (every connection), counted as they arrive.
    pub frames_in: u64,
    /// Key frames among `frames_in`.
    pub keyframes_in: u64,
    pub frames_decoded: u64,
    pub frames_dropped: u64,
    pub last_keyframe_at: Option<UnixMs>,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: CameraState::Connecting,
            input_fps: 0.0,
            bitrate: 0.0,
            frames_in: 0,
            keyframes_in: 0,
            frames_decoded: 0,
            frames_dropped: 0,
            last_keyframe_at: None,
            last_error: None,
            reconnects: 0,
        }
    }
}

/// `rtsp://user:secret@host/x` → `rtsp://user:***@host/x`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme_end], &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

pub(crate) fn now_ms() -> UnixMs {
    crate::now_ms()
}

pub(crate) fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health.lock().unwrap_or_else(|e| e.into_inner())
}

/// Initialises GStreamer (once per process); a failure is the camera's last error.
pub(crate) fn gst_ready(health: &Mutex<Health>) -> bool {
    match gst::init() {
        Ok(()) => true,
        Err(e) => {
            lock(health).last_error = Some(format!("GStreamer: {e}"));
            false
        }
    }
}

/// Reconnection delays: 250 ms doubling up to [`MAX_BACKOFF`], each with up to 25 % jitter.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(250))
    }

    pub(crate) fn next(&mut self) -> Duration {
        let jitter = rand::thread_rng().gen_range(0..=self.0.as_millis() as u64 / 4);
        let wait = self.0 + Duration::from_millis(jitter);
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

/// A connection ended with `why`: logged and shown in the health with credentials redacted.
pub(crate) fn on_failure(spec: &CameraSpec, health: &Mutex<Health>, why: String) {
    let url = redact(&spec.url);
    let why = why.replace(&spec.url, &url);
    warn!(camera = %spec.id, url = %url, error = %why, "camera failed; reconnecting");
    let mut h = lock(health);
    h.state = CameraState::Offline;
    h.last_error = Some(why);
    h.reconnects += 1;
    h.input_fps = 0.0;
    h.bitrate = 0.0;
}

/// How a camera runs.
enum Runner {
    Thread { stop: std_mpsc::Sender<()>, thread: Option<std::thread::JoinHandle<()>> },
    Task(crate::native::Task),
}

/// A running camera source.
pub struct Camera {
    pub spec_id: CameraId,
    health: Arc<Mutex<Health>>,
    runner: Runner,
}

impl Camera {
    /// Starts the camera. Frames go to `frames` (dropped and counted when it is full).
    pub fn start(spec: CameraSpec, frames: mpsc::Sender<Frame>, dropped: Arc<Counter>) -> Self {
        let health = Arc::new(Mutex::new(Health::default()));
        let h = health.clone();
        let id = spec.id.clone();
        let runner = match spec.client {
            RtspClient::Native => {
                Runner::Task(crate::native::Task::start(spec, frames, dropped, h))
            }
            RtspClient::Gstreamer => {
                let (stop, stop_rx) = std_mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name(format!("camera-{}", spec.id))
                    .spawn(move || run(spec, frames, dropped, h, stop_rx))
                    .expect("spawning a camera thread");
                Runner::Thread { stop, thread: Some(thread) }
            }
        };
        Camera { spec_id: id, health, runner }
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Stops the camera and waits until its pipeline is torn down.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        match &mut self.runner {
            Runner::Thread { stop, thread } => {
                let _ = stop.send(());
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Runner::Task(task) => task.stop(),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.halt();
    }
}

enum Ended {
    Stopped,
    Failed(String),
}

fn run(
    spec: CameraSpec,
    frames: mpsc::Sender<Frame>,
    dropped: Arc<Counter>,
    health: Arc<Mutex<Health>>,
    stop: std_mpsc::Receiver<()>,
) {
    if !gst_ready(&health) {
        return;
    }
    let mut backoff = Backoff::new();
    loop {
        lock(&health).state = CameraState::Connecting;
        match run_once(&spec, &frames, &dropped, &health, &stop) {
            Ended::Stopped => break,
            Ended::Failed(why) => on_failure(&spec, &health, why),
        }
        match stop.recv_timeout(backoff.next()) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    lock(&health).state = CameraState::Stopped;
}

/// From H.264 access units to RGB frames in `appsink name=sink`: the decoder and what follows
/// it, for both clients (`None` for relay-only cameras).
pub(crate) fn decode_chain(analysis: Analysis) -> Option<String> {
    let sink = "appsink name=sink max-buffers=2 drop=true sync=false";
    match analysis {
        Analysis::Off => None,
        Analysis::Keyframes => Some(format!(
            "avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=RGB ! {sink}"
        )),
        Analysis::Fps(n) => Some(format!(
            "avdec_h264 max-threads=1 ! videorate drop-only=true ! video/x-raw,framerate={n}/1 ! \
             videoconvert ! video/x-raw,format=RGB ! {sink}"
        )),
    }
}

fn launch(spec: &CameraSpec) -> String {
    let src = format!(
        "rtspsrc name=src location=\"{}\" protocols=tcp latency={} ! rtph264depay ! \
         h264parse name=parse",
        spec.url, spec.latency_ms
    );
    match (spec.analysis, decode_chain(spec.analysis)) {
        (_, None) => format!("{src} ! fakesink sync=false"),
        (Analysis::Keyframes, Some(chain)) => {
            format!("{src} ! identity drop-buffer-flags=delta-unit ! {chain}")
        }
        (_, Some(chain)) => format!("{src} ! {chain}"),
    }
}

/// Sends what `sink` receives (packed RGB) to the analysis queue: `try_send`, so a full queue
/// drops the frame and counts it, and the pipeline never waits.
pub(crate) fn send_frames_to(
    sink: &gst_app::AppSink,
    id: CameraId,
    frames: mpsc::Sender<Frame>,
    dropped: Arc<Counter>,
    health: Arc<Mutex<Health>>,
) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (w, h) = sample
                    .caps()
                    .and_then(|c| c.structure(0))
                    .and_then(|st| {
                        Some((st.get::<i32>("width").ok()?, st.get::<i32>("height").ok()?))
                    })
                    .unwrap_or((0, 0));
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let frame = Frame {
                    camera: id.clone(),
                    width: w as u32,
                    height: h as u32,
                    rgb: Bytes::from_owner(mapped),
                    received_at: now_ms(),
                };
                let mut hl = lock(&health);
                hl.frames_decoded += 1;
                if frames.try_send(frame).is_err() {
                    hl.frames_dropped += 1;
                    dropped.inc();
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// Input statistics of one connection that health does not show as such, updated by a pad
/// probe on the parser's output (unit and key-frame counts go straight into the health).
#[derive(Default)]
struct Input {
    bytes: u64,
    last_unit: Option<Instant>,
}

fn run_once(
    spec: &CameraSpec,
    frames: &mpsc::Sender<Frame>,
    dropped: &Arc<Counter>,
    health: &Arc<Mutex<Health>>,
    stop: &std_mpsc::Receiver<()>,
) -> Ended {
    let pipeline = match gst::parse::launch(&launch(spec)) {
        Ok(p) => match p.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(_) => return Ended::Failed("not a pipeline".into()),
        },
        Err(e) => return Ended::Failed(format!("building the pipeline: {e}")),
    };
    let input = Arc::new(Mutex::new(Input::default()));
    if let Some(pad) = pipeline.by_name("parse").and_then(|p| p.static_pad("src")) {
        let (input, health) = (input.clone(), health.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                {
                    let mut i = input.lock().unwrap_or_else(|e| e.into_inner());
                    i.bytes += b.size() as u64;
                    i.last_unit = Some(Instant::now());
                }
                // Counted at once (not at the next health tick), across reconnects.
                let mut h = lock(&health);
                h.frames_in += 1;
                if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    h.keyframes_in += 1;
                    h.last_keyframe_at = Some(now_ms());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    if let Some(sink) = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        send_frames_to(&sink, spec.id.clone(), frames.clone(), dropped.clone(), health.clone());
    }
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        let _ = pipeline.set_state(gst::State::Null);
        return Ended::Failed(format!("starting: {e}"));
    }
    let Some(bus) = pipeline.bus() else {
        let _ = pipeline.set_state(gst::State::Null);
        return Ended::Failed("no bus".into());
    };
    let started = Instant::now();
    let units_at_start = lock(health).frames_in;
    let (mut last_tick, mut last_units, mut last_bytes) = (Instant::now(), units_at_start, 0u64);
    let ended = loop {
        if stop.try_recv().is_ok() {
            break Ended::Stopped;
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let detail = e.debug().map(|d| d.to_string()).unwrap_or_default();
                    let first = detail.lines().last().unwrap_or("").to_owned();
                    break Ended::Failed(format!("{} ({first})", e.error()));
                }
                gst::MessageView::Eos(_) => break Ended::Failed("end of stream".into()),
                _ => {}
            }
        }
        let (bytes, last_unit) = {
            let i = input.lock().unwrap_or_else(|e| e.into_inner());
            (i.bytes, i.last_unit)
        };
        match last_unit {
            None if started.elapsed() > CONNECT_TIMEOUT => {
                break Ended::Failed(format!("no data within {CONNECT_TIMEOUT:?}"));
            }
            Some(t) if t.elapsed() > STALL => {
                break Ended::Failed(format!("stalled: no data for {STALL:?}"));
            }
            _ => {}
        }
        let mut h = lock(health);
        if last_unit.is_some() && h.state != CameraState::Online {
            info!(camera = %spec.id, "camera online");
            h.state = CameraState::Online;
            h.last_error = None;
        }
        let dt = last_tick.elapsed();
        if dt >= Duration::from_secs(1) {
            let units = h.frames_in;
            h.input_fps = (units - last_units) as f64 / dt.as_secs_f64();
            h.bitrate = (bytes - last_bytes) as f64 * 8.0 / dt.as_secs_f64();
            (last_tick, last_units, last_bytes) = (Instant::now(), units, bytes);
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.5:554/ch1"),
            "rtsp://admin:***@10.0.0.5:554/ch1"
        );
        assert_eq!(redact("rtsp://10.0.0.5/ch1"), "rtsp://10.0.0.5/ch1");
        assert_eq!(redact("rtsp://a:b@c@host/x"), "rtsp://a:***@host/x");
    }
}
